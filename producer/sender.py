"""One camera's frames on their way to Redis: a bounded queue, and the camera's state towards Redis
(its group, its outage backoff, a backlog camera's hold), driven by the producer's SendLoop, whose one
thread pipelines every camera's batch in one round trip (producer/send_loop.py). A camera costs no
thread here.

Live cameras never wait: when the queue is full the oldest queued frame is dropped and counted, and
while Redis is unreachable frames are dropped at once. Backlog cameras (every frame must be processed)
never lose a frame here: the caller waits for room (or, on the producer's pool, tries again later), a
failed batch is sent again, and the sender holds back while the workers' consumer group has more
undelivered and unacknowledged frames than the stream may hold (`high_water`), so `MAXLEN ~` trimming
only ever removes frames already acknowledged.

Frames are queued as Frames and serialised when their batch is put in the round's pipeline, so each
envelope carries its true `sent` mark at the cost of no extra encoding (one msgpack pack per frame:
~10 us for a 68 KB frame of the sample clip).

The queue is bounded by bytes as well as by frames: it holds at most `SEND_BUDGET_BYTES` of JPEG
(always at least one frame) and at most `send_queue` frames, and a batch is what the queue held, so
it is within both bounds too: what one camera's queue may hold is min(send_queue x its frame size,
SEND_BUDGET_BYTES), whatever the number of cameras. A camera sending frames just under the envelope
limit therefore has, per camera, at most FRAMES_IN_FLIGHT frames of its size alive in the producer:
the multipart reader's buffer and the part copied out of it (2), the publisher's one-frame slot (1),
the frame the publisher is handing over (1), the queue (1 at that size), and the batch being sent: a
live batch's frames are let go once packed, so per frame the envelope and redis-py's packed command
(hiredis copies each argument into one command), and while one frame is packed msgpack's buffer too
(3). Backlog batches keep their frames for a retry (their `sent` mark stays true), one more frame's
worth. That is as close to "+64 MB whatever a camera sends" as frames of 15 MiB allow: one read, one
packed and one command are already 45 MiB. A freed frame that large leaves the process at once
(`MMAP_THRESHOLD_BYTES`).
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
import threading
import time
from collections import deque

import redis

from common import envelope
from common.connection import Backoff, describe_error
from common.envelope import Frame
from common.errors import EnvelopeError
from common.groups import GroupBacklog, ensure_group, is_missing_key, read_backlog
from common.keys import FRAME_FIELD, WORKER_GROUP
from common.stats import CameraAccount
from producer import metrics
from producer.send_loop import OUTAGE, SendLoop

# JPEG bytes one camera's queue may hold (and so one batch): one frame at the envelope limit goes
# alone, ordinary frames (tens of KB to ~3 MB for 4K) are bounded by `send_queue` first.
SEND_BUDGET_BYTES = envelope.MAX_ENVELOPE_BYTES
FRAMES_IN_FLIGHT = 8  # of the camera's size, at most, for frames of about SEND_BUDGET_BYTES (see above)
# glibc serves an allocation this large or larger from its own mmap, returned to the system when freed.
# By default the threshold rises to the largest block freed (up to 32 MiB), after which 15 MiB frames
# come from heaps that keep what they once held: +60 to +80 MB of RSS for such a camera, measured.
# Frames under it (a 4K JPEG is ~3 MB) still come from the heap, without a fresh mapping's page faults.
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)
BACKLOG_POLL = 0.05  # seconds between consumer-group readings while the sender holds back
STATS_INTERVAL = 1.0  # seconds between stats writes of a camera with no frames to carry them


def next_stats_tick(now: float) -> float:
    """The next whole multiple of STATS_INTERVAL: every camera's stats fall due at the same instants,
    so idle cameras cost the send loop one round a second, not one per camera."""
    return (math.floor(now / STATS_INTERVAL) + 1) * STATS_INTERVAL


@functools.cache
def return_large_frames_to_the_system() -> bool:
    """Fix glibc's mmap threshold (once per process) so a freed frame's memory leaves the process at
    once; True if it was set. Elsewhere than glibc on Linux nothing is done."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        return False


