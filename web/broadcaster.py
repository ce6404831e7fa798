"""Fan-out of each camera's frames to its viewers: one Redis reader per camera per process.

A CameraFeed's reader thread reads the camera's stream once, frames each JPEG as a multipart part
once, and puts it into every viewer's one-slot Mailbox. A slow viewer's mailbox just holds the newest
part (the older one is counted as skipped), so it never delays the reader or the other viewers and
never grows. Frames older than one already sent (a slower worker's late result) are not sent.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from common import envelope
from common.connection import CONNECTION_ERRORS, Backoff, describe_error
from common.errors import EnvelopeError
from common.keys import FRAME_FIELD, Keys
from common.logs import camera_logger
from web import metrics, mjpeg

log = logging.getLogger("framecast.web")


class Mailbox:
    """One viewer's slot for the newest part. `put` is invoked by the reader, `get` by the viewer."""

    def __init__(self, cam: str):
        self.cam = cam
        self._cond = threading.Condition()
        self._part: bytes | None = None
        self.sent = 0
        self.skipped = 0
        self.closed = False

    def put(self, part: bytes) -> None:
        with self._cond:
            if self._part is not None:
                self.skipped += 1
                metrics.FRAMES_SKIPPED.labels(camera=self.cam).inc()
            self._part = part
            self._cond.notify()

    def get(self, timeout: float) -> bytes | None:
        with self._cond:
            if self._part is None and not self.closed:
                self._cond.wait(timeout)
            part, self._part = self._part, None
        if part is not None:
            self.sent += 1
            metrics.FRAMES_SENT.labels(camera=self.cam).inc()
            metrics.BYTES_OUT.labels(camera=self.cam).inc(len(part))
        return part

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()


