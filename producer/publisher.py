"""One camera's publishing loop: read the source, encode once, XADD the envelope with MAXLEN ~.

Latency never builds up: a paced source (file, pattern) that falls behind its schedule skips ahead,
and a live source is read by its own capture thread into a one-frame slot, so the publisher always
takes the newest frame. Every frame not published is counted with its reason.
"""

from __future__ import annotations

import threading
import time

import redis

from common import envelope
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, Backoff, describe_error
from common.envelope import Frame
from common.errors import EnvelopeError, FramecastError, SourceError
from common.keys import FRAME_FIELD, Keys
from common.logs import camera_logger
from common.stats import RateMeter, StatsWriter
from producer import metrics
from producer.encoding import encode_frame
from producer.sources import Source, open_source


class LatestFrame:
    """A one-frame mailbox between a live source's capture thread and the publisher.

    `put` is invoked from the capture thread, `take` and `reset_overwritten` from the publisher.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item: tuple | None = None
        self._overwritten = 0

    def put(self, image, ts_ns: int) -> None:
        with self._cond:
            if self._item is not None:
                self._overwritten += 1
            self._item = (image, ts_ns)
            self._cond.notify()

    def take(self, timeout: float) -> tuple[tuple | None, int]:
        """(newest (image, ts_ns) or None on timeout, frames overwritten since the last count)."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            overwritten, self._overwritten = self._overwritten, 0
            return item, overwritten

    def reset_overwritten(self) -> int:
        with self._cond:
            overwritten, self._overwritten = self._overwritten, 0
            return overwritten


