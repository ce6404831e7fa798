"""One camera's publishing loop: read the source, encode once, XADD the envelope with MAXLEN ~.

Latency never builds up: a paced source (file, pattern) that falls behind its schedule skips ahead,
and a live source is read by its own capture thread into a one-frame slot, so the publisher always
takes the newest frame. Every frame not published is counted with its reason.
"""

from __future__ import annotations

import threading
import time

import redis

from common.config import CameraConfig, Settings
from common.connection import Backoff, ThrottledLog
from common.envelope import INSPECT_FULL, Frame, Motion
from common.errors import FramecastError, SourceError
from common.keys import Keys
from common.logs import camera_logger
from common.stats import CameraAccount, RateMeter
from common.threads import service_thread
from producer import metrics
from producer.encoding import prepare_frame
from producer.inspection import InspectionGate
from producer.motion import MotionResult
from producer.sender import FrameSender
from producer.sources import Source, SourceJpeg, open_source

# Re-opening a source, after a failed open or a connection that ended, waits base x 2^n seconds
# (capped, jittered down by up to half), so a camera that drops every connection costs a bounded rate.
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 30.0
RECONNECT_RESET_AFTER_S = 5.0  # a source that stayed open this long starts the schedule again


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
        keys = Keys(settings.key_prefix)
        self.log = camera_logger("framecast.producer", camera.id)
        self.account = CameraAccount(client, keys, camera.id)
        self.backlog = camera.mode == "backlog"
        self.max_pixels = settings.worker.max_frame_pixels  # what workers accept; more is not decoded here
        self.sender = FrameSender(client, keys.frames(camera.id), settings.streams.frames_maxlen, self.account,
                                  self.log, capacity=settings.producer.send_queue, backlog=self.backlog,
                                  stop=stop)
        self.gate = InspectionGate(camera.motion, cam=camera.id) if camera.motion_enabled else None
        self._throttled = ThrottledLog(60.0)
        self.run_id = time.time_ns()
        self.seq = 0
        self._published_rate = RateMeter()
        self._reconnect = Backoff(base=RECONNECT_BASE_S, cap=RECONNECT_CAP_S)
        self._opened_at: float | None = None

    @property
    def published(self) -> int:
        """Frames this publisher has added to Redis."""
        return self.sender.sent

    # ---- shared by both loops ------------------------------------------------------------------
    def _open_source(self, reopening: bool = False) -> bool:
        """Open the source, retrying with backoff until it works or we are stopped.

        `reopening`: the source was open and has ended (a camera closed the connection). That waits
        the backoff too, as a failed open does, so a camera that drops every connection costs a
        bounded connection rate; the schedule starts again once a source stayed open a while. Every
        attempt after the first is counted as a reconnect."""
        delay = 0.0
        if reopening:
            if self._opened_at is not None and time.monotonic() - self._opened_at >= RECONNECT_RESET_AFTER_S:
                self._reconnect.reset()
            delay = self._reconnect.next_delay()
        while not self.stop.is_set():
            if delay and self.stop.wait(delay):
                return False
            if reopening:
                self.account.count(metrics.RECONNECTS)
            try:
                self.source.open()
            except SourceError as exc:
                self.account.set(metrics.UP, 0)
                delay, reopening = self._reconnect.next_delay(), True
                self.log.warning("source unavailable, retrying", extra={"error": str(exc), "retry_in_s": round(delay, 2)})
                continue
            self._opened_at = time.monotonic()
            self.account.set(metrics.UP, 1)
            self.log.info("source opened", extra={"source": self.source.description, "native_fps": self.source.fps,
                                                  "jpeg_passthrough": self.source.raw_jpeg})
            return True
        return False

    def publish(self, image, ts_ns: int) -> bool:
        """Encode one frame and hand it to the sender; True if it was queued for Redis.

        A backlog camera's paced source (a file, the pattern) waits here while its workers are behind;
        every other frame that cannot go is dropped and counted instead."""
        moved = self._motion(image) if self.gate is not None else None
        moved_ns = time.time_ns()
        started = time.perf_counter()
        try:
            jpeg, width, height, passed = prepare_frame(image, self.camera.max_width, self.camera.jpeg_quality,
                                                        max_pixels=self.max_pixels)
        except FramecastError as exc:
            self.account.count(metrics.DROPPED, reason="encode")
            self.log.error("frame not encoded", extra={"error": str(exc)})
            return False
        if passed:
            self.account.count(metrics.PASSED_THROUGH)
        frame = Frame(self.camera.id, self.run_id, self.seq, ts_ns, width, height, jpeg)
        if self.gate is not None:
            frame = self._judged(frame, moved, moved_ns)
        frame = frame.stamped(encoded=time.time_ns())
        self.account.observe(metrics.ENCODE, (time.perf_counter() - started) * 1000.0)
        self.seq += 1
        # The sender writes the envelope when it hands the frame to Redis, so the `sent` mark is true.
        return self.sender.submit(frame, wait=self.backlog and not self.source.live)

    def _motion(self, image) -> MotionResult | None:
        """The frame's motion (reduced decode of the camera's own JPEG, or the decoded frame), its CPU
        time counted; None when the picture cannot be read (the frame is then inspected in full)."""
        started = time.thread_time_ns()
        try:
            if isinstance(image, SourceJpeg):
                return self.gate.detector.from_jpeg(image.data)
            return self.gate.detector.from_image(image)
        except Exception as exc:  # noqa: BLE001 - OpenCV raises cv2.error and others on a bad picture
            if self._throttled.due("motion"):
                self.log.warning("motion not found on a frame (inspected in full; logged once a minute)",
                                 extra={"error": str(exc)})
            return None
        finally:
            self.account.observe(metrics.MOTION, (time.thread_time_ns() - started) / 1e6)

    def _judged(self, frame: Frame, moved: MotionResult | None, moved_ns: int) -> Frame:
        """`frame` with the gate's verdict and the `moved` mark."""
        verdict = (Motion(INSPECT_FULL) if moved is None
                   else self.gate.verdict(moved, frame.ts / 1e9, frame.width, frame.height))
        self.account.count(metrics.VERDICT, inspect=verdict.inspect)
        return Frame(frame.cam, frame.run, frame.seq, frame.ts, frame.width, frame.height, frame.jpeg,
                     motion=verdict).stamped(moved=moved_ns)

    def _captured(self) -> None:
        self.account.count(metrics.CAPTURED)

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
            self.account.set(metrics.UP, 0)
            self.sender.close()
            self.account.stats.flush()
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
            if missed and self.backlog:  # every frame counts: carry on from here, later
                next_due = now
            elif missed:  # behind schedule: skip ahead instead of building latency
                self.account.count(metrics.DROPPED, missed, reason="late")
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
                if not self._open_source(reopening=True):
                    return
                position, index, next_due = 0.0, 0, time.monotonic()
                continue
            if skipped and not missed:
                self.account.count(metrics.DECIMATED, skipped)
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
        """Body of a live source's capture thread: read as fast as the source delivers.

        A connection that ends is reopened on the backoff schedule; a frame the source refuses
        (over the envelope limit, not a JPEG) is dropped and counted, and the connection kept."""
        reopening = False
        while not self.stop.is_set():
            if not self._open_source(reopening):
                return
            reopening = True
            while not self.stop.is_set():
                try:
                    image = self.source.read()
                except SourceError as exc:
                    self.account.set(metrics.UP, 0)
                    self.log.warning("source failed, reconnecting", extra={"error": str(exc)})
                    self.source.close()
                    break
                except FramecastError as exc:
                    self.account.count(metrics.DROPPED, reason="encode")
                    self.log.warning("frame discarded", extra={"error": str(exc)})
                    continue
                if image is None:
                    break
                self._captured()
                slot.put(image, time.time_ns())

    def _run_live(self) -> None:
        slot = LatestFrame()
        capture = service_thread(self._capture, f"capture-{self.camera.id}", cam=self.camera.id, args=(slot,))
        capture.start()
        min_interval = 1.0 / self.camera.fps
        last_publish = 0.0
        while not self.stop.is_set():
            wait = last_publish + min_interval - time.monotonic()
            waited = wait > 0
            if waited:
                # Frames replaced while we encoded or published were late; those replaced while we
                # wait out the fps cap are decimated on purpose.
                self.account.count(metrics.DROPPED, slot.reset_overwritten(), reason="late")
                if self.stop.wait(wait):
                    break
            item, overwritten = slot.take(timeout=0.5)
            if waited:
                self.account.count(metrics.DECIMATED, overwritten)
            else:
                self.account.count(metrics.DROPPED, overwritten, reason="late")
            if item is None:
                continue
            last_publish = time.monotonic()
            self.publish(*item)
            item = None  # the frame is the sender's now: not kept alive here while we wait for the next
        capture.join(timeout=2.0)
