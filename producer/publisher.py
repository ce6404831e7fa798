"""One camera's publishing: read the source, encode once, hand the frame to the camera's sender.

A camera is a task of the producer's pool (producer/scheduler.py): each `step` does one unit of work
and says when it wants to run again, so no camera holds a thread while it waits. Latency never builds
up: a paced source (file, pattern) that falls behind its schedule skips ahead, and a live source is
read by its own capture thread (OpenCV and the HTTP reader only read by blocking) into a one-frame
slot, so the camera always publishes the newest frame. Every frame not published is counted with its
reason.
"""

from __future__ import annotations

import threading
import time
import zlib

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
from producer.capture import LatestFrame, capture
from producer.encoding import prepare_frame
from producer.inspection import InspectionGate
from producer.motion import MotionResult
from producer.scheduler import WAIT_FOR_FRAME, Scheduler
from producer.send_loop import SendLoop
from producer.sender import FrameSender
from producer.sources import Source, SourceJpeg, open_source

# Re-opening a source, after a failed open or a connection that ended, waits base x 2^n seconds
# (capped, jittered down by up to half), so a camera that drops every connection costs a bounded rate.
RECONNECT_BASE_S = 0.5
RECONNECT_CAP_S = 30.0
RECONNECT_RESET_AFTER_S = 5.0  # a source that stayed open this long starts the schedule again


HELD_RETRY_S = 0.05  # a backlog frame waiting for room in its queue is offered again this often
CAPTURE_JOIN_S = 2.0  # how long a stopping live camera waits for its capture thread


def schedule_phase(cam: str) -> float:
    """The camera's phase in [0, 1) of its frame period: stable for the id, spread across ids."""
    return zlib.crc32(cam.encode()) / 2**32


def spread_phases(cameras) -> dict[str, float]:
    """Phases for one producer's cameras: those of one rate (`fps`) evenly spaced over the period, in
    the order of their own phases (`schedule_phase`), so the producer sends them one at a time at an
    even pace: hashed phases alone leave clusters (256 cameras at 0.078 fps put up to 6 frames in a
    100 ms slot where an even pace puts 2), and the workers' queue, so the latency's tail, follows
    the bursts. Cameras of different producers keep hashed phases against each other."""
    by_rate: dict[float, list[str]] = {}
    for camera in cameras:
        by_rate.setdefault(camera.fps, []).append(camera.id)
    phases = {}
    for ids in by_rate.values():
        ids.sort(key=schedule_phase)
        offset = schedule_phase(ids[0])
        phases.update({cam: (offset + i / len(ids)) % 1.0 for i, cam in enumerate(ids)})
    return phases


