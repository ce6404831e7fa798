"""The detector worker loop: read camera frames through a consumer group, process, publish, ack.

One loop serves all of a process's cameras with one XREADGROUP over their streams. Live cameras keep
latency bounded: of the entries read at once only the newest is processed, and a frame older than
max_frame_age is acked and skipped. Backlog cameras process every frame, one at a time. Every entry is
acknowledged, bad ones after a copy to the camera's dead-letter stream, and each entry's count goes
to the camera's stats in the same transaction as its XACK, so the counts match the records exactly
even when the worker is killed. The per-frame transform is `worker.detect.pipeline.FrameProcessor`;
this module only does the Redis side.
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
from common.stats import Figure
from common.text import as_str
from worker.detect.pipeline import FrameDecodeError
from worker.live import groups, metrics
from worker.live.cameras import ServedCamera
from worker.live.groups import GroupMissingError

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
        self.cams = {c.id: ServedCamera(c, settings, client, self.name) for c in cameras}
        self.by_stream = {served.frames_key: served for served in self.cams.values()}
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

        Runs on the calling thread (the main thread of `framecast worker`, or a thread of an
        embedding program). Redis outages, restarts and vanished groups are waited out, never fatal.
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

        The frames read are all handled (and acked) even when `stop` is set meanwhile.
        """
        if not self._groups_ready:
            self._ensure_groups()
        self._periodic()
        batches = self._read()
        self._busy = bool(batches)
        for served, entries in batches:
            self._handle_batch(served, entries)

    def _read(self) -> list[tuple[ServedCamera, list]]:
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

    def _xread(self, streams: list[str], count: int, block: int | None) -> list[tuple[ServedCamera, list]]:
        reply = self.client.xreadgroup(WORKER_GROUP, self.name, {s: ">" for s in streams},
                                       count=count, block=block)
        items = reply.items() if isinstance(reply, dict) else (reply or [])
        out = []
        for stream, entries in items:
            if entries:
                out.append((self.by_stream[as_str(stream)], entries))
        return out

    def _ensure_groups(self) -> None:
        for served in self.cams.values():
            if groups.ensure_group(self.client, served.frames_key, "$" if served.live else "0"):
                if self._groups_created_once:
                    served.account.count(metrics.RECREATED)
                served.log.info("created consumer group", extra={"group": WORKER_GROUP, "mode": served.camera.mode})
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
        """Heartbeat, reclaiming, lag and consumer clean-up, each at its own interval."""
        if self._is_due("heartbeat", self.cfg.heartbeat_ttl / 3):
            self._heartbeat()
        if self._is_due("reclaim", self.cfg.claim_idle_ms / 2000):
            self._reclaim()
        if self._is_due("lag", LAG_INTERVAL):
            for served in self.cams.values():
                lag, pending = groups.group_backlog(self.client, served.frames_key)
                served.account.set(metrics.LAG, lag)
                served.account.set(metrics.PENDING, pending)
        if self._is_due("consumers", min(DEAD_CONSUMER_INTERVAL, self.cfg.dead_consumer_after / 2)):
            for served in self.cams.values():
                removed = groups.remove_dead_consumers(self.client, served.frames_key, self.name,
                                                       int(self.cfg.dead_consumer_after * 1000))
                if removed:
                    served.log.info("removed dead consumers", extra={"consumers": removed})
        if self._is_due("skip-log", SKIP_LOG_INTERVAL):
            for served in self.cams.values():
                skipped = served.skipped_since_last_report()
                if skipped:
                    served.log.info("skipped stale frames to keep latency bounded", extra={"frames": skipped})
        for served in self.cams.values():
            served.account.stats.maybe_flush()

    def _heartbeat(self) -> None:
        heartbeat(self.client, self.keys, "worker", self.name, {
            "host": socket.gethostname(), "pid": os.getpid(), "cameras": sorted(self.cams),
            "modes": {cam: s.camera.mode for cam, s in self.cams.items()},
            "model": sorted({s.model_name for s in self.cams.values()}),
            "fps": {cam: round(s.processed_fps(), 2) for cam, s in self.cams.items()},
            "processed": self.processed,
            "last_frame_ts": max((s.last_frame_ts for s in self.cams.values()), default=0.0),
        }, self.cfg.heartbeat_ttl)

    def _reclaim(self) -> None:
        """Take over frames left pending by consumers that died mid-frame, and handle them."""
        for served in self.cams.values():
            entries, deleted = groups.claim_stale(self.client, served.frames_key, self.name, self.cfg.claim_idle_ms)
            if entries or deleted:
                served.account.count(metrics.RECLAIMED, len(entries))
                served.log.info("reclaimed pending frames", extra={"frames": len(entries), "trimmed": len(deleted)})
            for entry_id, fields in entries:
                self._handle(served, entry_id, fields)

    def _shutdown(self) -> None:
        for served in self.cams.values():
            served.account.stats.flush()
        try:
            deregister(self.client, self.keys, "worker", self.name)
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
            self.log.warning("could not deregister; the heartbeat will expire", extra={"error": describe_error(exc)})
        self.log.info("worker stopped", extra={"processed": self.processed})

    # ---- per entry -----------------------------------------------------------------------------------
    def _handle_batch(self, served: ServedCamera, entries: list) -> None:
        if served.live and len(entries) > 1:
            # The worker fell behind: the older entries of the batch are superseded by the newest.
            stale = [eid for eid, _ in entries[:-1]]
            self._skip(served, stale)
            entries = entries[-1:]
        for entry_id, fields in entries:
            self._handle(served, entry_id, fields)

    def _handle(self, served: ServedCamera, entry_id: bytes | str, fields: dict) -> None:
        """Process one entry and acknowledge it, whatever happens to it."""
        eid = as_str(entry_id)
        data = fields.get(FRAME_FIELD) if fields else None
        if data is None:
            names = ", ".join(sorted(k.decode(errors="replace") if isinstance(k, bytes) else str(k)
                                     for k in (fields or {})))
            return self._dead_letter(served, eid, b"", f"entry has no {FRAME_FIELD.decode()!r} field "
                                     f"(fields: {names or 'none'})", "malformed")
        try:
            frame = envelope.decode(data)
        except EnvelopeError as exc:
            return self._dead_letter(served, eid, data, str(exc), "envelope")
        if frame.cam != served.cam:
            return self._dead_letter(served, eid, data, f"frame of camera {frame.cam!r} in this stream", "envelope")
        if served.live and time.time_ns() - frame.ts > served.max_age_ns:
            return self._skip(served, [eid])
        try:
            result = served.processor.process(frame, fps=served.source_fps(), max_pixels=self.cfg.max_frame_pixels)
            published_ns = time.time_ns()
            result = result.annotated(result.jpeg, result.detections or [], worker=self.name,
                                      published_ns=published_ns)
            payload = envelope.encode(result)
        except FrameDecodeError as exc:
            return self._dead_letter(served, eid, data, str(exc), "jpeg")
        except Exception as exc:  # a detector or encoder failure on one frame must not stop the worker
            served.log.exception("frame processing failed", extra={"entry": eid})
            return self._dead_letter(served, eid, data, f"{type(exc).__name__}: {exc}", "processing")
        streams = self.settings.streams
        served.account.observe(metrics.INFERENCE, result.meta.get("infer_ms", 0.0))
        served.account.observe(metrics.END_TO_END, (published_ns - frame.ts) / 1e6)
        pipe = self._pipeline()
        pipe.xadd(served.annotated_key, {FRAME_FIELD: payload}, maxlen=streams.annotated_maxlen, approximate=True)
        pipe.xadd(served.detections_key, {DETECTIONS_FIELD: envelope.detections_record(result)},
                  maxlen=streams.detections_maxlen, approximate=True)
        self._ack(served, pipe, [eid], metrics.PROCESSED)
        served.record_processed(frame.run, frame.seq, frame.ts, published_ns)
        return None

    def _pipeline(self):
        # A transaction: the entry's results, its XACK and its count are applied together or not at
        # all, even if the worker dies mid-write. One camera's keys share a hash tag (one cluster slot).
        return self.client.pipeline(transaction=True)

    def _ack(self, served: ServedCamera, pipe, entry_ids: list[str], figure: Figure, **labels: str) -> None:
        """Acknowledge `entry_ids` in `pipe` (which holds what was done with them), counting them as
        `figure` in the same transaction, then run it."""
        pipe.xack(served.frames_key, WORKER_GROUP, *entry_ids)
        served.account.queue(pipe, figure, len(entry_ids), **labels)
        try:
            pipe.execute()
        except BaseException:
            served.account.settle(False)
            raise
        served.account.settle(True)

    def _skip(self, served: ServedCamera, entry_ids: list[str]) -> None:
        """Ack stale live frames unprocessed: a newer frame makes them worthless."""
        self._ack(served, self._pipeline(), entry_ids, metrics.SKIPPED)
        served.skipped += len(entry_ids)

    def _dead_letter(self, served: ServedCamera, entry_id: str, data: bytes, error: str, reason: str) -> None:
        served.log.warning("bad frame dead-lettered", extra={"entry": entry_id, "error": error, "reason": reason})
        pipe = self._pipeline()
        pipe.xadd(served.deadletter_key, {"entry": entry_id, "error": error, "reason": reason,
                                          "data": bytes(data[:DEADLETTER_MAX_BYTES])},
                  maxlen=self.settings.streams.deadletter_maxlen, approximate=True)
        self._ack(served, pipe, [entry_id], metrics.FAILED, reason=reason)
