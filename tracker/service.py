"""The events stage of a process (a worker's): which of its event cameras it owns the tracking of.

Every process that serves event cameras runs one EventService. Its thread, about once a
second, tries to take the lease of each event camera it serves that no owner thread of this process
is running for; on success it starts a `CameraOwner` thread for that camera. Exactly one process at a
time holds a camera's lease (a TTL'd key in Redis, renewed by its owner every ttl/3), so exactly one
process tracks and emits the camera's events; when it dies, the lease runs out and the next process
to ask takes over within about `events.lease_ttl` + 1 s. The same thread applies retention to the
events directory about once a minute. Delivery (MQTT, webhooks) and clip encoding are per process
and shared by its owners.

This thread is what gives a camera an owner again after a crash elsewhere, so nothing may stop it:
each chore (one camera's lease, one retention pass) catches its own errors, logs them with the
camera id, counts them (`framecast_events_errors_total{camera,chore}`) and is tried again on its next
turn; an owner that failed is taken again after a backoff (meanwhile another process may take it).
A death in spite of that ends the process (common/threads.py), so its supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from common import threads
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, Backoff, ThrottledLog, describe_error
from common.event_files import events_root
from common.keys import Keys
from common.logs import camera_logger
from tracker import metrics
from tracker.lease import Lease
from tracker.mqtt import MqttPublisher
from tracker.owner import CameraOwner, Outputs
from tracker.recordings import ClipWriter, EventFiles
from tracker.store import EventStore
from tracker.webhooks import WebhookSender

log = logging.getLogger("framecast.events")

POLL_INTERVAL = 1.0  # seconds between attempts to take the leases of cameras not owned here
RETENTION_INTERVAL = 60.0


class EventService:
    """Started and stopped by the process's main (framecast/worker_role.py, tracker/main.py); `start` returns at once."""

    def __init__(self, settings: Settings, cameras: list[CameraConfig], client: redis.Redis, name: str):
        self.settings = settings
        self.client = client
        self.name = name
        self.cameras = [c for c in cameras if c.events_enabled]
        storage = settings.events
        files = EventFiles(events_root(settings))
        keys = Keys(settings.key_prefix)
        fps = max((c.fps for c in self.cameras), default=10.0)
        self.out = Outputs(
            settings=settings, client=client, keys=keys, store=EventStore(client, keys, storage.max_events),
            files=files, clips=ClipWriter(files, fps=fps, preset=storage.preset, crf=storage.crf, queue_size=64),
            mqtt=MqttPublisher.from_config(settings.mqtt) if settings.mqtt.enabled else None,
            webhooks=WebhookSender.from_config(settings.webhooks) if settings.webhooks else None,
            name=name)
        self.leases = {c.id: Lease(client, keys.tracker_lease(c.id), name, ttl=storage.lease_ttl)
                       for c in self.cameras}
        self.owners: dict[str, threading.Thread] = {}
        self._tracking: dict[str, CameraOwner] = {}
        self._backoff = {c.id: Backoff(base=1.0, cap=30.0) for c in self.cameras}
        self._retry_at: dict[str, float] = {}
        self._throttled = ThrottledLog(60.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cameras)

    def owned(self) -> list[str]:
        """The cameras whose tracking this process runs now."""
        return sorted(cam for cam, thread in self.owners.items() if thread.is_alive())

    def start(self) -> EventService:
        if not self.cameras:
            return self
        if self.out.clips is not None:
            self.out.clips.start()
        if self.out.mqtt is not None:
            self.out.mqtt.start()
        if self.out.webhooks is not None:
            self.out.webhooks.start()
        self._thread = threads.start_thread(self._run, "events")
        log.info("events stage started", extra={"cameras": [c.id for c in self.cameras], "owner": self.name,
                                                "dir": str(self.out.files.root)})
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Close the owned cameras cleanly (their open events end, leases are released), then finish
        the queued clips and deliveries."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for thread in self.owners.values():
            thread.join(timeout)
        if self.out.clips is not None:
            self.out.clips.stop(timeout)
        if self.out.webhooks is not None:
            self.out.webhooks.stop()
        if self.out.mqtt is not None:
            self.out.mqtt.stop()

    def _run(self) -> None:
        """The events thread: leases every POLL_INTERVAL, retention every RETENTION_INTERVAL."""
        retention_due = time.monotonic()
        while not self._stop.is_set():
            for camera in self.cameras:
                self._chore("lease", camera.id, self._acquire, camera)
            if time.monotonic() >= retention_due:
                retention_due = time.monotonic() + RETENTION_INTERVAL
                self._chore("retention", None, self._retention)
            self._stop.wait(POLL_INTERVAL)

    def _chore(self, chore: str, cam: str | None, work, *args) -> None:
        """Run one chore; whatever it raises is logged (with the camera), counted, and left for its
        next turn."""
        try:
            work(*args)
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError, redis.exceptions.RedisClusterException) as exc:
            if self._throttled.due(("redis", chore)):
                log.warning("events stage: redis unavailable", extra={"chore": chore, "error": describe_error(exc)})
        except Exception as exc:  # noqa: BLE001 - per chore: nothing may stop the lease taking
            if cam:
                self.out.account(cam).count(metrics.FAILURE, chore=chore)
            else:  # retention: the process's own chore, of no camera
                metrics.ERRORS.labels(camera="", chore=chore).inc()
            if self._throttled.due((chore, cam, type(exc))):
                logger = camera_logger("framecast.events", cam) if cam else log
                logger.error(f"events stage: {chore} failed; trying again on its next turn",
                             extra={"chore": chore, "error": describe_error(exc)}, exc_info=True)

    def _acquire(self, camera: CameraConfig) -> None:
        """Take `camera`'s lease if no owner thread of this process runs it and it is free."""
        cam = camera.id
        thread = self.owners.get(cam)
        if thread is not None and thread.is_alive():
            return
        previous = self._tracking.pop(cam, None)
        if previous is not None and previous.failed:
            self.out.account(cam).count(metrics.FAILURE, chore="owner")
            self._retry_at[cam] = time.monotonic() + self._backoff[cam].next_delay()
        elif previous is not None:
            self._backoff[cam].reset()
        if time.monotonic() < self._retry_at.get(cam, 0.0):
            return
        lease = self.leases[cam]
        lease.token = None  # a finished owner's lease is gone (released, lost or expired)
        if not lease.acquire():
            return
        try:
            owner = CameraOwner(self.out, camera, lease, self._stop)
        except BaseException:
            lease.release()  # so another process need not wait for the TTL
            raise
        self._tracking[cam] = owner
        self.owners[cam] = threads.start_thread(owner.run, f"events-{cam}", cam=cam)

    def _retention(self) -> None:
        storage = self.settings.events
        deleted = self.out.files.enforce_retention(max_age=storage.max_age_hours * 3600,
                                                   max_bytes=int(storage.max_size_mb * (1 << 20)))
        if deleted:
            log.info("event files deleted by retention", extra={"files": len(deleted)})
