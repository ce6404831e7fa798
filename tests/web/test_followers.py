"""web.followers on a real redis-server: one reader per stream key for all its followers, each
follower gets exactly the entries after its start, and a follower that falls behind only costs itself."""

import threading
import time

import pytest

from common.connection import connect
from web import followers as followers_module
from web.followers import Follower, Followers, stream_id

KEY = "fc:test:feed"


@pytest.fixture
def hub(redis_url):
    client = connect(redis_url)
    stop = threading.Event()
    made = Followers(client, stop, linger=0.5)
    yield made
    made.close()
    client.close()


def _ids(entries) -> list[str]:
    return [entry_id.decode() for _key, entry_id, _fields in entries]


def _take_until(gen, count: int, timeout: float = 10.0) -> list:
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        entry = next(gen)
        if entry is not None:
            got.append(entry)
    return got


def test_stream_ids_compare_as_redis_orders_them():
    assert stream_id(b"10-0") > stream_id("9-5") > stream_id("9-4") and stream_id("7") == (7, 0)


def test_a_follower_skips_what_the_reader_gives_before_its_start():
    follower = Follower({KEY: "5-1"})
    follower.put(KEY, [(b"5-0", {}), (b"5-1", {}), (b"5-2", {}), (b"6-0", {})])
    assert _ids(follower.take(0.1)) == ["5-2", "6-0"]
    assert follower.take(0.05) == []


def test_followers_share_one_reader_and_each_gets_what_followed_its_start(hub, redis_client):
    start = redis_client.xadd(KEY, {"n": 0})
    first = hub.follow({KEY: start}, {KEY: None})
    assert next(first) is None  # nothing new yet: the caller's turn
    written = [redis_client.xadd(KEY, {"n": n}) for n in range(1, 4)]
    assert _ids(_take_until(first, 3)) == [w.decode() for w in written]
    # A second follower whose request came before those entries: the shared reader is past its
    # start already, so the entries in between are read for it once (XRANGE), then it shares the reader.
    late = hub.follow({KEY: start}, {KEY: None})
    assert _ids(_take_until(late, 3)) == [w.decode() for w in written]
    more = redis_client.xadd(KEY, {"n": 4})
    assert _ids(_take_until(first, 1)) == _ids(_take_until(late, 1)) == [more.decode()]
    assert hub.readers_started == 1 and hub.readers()[KEY].followers() == 2
    first.close()
    late.close()
    assert hub.readers()[KEY].followers() == 0
    deadline = time.monotonic() + 10
    while hub.readers():  # retires `linger` after its last follower
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_follower_that_falls_behind_is_dropped_alone(hub, redis_client, monkeypatch):
    monkeypatch.setattr(followers_module, "QUEUE_LIMIT", 5)
    start = redis_client.xadd(KEY, {"n": 0})
    slow, fast = hub.follow({KEY: start}, {KEY: None}), hub.follow({KEY: start}, {KEY: None})
    next(slow), next(fast)  # both subscribed
    written = []
    for n in range(12):
        written.append(redis_client.xadd(KEY, {"n": n}).decode())
        assert _ids(_take_until(fast, 1)) == written[-1:]  # the fast one keeps up, entry by entry
    with pytest.raises(StopIteration):  # dropped: its generator ends, its backlog with it
        for _ in range(5):
            next(slow)
    assert hub.readers()[KEY].followers() == 1
    fast.close()


def test_shutdown_ends_every_follower(hub, redis_client):
    start = redis_client.xadd(KEY, {"n": 0})
    gens = [hub.follow({KEY: start}, {KEY: None}) for _ in range(5)]
    for gen in gens:
        next(gen)
    hub.stop.set()
    started = time.monotonic()
    for gen in gens:  # each generator ends within a turn or two, having given nothing
        with pytest.raises(StopIteration):
            for _ in range(3):
                assert next(gen) is None
    assert time.monotonic() - started < 5
    hub.close()
    assert hub.readers() == {}
