"""Stream reads on a Redis Cluster find their slot without asking a server (common/cluster_keys.py):
a client from common.connection on the session's real cluster reads and pipelines XREAD and
XREADGROUP over keys on every master, and the masters answer no COMMAND GETKEYS."""

import pytest

from common.cluster_keys import stream_read_keys
from common.connection import connect
from common.keys import Keys

KEYS = Keys()


def test_the_keys_are_read_from_the_arguments():
    assert stream_read_keys(("XREAD", "COUNT", 5, "BLOCK", 100, "STREAMS", "a", "b", "0", "$")) == ["a", "b"]
    assert stream_read_keys((b"XREADGROUP", b"GROUP", b"STREAMS", b"COUNT", b"COUNT", 1, b"NOACK",
                             b"STREAMS", b"k", b">")) == [b"k"]  # a group and consumer named like options
    assert stream_read_keys(("xread", "STREAMS", "k", "0")) == ["k"]
    assert stream_read_keys(("XREAD", "STREAMS", "k")) is None  # odd: Redis refuses it
    assert stream_read_keys(("XREAD", "BOGUS", "STREAMS", "k", "0")) is None
    assert stream_read_keys(("XADD", "k", "*", "f", "v")) is None
    assert stream_read_keys(()) is None


def _getkeys_calls(redis_cluster) -> int:
    total = 0
    for port in redis_cluster.masters():
        client = redis_cluster.client(port)
        total += int(client.info("commandstats").get("cmdstat_command|getkeys", {}).get("calls", 0))
        client.close()
    return total


@pytest.mark.parametrize("pipelined", [False, True])
def test_stream_reads_ask_no_server_for_their_keys(redis_cluster, cluster_url, pipelined):
    client = connect(cluster_url)
    cams = [f"k{i}" for i in range(12)]  # spread over the three masters
    streams = [KEYS.frames(cam) for cam in cams]
    for stream in streams:
        client.xadd(stream, {"f": stream})
        client.xgroup_create(stream, "g", id="0")
    before = _getkeys_calls(redis_cluster)
    if pipelined:
        pipe = client.pipeline(transaction=False)
        for stream in streams:
            pipe.xread({stream: "0"}, count=5)
            pipe.xreadgroup("g", "c", {stream: ">"}, count=5)
        replies = pipe.execute()
        read, grouped = replies[0::2], replies[1::2]
    else:
        read = [client.xread({stream: "0"}, count=5, block=10) for stream in streams]
        grouped = [client.xreadgroup("g", "c", {stream: ">"}, count=5) for stream in streams]
    for stream, a, b in zip(streams, read, grouped, strict=True):
        for reply in (a, b):
            items = reply.items() if isinstance(reply, dict) else reply
            ((name, entries),) = list(items)
            assert name.decode() == stream and entries[0][1] == {b"f": stream.encode()}
    assert _getkeys_calls(redis_cluster) == before
    client.close()
