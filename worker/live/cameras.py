"""What a worker keeps per camera it serves: the frame processor and the camera's outlet, stream keys, the camera's account
(Prometheus and Redis stats), a logger, the rates it reports in heartbeats, and whether it is out of
service (Redis refuses one of its keys). Owned by one worker loop; its publishing thread records what
it published (each a single assignment or deque append, read by the loop)."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import redis

from common.config import CameraConfig, Settings
from common.connection import ThrottledLog
from common.keys import Keys
from common.logs import camera_logger
from common.stats import CameraAccount, RateMeter
from worker.detect import create_detector
from worker.detect.pipeline import FrameProcessor
from worker.live import metrics
from worker.live.outlets import outlet_for

# A camera out of service is tried again after these delays (s), then every last one.
OUT_OF_SERVICE_RETRY_S = (10.0, 20.0, 30.0)
UNREACHABLE_LOG_INTERVAL = 60.0  # seconds between log lines about a camera's cluster node not answering


class ServedCamera:
    """One camera a worker serves. Building it loads the camera's detector (shared per DetectionConfig)."""

    def __init__(self, camera: CameraConfig, settings: Settings, client: redis.Redis, worker_name: str):
        keys = Keys(settings.key_prefix)
        self.camera = camera
        self.cam = camera.id
        self.live = camera.mode == "live"
        self.max_age_ns = int(settings.max_frame_age(camera) * 1e9)
        self.frames_key = keys.frames(camera.id)
        self.deadletter_key = keys.deadletter(camera.id)
        self.processor = FrameProcessor(camera, create_detector(camera.detection))
        self.outlet = outlet_for(camera, settings, self.processor)  # annotate, or detect-only (events)
        self.account = CameraAccount(client, keys, camera.id)
        self.log = camera_logger("framecast.worker", camera.id, worker=worker_name)
        self.recent: deque[tuple[int, int, int]] = deque(maxlen=20)  # (run, seq, capture ns)
        self.last_frame_ts = 0.0
        self.processed = 0
        self.skipped = 0
        self._processed_rate = RateMeter()
        self._skip_mark = (time.monotonic(), 0)
        self.refusal: str | None = None  # while out of service: the refused key and Redis's reply
        self.refused_key: str | None = None  # the key Redis refuses
        self.retry_at = 0.0  # when a camera out of service is read again
        self.paused_until = 0.0  # its cluster node is unreachable (failing over): read it again then
        self.assigned = True  # read by this worker (a pool worker reads the cameras the ranking gives it)
        self._refusals = 0  # since it was last in service: picks the next retry delay
        self._unreachable = ThrottledLog(UNREACHABLE_LOG_INTERVAL)

    @property
    def model_name(self) -> str:
        return Path(self.processor.detector.info.path).name

    def record_processed(self, run: int, seq: int, ts: int, published_ns: int) -> None:
        """Remember a published frame: for the overlay's source fps and the heartbeat's figures."""
        self.recent.append((run, seq, ts))
        self.processed += 1
        self.last_frame_ts = published_ns / 1e9

    def record_skipped(self, count: int) -> None:
        self.skipped += count

    @property
    def out_of_service(self) -> bool:
        """Whether Redis refuses one of its keys (until a read or write of them goes through again)."""
        return self.refusal is not None

    def serving(self, now: float) -> bool:
        """Whether the worker reads the camera now: assigned to it and readable."""
        return self.assigned and self.readable(now)

    def readable(self, now: float) -> bool:
        """False while the camera is out of service (a key Redis refuses), until its retry is due, or
        paused while its cluster node does not answer."""
        return now >= self.paused_until and (not self.out_of_service or now >= self.retry_at)

    def take_out_of_service(self, key: str, reason: str) -> None:
        """Take the camera out of service (out of the reads until its next retry, OUT_OF_SERVICE_RETRY_S)
        because Redis refuses `key` with `reason`. A refusal that is news (not what it was already out
        for) is logged and counted, once."""
        news = reason != self.refusal
        self.refusal, self.refused_key = reason, key
        delays = OUT_OF_SERVICE_RETRY_S
        self.retry_at = time.monotonic() + delays[min(self._refusals, len(delays) - 1)]
        self._refusals += 1
        if news:
            self.account.count(metrics.REFUSED_KEYS)
            self.account.set(metrics.OUT_OF_SERVICE, 1)
            self.log.error("camera out of service: Redis refuses one of its keys; the other cameras go on, "
                           "this one is retried every 10-30 s", extra={"error": reason})

    def return_to_service(self) -> None:
        """Back in service (logged once) if it was out."""
        if not self.out_of_service:
            return
        self.refusal, self.refused_key, self._refusals = None, None, 0
        self.account.set(metrics.OUT_OF_SERVICE, 0)
        self.log.info("camera back in service: Redis accepts its keys again")

    def pause(self, seconds: float, error: str) -> None:
        """Leave the camera out of the reads for `seconds`: its cluster node does not answer (a master
        failing over) while the others do. Logged at most once a minute."""
        self.paused_until = time.monotonic() + seconds
        if self._unreachable.due(self.cam):
            self.log.warning("the camera's Redis node does not answer; the worker reads its other cameras "
                             "meanwhile", extra={"error": error})

    def source_fps(self) -> float | None:
        """The camera's frame rate from sequence numbers and capture times, so it stays right
        however many workers share the camera (drawn in the overlay)."""
        if len(self.recent) < 2 or self.recent[0][0] != self.recent[-1][0]:
            return None
        (_, seq0, ts0), (_, seq1, ts1) = self.recent[0], self.recent[-1]
        return (seq1 - seq0) / ((ts1 - ts0) / 1e9) if ts1 > ts0 else None

    def processed_fps(self) -> float:
        """Frames/s this worker published for the camera since the previous call (heartbeats)."""
        return self._processed_rate.rate(self.processed)

    def skipped_since_last_report(self) -> int:
        """Stale frames skipped since the previous call; lets the loop log skipping at a bounded rate."""
        _, count = self._skip_mark
        self._skip_mark = (time.monotonic(), self.skipped)
        return self.skipped - count