class CameraPublisher:
    """Publishes one camera's frames until `stop` is set (or a non-looping file ends)."""

    def __init__(self, camera: CameraConfig, settings: Settings, client: redis.Redis, stop: threading.Event,
                 source: Source | None = None):
        self.camera = camera
        self.client = client
        self.stop = stop
        self.source = source or open_source(camera)
        self.key = Keys(settings.key_prefix).frames(camera.id)
        self.maxlen = settings.streams.frames_maxlen
        self.log = camera_logger("framecast.producer", camera.id)
        self.stats = StatsWriter(client, Keys(settings.key_prefix), camera.id)
        self.run_id = time.time_ns()
        self.seq = 0
        self.published = 0
        self._published_rate = RateMeter()
        self._redis_backoff = Backoff(base=0.5, cap=10.0)
        self._redis_retry_at = 0.0
        self._redis_down = False
        self._labels = {"camera": camera.id}

    # ---- shared by both loops ------------------------------------------------------------------
    def _open_source(self) -> bool:
        """Open the source, retrying with backoff until it works or we are stopped."""
        backoff = Backoff(base=0.5, cap=30.0)
        while not self.stop.is_set():
            try:
                self.source.open()
            except SourceError as exc:
                metrics.SOURCE_UP.labels(**self._labels).set(0)
                metrics.SOURCE_RECONNECTS.labels(**self._labels).inc()
                self.stats.incr("reconnects")
                delay = backoff.next_delay()
                self.log.warning("source unavailable, retrying", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
                self.stats.maybe_flush()
                if self.stop.wait(delay):
                    return False
                continue
            metrics.SOURCE_UP.labels(**self._labels).set(1)
            if self.source.fps:
                self.stats.gauge("source_fps", self.source.fps)
            self.log.info("source opened", extra={"source": self.source.description, "native_fps": self.source.fps})
            return True
        return False

    def _drop(self, reason: str, count: int = 1) -> None:
        if count > 0:
            metrics.FRAMES_DROPPED.labels(camera=self.camera.id, reason=reason).inc(count)
            self.stats.incr("dropped", count)

    def publish(self, image, ts_ns: int) -> bool:
        """Encode and XADD one frame; returns True if it reached Redis. Invoked by the loops."""
        if time.monotonic() < self._redis_retry_at:
            self._drop("redis")
            return False
        started = time.perf_counter()
        try:
            jpeg, width, height = encode_frame(image, self.camera.max_width, self.camera.jpeg_quality)
            data = envelope.encode(Frame(self.camera.id, self.run_id, self.seq, ts_ns, width, height, jpeg))
        except (FramecastError, EnvelopeError) as exc:
            self._drop("encode")
            self.log.error("frame not encoded", extra={"error": str(exc)})
            return False
        metrics.ENCODE_MS.labels(**self._labels).observe((time.perf_counter() - started) * 1000.0)
        self.seq += 1
        try:
            self.client.xadd(self.key, {FRAME_FIELD: data}, maxlen=self.maxlen, approximate=True)
        except (*CONNECTION_ERRORS, redis.exceptions.RedisError) as exc:
            self._drop("redis")
            delay = self._redis_backoff.next_delay()
            self._redis_retry_at = time.monotonic() + delay
            if not self._redis_down:
                self.log.warning("redis unavailable, dropping frames until it is back",
                                 extra={"error": describe_error(exc)})
            self._redis_down = True
            return False
        if self._redis_down:
            self.log.info("redis reachable again")
            self._redis_down = False
        self._redis_backoff.reset()
        self.published += 1
        metrics.FRAMES_PUBLISHED.labels(**self._labels).inc()
        self.stats.incr("published")
        self.stats.gauge("last_published_ms", time.time() * 1000.0)
        self.stats.maybe_flush()
        return True

    def _captured(self) -> None:
        metrics.FRAMES_CAPTURED.labels(**self._labels).inc()
        self.stats.incr("captured")

    def published_fps(self) -> float:
        """Frames/s published since the previous call (the producer's heartbeats)."""
        return self._published_rate.rate(self.published)

    def run(self) -> None:
        """The camera thread's body."""
        try:
            if self.source.live:
                self._run_live()
            else:
                self._run_paced()
        finally:
            self.source.close()
            metrics.SOURCE_UP.labels(**self._labels).set(0)
            self.stats.flush()
            self.log.info("publisher stopped", extra={"published": self.published})

    # ---- paced sources: files and the test pattern ----------------------------------------------
    def _run_paced(self) -> None:
        if not self._open_source():
            return
        native = self.source.fps or self.camera.fps
        fps = min(native, self.camera.fps)
        stride, period = native / fps, 1.0 / fps
        position, index = 0.0, 0
        next_due = time.monotonic()
        while not self.stop.is_set():
            now = time.monotonic()
            if now < next_due:
                self.stop.wait(next_due - now)
                continue
            missed = int((now - next_due) // period)
            if missed:  # behind schedule: skip ahead instead of building latency
                self._drop("late", missed)
                position += missed * stride
                next_due += missed * period
            target = int(position)
            try:
                skipped = 0
                while index < target:
                    self.source.skip()
                    index += 1
                    skipped += 1
                image = self.source.read()
            except SourceError as exc:
                self.log.warning("source failed, reopening", extra={"error": str(exc)})
                if not self._open_source():
                    return
                position, index, next_due = 0.0, 0, time.monotonic()
                continue
            if skipped and not missed:
                metrics.FRAMES_DECIMATED.labels(**self._labels).inc(skipped)
            if image is None:
                self.log.info("end of file", extra={"published": self.published})
                return
            index += 1
            self._captured()
            self.publish(image, time.time_ns())
            position += stride
            next_due += period

    # ---- live sources: webcams and network streams ------------------------------------------------
    def _capture(self, slot: LatestFrame) -> None:
        """Body of a live source's capture thread: read as fast as the source delivers."""
        while not self.stop.is_set():
            if not self._open_source():
                return
            while not self.stop.is_set():
                try:
                    image = self.source.read()
                except SourceError as exc:
                    metrics.SOURCE_UP.labels(**self._labels).set(0)
                    self.log.warning("source failed, reconnecting", extra={"error": str(exc)})
                    self.source.close()
                    break
                if image is None:
                    break
                self._captured()
                slot.put(image, time.time_ns())

    def _run_live(self) -> None:
        slot = LatestFrame()
        capture = threading.Thread(target=self._capture, args=(slot,), name=f"capture-{self.camera.id}",
                                   daemon=True)
        capture.start()
        min_interval = 1.0 / self.camera.fps
        last_publish = 0.0
        while not self.stop.is_set():
            wait = last_publish + min_interval - time.monotonic()
            waited = wait > 0
            if waited:
                # Frames replaced while we encoded or published were late; those replaced while we
                # wait out the fps cap are decimated on purpose.
                self._drop("late", slot.reset_overwritten())
                if self.stop.wait(wait):
                    break
            item, overwritten = slot.take(timeout=0.5)
            if waited:
                metrics.FRAMES_DECIMATED.labels(**self._labels).inc(overwritten)
            else:
                self._drop("late", overwritten)
            if item is None:
                self.stats.maybe_flush()
                continue
            last_publish = time.monotonic()
            self.publish(*item)
        capture.join(timeout=2.0)
