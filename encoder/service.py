"""The live video stage of a process (a worker's, or `framecast encoder`'s): which of its cameras it
encodes.

Every process that serves cameras with `video.enabled` runs one EncoderService. Its thread, every
POLL_INTERVAL (0.5 s):

1. asks Redis which cameras anyone watches: first the cluster's `watched_cameras` set (camera ->
   the latest expiry any web process announced for it), then, in one pipelined round trip, the
   `video_viewers` sorted set of each of its cameras listed there (a web process that streams the
   camera's H.264 view to at least one client, scored by its expiry in epoch seconds): watched
   while a member is in the future. Both drop their expired members as they go, so the sets stay
   as small as the web tier; an unwatched camera costs nothing per poll.
2. for each watched camera that no encoder thread of this process runs, tries to take the camera's
   encoder lease (tracker/lease.py: SET NX PX with a fencing token); on success starts a
   `CameraEncoder` thread for it (encoder/camera.py), which encodes until nobody has watched for
   `video.viewer_ttl` and then releases the lease.

Exactly one process at a time holds a camera's encoder lease, so each watched camera is encoded
once for the whole cluster, whatever the number of viewers and web processes; an unwatched camera
costs nothing per poll (two commands per poll for the whole process). When the holder dies, its lease runs out and the next process to poll
takes over within about `video.lease_ttl` + POLL_INTERVAL, with a new generation (a higher fencing
token: a new init segment, a keyframe first).

This thread is what gives a camera an encoder again after a crash elsewhere, so nothing may stop it:
each chore (the watch check, one camera's lease) catches its own errors, logs them (with the camera
id), counts them (`framecast_video_errors_total{camera,chore}`) and is tried again on its next
turn; an encoder that failed is taken again after a backoff. A death in spite of that ends the
process (common/threads.py), so its supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from common import threads
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, Backoff, ThrottledLog, describe_error
from common.keys import Keys
from common.logs import camera_logger
from common.text import as_str
from encoder import i420, metrics
from encoder.camera import CameraEncoder
from tracker.lease import Lease

log = logging.getLogger("framecast.encoder")

POLL_INTERVAL = 0.5  # seconds between looks at the viewers (and attempts to take watched cameras)
REDIS_ERRORS = (*CONNECTION_ERRORS, redis.exceptions.ResponseError, redis.exceptions.RedisClusterException)


class EncoderService:
    """Started and stopped by the process's main (framecast/worker_role.py, encoder/main.py); `start`
    returns at once."""

    def __init__(self, settings: Settings, cameras: list[CameraConfig], client: redis.Redis, name: str):
        self.settings, self.client, self.name = settings, client, name
        self.video = settings.video
        self.cameras = [c.id for c in cameras] if self.video.enabled else []
        self.keys = Keys(settings.key_prefix)
        self.leases = {cam: Lease(client, self.keys.encoder_lease(cam), name, ttl=self.video.lease_ttl)
                       for cam in self.cameras}
        self.watched_at: dict[str, float] = {}  # cam -> monotonic time it was last seen watched
        self.encoders: dict[str, threading.Thread] = {}
        self._running: dict[str, CameraEncoder] = {}
        self._backoff = {cam: Backoff(base=1.0, cap=30.0) for cam in self.cameras}
        self._retry_at: dict[str, float] = {}
        self._throttled = ThrottledLog(60.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.cameras)

    def encoding(self) -> list[str]:
        """The cameras whose video this process encodes now."""
        return sorted(cam for cam, thread in self.encoders.items() if thread.is_alive())

    def start(self) -> EncoderService:
        if not self.cameras:
            return self
        self._thread = threads.start_thread(self._run, "encoder")
        log.info("video encoder stage started", extra={"cameras": self.cameras, "owner": self.name})
        if not i420.FAST:
            log.warning("libturbojpeg not found: JPEGs decode through BGR, about 1 ms more CPU a frame "
                        "(install Debian's libturbojpeg0)")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the encoder threads; each releases its lease, so another process takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for thread in self.encoders.values():
            thread.join(timeout)
        metrics.ENCODING.set(0)

    def _run(self) -> None:
        """The service thread: the watch check and the leases every POLL_INTERVAL."""
        while not self._stop.is_set():
            watched = self._chore("watch", None, self._watched) or set()
            now = time.monotonic()
            for cam in watched:
                self.watched_at[cam] = now
            for cam in self.cameras:
                if cam in watched:
                    self._chore("lease", cam, self._acquire, cam)
            metrics.ENCODING.set(len(self.encoding()))
            self._stop.wait(POLL_INTERVAL)

    def _chore(self, chore: str, cam: str | None, work, *args):
        """Run one chore and return what it returns; whatever it raises is logged (with the camera),
        counted, and left for its next turn (None)."""
        try:
            return work(*args)
        except REDIS_ERRORS as exc:
            metrics.ERRORS.labels(camera=cam or "", chore=chore).inc()
            if self._throttled.due(("redis", chore, cam)):
                logger = camera_logger("framecast.encoder", cam) if cam else log
                logger.warning("video encoder stage: redis unavailable", extra={"chore": chore,
                                                                                "error": describe_error(exc)})
        except Exception as exc:  # noqa: BLE001 - per chore: nothing may stop the lease taking
            metrics.ERRORS.labels(camera=cam or "", chore=chore).inc()
            if self._throttled.due((chore, cam, type(exc))):
                logger = camera_logger("framecast.encoder", cam) if cam else log
                logger.error(f"video encoder stage: {chore} failed; trying again on its next turn",
                             extra={"chore": chore, "error": describe_error(exc)}, exc_info=True)
        return None

    def _watched(self) -> set[str]:
        """The cameras someone watches now. One round trip reads the cluster's watched cameras (and
        drops the lapsed ones); a second, pipelined, counts the live viewers of only those of this
        process's cameras that appear there, so an unwatched camera costs nothing per poll."""
        now = time.time()
        pipe = self.client.pipeline(transaction=False)
        pipe.zremrangebyscore(self.keys.watched_cameras, "-inf", now)
        pipe.zrangebyscore(self.keys.watched_cameras, f"({now}", "+inf")
        listed = {as_str(cam) for cam in pipe.execute()[1]}
        candidates = [cam for cam in self.cameras if cam in listed]
        if not candidates:
            return set()
        # On a Redis Cluster the pipeline sends each camera's commands to its slot's node.
        pipe = self.client.pipeline(transaction=False)
        for cam in candidates:
            key = self.keys.video_viewers(cam)
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zcount(key, f"({now}", "+inf")
        replies = pipe.execute()
        return {cam for cam, count in zip(candidates, replies[1::2], strict=True) if int(count) > 0}

    def _acquire(self, cam: str) -> None:
        """Take `cam`'s lease if no encoder thread of this process runs it and it is free."""
        thread = self.encoders.get(cam)
        if thread is not None and thread.is_alive():
            return
        previous = self._running.pop(cam, None)
        if previous is not None and previous.failed:
            metrics.ERRORS.labels(camera=cam, chore="encoder").inc()
            self._retry_at[cam] = time.monotonic() + self._backoff[cam].next_delay()
        elif previous is not None:
            self._backoff[cam].reset()
        if time.monotonic() < self._retry_at.get(cam, 0.0):
            return
        lease = self.leases[cam]
        lease.token = None  # a finished encoder's lease is gone (released, lost or expired)
        if not lease.acquire():
            return
        try:
            encoder = CameraEncoder(self.client, self.keys, cam, lease, self.video, self._stop,
                                    lambda: self.watched_at.get(cam, 0.0))
        except BaseException:
            lease.release()  # so another process need not wait for the TTL
            raise
        self._running[cam] = encoder
        self.encoders[cam] = threads.start_thread(encoder.run, f"encoder-{cam}", cam=cam)
