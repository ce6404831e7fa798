"""One camera's frames on their way to Redis: a bounded queue and a sender thread that pipelines
whatever has queued up, so a slow link costs one round trip per batch, not per frame.

Live cameras never wait: when the queue is full the oldest queued frame is dropped and counted, and
while Redis is unreachable frames are dropped at once. Backlog cameras (every frame must be processed)
never lose a frame here: the caller waits for room, a failed batch is sent again, and the sender
holds back while the workers' consumer group has more undelivered and unacknowledged frames than the
stream may hold (`high_water`), so `MAXLEN ~` trimming only ever removes frames already acknowledged.

Frames are queued as Frames and serialised here, when their batch is handed to Redis, so each
envelope carries its true `sent` mark at the cost of no extra encoding (one msgpack pack per frame:
~10 us for a 68 KB frame of the sample clip).

The queue is bounded by bytes as well as by frames: it holds at most `SEND_BUDGET_BYTES` of JPEG
(always at least one frame), and a batch is what the queue held, so it is within both bounds too. A
camera sending frames just under the envelope limit therefore has, per camera, at most
FRAMES_IN_FLIGHT frames of its size alive in the producer: the multipart reader's buffer and the
part copied out of it (2), the publisher's one-frame slot (1), the frame the publisher is handing
over (1), the queue (1 at that size), and the batch being sent: a live batch's frames are let go
once packed, so per frame the envelope and redis-py's packed command (hiredis copies each argument
into one command), and while one frame is packed msgpack's buffer too (3). Backlog batches keep
their frames for a retry (their `sent` mark stays true), one more frame's worth. That is as close
to "+64 MB whatever a camera sends" as frames of 15 MiB allow: one read, one packed and one command
are already 45 MiB. A freed frame that large leaves the process at once (`MMAP_THRESHOLD_BYTES`).
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
import time
from collections import deque

import redis

from common import envelope
from common.connection import CONNECTION_ERRORS, Backoff, describe_error
from common.envelope import Frame
from common.errors import EnvelopeError
from common.groups import GroupBacklog, ensure_group, is_missing_key, read_backlog
from common.keys import FRAME_FIELD, WORKER_GROUP
from common.stats import CameraAccount
from common.threads import start_thread
from producer import metrics

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
# What a batch meets when Redis is away or refuses it: waited out with backoff. RedisClusterException
# (no cluster node reachable at all) is no RedisError.
OUTAGE = (*CONNECTION_ERRORS, redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


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
    """Sends one camera's encoded envelopes from its own thread. `submit` is called by the publisher."""

    def __init__(self, client: redis.Redis, key: str, maxlen: int, account: CameraAccount, log, *,
                 capacity: int, backlog: bool, stop: threading.Event):
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
        self._in_flight = 0
        self._closed = False
        self._redis_down = False
        self._retry_at = 0.0
        self._backoff = Backoff(base=0.5, cap=10.0)
        self._group = GroupBacklog()
        self._last_id: bytes | None = None  # the newest entry this sender added
        self.sent = 0
        return_large_frames_to_the_system()
        self._thread = start_thread(self._run, f"sender-{account.cam}", cam=account.cam)

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
            self._queue.append(frame)
            self._queued_bytes += size
            self._cond.notify_all()
            return True

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
        """Send what is queued (bounded by `timeout`), then stop the thread; frames left are counted."""
        self.flush(timeout)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self._queued_bytes = 0
            self._closed = True
            self._cond.notify_all()
        if left:
            self.account.count(metrics.DROPPED, left, reason="shutdown")
        self._thread.join(timeout=timeout)

    # ---- the sender thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(0.5)
                if self._closed:
                    return
                if not self._queue:
                    idle = True
                else:
                    idle = False
                    batch = list(self._queue)
                    self._queue.clear()
                    self._queued_bytes = 0
                    self._in_flight = len(batch)
                    self._cond.notify_all()
            if idle:  # no frames to carry the counts (e.g. the source is down): write them alone
                self.account.stats.maybe_flush()
                continue
            size = len(batch)
            try:
                self._send(batch)
            except Exception as exc:  # noqa: BLE001 - per batch: counted, logged, backed off; the thread goes on
                self.account.count(metrics.DROPPED, size, reason="error")
                self.log.exception("frames not sent: unexpected error", extra={"frames": size,
                                                                               "error": describe_error(exc)})
                self._pause(self._backoff.next_delay())
            finally:
                del batch  # a frame is not kept alive here while the next batch queues up
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send(self, batch: list[Frame]) -> None:
        """Send one batch; backlog batches are retried until they are in Redis (or we stop). A live
        batch is never sent again: its frames are taken out of `batch` as they are packed."""
        size = len(batch)
        while True:
            if self.backlog and not self._wait_for_room():
                self.account.count(metrics.DROPPED, size, reason="shutdown")
                return
            try:
                self._write(batch)
            except OUTAGE as exc:
                self._outage(exc)
                if not self.backlog:
                    self.account.count(metrics.DROPPED, size, reason="redis")
                    return
                if self._pause(self._retry_at - time.monotonic()):
                    self.account.count(metrics.DROPPED, size, reason="shutdown")
                    return
                continue
            if self._redis_down:
                self.log.info("redis reachable again")
            self._redis_down = False
            self._backoff.reset()
            return

    def _envelopes(self, batch: list[Frame]) -> list[bytes]:
        """The batch's envelopes, each stamped `sent` now; a frame too large for one is dropped. A live
        batch's frames are let go as they are packed, so a large frame and its envelope are not both
        held while the batch is sent."""
        sent_ns = time.time_ns()
        pending = deque(batch)
        if not self.backlog:
            batch.clear()
        out = []
        while pending:
            frame = pending.popleft()
            try:
                out.append(envelope.encode(frame.stamped(sent=sent_ns)))
            except EnvelopeError as exc:
                self.account.count(metrics.DROPPED, reason="encode")
                self.log.error("frame not encoded", extra={"error": str(exc)})
        return out

    def _write(self, frames: list[Frame]) -> None:
        batch = self._envelopes(frames)
        if not batch:
            return
        if not self.backlog and (self._last_id is None or self._redis_down):
            # The workers' group exists before our first frame (it starts at the end of the stream:
            # live frames before it are stale anyway), so every frame published is delivered to a
            # worker, which processes or skips and counts it, even one that starts later.
            ensure_group(self.client, self.key, "$")
        pipe = self.client.pipeline(transaction=False)
        probe_reset = self.backlog and self._redis_down and self._last_id is not None
        if probe_reset:  # after an outage: is anything we added before it still there?
            pipe.xrange(self.key, "-", self._last_id, count=1)
        for data in batch:
            pipe.xadd(self.key, {FRAME_FIELD: data}, maxlen=self.maxlen, approximate=True)
        if self.backlog:
            pipe.xinfo_groups(self.key)
        self.account.queue(pipe, metrics.PUBLISHED, len(batch))
        try:
            replies = pipe.execute()
        except BaseException:
            self.account.settle(False)
            raise
        self.account.settle(True)
        self.sent += len(batch)
        if probe_reset:
            reset, replies = not replies[0], replies[1:]
        else:
            reset = False
        self._last_id = replies[len(batch) - 1]
        if self.backlog:
            self._observe(replies[len(batch)], reset=reset)

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

    def _wait_for_room(self) -> bool:
        """Hold back while the group's backlog is at the high-water mark. False if stopped meanwhile."""
        warned = False
        while self._group.outstanding >= self.high_water:
            if not warned:
                self.log.info("workers are behind, holding frames back",
                              extra={"outstanding": self._group.outstanding, "high_water": self.high_water})
                warned = True
            metrics.BACKPRESSURE_WAITS.labels(camera=self.account.cam).inc()
            if self._pause(BACKLOG_POLL):
                return False
            try:
                self._observe(self.client.xinfo_groups(self.key))
            except (*CONNECTION_ERRORS, redis.exceptions.ResponseError,
                    redis.exceptions.RedisClusterException) as exc:
                # Only a missing stream means a reset: a failover's CLUSTERDOWN or READONLY is a
                # ResponseError too, and is waited out like any outage.
                if is_missing_key(exc):
                    self._observe([])
                    continue
                self._outage(exc)
                if self._pause(self._retry_at - time.monotonic()):
                    return False
        return True

    def _pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if the sender was closed meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed, timeout=max(0.0, seconds))
            return self._closed

    def _outage(self, exc: BaseException) -> None:
        delay = self._backoff.next_delay()
        self._retry_at = time.monotonic() + delay
        if not self._redis_down:
            self.log.warning("redis unavailable, dropping frames until it is back" if not self.backlog else
                             "redis unavailable, holding frames until it is back",
                             extra={"error": describe_error(exc)})
        self._redis_down = True