class CameraFeed:
    """The single reader of one camera's stream (annotated, or raw with `raw`) in this process."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, raw: bool, no_signal_after: float,
                 linger: float, try_retire):
        self.client = client
        self.cam = cam
        self.raw = raw
        self.key = keys.frames(cam) if raw else keys.annotated(cam)
        self.no_signal_after = no_signal_after
        self.linger = linger
        self._try_retire = try_retire
        self._lock = threading.Lock()
        self._viewers: set[Mailbox] = set()
        self._last_viewer_left = time.monotonic()
        self._last_order: tuple[int, int] | None = None
        self._last_frame_at = 0.0  # monotonic time of the last frame put out
        self._last_part: bytes | None = None
        self._no_signal: bytes | None = None
        self._no_signal_sent = 0.0
        self.out_of_order = 0
        self.closed = threading.Event()
        self.log = camera_logger("framecast.web", cam, raw=raw)
        self.thread = threading.Thread(target=self._run, name=f"feed-{cam}{'-raw' if raw else ''}", daemon=True)

    # ---- viewers --------------------------------------------------------------------------------------
    def add(self, mailbox: Mailbox) -> None:
        with self._lock:
            self._viewers.add(mailbox)
            last = self._last_part if time.monotonic() - self._last_frame_at < self.no_signal_after else None
        if last is not None:
            mailbox.put(last)  # a new viewer sees the current picture at once
        elif self._no_signal is not None:
            mailbox.put(self._no_signal)

    def remove(self, mailbox: Mailbox) -> None:
        with self._lock:
            self._viewers.discard(mailbox)
            if not self._viewers:
                self._last_viewer_left = time.monotonic()

    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    def _fan_out(self, part: bytes) -> None:
        with self._lock:
            targets = list(self._viewers)
        for mailbox in targets:
            mailbox.put(part)

    # ---- the reader ------------------------------------------------------------------------------------
    def idle_long_enough(self) -> bool:
        """True when no viewer has been here for `linger` seconds (checked by the broadcaster)."""
        with self._lock:
            return not self._viewers and time.monotonic() - self._last_viewer_left >= self.linger

    def _run(self) -> None:
        """The reader thread: XREAD the stream, put each newer frame out, 'no signal' when it stops.

        Redis outages and unexpected errors pause the feed (viewers get 'no signal') and are retried
        with backoff; the thread ends only when the feed is retired or closed."""
        metrics.READERS.inc()
        backoff = Backoff(base=0.2, cap=5.0)
        last_id: str | bytes | None = None  # None: not primed yet (first read, or after an outage)
        started = time.monotonic()
        failing = False
        try:
            while not self.closed.is_set() and not self._try_retire(self):
                try:
                    if last_id is None:
                        last_id = self._prime()
                    reply = self.client.xread({self.key: last_id}, count=10, block=500)
                except Exception as exc:  # the reader must outlive any single failure
                    if not failing:
                        level = logging.WARNING if isinstance(exc, CONNECTION_ERRORS) else logging.ERROR
                        self.log.log(level, "feed paused: cannot read the stream",
                                     extra={"error": describe_error(exc)}, exc_info=level == logging.ERROR)
                    failing = True
                    metrics.READ_ERRORS.labels(camera=self.cam).inc()
                    self._maybe_no_signal(started)
                    last_id = None  # a restarted Redis may hold other ids: prime again from its newest entry
                    backoff.wait(self.closed)
                    continue
                if failing:
                    self.log.info("feed resumed")
                    failing = False
                    backoff.reset()
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        self._deliver(fields)
                self._maybe_no_signal(started)
        finally:
            metrics.READERS.dec()

    def _prime(self) -> str:
        """Send the newest stored frame to the first viewers at once; returns where to read from."""
        newest = self.client.xrevrange(self.key, count=1)
        if not newest:
            return "0-0"
        entry_id, fields = newest[0]
        frame = self._decode(fields)
        if frame is not None and time.time_ns() - frame.ts < self.no_signal_after * 1e9:
            self._deliver(fields)
        return entry_id

    def _decode(self, fields: dict):
        try:
            return envelope.decode(fields.get(FRAME_FIELD, b""))
        except EnvelopeError as exc:
            self.log.warning("undecodable frame in stream skipped", extra={"error": str(exc)})
            return None

    def _deliver(self, fields: dict) -> None:
        frame = self._decode(fields)
        if frame is None:
            return
        # After a gap long enough to show 'no signal', the order starts afresh: a producer restarted on a
        # host whose clock is behind (a lower `run`) must not be refused for ever.
        gap = time.monotonic() - self._last_frame_at >= self.no_signal_after
        if self._last_order is not None and frame.order <= self._last_order and not gap:
            self.out_of_order += 1
            metrics.FRAMES_OUT_OF_ORDER.labels(camera=self.cam).inc()
            return
        self._last_order = frame.order
        part = mjpeg.part(frame.jpeg, frame.seq, frame.ts)
        with self._lock:
            self._last_part = part
            self._last_frame_at = time.monotonic()
        self._no_signal = None
        self._fan_out(part)

    def _maybe_no_signal(self, started: float) -> None:
        """After no_signal_after seconds without frames, viewers get the no-signal picture (once a second)."""
        now = time.monotonic()
        since = self._last_frame_at or started
        if now - since < self.no_signal_after:
            return
        if self._no_signal is None or now - self._no_signal_sent >= 1.0:
            if self._no_signal is None:
                last_wall = time.time() - (now - self._last_frame_at) if self._last_frame_at else None
                self._no_signal = mjpeg.part(mjpeg.no_signal_jpeg(self.cam, since=last_wall))
                metrics.NO_SIGNAL.labels(camera=self.cam).inc()
            self._no_signal_sent = now
            self._fan_out(self._no_signal)


class Broadcaster:
    """Owns the feeds of one web process; viewers subscribe and unsubscribe through it."""

    def __init__(self, client: redis.Redis, keys: Keys, no_signal_after: float, linger: float):
        self.client = client
        self.keys = keys
        self.no_signal_after = no_signal_after
        self.linger = linger
        self._lock = threading.Lock()
        self._feeds: dict[tuple[str, bool], CameraFeed] = {}
        self._closed = False
        self.readers_started = 0

    def subscribe(self, cam: str, raw: bool = False) -> Mailbox:
        """A new viewer's mailbox; starts the camera's reader if it is not running."""
        mailbox = Mailbox(cam)
        metrics.VIEWERS.labels(camera=cam).inc()  # unsubscribe, which every viewer reaches, decrements
        with self._lock:
            if self._closed:  # shutting down: the viewer's response ends at once
                mailbox.close()
                return mailbox
            feed = self._feeds.get((cam, raw))
            if feed is None:
                feed = CameraFeed(self.client, self.keys, cam, raw, self.no_signal_after, self.linger,
                                  self._try_retire)
                self._feeds[(cam, raw)] = feed
                self.readers_started += 1
                feed.thread.start()
            feed.add(mailbox)
        return mailbox

    def unsubscribe(self, mailbox: Mailbox, raw: bool = False) -> None:
        mailbox.close()
        with self._lock:
            feed = self._feeds.get((mailbox.cam, raw))
        if feed is not None:
            feed.remove(mailbox)
        metrics.VIEWERS.labels(camera=mailbox.cam).dec()

    def _try_retire(self, feed: CameraFeed) -> bool:
        """Invoked by a feed's reader: remove the feed if it has been idle long enough. Under the same
        lock as `subscribe`, so a viewer never joins a feed that is going away."""
        with self._lock:
            if not feed.idle_long_enough():
                return False
            if self._feeds.get((feed.cam, feed.raw)) is feed:
                del self._feeds[(feed.cam, feed.raw)]
            return True

    def close(self) -> None:
        """Stop every reader and release every viewer (process shutdown, tests)."""
        with self._lock:
            self._closed = True
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for feed in feeds:
            feed.closed.set()
            with feed._lock:
                viewers = list(feed._viewers)
            for mailbox in viewers:
                mailbox.close()
        for feed in feeds:
            feed.thread.join(timeout=5)

    def feeds(self) -> dict[tuple[str, bool], CameraFeed]:
        with self._lock:
            return dict(self._feeds)

    def viewer_count(self, cam: str) -> int:
        return sum(f.viewers() for (c, _), f in self.feeds().items() if c == cam)
