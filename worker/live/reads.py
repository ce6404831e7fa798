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
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import redis

from common.connection import CONNECTION_ERRORS, is_cluster
from common.keys import WORKER_GROUP
from common.text import as_str
from worker.live import metrics
from worker.live.arrivals import SAFETY_SWEEP_S, UNANNOUNCED_SWEEP_S, Arrivals
from worker.live.cameras import ServedCamera

CLUSTER_BLOCK_MS = 100  # longest block of an idle read pass on a cluster
LIVE_BATCH = 16  # entries read at once from a live stream; all but the newest are superseded
PREFETCH_OVER_S = 0.005  # reads slower than this (a distant Redis) are sent ahead of the loop
# A link whose quickest recent read took longer than this (a distant Redis, not a busy machine: load
# makes some reads slow, never all) is read stream by stream with the read ahead, not by arrivals.
SLOW_LINK_S = 0.02


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
    def floor_s(self) -> float:
        """The quickest of the last non-blocking reads: the link's round trip, without load's spikes."""
        return min(self._reads) if self._reads else 0.0

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
    runs on a thread of its own and is taken up by the next `read`.

    While some of its cameras are announced on the arrivals stream (arrivals.py) and the link is
    quick, a pass names only the streams with news: those announced since, and those whose last read
    returned a full batch (more may wait); idle, it blocks on the arrivals stream alone. Otherwise a
    pass names every stream, blocking when idle, as one read (per slot on a cluster)."""

    def __init__(self, client, consumer: str, cameras: list[ServedCamera], arrivals_key: str | None = None,
                 log=None):
        self.streams = StreamReads(client, consumer)
        self.by_stream = {served.frames_key: served for served in cameras}
        self._stream_of = {served.cam: served.frames_key for served in cameras}
        self.pace = ReadPace()
        self.arrivals = Arrivals(client, arrivals_key, self.streams.cluster, log) if arrivals_key else None
        self.announced: set[str] = set()  # streams an arrival has named (and no sweep has found unannounced)
        self._news: set[str] = set()  # streams to read in the next pass by arrivals
        self._sweep_at = 0.0  # monotonic: the next read of every stream
        # unannounced streams: (monotonic time of the next sweep, the interval after it); an empty
        # sweep doubles the interval up to SAFETY_SWEEP_S (a dead camera), frames reset it
        self._unannounced: dict[str, tuple[float, float]] = {}
        self._ahead: tuple[list[Read], Future] | None = None
        self._executor: ThreadPoolExecutor | None = None

    def read(self, idle: bool, wait_ms: int) -> Pass | None:
        """One pass (blocking up to `wait_ms` when `idle`); None when every camera is out of service."""
        if self._ahead is not None:
            reads, future = self._ahead
            self._ahead = None
            found, refused = future.result()
            return Pass(reads, found, refused)
        now = time.monotonic()
        if self._by_arrivals(now):
            done = self._read_by_arrivals(idle, wait_ms, now)
            if done is not None:
                return done
        reads = self.plan(idle)
        if not reads:
            return None
        metrics.READ_PASSES.labels(kind="every stream").inc()
        found, refused = self._timed(reads, self.streams.blocks(reads, wait_ms) if idle else None)
        if found and self.arrivals is not None and self.arrivals.usable(now):
            self._learn(self.arrivals.read(None))  # which cameras announce: read by arrivals from now on
        if found and self.pace.read_s > PREFETCH_OVER_S:
            ahead = self.plan(idle=False)
            if ahead:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="framecast-read-ahead")
                self._ahead = (ahead, self._executor.submit(self._timed, ahead, None))
        return Pass(reads, found, refused)

    def _by_arrivals(self, now: float) -> bool:
        """Read by arrivals: the stream is readable, the link quick (its quickest recent read: over a
        slow one the read ahead of every stream hides the round trip, which a read after the arrivals'
        would add) and some camera in service announced."""
        return (self.arrivals is not None and self.arrivals.usable(now) and self.pace.floor_s <= SLOW_LINK_S
                and any(stream in self.announced for stream in self._serving(now)))

    def _read_by_arrivals(self, idle: bool, wait_ms: int, now: float) -> Pass | None:
        """A pass over the streams with news (every stream at a sweep); None when the arrivals stream
        cannot be read (the caller reads every stream)."""
        serving = self._serving(now)
        sweep = now >= self._sweep_at
        if sweep:
            self._sweep_at = now + SAFETY_SWEEP_S
            targets = set(serving)
        else:
            targets = {s for s in serving if s in self._news or self.by_stream[s].out_of_service
                       or (s not in self.announced and now >= self._unannounced_due(s))}
        if not targets:
            block = None
            if idle:
                until = min([self._sweep_at, *(self._unannounced_due(s) for s in serving if s not in self.announced)])
                block = max(10, min(wait_ms, int((until - now) * 1000)))
            cams = self.arrivals.read(block)
            if cams is None:
                return None
            self._learn(cams)
            targets = {s for s in self._serving(time.monotonic()) if s in self._news}
            if not targets:
                return Pass([], [], {})
        metrics.READ_PASSES.labels(kind="every stream" if sweep else "by arrivals").inc()
        reads = self._plan_over([self.by_stream[s] for s in sorted(targets)])
        news_before = self._news
        found, refused = self._timed(reads, None)
        self._news = news_before - targets
        with_frames, unannounced_frames = set(), set()
        for stream, entries in found:
            with_frames.add(stream)
            read = next(r for r in reads if stream in r.streams)
            if len(entries) >= read.count:
                self._news.add(stream)  # a full batch: more may wait
            if sweep and stream in self.announced and stream not in news_before:
                unannounced_frames.add(stream)
        if unannounced_frames:
            # Frames found before their announcement was read, or with none: an announcement follows
            # its frames at once, so what the arrivals stream does not name now, nobody announced:
            # that camera's producer does not (any more), and it goes back to the sweeps.
            cams = self.arrivals.read(None)
            named = {self._stream_of.get(cam) for cam in cams or ()}
            self._learn(cams)
            self.announced -= unannounced_frames - named
        after = time.monotonic()
        for stream in targets:
            if stream not in self.announced:
                interval = UNANNOUNCED_SWEEP_S if stream in with_frames else min(
                    SAFETY_SWEEP_S, 2 * self._unannounced.get(stream, (0.0, UNANNOUNCED_SWEEP_S / 2))[1])
                self._unannounced[stream] = (after + interval, interval)
        return Pass(reads, found, refused)

    def _unannounced_due(self, stream: str) -> float:
        return self._unannounced.get(stream, (0.0, 0.0))[0]

    def _learn(self, cams: set[str] | None) -> None:
        for cam in cams or ():
            stream = self._stream_of.get(cam)
            if stream is not None:  # another worker's camera is not ours to read
                self.announced.add(stream)
                self._news.add(stream)
                self._unannounced.pop(stream, None)

    def _serving(self, now: float) -> list[str]:
        return [stream for stream, s in self.by_stream.items() if s.serving(now)]

    def plan(self, idle: bool) -> list[Read]:
        """The reads of one pass over the cameras assigned and in service: idle, one read over every stream (per
        slot on a cluster); busy, live and backlog streams apart, each with its own count."""
        now = time.monotonic()
        serving = [s for s in self.by_stream.values() if s.serving(now)]
        if idle:
            return [Read(tuple(streams), LIVE_BATCH if all(self.by_stream[s].live for s in streams)
                         else self.pace.backlog_count())
                    for streams in self.streams.slot_groups([s.frames_key for s in serving])]
        return self._plan_over(serving)

    def _plan_over(self, cameras: list[ServedCamera]) -> list[Read]:
        """Non-blocking reads of `cameras`: live and backlog streams apart, each with its own count."""
        backlog_count = self.pace.backlog_count()
        reads = []
        for kind in ([s for s in cameras if s.live], [s for s in cameras if not s.live]):
            for streams in self.streams.slot_groups([s.frames_key for s in kind]):
                reads.append(Read(tuple(streams), LIVE_BATCH if self.by_stream[streams[0]].live else backlog_count))
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