class CameraPublisher:
    """Publishes one camera's frames until `stop` is set (or a non-looping file ends): as a task of the
    producer's pool (`step`, `finish`), or on its own thread (`run`). Its frames go through `send_loop`,
    the producer's shared sending thread (a private one when none is given)."""

    def __init__(self, camera: CameraConfig, settings: Settings, client: redis.Redis, stop: threading.Event,
                 source: Source | None = None, send_loop: SendLoop | None = None, phase: float | None = None):
        self.camera = camera
        self.phase = schedule_phase(camera.id) if phase is None else phase  # of the frame period (paced)
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
                                  stop=stop, loop=send_loop)
        self.gate = InspectionGate(camera.motion, cam=camera.id) if camera.motion_enabled else None
        self._throttled = ThrottledLog(60.0)
        self.run_id = time.time_ns()
        self.seq = 0
        self._published_rate = RateMeter()
        self._reconnect = Backoff(base=RECONNECT_BASE_S, cap=RECONNECT_CAP_S)
        self._opened_at: float | None = None
        self.wake = lambda: None  # set by the scheduler that runs this camera
        # the paced schedule (files, the pattern)
        self._open = False
        self._reopening = False
        self._position, self._index, self._next_due = 0.0, 0, 0.0
        self._stride, self._period = 1.0, 0.1
        self._held: Frame | None = None  # a backlog frame waiting for room in the sender's queue
        # a live source's capture thread and slot
        self._slot: LatestFrame | None = None
        self._capture: threading.Thread | None = None
        self._last_publish = 0.0
        self._waited = False
        self._stopping_at: float | None = None

    @property
    def published(self) -> int:
        """Frames this publisher has added to Redis."""
        return self.sender.sent

    # ---- opening the source -----------------------------------------------------------------------
    def open_source(self, reopening: bool = False) -> bool:
        """Open the source, retrying with backoff until it works or we are stopped (a live source's
        capture thread, which may block).

        `reopening`: the source was open and has ended (a camera closed the connection). That waits
        the backoff too, as a failed open does, so a camera that drops every connection costs a
        bounded connection rate; the schedule starts again once a source stayed open a while. Every
        attempt after the first is counted as a reconnect."""
        delay = self._reopen_delay() if reopening else 0.0
        while not self.stop.is_set():
            if delay and self.stop.wait(delay):
                return False
            if self._open_once(reopening):
                return True
            delay, reopening = self._reconnect.next_delay(), True
        return False

    def _reopen_delay(self) -> float:
        if self._opened_at is not None and time.monotonic() - self._opened_at >= RECONNECT_RESET_AFTER_S:
            self._reconnect.reset()
        return self._reconnect.next_delay()

    def _open_once(self, reopening: bool) -> bool:
        """One attempt at opening the source (counted as a reconnect when `reopening`)."""
        if reopening:
            self.account.count(metrics.RECONNECTS)
        try:
            self.source.open()
        except SourceError as exc:
            self.account.set(metrics.UP, 0)
            self.log.warning("source unavailable, retrying", extra={"error": str(exc)})
            return False
        self._opened_at = time.monotonic()
        self.account.set(metrics.UP, 1)
        self.log.info("source opened", extra={"source": self.source.description, "native_fps": self.source.fps,
                                              "jpeg_passthrough": self.source.raw_jpeg})
        return True

    # ---- one frame ------------------------------------------------------------------------------------
    def publish(self, image, ts_ns: int) -> bool:
        """Encode one frame and hand it to the sender; True if it was queued for Redis (a backlog
        camera's paced frame waits for room)."""
        frame = self._prepared(image, ts_ns)
        return frame is not None and self.sender.submit(frame, wait=self.backlog and not self.source.live)

    def _prepared(self, image, ts_ns: int) -> Frame | None:
        """The frame as it will be published (motion verdict, JPEG), or None when it cannot be encoded
        (counted). Sequential per camera: the motion background model sees frames in order."""
        moved = self._motion(image) if self.gate is not None else None
        moved_ns = time.time_ns()
        started = time.perf_counter()
        try:
            jpeg, width, height, passed = prepare_frame(image, self.camera.max_width, self.camera.jpeg_quality,
                                                        max_pixels=self.max_pixels)
        except FramecastError as exc:
            self.account.count(metrics.DROPPED, reason="encode")
            self.log.error("frame not encoded", extra={"error": str(exc)})
            return None
        if passed:
            self.account.count(metrics.PASSED_THROUGH)
        frame = Frame(self.camera.id, self.run_id, self.seq, ts_ns, width, height, jpeg)
        if self.gate is not None:
            frame = self._judged(frame, moved, moved_ns)
        frame = frame.stamped(encoded=time.time_ns())
        self.account.observe(metrics.ENCODE, (time.perf_counter() - started) * 1000.0)
        self.seq += 1
        # The sender writes the envelope when it hands the frame to Redis, so the `sent` mark is true.
        return frame

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

    def published_fps(self) -> float:
        """Frames/s published since the previous call (the producer's heartbeats)."""
        return self._published_rate.rate(self.published)

    # ---- as a task of the pool ------------------------------------------------------------------------
    def step(self) -> float | None:
        """One unit of this camera's work; when to run again (see producer/scheduler.py)."""
        return self._step_live() if self.source.live else self._step_paced()

    def finish(self) -> None:
        """After the last step: release the source, send what is queued, write the figures."""
        try:
            if self._capture is not None:
                self._capture.join(timeout=max(0.0, (self._stopping_at or 0.0) - time.monotonic()))
        finally:
            self.source.close()
            self.account.set(metrics.UP, 0)
            self.sender.close()
            self.account.stats.flush()
            self.log.info("publisher stopped", extra={"published": self.published})

    def run(self) -> None:
        """Publish this camera on the calling thread until it finishes (a camera on its own)."""
        scheduler = Scheduler(self.stop, threads=1)
        scheduler.add(self)
        scheduler.run()

    # ---- paced sources: files and the test pattern ----------------------------------------------
    def _step_paced(self) -> float | None:
        now = time.monotonic()
        if self.stop.is_set():
            if self._held is not None:
                self.account.count(metrics.DROPPED, reason="shutdown")
                self._held = None
            return None
        if self._held is not None:  # a backlog camera waits for its workers: the frame goes first
            if not self.sender.offer(self._held):
                return now + HELD_RETRY_S
            self._held = None
            self._next_due = max(self._next_due, now)
            return self._next_due
        if not self._open:
            return self._start_paced(now)
        if now < self._next_due:
            return self._next_due
        missed = int((now - self._next_due) // self._period)
        if missed and self.backlog:  # every frame counts: carry on from here, later
            self._next_due = now
        elif missed:  # behind schedule: skip ahead instead of building latency
            self.account.count(metrics.DROPPED, missed, reason="late")
            self._position += missed * self._stride
            self._next_due += missed * self._period
        target = int(self._position)
        try:
            skipped = 0
            while self._index < target:
                self.source.skip()
                self._index += 1
                skipped += 1
            image = self.source.read()
        except SourceError as exc:
            self.log.warning("source failed, reopening", extra={"error": str(exc)})
            self._open, self._reopening = False, True
            return now + self._reopen_delay()
        if skipped and not missed:
            self.account.count(metrics.DECIMATED, skipped)
        if image is None:
            self.log.info("end of file", extra={"published": self.published})
            return None
        self._index += 1
        self.account.count(metrics.CAPTURED)
        frame = self._prepared(image, time.time_ns())
        del image
        if frame is not None:
            if self.backlog and not self.sender.offer(frame):
                self._held = frame
            elif not self.backlog:
                self.sender.submit(frame, wait=False)
        self._position += self._stride
        self._next_due += self._period
        return now + HELD_RETRY_S if self._held is not None else self._next_due

    def _start_paced(self, now: float) -> float:
        """Try to open the paced source; when to step again (now once it is open, else on the backoff)."""
        if not self._open_once(self._reopening):
            self._reopening = True
            return now + self._reconnect.next_delay()
        self._open, self._reopening = True, False
        native = self.source.fps or self.camera.fps
        fps = min(native, self.camera.fps)
        self._stride, self._period = native / fps, 1.0 / fps
        self._position, self._index = 0.0, 0
        # Each camera starts at its own phase of the period, so cameras of the same rate do not all
        # send at the same instants: 256 pattern cameras at 0.08 fps, all in phase, put 256 frames
        # in Redis within a few ms every 12.8 s, more than the workers take before max_frame_age.
        self._next_due = time.monotonic() + self.phase * self._period
        return self._next_due

    # ---- live sources: webcams and network streams ------------------------------------------------
    def _step_live(self) -> float | None:
        now = time.monotonic()
        if self._capture is None:
            self._slot = LatestFrame()
            self._capture = service_thread(capture, f"capture-{self.camera.id}", cam=self.camera.id,
                                           args=(self, self._slot))
            self._capture.start()
            return WAIT_FOR_FRAME
        if self.stop.is_set() or not self._capture.is_alive():
            # the capture thread ends within its source's read timeout: wait for it a little, in steps
            self._stopping_at = self._stopping_at or now + CAPTURE_JOIN_S
            return now + 0.05 if self._capture.is_alive() and now < self._stopping_at else None
        due = self._last_publish + 1.0 / self.camera.fps
        if now < due:
            return due
        item, overwritten = self._slot.take()
        # Frames replaced while we encoded or published were late; those replaced while we waited out
        # the fps cap are decimated on purpose.
        self.account.count(metrics.DECIMATED if self._waited else metrics.DROPPED, overwritten,
                           **({} if self._waited else {"reason": "late"}))
        self._waited = False
        if item is None:
            return WAIT_FOR_FRAME
        self._last_publish = now
        self.publish(*item)
        del item  # the frame is the sender's now: not kept alive here while we wait for the next
        self.account.count(metrics.DROPPED, self._slot.reset_overwritten(), reason="late")
        due = self._last_publish + 1.0 / self.camera.fps
        self._waited = due > time.monotonic()
        return due
