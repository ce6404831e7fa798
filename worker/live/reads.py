"""How a worker reads its cameras' frames streams through the consumer group: the XREADGROUP calls of
one pass, as one command on a single server and one per hash slot on a Redis Cluster.

Redis Cluster refuses a command whose keys span slots (each camera's keys share a hash tag, so one
camera is one slot), so there the streams are grouped by slot and the groups read in one pipeline,
which redis-py sends to every node at once. A blocking cluster pipeline returns only when every node
has answered, so on a cluster an idle worker blocks for CLUSTER_BLOCK_MS at most (split between the
groups one node serves, which it answers one after another) instead of `worker.block_ms`: a frame on
one camera then waits at most that long for another node's empty read to time out. Each command's
error is kept apart, so a camera whose stream Redis refuses costs only that camera.

`FrameReader` is what the worker loop asks: it plans each pass over the cameras in service, and over
a slow link (a read that takes longer than PREFETCH_OVER_S) sends the next pass while the loop is
still processing the frames of this one, so the round trip overlaps the detection work.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import redis

from common.connection import CONNECTION_ERRORS, is_cluster
from common.keys import WORKER_GROUP
from common.text import as_str
from worker.live.cameras import ServedCamera

CLUSTER_BLOCK_MS = 100  # longest block of an idle read pass on a cluster
LIVE_BATCH = 16  # entries read at once from a live stream; all but the newest are superseded
PREFETCH_OVER_S = 0.005  # reads slower than this (a distant Redis) are sent ahead of the loop


@dataclass(frozen=True)
class Read:
    """One XREADGROUP: streams that share a slot (all of them on a single server), `count` entries each."""

    streams: tuple[str, ...]
    count: int


class StreamReads:
    """Sends a worker's read passes as consumer `consumer`, from the loop's thread or its read-ahead
    thread (it keeps no state between passes)."""

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

    def blocks(self, reads: list[Read], wanted: int) -> list[int | None]:
        """How long each command of an idle pass blocks (None: not at all). A single server: `wanted`.
        A cluster answers a node's commands one after another, so only the first read of each node
        blocks, for at most CLUSTER_BLOCK_MS; the node's other reads follow it without blocking. An
        idle pass thus ends within CLUSTER_BLOCK_MS however many slots a worker's cameras span (a
        block split between 167 slots a node, with Redis's 10 ms floor, took 1.7 s)."""
        if not self.cluster:
            return [wanted] * len(reads)
        seen: set[str] = set()
        out: list[int | None] = []
        for read in reads:
            node = self._node_of(read.streams[0])
            out.append(None if node in seen else min(wanted, CLUSTER_BLOCK_MS))
            seen.add(node)
        return out

    def _node_of(self, stream: str) -> str:
        try:
            node = self.client.nodes_manager.get_node_from_slot(self.client.keyslot(stream))
        except (redis.exceptions.RedisError, IndexError):  # a slot without a master while failing over
            return "?"
        return node.name if node is not None else "?"

    def read(self, reads: list[Read], block: int | None | list[int | None]) -> tuple[list[tuple[str, list]], dict[str, Exception]]:
        """Run one pass: ([(stream, entries)] of the streams that returned entries, {stream: error} of
        the streams Redis refused). A refused command over several streams is retried stream by
        stream, without blocking, to tell whose error it is. An outage (CONNECTION_ERRORS) raises when
        it struck every command; on a cluster whose other nodes answered, it is the error of the
        streams of the node that did not (a master failing over), so the others keep flowing."""
        out: list[tuple[str, list]] = []
        errors: dict[str, Exception] = {}
        split: list[Read] = []
        outages = []
        for read, result in zip(reads, self._send(reads, block), strict=True):
            if isinstance(result, CONNECTION_ERRORS):
                outages.append(result)
                errors.update((stream, result) for stream in read.streams)
            elif isinstance(result, Exception):
                if len(read.streams) == 1:
                    errors[read.streams[0]] = result
                else:
                    split += [Read((stream,), read.count) for stream in read.streams]
            else:
                out += _entries(result)
        if len(outages) == len(reads):
            raise outages[0]
        if split:
            more, more_errors = self.read(split, None)
            out += more
            errors.update(more_errors)
        return out, errors

    def _send(self, reads: list[Read], block: int | None | list[int | None]) -> list:
        blocks = block if isinstance(block, list) else [block] * len(reads)
        if len(reads) == 1:  # a single server's one read: no pipeline needed
            try:
                return [self._xreadgroup(self.client, reads[0], blocks[0])]
            except redis.exceptions.ResponseError as exc:
                if isinstance(exc, CONNECTION_ERRORS):
                    raise
                return [exc]
        pipe = self.client.pipeline(transaction=False)
        for read, wait in zip(reads, blocks, strict=True):
            self._xreadgroup(pipe, read, wait)
        return pipe.execute(raise_on_error=False)

    def _xreadgroup(self, target, read: Read, block: int | None):
        return target.xreadgroup(WORKER_GROUP, self.consumer, {s: ">" for s in read.streams},
                                 count=read.count, block=block)


