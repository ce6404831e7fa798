"""The detector worker loop: read camera frames through a consumer group, process, publish, ack.

One loop serves all of a process's cameras with one XREADGROUP over their streams. Live cameras keep
latency bounded: of the entries read at once only the newest is processed, and a frame older than
max_frame_age is acked and skipped. Backlog cameras process every frame, one at a time. Every entry is
acknowledged, bad ones after a copy to the camera's dead-letter stream. The per-frame transform is
`worker.pipeline.FrameProcessor`; this module only does the Redis side.
"""

from __future__ import annotations

import os
import socket
import threading
import time

import redis

from common import envelope
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, Backoff, describe_error
from common.errors import EnvelopeError
from common.keys import DETECTIONS_FIELD, FRAME_FIELD, WORKER_GROUP, Keys
from common.logs import camera_logger
from common.registry import deregister, heartbeat, member_id
from worker import groups, metrics
from worker.cameras import CameraState
from worker.groups import GroupMissingError
from worker.pipeline import FrameDecodeError

LIVE_BATCH = 16  # entries read at once from a live stream; all but the newest are superseded
LAG_INTERVAL = 2.0  # seconds between consumer-group lag readings
DEAD_CONSUMER_INTERVAL = 10.0
SKIP_LOG_INTERVAL = 10.0
DEADLETTER_MAX_BYTES = 1 << 20


