"""One camera's frames on their way to Redis: a bounded queue and a sender thread that pipelines
whatever has queued up, so a slow link costs one round trip per batch, not per frame.

Live cameras never wait: when the queue is full the oldest queued frame is dropped and counted, and
while Redis is unreachable frames are dropped at once. Backlog cameras (every frame must be processed)
never lose a frame here: the caller waits for room, a failed batch is sent again, and the sender
holds back while the workers' consumer group has more undelivered and unacknowledged frames than the
stream may hold (`high_water`), so `MAXLEN ~` trimming only ever removes frames already acknowledged.

Frames are queued as Frames and serialised here, when their batch is handed to Redis, so each
envelope carries its true `sent` mark at the cost of no extra encoding (one msgpack pack per frame,
as before: ~10 us for a 68 KB frame of the sample clip).
"""

from __future__ import annotations

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

BACKLOG_POLL = 0.05  # seconds between consumer-group readings while the sender holds back
# What a batch meets when Redis is away or refuses it: waited out with backoff. RedisClusterException
# (no cluster node reachable at all) is no RedisError.
OUTAGE = (*CONNECTION_ERRORS, redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


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
        self.backlog = backlog
        # Frames the group has not acknowledged may never exceed what the stream keeps.
        self.high_water = max(1, maxlen - 2 * capacity)
        self.stop = stop
        self._queue: deque[Frame] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._redis_down = False
        self._retry_at = 0.0
        self._backoff = Backoff(base=0.5, cap=10.0)
        self._group = GroupBacklog()
        self._last_id: bytes | None = None  # the newest entry this sender added
        self.sent = 0
        self._thread = start_thread(self._run, f"sender-{account.cam}", cam=account.cam)

    # ---- the publisher's side ------------------------------------------------------------------------
    def submit(self, frame: Frame, wait: bool) -> bool:
        """Queue one frame; True if it was queued. Live cameras never wait: a full queue loses its
        oldest frame (`queue_full`), and while Redis is down frames are dropped at once. Backlog cameras wait for room
        (`wait`: a paced source, whose next frame can wait) or drop this frame as back-pressure (a live
        source, whose frames cannot)."""
        with self._cond:
            down = self._redis_down and time.monotonic() < self._retry_at
            if not self.backlog:
                if down:
                    self.account.count(metrics.DROPPED, reason="redis")
                    return False
                if len(self._queue) >= self.capacity:
                    self._queue.popleft()
                    self.account.count(metrics.DROPPED, reason="queue_full")
            elif wait:
                while len(self._queue) >= self.capacity and not self.stop.is_set():
                    self._cond.wait(0.1)
                if self.stop.is_set():
                    self.account.count(metrics.DROPPED, reason="shutdown")
                    return False
            elif len(self._queue) >= self.capacity:
                self.account.count(metrics.DROPPED, reason="redis" if down else "backpressure")
                return False
            self._queue.append(frame)
            self._cond.notify_all()
            return True

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
                    self._in_flight = len(batch)
                    self._cond.notify_all()
            if idle:  # no frames to carry the counts (e.g. the source is down): write them alone
                self.account.stats.maybe_flush()
                continue
            try:
                self._send(batch)
            except Exception as exc:  # noqa: BLE001 - per batch: counted, logged, backed off; the thread goes on
                self.account.count(metrics.DROPPED, len(batch), reason="error")
                self.log.exception("frames not sent: unexpected error", extra={"frames": len(batch),
                                                                               "error": describe_error(exc)})
                self._pause(self._backoff.next_delay())
            finally:
                with self._cond:
                    self._in_flight = 0
                    self._cond.notify_all()

    def _send(self, batch: list[Frame]) -> None:
        """Send one batch; backlog batches are retried until they are in Redis (or we stop)."""
        while True:
            if self.backlog and not self._wait_for_room():
                self.account.count(metrics.DROPPED, len(batch), reason="shutdown")
                return
            try:
                self._write(batch)
            except OUTAGE as exc:
                self._outage(exc)
                if not self.backlog:
                    self.account.count(metrics.DROPPED, len(batch), reason="redis")
                    return
                if self._pause(self._retry_at - time.monotonic()):
                    self.account.count(metrics.DROPPED, len(batch), reason="shutdown")
                    return
                continue
            if self._redis_down:
                self.log.info("redis reachable again")
            self._redis_down = False
            self._backoff.reset()
            return

    def _envelopes(self, batch: list[Frame]) -> list[bytes]:
        """The batch's envelopes, each stamped `sent` now; a frame too large for one is dropped."""
        sent_ns = time.time_ns()
        out = []
        for frame in batch:
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