def _entries(reply) -> list[tuple[str, list]]:
    items = reply.items() if isinstance(reply, dict) else (reply or [])
    return [(as_str(stream), entries) for stream, entries in items if entries]


BACKLOG_BATCH_MAX = 16
PACE_SAMPLES = 9


class ReadPace:
    """How many entries to read at once from a backlog stream: one, so that the workers of a camera
    share its backlog frame by frame, unless a read's round trip is long against a frame's processing
    (a distant Redis): then about as many as the worker processes in one round trip, so it does not sit
    idle waiting for each read. Fed and asked by the worker loop's thread."""

    def __init__(self):
        # The median of the last few samples: the first read also connects, the first frame also
        # warms the model up, and neither should size the reads for long.
        self._reads: deque[float] = deque(maxlen=PACE_SAMPLES)  # non-blocking read passes (s)
        self._frames: deque[float] = deque(maxlen=PACE_SAMPLES)  # handling one entry (s)

    @property
    def read_s(self) -> float:
        return statistics.median(self._reads) if self._reads else 0.0

    @property
    def frame_s(self) -> float:
        return statistics.median(self._frames) if self._frames else 0.0

    def read_took(self, seconds: float) -> None:
        self._reads.append(seconds)

    def frames_took(self, seconds: float, count: int) -> None:
        if count:
            self._frames.append(seconds / count)

    def backlog_count(self) -> int:
        frame_s = self.frame_s
        if frame_s <= 0:
            return 1
        return max(1, min(BACKLOG_BATCH_MAX, 1 + int(self.read_s / frame_s)))


@dataclass
class Pass:
    """One read pass: what was read, what came back, and which streams Redis refused."""

    reads: list[Read]
    found: list[tuple[str, list]]
    refused: dict[str, Exception]

    @property
    def streams(self) -> list[str]:
        return [stream for read in self.reads for stream in read.streams]


class FrameReader:
    """The worker loop's reads of its cameras' frames streams: the cameras in service, how many
    entries each (live: a batch whose newest frame wins; backlog: `ReadPace`), blocking when idle,
    and the next pass sent ahead over a slow link. Used by the loop's thread; the read sent ahead
    runs on a thread of its own and is taken up by the next `read`."""

    def __init__(self, client, consumer: str, cameras: list[ServedCamera]):
        self.streams = StreamReads(client, consumer)
        self.by_stream = {served.frames_key: served for served in cameras}
        self.pace = ReadPace()
        self._ahead: tuple[list[Read], Future] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def read(self, idle: bool, wait_ms: int) -> Pass | None:
        """One pass (blocking up to `wait_ms` when `idle`); None when every camera is out of service."""
        if self._ahead is not None:
            reads, future = self._ahead
            self._ahead = None
            found, refused = future.result()
        else:
            reads = self.plan(idle)
            if not reads:
                return None
            found, refused = self._timed(reads, self.streams.blocks(reads, wait_ms) if idle else None)
        if found and self.pace.read_s > PREFETCH_OVER_S:
            ahead = self.plan(idle=False)
            if ahead:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="framecast-read-ahead")
                self._ahead = (ahead, self._executor.submit(self._timed, ahead, None))
        return Pass(reads, found, refused)

    def plan(self, idle: bool) -> list[Read]:
        """The reads of one pass over the cameras assigned and in service: idle, one read over every stream (per
        slot on a cluster); busy, live and backlog streams apart, each with its own count."""
        now = time.monotonic()
        serving = [s for s in self.by_stream.values() if s.serving(now)]
        kinds = [serving] if idle else [[s for s in serving if s.live], [s for s in serving if not s.live]]
        backlog_count = self.pace.backlog_count()
        reads = []
        for kind in kinds:
            for streams in self.streams.slot_groups([s.frames_key for s in kind]):
                backlog = any(not self.by_stream[stream].live for stream in streams)
                reads.append(Read(tuple(streams), backlog_count if backlog else LIVE_BATCH))
        return reads

    def streams_in_flight(self) -> set[str]:
        """The streams a pass sent ahead names (its entries may still be delivered to this consumer)."""
        return {stream for read in self._ahead[0] for stream in read.streams} if self._ahead else set()

    def finish(self) -> list[tuple[str, list]]:
        """At shutdown: the entries of a pass sent ahead (to be handled, they were delivered to this
        consumer); raises what that read raised."""
        ahead, self._ahead = self._ahead, None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        return ahead[1].result()[0] if ahead is not None else []

    def _timed(self, reads: list[Read], block: int | None | list[int | None]):
        started = time.monotonic()
        out = self.streams.read(reads, block)
        if block is None:
            self.pace.read_took(time.monotonic() - started)
        return out