class FrameSender:
    """One camera's queue of encoded envelopes towards Redis. `submit` and `offer` are called by the
    camera's publisher; `prepare`, `done`, `failed` and `broken` by its SendLoop's thread (a private
    one when none is given: a camera used on its own, as the tests and tools do)."""

    def __init__(self, client: redis.Redis, key: str, maxlen: int, account: CameraAccount, log, *,
                 capacity: int, backlog: bool, stop: threading.Event, loop: SendLoop | None = None):
        self.client = client
        self.key = key
        self.maxlen = maxlen
        self.account = account
        self.log = log
        self.capacity = capacity
        self.budget = SEND_BUDGET_BYTES
        self.backlog = backlog
        # Frames the group has not acknowledged may never exceed what the stream keeps.
        self.high_water = max(1, maxlen - 2 * capacity)
        self.stop = stop
        self._queue: deque[Frame] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._in_flight = 0  # frames taken from the queue and not yet in Redis or dropped
        self._batch: list[Frame] = []  # a backlog batch, kept until it is in Redis
        self._round: tuple | None = None  # what this sender put in the round on the wire
        self._closed = False
        self._redis_down = False
        self._retry_at = 0.0
        self._backoff = Backoff(base=0.5, cap=10.0)
        self._group = GroupBacklog()
        self._holding = False  # a backlog camera held back at the high-water mark
        self._poll_at = 0.0
        self._stats_at = next_stats_tick(time.monotonic())
        self._last_id: bytes | None = None  # the newest entry this sender added
        self.due_at = math.inf  # when the loop should look at this sender again without a wake-up
        self.sent = 0
        return_large_frames_to_the_system()
        self._own_loop = loop is None
        self.loop = loop if loop is not None else SendLoop(client, f"sender-{account.cam}", cam=account.cam)
        self.loop.add(self)

    # ---- the publisher's side ------------------------------------------------------------------------
    def submit(self, frame: Frame, wait: bool) -> bool:
        """Queue one frame; True if it was queued. The queue is full at `capacity` frames or when this
        frame would take it over the byte budget (an empty queue takes any frame). Live cameras never
        wait: a full queue loses its oldest frames (`queue_full`), and while Redis is down frames are
        dropped at once. Backlog cameras wait for room (`wait`: a paced source, whose next frame can
        wait) or drop this frame as back-pressure (a live source, whose frames cannot)."""
        size = len(frame.jpeg)
        with self._cond:
            down = self._redis_down and time.monotonic() < self._retry_at
            if not self.backlog:
                if down:
                    self.account.count(metrics.DROPPED, reason="redis")
                    return False
                while self._full(size):
                    self._queued_bytes -= len(self._queue.popleft().jpeg)
                    self.account.count(metrics.DROPPED, reason="queue_full")
            elif wait:
                while self._full(size) and not self.stop.is_set():
                    self._cond.wait(0.1)
                if self.stop.is_set():
                    self.account.count(metrics.DROPPED, reason="shutdown")
                    return False
            elif self._full(size):
                self.account.count(metrics.DROPPED, reason="redis" if down else "backpressure")
                return False
            self._append(frame, size)
        self.loop.wake()
        return True

    def offer(self, frame: Frame) -> bool:
        """Queue a backlog camera's frame if there is room now; False (nothing counted) if not, and
        the caller offers it again later: the producer's pool threads never wait for one camera."""
        size = len(frame.jpeg)
        with self._cond:
            if self._full(size):
                return False
            self._append(frame, size)
        self.loop.wake()
        return True

    def _append(self, frame: Frame, size: int) -> None:
        self._queue.append(frame)
        self._queued_bytes += size
        self.due_at = 0.0
        self._cond.notify_all()

    def _full(self, size: int) -> bool:
        """Whether the queue has no room for a frame of `size` bytes (called holding the lock)."""
        return bool(self._queue) and (len(self._queue) >= self.capacity or self._queued_bytes + size > self.budget)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued frame has been sent or dropped; True if that happened in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._queue or self._in_flight) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return not self._queue and not self._in_flight

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (bounded by `timeout`), then leave the loop; frames left are counted."""
        self.flush(timeout)
        with self._cond:
            left = len(self._queue)
            if self._round is None:  # a backlog batch still waiting to be sent again
                left += len(self._batch)
                self._batch = []
                self._in_flight = 0
            self._queue.clear()
            self._queued_bytes = 0
            self._closed = True
            self._cond.notify_all()
        if left:
            self.account.count(metrics.DROPPED, left, reason="shutdown")
        self.loop.remove(self)
        if self._own_loop:
            self.loop.close(timeout)

    # ---- the loop's side: one round at a time ----------------------------------------------------------
    def prepare(self, pipe, now: float) -> int:
        """Put what this camera has ready in the round's pipeline; the number of commands added."""
        with self._cond:
            added = self._prepare(pipe, now) if not self._closed and self._round is None else 0
            self.due_at = self._next_due() if not added else math.inf
            return added

    @property
    def sending_frames(self) -> bool:
        """Whether this sender's part of the round on the wire carries frames."""
        return self._round is not None and self._round[0] == "frames"

    def _next_due(self) -> float:
        if self._closed:
            return math.inf
        if self._batch or self._queue:
            if self._retry_at > time.monotonic():
                return self._retry_at
            return self._poll_at if self.backlog and self._group.outstanding >= self.high_water else 0.0
        return self._stats_at

    def _prepare(self, pipe, now: float) -> int:
        if not self._batch and not self._queue:
            if now < self._stats_at:
                return 0
            self._stats_at = next_stats_tick(now)  # no frames to carry the counts: write them alone
            before = len(pipe)
            self.account.queue(pipe)
            if len(pipe) == before:
                self.account.settle(True)
                return 0
            self._round = ("stats",)
            return len(pipe) - before
        if now < self._retry_at:
            return 0
        if self.backlog and self._group.outstanding >= self.high_water:
            if now < self._poll_at:
                return 0
            if not self._holding:
                self.log.info("workers are behind, holding frames back",
                              extra={"outstanding": self._group.outstanding, "high_water": self.high_water})
                self._holding = True
            metrics.BACKPRESSURE_WAITS.labels(camera=self.account.cam).inc()
            self._poll_at = now + BACKLOG_POLL
            pipe.xinfo_groups(self.key)
            self._round = ("poll",)
            return 1
        self._holding = False
        if not self._batch:
            self._batch = list(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            self._in_flight = len(self._batch)
            self._cond.notify_all()
        envelopes = self._envelopes()
        if not envelopes:
            self._in_flight = 0
            self._cond.notify_all()
            return 0
        before = len(pipe)
        create = not self.backlog and (self._last_id is None or self._redis_down)
        if create:
            # The workers' group exists before our first frame (it starts at the end of the stream:
            # live frames before it are stale anyway), so every frame published is delivered to a
            # worker, which processes or skips and counts it, even one that starts later.
            pipe.xgroup_create(self.key, WORKER_GROUP, id="$", mkstream=True)
        probe_reset = self.backlog and self._redis_down and self._last_id is not None
        if probe_reset:  # after an outage: is anything we added before it still there?
            pipe.xrange(self.key, "-", self._last_id, count=1)
        for data in envelopes:
            pipe.xadd(self.key, {FRAME_FIELD: data}, maxlen=self.maxlen, approximate=True)
        if self.backlog:
            pipe.xinfo_groups(self.key)
        self.account.queue(pipe, metrics.PUBLISHED, len(envelopes))
        self._round = ("frames", len(envelopes), create, probe_reset)
        return len(pipe) - before

    def _envelopes(self) -> list[bytes]:
        """The batch's envelopes, each stamped `sent` now; a frame too large for one is dropped. A live
        batch's frames are let go as they are packed, so a large frame and its envelope are not both
        held while the batch is sent."""
        sent_ns = time.time_ns()
        pending = deque(self._batch)
        if not self.backlog:
            self._batch = []
        out = []
        while pending:
            frame = pending.popleft()
            try:
                out.append(envelope.encode(frame.stamped(sent=sent_ns)))
            except EnvelopeError as exc:
                self.account.count(metrics.DROPPED, reason="encode")
                self.log.error("frame not encoded", extra={"error": str(exc)})
                if self.backlog:
                    self._batch.remove(frame)
                    self._in_flight -= 1
            del frame
        return out

    def done(self, replies: list) -> None:
        """The replies to this sender's part of the round."""
        with self._cond:
            part, self._round = self._round, None
            try:
                self._done(part, replies)
            finally:
                self.due_at = self._next_due()
                self._cond.notify_all()

    def _done(self, part: tuple, replies: list) -> None:
        kind = part[0]
        if kind == "stats":
            self.account.settle(not any(isinstance(r, Exception) for r in replies))
            return
        if kind == "poll":
            reply = replies[0]
            if isinstance(reply, Exception) and not is_missing_key(reply):
                self._outage(reply)  # a failover's CLUSTERDOWN or READONLY is waited out like any outage
                return
            try:  # only a missing stream means a reset
                self._observe([] if isinstance(reply, Exception) else reply)
            except OUTAGE as exc:
                self._outage(exc)
            return
        _, frames, create, probe_reset = part
        if create:
            created, replies = replies[0], replies[1:]
            if isinstance(created, Exception) and "BUSYGROUP" not in str(created):
                self._failed(part, created)
                return
        error = next((r for r in replies if isinstance(r, Exception)), None)
        if error is not None:
            self._failed(part, error)
            return
        self.account.settle(True)
        self._stats_at = next_stats_tick(time.monotonic())  # the figures went with the frames
        self.sent += frames
        self._batch = []
        self._in_flight = 0
        if probe_reset:
            reset, replies = not replies[0], replies[1:]
        else:
            reset = False
        self._last_id = replies[frames - 1]
        if self._redis_down:
            self.log.info("redis reachable again")
        self._redis_down = False
        self._backoff.reset()
        if self.backlog:
            try:
                self._observe(replies[frames], reset=reset)
            except OUTAGE as exc:  # the frames are in Redis; the group is read again on the next batch
                self._outage(exc)

    def failed(self, exc: BaseException) -> None:
        """The round did not reach Redis (an outage): this sender's part is waited out on its backoff."""
        with self._cond:
            part, self._round = self._round, None
            try:
                if part is not None and part[0] != "poll":
                    self._failed(part, exc)
                else:
                    self._outage(exc)
            finally:
                self.due_at = self._next_due()
                self._cond.notify_all()

    def _failed(self, part: tuple, exc: BaseException) -> None:
        self.account.settle(False)
        self._outage(exc)
        if part[0] != "frames":
            return
        if not self.backlog:  # a live batch is never sent again
            self.account.count(metrics.DROPPED, part[1], reason="redis")
            self._in_flight = 0
        elif self._closed:
            self.account.count(metrics.DROPPED, len(self._batch), reason="shutdown")
            self._batch = []
            self._in_flight = 0

    def broken(self, exc: BaseException) -> None:
        """An error nobody foresaw in this camera's part: its frames in hand are counted and logged, and
        the camera waits a backoff before its next batch; the loop and the other cameras go on."""
        with self._cond:
            part, self._round = self._round, None
            if part is not None:
                self.account.settle(False)
            lost = len(self._batch) if self.backlog else (part[1] if part and part[0] == "frames" else 0)
            self._batch = []
            self._in_flight = 0
            if lost:
                self.account.count(metrics.DROPPED, lost, reason="error")
            self.log.error("frames not sent: unexpected error", exc_info=(type(exc), exc, exc.__traceback__),
                           extra={"frames": lost, "error": describe_error(exc)})
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            self.due_at = self._next_due()
            self._cond.notify_all()

    def _observe(self, groups_reply, reset: bool = False) -> None:
        """Take in a consumer-group reading. A stream that was reset (Redis restarted without
        persistence, FLUSHALL) lost the frames it held unacknowledged: count them, and give the group
        back to the workers starting at the stream's first frame."""
        reading = None if reset else read_backlog(groups_reply, WORKER_GROUP)
        lost = self._group.update(reading)
        if lost is None:
            return
        if lost:
            self.account.count(metrics.LOST, lost)
            self.log.error("frames lost: the stream was reset before the workers had them",
                           extra={"frames": lost})
        ensure_group(self.client, self.key, "0")
        if reset:
            self._group.update(read_backlog(self.client.xinfo_groups(self.key), WORKER_GROUP))

    def _outage(self, exc: BaseException) -> None:
        delay = self._backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        if not self._redis_down:
            self.log.warning("redis unavailable, dropping frames until it is back" if not self.backlog else
                             "redis unavailable, holding frames until it is back",
                             extra={"error": describe_error(exc)})
        self._redis_down = True
