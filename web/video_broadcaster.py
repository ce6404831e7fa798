"""Fan-out of each camera's fMP4 fragments to its H.264 viewers: one Redis reader per camera per
web process, whatever the number of viewers (web.broadcaster's design, for video).

A VideoFeed runs one thread per watched camera: it XREADs the camera's `video` stream from its
newest entry on, decodes each fragment once, and puts it into every viewer's FragmentQueue (bounded:
a slow viewer skips to the next keyframe and costs only itself, web.fragment_queue). It keeps the
current generation's init segment (the `video_init` hash), read when it starts and again whenever a
fragment of another generation arrives; a viewer's response ends when the generation it started
with is over (web.live_video).

While a camera has viewers here, the feed announces them: ZADD `video_viewers(cam)` {process id:
now + viewer_ttl} (the set expiring after two TTLs) and ZADD GT `watched_cameras` {cam: the same},
at once for the first viewer and then every viewer_ttl/3, so the cluster's one encoder of the
camera encodes (no viewer anywhere, no encoding). The feed retires `linger` seconds
after its last viewer left (a player reconnecting after a generation change finds it still running)
and then ZREMs this process, so the encoder stops within its next check rather than a TTL later.
Redis failures are logged (once a minute while they last), counted and retried with backoff.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import redis

from common.connection import Backoff, ThrottledLog, describe_error
from common.keys import Keys
from common.logs import camera_logger
from common.threads import service_thread
from common.video import Fragment, Init, VideoRecordError, decode_fragment, decode_init
from common.video_config import VideoConfig
from web import video_metrics
from web.fragment_queue import FragmentQueue

READ_BLOCK_MS = 500  # short, so a stopped or retired feed ends promptly
READ_COUNT = 50
FAILURE_LOG_INTERVAL = 60.0


def process_id() -> str:
    """This web process's member in the cameras' viewer sets: host, pid and a random tail (a pid is
    reused across restarts and containers)."""
    return f"web:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class VideoFeed:
    """The H.264 viewers of one camera in this process, and the thread that feeds them."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, video: VideoConfig, linger: float,
                 member: str):
        self.client = client
        self.cam = cam
        self.video = video
        self.linger = linger
        self.member = member
        self.stream_key = keys.video(cam)
        self.init_key = keys.video_init(cam)
        self.viewers_key = keys.video_viewers(cam)
        self.watched_key = keys.watched_cameras
        self.counts = video_metrics.video_counts_for(cam)
        self.log = camera_logger("framecast.web.video", cam)
        self.stop = threading.Event()
        self._lock = threading.Condition()
        self._viewers: set[FragmentQueue] = set()
        self._last_viewer_left = time.monotonic()
        self._init: Init | None = None
        self._announce_now = True
        self._announced_at = 0.0
        self._failures = ThrottledLog(FAILURE_LOG_INTERVAL)
        self.fragments_read = 0
        self.retired = False
        self.thread = service_thread(self._run, f"video-feed-{cam}", cam=cam)

    # ---- viewers (their own threads) -------------------------------------------------------------------
    def add(self, queue: FragmentQueue) -> bool:
        """Add a viewer (it gets fragments from the next keyframe on); False when the feed retired."""
        with self._lock:
            if self.retired:
                return False
            if not self._viewers:
                self._announce_now = True
            self._viewers.add(queue)
            return True

    def remove(self, queue: FragmentQueue) -> None:
        with self._lock:
            self._viewers.discard(queue)
            if not self._viewers:
                self._last_viewer_left = time.monotonic()

    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    def init(self, timeout: float) -> Init | None:
        """The current generation's init segment, waiting up to `timeout` for one to appear."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._init is None and not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.5))
            return self._init

    def close(self) -> None:
        """Stop the reader and end every viewer's response."""
        self.stop.set()
        with self._lock:
            viewers = list(self._viewers)
            self._lock.notify_all()
        for queue in viewers:
            queue.close()

    # ---- the feed's thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        video_metrics.READERS.inc()
        backoff = Backoff(base=0.2, cap=5.0)
        last_id: bytes | str | None = None
        try:
            while not self.stop.is_set() and not self._retire_if_idle():
                try:
                    self._announce_if_due()
                    if last_id is None:
                        last_id = self._start()
                    reply = self.client.xread({self.stream_key: last_id}, count=READ_COUNT, block=READ_BLOCK_MS)
                    for _stream, entries in reply or []:
                        for entry_id, fields in entries:
                            last_id = entry_id
                            self._deliver(fields)
                    backoff.reset()
                except redis.RedisError as exc:
                    self._failed(exc)
                    last_id = None  # a restarted Redis holds other ids: start again from its newest
                    backoff.wait(self.stop)
        finally:
            video_metrics.READERS.dec()
            self._withdraw()
            with self._lock:
                self._lock.notify_all()

    def _start(self) -> bytes | str:
        """Read the init segment, and where the stream ends: viewers start with what comes next."""
        self._reload_init()
        newest = self.client.xrevrange(self.stream_key, count=1)
        return newest[0][0] if newest else "0-0"

    def _deliver(self, fields: dict) -> None:
        try:
            fragment = decode_fragment(fields)
        except VideoRecordError as exc:
            self.log.warning("undecodable video fragment skipped", extra={"error": str(exc)})
            return
        self.fragments_read += 1
        current = self._init
        if current is None or fragment.generation != current.generation:
            self._reload_init()
        self._fan_out(fragment)

    def _fan_out(self, fragment: Fragment) -> None:
        with self._lock:
            targets = list(self._viewers)
        for queue in targets:
            queue.put(fragment)

    def _reload_init(self) -> None:
        fields = self.client.hgetall(self.init_key)
        if not fields:
            return
        try:
            init = decode_init(fields)
        except VideoRecordError as exc:
            self.log.warning("undecodable video init ignored", extra={"error": str(exc)})
            return
        with self._lock:
            previous, self._init = self._init, init
            self._lock.notify_all()
        if previous is not None and previous.generation != init.generation:
            self.counts.generation_changed()
            self.log.info("video generation changed", extra={"generation": init.generation,
                                                            "previous": previous.generation,
                                                            "codec": init.codec, "size": f"{init.width}x{init.height}"})

    def _announce_if_due(self) -> None:
        """ZADD this process with a deadline viewer_ttl ahead, at once for a first viewer, then every
        third of the TTL, while someone watches here."""
        with self._lock:
            watched = bool(self._viewers)
            due = self._announce_now or time.monotonic() - self._announced_at >= self.video.viewer_ttl / 3
        if not watched or not due:
            return
        until = time.time() + self.video.viewer_ttl
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.viewers_key, {self.member: until})
        pipe.pexpire(self.viewers_key, int(self.video.viewer_ttl * 2000))  # a dead web process's set goes
        pipe.zadd(self.watched_key, {self.cam: until}, gt=True)  # encoders look here first
        pipe.execute()
        with self._lock:
            self._announce_now = False
            self._announced_at = time.monotonic()

    def _withdraw(self) -> None:
        """ZREM this process: nobody here watches any more (retired, or shutting down)."""
        try:
            self.client.zrem(self.viewers_key, self.member)
        except redis.RedisError as exc:  # the announcement lapses by its TTL anyway
            self._failed(exc)

    def _retire_if_idle(self) -> bool:
        """Retire when no viewer has been here for `linger` seconds; under the lock `add` takes, so a
        viewer never joins a feed that is going away (the broadcaster starts a new one instead)."""
        with self._lock:
            if self._viewers or time.monotonic() - self._last_viewer_left < self.linger:
                return False
            self.retired = True
            return True

    def _failed(self, exc: Exception) -> None:
        self.counts.read_failed()
        if self._failures.due(self.stream_key):
            self.log.warning("video feed paused: Redis failed", extra={"error": describe_error(exc)})


