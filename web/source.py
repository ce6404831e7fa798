"""A camera stream's frames as they arrive in Redis, in order: the reader behind each feed.

`FrameSource.frames()` is the `frames()` seam of flask-video-streaming, for a Redis stream: it XREADs
the stream, decodes each entry, drops a frame older than one already given (a slower worker's late
result) and yields each newer Frame; after `no_signal_after` seconds without one it yields NoSignal,
again every second while the gap lasts. Whatever brings nothing to show (a read that ends empty, a
late or undecodable frame) yields None, so the consumer gets a turn (to stop, say) on a quiet stream.
Redis failures, a key of the wrong type and unexpected errors pause the stream (NoSignal meanwhile),
are logged at the start and then once a minute, and are retried with backoff; the generator ends
when `stop` is set or its consumer closes it. It runs on the consumer's thread and does no fan-out
or rendering.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from common import envelope
from common.connection import CONNECTION_ERRORS, Backoff, ThrottledLog, describe_error, permanent_reason
from common.envelope import Frame
from common.errors import EnvelopeError
from common.keys import FRAME_FIELD
from common.logs import camera_logger
from web import metrics
from web.refused_keys import log_refused_key, refuses_key

NO_SIGNAL_REPEAT_S = 1.0  # a gap is announced again this often, so late viewers see it too
READ_BLOCK_MS = 500  # short, so a stopped or retired reader ends promptly
FAILURE_LOG_INTERVAL = 60.0  # a lasting failure is logged again this often


@dataclass(frozen=True)
class NoSignal:
    """No frame for `no_signal_after` seconds. `first` marks the start of the gap; `last_frame_at`
    is the wall-clock time of the last frame (None when there was none)."""

    first: bool
    last_frame_at: float | None


class FrameSource:
    """The one reader of one camera stream (annotated, or the producer's frames with `raw`)."""

    def __init__(self, client: redis.Redis, key: str, cam: str, raw: bool, no_signal_after: float,
                 stop: threading.Event):
        self.client = client
        self.key = key
        self.cam = cam
        self.no_signal_after = no_signal_after
        self.stop = stop
        self.out_of_order = 0
        self.counts = metrics.counts_for(cam)
        self.log = camera_logger("framecast.web", cam, raw=raw)
        self._last_order: tuple[int, int] | None = None
        self._last_frame_at = 0.0  # monotonic time of the last frame given out
        self._no_signal_at: float | None = None  # monotonic time of the last NoSignal of this gap
        self._failures = ThrottledLog(FAILURE_LOG_INTERVAL)

    def frames(self) -> Iterator[Frame | NoSignal | None]:
        metrics.READERS.inc()
        backoff = Backoff(base=0.2, cap=5.0)
        last_id: str | bytes | None = None  # None: not primed yet (first read, or after an outage)
        started = time.monotonic()
        failing = False
        try:
            while not self.stop.is_set():
                newest = None
                try:
                    if last_id is None:
                        last_id, newest = self._newest()
                    reply = self.client.xread({self.key: last_id}, count=10, block=READ_BLOCK_MS)
                except Exception as exc:  # the reader must outlive any single failure
                    self._log_failure(exc, repeat=failing)
                    failing = True
                    self.counts.read_failed()
                    last_id = None  # a restarted Redis may hold other ids: prime again from its newest entry
                    yield self._no_signal_due(started)
                    backoff.wait(self.stop)
                    continue
                if failing:
                    self.log.info("feed resumed")
                    failing = False
                    backoff.reset()
                if newest is not None:
                    yield self._in_order(newest)
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        yield self._in_order(self._decode(fields))
                yield self._no_signal_due(started)
        finally:
            metrics.READERS.dec()

    def _log_failure(self, exc: Exception, repeat: bool) -> None:
        """Say why the feed paused: at the start of a gap, then once a minute while it lasts (a wrong
        password does not go away by waiting). A key of the wrong type is reported by web.refused_keys,
        once a minute per process however many feeds and viewers hit it."""
        if refuses_key(exc):
            log_refused_key(self.key, describe_error(exc), self.cam)
            return
        if not repeat:
            self._failures = ThrottledLog(FAILURE_LOG_INTERVAL)  # a new gap is logged at once
        if not self._failures.due(self.key):
            return
        level = logging.WARNING if isinstance(exc, CONNECTION_ERRORS) else logging.ERROR
        reason = permanent_reason(exc)
        message = "feed paused: cannot read the stream" + (f" ({reason})" if reason else "")
        self.log.log(level, message, extra={"error": describe_error(exc)},
                     exc_info=level == logging.ERROR and not repeat)

    def _newest(self) -> tuple[str | bytes, Frame | None]:
        """Where to read from (the newest entry), and that entry's frame when it is fresh enough to
        show the first viewers at once."""
        newest = self.client.xrevrange(self.key, count=1)
        if not newest:
            return "0-0", None
        entry_id, fields = newest[0]
        frame = self._decode(fields)
        if frame is not None and time.time_ns() - frame.ts < self.no_signal_after * 1e9:
            return entry_id, frame
        return entry_id, None

    def _decode(self, fields: dict) -> Frame | None:
        try:
            return envelope.decode(fields.get(FRAME_FIELD, b""))
        except EnvelopeError as exc:
            self.log.warning("undecodable frame in stream skipped", extra={"error": str(exc)})
            return None

    def _in_order(self, frame: Frame | None) -> Frame | None:
        """The frame when it is newer than the last one given out, else None (counted)."""
        if frame is None:
            return None
        # After a gap long enough to show 'no signal', the order starts afresh: a producer restarted on a
        # host whose clock is behind (a lower `run`) must not be refused for ever.
        gap = time.monotonic() - self._last_frame_at >= self.no_signal_after
        if self._last_order is not None and frame.order <= self._last_order and not gap:
            self.out_of_order += 1
            self.counts.frame_out_of_order()
            return None
        self._last_order = frame.order
        self._last_frame_at = time.monotonic()
        self._no_signal_at = None
        return frame

    def _no_signal_due(self, started: float) -> NoSignal | None:
        """NoSignal once `no_signal_after` seconds passed without a frame, then once a second."""
        now = time.monotonic()
        if now - (self._last_frame_at or started) < self.no_signal_after:
            return None
        if self._no_signal_at is not None and now - self._no_signal_at < NO_SIGNAL_REPEAT_S:
            return None
        first = self._no_signal_at is None
        self._no_signal_at = now
        if first:
            self.counts.went_to_no_signal()
        last_wall = time.time() - (now - self._last_frame_at) if self._last_frame_at else None
        return NoSignal(first, last_wall)