class Worker:
    """Serves `cameras` until `stop` is set. Library first: `framecast worker` is a thin CLI over it.

    Building a Worker loads the cameras' detectors (one per distinct detection config); `run` needs
    Redis only once it starts, and waits for it with backoff when it is down.
    """

    def __init__(self, settings: Settings, cameras: list[CameraConfig], client: redis.Redis,
                 stop: threading.Event, name: str | None = None):
        self.settings = settings
        self.client = client
        self.stop = stop
        self.name = name or member_id()
        self.keys = Keys(settings.key_prefix)
        self.cfg = settings.worker
        self.cams = {c.id: CameraState(c, settings, client, self.name) for c in cameras}
        self.by_stream = {state.frames_key: state for state in self.cams.values()}
        self._live = [s.frames_key for s in self.cams.values() if s.live]
        self._backlog = [s.frames_key for s in self.cams.values() if not s.live]
        self._busy = False  # the last read returned entries: read again without blocking
        self._groups_ready = False
        self._groups_created_once = False
        self._redis_down = False
        self._due: dict[str, float] = {}
        self.log = camera_logger("framecast.worker", ",".join(self.cams), worker=self.name)

    @property
    def processed(self) -> int:
        return sum(s.processed for s in self.cams.values())

    # ---- the loop ----------------------------------------------------------------------------------
    def run(self) -> None:
        """The worker's main loop; returns after `stop` is set, with every frame it read acknowledged.

        Called by `framecast worker` on the main thread, or by tests and embedders on a thread of
        their own. Redis outages, restarts and vanished groups are waited out, never fatal.
        """
        backoff = Backoff(base=0.2, cap=5.0)
        try:
            while not self.stop.is_set():
                try:
                    self.step()
                    if self._redis_down:
                        self.log.info("redis reachable again")
                        self._redis_down = False
                    backoff.reset()
                except GroupMissingError as exc:
                    self._group_lost(exc)
                except redis.exceptions.ResponseError as exc:
                    if groups.is_missing_group(exc):
                        self._group_lost(exc)
                        continue
                    # e.g. READONLY during a failover, or a key overwritten with another type
                    self.log.error("redis refused a command, retrying", extra={"error": describe_error(exc)})
                    if backoff.wait(self.stop):
                        break
                except CONNECTION_ERRORS as exc:
                    if not self._redis_down:
                        metrics.REDIS_OUTAGES.inc()
                        self.log.warning("redis unavailable, reconnecting", extra={"error": describe_error(exc)})
                    self._redis_down = True
                    self._groups_ready = False  # a restarted Redis without persistence has none
                    if backoff.wait(self.stop):
                        break
        finally:
            self._shutdown()

    def step(self) -> None:
        """One pass of the loop: groups, periodic chores, one read and the frames it returned.

        Called by `run`; the frames read are all handled (and acked) even when `stop` is set meanwhile.
        """
        if not self._groups_ready:
            self._ensure_groups()
        self._periodic()
        batches = self._read()
        self._busy = bool(batches)
        for state, entries in batches:
            self._handle_batch(state, entries)

    def _read(self) -> list[tuple[CameraState, list]]:
        """Block until frames arrive when idle; while frames keep coming, read without blocking so a
        live stream's backlog is read as one batch and a backlog stream's frames one at a time."""
        if not self._busy:
            count = 1 if self._backlog else LIVE_BATCH
            # Wake up for the next periodic chore (heartbeat, reclaim) even when no frame arrives.
            until_due = min(self._due.values(), default=0.0) - time.monotonic()
            block = max(10, min(self.cfg.block_ms, int(until_due * 1000)))
            return self._xread(list(self.by_stream), count, block)
        batches = []
        if self._live:
            batches += self._xread(self._live, LIVE_BATCH, None)
        if self._backlog:
            batches += self._xread(self._backlog, 1, None)
        return batches

    def _xread(self, streams: list[str], count: int, block: int | None) -> list[tuple[CameraState, list]]:
        reply = self.client.xreadgroup(WORKER_GROUP, self.name, {s: ">" for s in streams},
                                       count=count, block=block)
        items = reply.items() if isinstance(reply, dict) else (reply or [])
        out = []
        for stream, entries in items:
            if entries:
                out.append((self.by_stream[stream.decode() if isinstance(stream, bytes) else stream], entries))
        return out

    def _ensure_groups(self) -> None:
        for state in self.cams.values():
            if groups.ensure_group(self.client, state.frames_key, "$" if state.live else "0"):
                if self._groups_created_once:
                    metrics.GROUPS_RECREATED.labels(camera=state.id).inc()
                state.log.info("created consumer group", extra={"group": WORKER_GROUP, "mode": state.camera.mode})
        self._groups_ready = self._groups_created_once = True

    def _group_lost(self, exc: Exception) -> None:
        self.log.warning("consumer group missing (Redis restarted or flushed?), re-creating it",
                         extra={"error": describe_error(exc)})
        self._groups_ready = False

    def _is_due(self, task: str, interval: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(task, 0.0):
            return False
        self._due[task] = now + interval
        return True

    def _periodic(self) -> None:
        """Heartbeat, reclaiming, lag and consumer clean-up, each at its own interval. Called by `step`."""
        if self._is_due("heartbeat", self.cfg.heartbeat_ttl / 3):
            self._heartbeat()
        if self._is_due("reclaim", self.cfg.claim_idle_ms / 2000):
            self._reclaim()
        if self._is_due("lag", LAG_INTERVAL):
            for state in self.cams.values():
                lag, pending = groups.group_backlog(self.client, state.frames_key)
                metrics.GROUP_LAG.labels(camera=state.id).set(lag)
                metrics.GROUP_PENDING.labels(camera=state.id).set(pending)
        if self._is_due("consumers", min(DEAD_CONSUMER_INTERVAL, self.cfg.dead_consumer_after / 2)):
            for state in self.cams.values():
                removed = groups.remove_dead_consumers(self.client, state.frames_key, self.name,
                                                       int(self.cfg.dead_consumer_after * 1000))
                if removed:
                    state.log.info("removed dead consumers", extra={"consumers": removed})
        if self._is_due("skip-log", SKIP_LOG_INTERVAL):
            for state in self.cams.values():
                skipped = state.skipped_since_last_report()
                if skipped:
                    state.log.info("skipped stale frames to keep latency bounded", extra={"frames": skipped})
        for state in self.cams.values():
            state.stats.maybe_flush()

    def _heartbeat(self) -> None:
        heartbeat(self.client, self.keys, "worker", self.name, {
            "host": socket.gethostname(), "pid": os.getpid(), "cameras": sorted(self.cams),
            "modes": {cid: s.camera.mode for cid, s in self.cams.items()},
            "model": sorted({s.model_name for s in self.cams.values()}),
            "fps": {cid: round(s.processed_fps(), 2) for cid, s in self.cams.items()},
            "processed": self.processed,
            "last_frame_ts": max((s.last_frame_ts for s in self.cams.values()), default=0.0),
        }, self.cfg.heartbeat_ttl)

    def _reclaim(self) -> None:
        """Take over frames left pending by consumers that died mid-frame, and handle them."""
        for state in self.cams.values():
            entries, deleted = groups.claim_stale(self.client, state.frames_key, self.name, self.cfg.claim_idle_ms)
            if entries or deleted:
                metrics.FRAMES_RECLAIMED.labels(camera=state.id).inc(len(entries))
                state.log.info("reclaimed pending frames", extra={"frames": len(entries), "trimmed": len(deleted)})
            for entry_id, fields in entries:
                self._handle(state, entry_id, fields)

    def _shutdown(self) -> None:
        for state in self.cams.values():
            state.stats.flush()
        try:
            deregister(self.client, self.keys, "worker", self.name)
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
            self.log.warning("could not deregister; the heartbeat will expire", extra={"error": describe_error(exc)})
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
        state.skipped += count
        metrics.FRAMES_SKIPPED.labels(camera=state.id).inc(count)
        state.stats.incr("skipped_stale", count)

    def _handle(self, state: CameraState, entry_id: bytes | str, fields: dict) -> None:
        """Process one entry and acknowledge it, whatever happens to it."""
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        data = fields.get(FRAME_FIELD) if fields else None
        if data is None:
            names = ", ".join(sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k)
                                     for k in (fields or {})))
            return self._dead_letter(state, eid, b"", f"entry has no {FRAME_FIELD.decode()!r} field "
                                     f"(fields: {names or 'none'})", "malformed")
        try:
            frame = envelope.decode(data)
        except EnvelopeError as exc:
            return self._dead_letter(state, eid, data, str(exc), "envelope")
        if frame.cam != state.id:
            return self._dead_letter(state, eid, data, f"frame of camera {frame.cam!r} in this stream", "envelope")
        if state.live and time.time_ns() - frame.ts > state.max_age_ns:
            self.client.xack(state.frames_key, WORKER_GROUP, eid)
            return self._count_stale(state, 1)
        try:
            result = state.processor.process(frame, fps=state.source_fps())
            published_ns = time.time_ns()
            result = result.annotated(result.jpeg, result.detections or [], worker=self.name,
                                      published_ns=published_ns)
            payload = envelope.encode(result)
        except FrameDecodeError as exc:
            return self._dead_letter(state, eid, data, str(exc), "jpeg")
        except Exception as exc:  # a detector or encoder failure on one frame must not stop the worker
            state.log.exception("frame processing failed", extra={"entry": eid})
            return self._dead_letter(state, eid, data, f"{type(exc).__name__}: {exc}", "processing")
        streams = self.settings.streams
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(state.annotated_key, {FRAME_FIELD: payload}, maxlen=streams.annotated_maxlen, approximate=True)
        pipe.xadd(state.detections_key, {DETECTIONS_FIELD: envelope.detections_record(result)},
                  maxlen=streams.detections_maxlen, approximate=True)
        pipe.xack(state.frames_key, WORKER_GROUP, eid)
        pipe.execute()
        state.record_processed(frame.run, frame.seq, frame.ts, published_ns)
        self._account(state, frame.ts, published_ns, result.meta.get("infer_ms", 0.0))
        return None

    def _account(self, state: CameraState, ts: int, published_ns: int, infer_ms: float) -> None:
        e2e_ms = (published_ns - ts) / 1e6
        metrics.FRAMES_PROCESSED.labels(camera=state.id).inc()
        metrics.INFERENCE_MS.labels(camera=state.id).observe(infer_ms)
        metrics.END_TO_END_MS.labels(camera=state.id).observe(e2e_ms)
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
        metrics.FRAMES_FAILED.labels(camera=state.id, reason=reason).inc()
        state.stats.incr("failed")
        state.stats.incr("deadlettered")
