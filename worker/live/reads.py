"""How a worker reads its cameras' frames streams through the consumer group: the XREADGROUP calls of
one pass, as one command on a single server and one per hash slot on a Redis Cluster.

Redis Cluster refuses a command whose keys span slots (each camera's keys share a hash tag, so one
camera is one slot), so there the streams are grouped by slot and the groups read in one pipeline,
which redis-py sends to every node at once. A blocking cluster pipeline returns only when every node
has answered, so on a cluster an idle worker blocks for CLUSTER_BLOCK_MS at most (split between the
groups one node serves, which it answers one after another) instead of `worker.block_ms`: a frame on
one camera then waits at most that long for another node's empty read to time out. Each command's
error is kept apart, so a camera whose stream is broken costs only that camera.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import redis

from common.connection import CONNECTION_ERRORS, is_cluster
from common.keys import WORKER_GROUP
from common.text import as_str

CLUSTER_BLOCK_MS = 100  # longest block of an idle read pass on a cluster


@dataclass(frozen=True)
class Read:
    """One XREADGROUP: streams that share a slot (all of them on a single server), `count` entries each."""

    streams: tuple[str, ...]
    count: int


class StreamReads:
    """Sends a worker's read passes as consumer `consumer`; used by the worker loop's thread only."""

    def __init__(self, client, consumer: str):
        self.client = client
        self.consumer = consumer
        self.cluster = is_cluster(client)

    def slot_groups(self, streams: list[str]) -> list[list[str]]:
        """`streams` split into the sets one XREADGROUP may cover: all of them on a single server, one
        set per hash slot on a cluster (in the order given)."""
        if not streams:
            return []
        if not self.cluster:
            return [list(streams)]
        by_slot: dict[int, list[str]] = {}
        for stream in streams:
            by_slot.setdefault(self.client.keyslot(stream), []).append(stream)
        return list(by_slot.values())

    def block_ms(self, reads: list[Read], wanted: int) -> int:
        """How long each command of an idle pass blocks: `wanted` on a single server; on a cluster at
        most CLUSTER_BLOCK_MS for the node that serves the most of the pass's commands."""
        if not self.cluster:
            return wanted
        per_node = Counter(self._node_of(read.streams[0]) for read in reads)
        busiest = max(per_node.values(), default=1)
        return max(10, min(wanted, CLUSTER_BLOCK_MS // busiest))

    def _node_of(self, stream: str) -> str:
        try:
            node = self.client.nodes_manager.get_node_from_slot(self.client.keyslot(stream))
        except (redis.exceptions.RedisError, IndexError):  # a slot without a master while failing over
            return "?"
        return node.name if node is not None else "?"

    def read(self, reads: list[Read], block: int | None) -> tuple[list[tuple[str, list]], dict[str, Exception]]:
        """Run one pass: ([(stream, entries)] of the streams that returned entries, {stream: error} of
        the streams Redis refused). A refused command over several streams is retried stream by
        stream, without blocking, to tell whose error it is. Outages (CONNECTION_ERRORS) raise."""
        out: list[tuple[str, list]] = []
        errors: dict[str, Exception] = {}
        split: list[Read] = []
        for read, result in zip(reads, self._send(reads, block), strict=True):
            if isinstance(result, CONNECTION_ERRORS):
                raise result
            if isinstance(result, Exception):
                if len(read.streams) == 1:
                    errors[read.streams[0]] = result
                else:
                    split += [Read((stream,), read.count) for stream in read.streams]
            else:
                out += _entries(result)
        if split:
            more, more_errors = self.read(split, None)
            out += more
            errors.update(more_errors)
        return out, errors

    def _send(self, reads: list[Read], block: int | None) -> list:
        if len(reads) == 1:  # a single server's one read: no pipeline, as before the cluster came
            try:
                return [self._xreadgroup(self.client, reads[0], block)]
            except redis.exceptions.ResponseError as exc:
                if isinstance(exc, CONNECTION_ERRORS):
                    raise
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for read in reads:
            self._xreadgroup(pipe, read, block)
        return pipe.execute(raise_on_error=False)

    def _xreadgroup(self, target, read: Read, block: int | None):
        return target.xreadgroup(WORKER_GROUP, self.consumer, {s: ">" for s in read.streams},
                                 count=read.count, block=block)


def _entries(reply) -> list[tuple[str, list]]:
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    return [(as_str(stream), entries) for stream, entries in items if entries]


BACKLOG_BATCH_MAX = 16


class ReadPace:
    """How many entries to read at once from a backlog stream: one, so that the workers of a camera
    share its backlog frame by frame, unless a read's round trip is long against a frame's processing
    (a distant Redis): then about as many as the worker processes in one round trip, so it does not sit
    idle waiting for each read. Fed and asked by the worker loop's thread."""

    def __init__(self):
        self.read_s = 0.0  # a non-blocking read pass, smoothed
        self.frame_s = 0.0  # handling one entry, smoothed

    def read_took(self, seconds: float) -> None:
        self.read_s = _smoothed(self.read_s, seconds)

    def frames_took(self, seconds: float, count: int) -> None:
        if count:
            self.frame_s = _smoothed(self.frame_s, seconds / count)

    def backlog_count(self) -> int:
        if self.frame_s <= 0:
            return 1
        return max(1, min(BACKLOG_BATCH_MAX, 1 + int(self.read_s / self.frame_s)))


def _smoothed(old: float, new: float, weight: float = 0.2) -> float:
    return new if old == 0 else old + weight * (new - old)
