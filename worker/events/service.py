"""The events stage of a worker process: which of its event cameras it owns the tracking of.

Every worker process that serves event cameras runs one EventService. Its thread, about once a
second, tries to take the lease of each event camera it serves that no owner thread of this process
is running for; on success it starts a `CameraOwner` thread for that camera. Exactly one process at a
time holds a camera's lease (a TTL'd key in Redis, renewed by its owner every ttl/3), so exactly one
process tracks and emits the camera's events; when it dies, the lease runs out and the next process
to ask takes over within about `events.lease_ttl` + 1 s. The same thread applies retention to the
events directory about once a minute. Delivery (MQTT, webhooks) and clip encoding are per process
and shared by its owners.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, describe_error
from common.event_files import events_root
from common.keys import Keys
from worker.events.lease import Lease
from worker.events.mqtt import MqttPublisher
from worker.events.owner import CameraOwner, Outputs
from worker.events.recordings import ClipWriter, EventFiles
from worker.events.store import EventStore
from worker.events.webhooks import WebhookSender

log = logging.getLogger("framecast.events")

POLL_INTERVAL = 1.0  # seconds between attempts to take the leases of cameras not owned here
RETENTION_INTERVAL = 60.0


class EventService:
    """Started and stopped by the worker's main; `start` returns at once."""

    def __init__(self, settings: Settings, cameras: list[CameraConfig], client: redis.Redis, name: str):
        self.settings = settings
        self.client = client
        self.name = name
        self.cams = [c for c in cameras if c.events_enabled]
        storage = settings.events
        files = EventFiles(events_root(settings))
        keys = Keys(settings.key_prefix)
        fps = max((c.fps for c in self.cams), default=10.0)
        self.out = Outputs(
            settings=settings, client=client, keys=keys, store=EventStore(client, keys, storage.max_events),
            files=files, clips=ClipWriter(files, fps=fps, preset=storage.preset, crf=storage.crf, queue_size=64),
            mqtt=MqttPublisher.from_config(settings.mqtt) if settings.mqtt.enabled else None,
            webhooks=WebhookSender.from_config(settings.webhooks) if settings.webhooks else None,
            name=name)
        self.leases = {c.id: Lease(client, keys.tracker_lease(c.id), name, ttl=storage.lease_ttl) for c in self.cams}
        self.owners: dict[str, threading.Thread] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cams)

    def owned(self) -> list[str]:
        """The cameras whose tracking this process runs now."""
        return sorted(cam for cam, thread in self.owners.items() if thread.is_alive())

    def start(self) -> EventService:
        if not self.cams:
            return self
        if self.out.clips is not None:
            self.out.clips.start()
        if self.out.mqtt is not None:
            self.out.mqtt.start()
        if self.out.webhooks is not None:
            self.out.webhooks.start()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()
        log.info("events stage started", extra={"cameras": [c.id for c in self.cams], "owner": self.name,
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
        retention_due = time.monotonic()
        while not self._stop.is_set():
            try:
                self._acquire()
                if time.monotonic() >= retention_due:
                    retention_due = time.monotonic() + RETENTION_INTERVAL
                    self._retention()
            except (*CONNECTION_ERRORS, redis.exceptions.ResponseError) as exc:
                log.warning("events stage: redis unavailable", extra={"error": describe_error(exc)})
            self._stop.wait(POLL_INTERVAL)

    def _acquire(self) -> None:
        for cam in self.cams:
            thread = self.owners.get(cam.id)
            if thread is not None and thread.is_alive():
                continue
            lease = self.leases[cam.id]
            lease.token = None  # a finished owner's lease is gone (released, lost or expired)
            if not lease.acquire():
                continue
            owner = CameraOwner(self.out, cam, lease, self._stop)
            thread = threading.Thread(target=owner.run, name=f"events-{cam.id}", daemon=True)
            self.owners[cam.id] = thread
            thread.start()

    def _retention(self) -> None:
        storage = self.settings.events
        deleted = self.out.files.enforce_retention(max_age=storage.max_age_hours * 3600,
                                                   max_bytes=int(storage.max_size_mb * (1 << 20)))
        if deleted:
            log.info("event files deleted by retention", extra={"files": len(deleted)})
