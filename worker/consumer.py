"""The detector worker loop: read camera frames through a consumer group, process, publish, ack.

Live cameras keep latency bounded: of a batch read at once only the newest frame is processed, and a
frame older than max_frame_age is acked and skipped. Backlog cameras process every frame. Every
entry is acknowledged, bad ones after a copy to the camera's dead-letter stream.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from pathlib import Path

import redis

from common import envelope
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, Backoff, describe_error
from common.errors import EnvelopeError
from common.keys import DETECTIONS_FIELD, FRAME_FIELD, WORKER_GROUP, Keys
from common.logs import camera_logger
from common.registry import deregister, heartbeat, member_id
from common.stats import StatsWriter
from worker import groups, metrics
from worker.detectors import create_detector
from worker.pipeline import FrameDecodeError, FrameProcessor

LIVE_BATCH = 16  # entries read at once on live cameras; all but the newest are stale
HOUSEKEEPING_INTERVAL = 10.0
DEADLETTER_MAX_BYTES = 1 << 20


class CameraState:
    """What the loop keeps per camera: processor, keys, stats, logger and a rate estimate."""

    def __init__(self, camera: CameraConfig, settings: Settings, client: redis.Redis):
        keys = Keys(settings.key_prefix)
        self.camera = camera
        self.live = camera.mode == "live"
        self.max_age_ns = int(settings.max_frame_age(camera) * 1e9)
        self.frames_key = keys.frames(camera.id)
        self.annotated_key = keys.annotated(camera.id)
        self.detections_key = keys.detections(camera.id)
        self.deadletter_key = keys.deadletter(camera.id)
        self.processor = FrameProcessor(camera, create_detector(camera.detection))
        self.stats = StatsWriter(client, keys, camera.id)
        self.log = camera_logger("framecast.worker", camera.id)
        self.recent: deque[tuple[int, int, int]] = deque(maxlen=20)  # (run, seq, capture ns)
        self.last_frame_ts = 0.0

    def fps(self) -> float | None:
        """The camera's frame rate from sequence numbers and capture times, so it stays right
        however many workers share the camera."""
        if len(self.recent) < 2 or self.recent[0][0] != self.recent[-1][0]:
            return None
        (_, seq0, ts0), (_, seq1, ts1) = self.recent[0], self.recent[-1]
        return (seq1 - seq0) / ((ts1 - ts0) / 1e9) if ts1 > ts0 else None


class Worker:
    """Serves `cameras` until `stop` is set. Library first: `framecast worker` is a thin CLI over it."""

    def __init__(self, settings: Settings, cameras: list[CameraConfig], client: redis.Redis,
                 stop: threading.Event, name: str | None = None):
        self.settings = settings
        self.client = client
        self.stop = stop
        self.name = name or member_id()
        self.keys = Keys(settings.key_prefix)
        self.cams = {c.id: CameraState(c, settings, client) for c in cameras}  # loads models once, here
        self.by_stream = {state.frames_key: state for state in self.cams.values()}
        self.cfg = settings.worker
        self.processed = 0
        self._last_heartbeat = self._last_claim = self._last_housekeeping = 0.0
        self._redis_down = False
        self.log = camera_logger("framecast.worker", ",".join(self.cams), worker=self.name)

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        """The worker's main loop; returns after `stop` is set, with nothing left pending."""
        backoff = Backoff(base=0.2, cap=5.0)
        self._ensure_groups()
        while not self.stop.is_set():
            try:
                self._periodic()
                count = LIVE_BATCH if any(s.live for s in self.cams.values()) else 1
                reply = self.client.xreadgroup(WORKER_GROUP, self.name, {s: ">" for s in self.by_stream},
                                               count=count, block=self.cfg.block_ms)
                for stream, entries in reply or []:
                    stream = stream.decode() if isinstance(stream, bytes) else stream
                    self._handle_batch(self.by_stream[stream], entries)
                if self._redis_down:
                    self.log.info("redis reachable again")
                    self._redis_down = False
                backoff.reset()
            except redis.exceptions.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.log.warning("consumer group missing (Redis restarted or flushed?), re-creating it")
                self._ensure_groups()
            except CONNECTION_ERRORS as exc:
                if not self._redis_down:
                    self.log.warning("redis unavailable, retrying", extra={"error": describe_error(exc)})
                self._redis_down = True
                if backoff.wait(self.stop):
                    break
                self._try(self._ensure_groups)
        self._shutdown()

    def _try(self, fn) -> None:
        try:
            fn()
        except CONNECTION_ERRORS:
            pass

    def _ensure_groups(self) -> None:
        for state in self.cams.values():
            if groups.ensure_group(self.client, state.frames_key, "$" if state.live else "0"):
                state.log.info("created consumer group", extra={"group": WORKER_GROUP})

    def _periodic(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= self.cfg.heartbeat_ttl / 3:
            self._last_heartbeat = now
            self._heartbeat()
        if now - self._last_claim >= self.cfg.claim_idle_ms / 2000:
            self._last_claim = now
            self._reclaim()
        if now - self._last_housekeeping >= min(HOUSEKEEPING_INTERVAL, self.cfg.dead_consumer_after):
            self._last_housekeeping = now
            self._housekeeping()
        for state in self.cams.values():
            state.stats.maybe_flush()

    def _heartbeat(self) -> None:
        fps = {cid: round(s.fps() or 0.0, 2) for cid, s in self.cams.items()}
        heartbeat(self.client, self.keys, "worker", self.name, {
            "host": socket.gethostname(), "pid": os.getpid(), "cameras": sorted(self.cams),
            "model": sorted({Path(s.processor.detector.info.path).name for s in self.cams.values()}),
            "fps": fps, "processed": self.processed,
            "last_frame_ts": max((s.last_frame_ts for s in self.cams.values()), default=0.0),
        }, self.cfg.heartbeat_ttl)

    def _reclaim(self) -> None:
        """Take over frames left pending by consumers that died mid-frame."""
        for state in self.cams.values():
            entries, deleted = groups.claim_stale(self.client, state.frames_key, self.name, self.cfg.claim_idle_ms)
            if entries or deleted:
                metrics.FRAMES_RECLAIMED.labels(camera=state.camera.id).inc(len(entries))
                state.log.info("reclaimed pending frames", extra={"frames": len(entries), "trimmed": len(deleted)})
            for entry_id, fields in entries:
                self._handle(state, entry_id, fields)

    def _housekeeping(self) -> None:
        for state in self.cams.values():
            removed = groups.remove_dead_consumers(self.client, state.frames_key, self.name,
                                                   int(self.cfg.dead_consumer_after * 1000))
            if removed:
                state.log.info("removed dead consumers", extra={"consumers": removed})
            lag, pending = groups.group_backlog(self.client, state.frames_key)
            metrics.GROUP_LAG.labels(camera=state.camera.id).set(lag)
            metrics.GROUP_PENDING.labels(camera=state.camera.id).set(pending)

    def _shutdown(self) -> None:
        for state in self.cams.values():
            state.stats.flush()
        self._try(lambda: deregister(self.client, self.keys, "worker", self.name))
        self.log.info("worker stopped", extra={"processed": self.processed})

    # ---- per entry -----------------------------------------------------------------------------------
    def _handle_batch(self, state: CameraState, entries: list) -> None:
        if state.live and len(entries) > 1:
            # The worker fell behind: the older entries of the batch are superseded by the newest.
            stale = [eid for eid, _ in entries[:-1]]
            self.client.xack(state.frames_key, WORKER_GROUP, *stale)
            self._count_stale(state, len(stale))
            entries = entries[-1:]
        for entry_id, fields in entries:
            self._handle(state, entry_id, fields)

    def _count_stale(self, state: CameraState, count: int) -> None:
        metrics.FRAMES_SKIPPED.labels(camera=state.camera.id).inc(count)
        state.stats.incr("skipped_stale", count)

    def _handle(self, state: CameraState, entry_id: bytes, fields: dict) -> None:
        """Process one entry and acknowledge it, whatever happens to it."""
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        data = fields.get(FRAME_FIELD) if fields else None
        if data is None:
            return self._dead_letter(state, eid, b"", "entry has no frame field", "malformed")
        try:
            frame = envelope.decode(data)
        except EnvelopeError as exc:
            return self._dead_letter(state, eid, data, str(exc), "envelope")
        if frame.cam != state.camera.id:
            return self._dead_letter(state, eid, data, f"frame of camera {frame.cam!r} in this stream", "envelope")
        if state.live and time.time_ns() - frame.ts > state.max_age_ns:
            self.client.xack(state.frames_key, WORKER_GROUP, eid)
            self._count_stale(state, 1)
            return None
        try:
            annotated = state.processor.process(frame, fps=state.fps())
        except FrameDecodeError as exc:
            return self._dead_letter(state, eid, data, str(exc), "jpeg")
        except Exception as exc:  # a detector failure on one frame must not stop the worker
            state.log.exception("frame processing failed", extra={"entry": eid})
            return self._dead_letter(state, eid, data, f"{type(exc).__name__}: {exc}", "detector")
        published_ns = time.time_ns()
        annotated = annotated.annotated(annotated.jpeg, annotated.detections or [], worker=self.name,
                                        published_ns=published_ns)
        streams = self.settings.streams
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(state.annotated_key, {FRAME_FIELD: envelope.encode(annotated)},
                  maxlen=streams.annotated_maxlen, approximate=True)
        pipe.xadd(state.detections_key, {DETECTIONS_FIELD: envelope.detections_record(annotated)},
                  maxlen=streams.detections_maxlen, approximate=True)
        pipe.xack(state.frames_key, WORKER_GROUP, eid)
        pipe.execute()
        state.recent.append((frame.run, frame.seq, frame.ts))
        self._account(state, frame.ts, published_ns, annotated.meta.get("infer_ms", 0.0))
        return None

    def _account(self, state: CameraState, ts: int, published_ns: int, infer_ms: float) -> None:
        cam = state.camera.id
        e2e_ms = (published_ns - ts) / 1e6
        self.processed += 1
        state.last_frame_ts = published_ns / 1e9
        metrics.FRAMES_PROCESSED.labels(camera=cam).inc()
        metrics.INFERENCE_MS.labels(camera=cam).observe(infer_ms)
        metrics.END_TO_END_MS.labels(camera=cam).observe(e2e_ms)
        state.stats.incr("processed")
        state.stats.gauge("last_processed_ms", published_ns / 1e6)
        state.stats.gauge("latency_ms", e2e_ms)
        state.stats.gauge("infer_ms", infer_ms)

    def _dead_letter(self, state: CameraState, entry_id: str, data: bytes, error: str, reason: str) -> None:
        state.log.warning("bad frame dead-lettered", extra={"entry": entry_id, "error": error, "reason": reason})
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(state.deadletter_key, {"entry": entry_id, "error": error, "reason": reason,
                                         "data": bytes(data[:DEADLETTER_MAX_BYTES])},
                  maxlen=self.settings.streams.deadletter_maxlen, approximate=True)
        pipe.xack(state.frames_key, WORKER_GROUP, entry_id)
        pipe.execute()
        metrics.FRAMES_FAILED.labels(camera=state.camera.id, reason=reason).inc()
        state.stats.incr("failed")
        state.stats.incr("deadlettered")