class VideoBroadcaster:
    """The video feeds of one web process: the first viewer of a camera starts its feed."""

    def __init__(self, client: redis.Redis, keys: Keys, video: VideoConfig, linger: float):
        self.client = client
        self.keys = keys
        self.video = video
        self.linger = linger
        self.member = process_id()
        self._lock = threading.Lock()
        self._feeds: dict[str, VideoFeed] = {}
        self._closed = False
        self.readers_started = 0

    def subscribe(self, cam: str) -> tuple[FragmentQueue, VideoFeed]:
        """A new viewer's queue and the feed that fills it (started when none is running)."""
        counts = video_metrics.video_counts_for(cam)
        queue = FragmentQueue(cam, self.video.viewer_queue, counts)
        counts.viewer_joined()  # unsubscribe, which every viewer reaches, counts the leaving
        with self._lock:
            feed = self._feeds.get(cam)
            if self._closed:
                queue.close()
            elif feed is None or not feed.add(queue):
                feed = VideoFeed(self.client, self.keys, cam, self.video, self.linger, self.member)
                self._feeds[cam] = feed
                self.readers_started += 1
                feed.add(queue)
                feed.thread.start()
        if feed is None:  # closed before any feed of the camera ran
            feed = VideoFeed(self.client, self.keys, cam, self.video, self.linger, self.member)
            feed.stop.set()
        return queue, feed

    def unsubscribe(self, queue: FragmentQueue, feed: VideoFeed) -> None:
        """Invoked once per viewer, however its response ended."""
        queue.close()
        feed.remove(queue)
        queue.counts.viewer_left()

    def close(self) -> None:
        """Stop every feed and end every viewer's response (process shutdown, tests)."""
        with self._lock:
            self._closed = True
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for feed in feeds:
            feed.close()
        for feed in feeds:
            feed.thread.join(timeout=5)

    def feeds(self) -> dict[str, VideoFeed]:
        """The running feeds (retired ones are forgotten here)."""
        with self._lock:
            self._feeds = {cam: f for cam, f in self._feeds.items() if not f.retired}
            return dict(self._feeds)

    def viewer_counts(self) -> dict[str, int]:
        return {cam: feed.viewers() for cam, feed in self.feeds().items()}
