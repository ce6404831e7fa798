"""One camera's live video encoding while this process holds the camera's encoder lease.

Runs on its own thread (one per encoded camera, started by `encoder.service.EncoderService`), so a
slow camera costs only itself. The loop:

- reads the camera's annotated stream in order from its live end (the newest frame first, so a new
  viewer's first keyframe is the picture of now, then XREAD BLOCK from there); when a read brings
  more than BEHIND frames the encoder has fallen behind and skips to the newest of them (counted:
  `framecast_video_frames_skipped_total{reason="behind"}`): a live view never lags to catch up;
- decodes the JPEG straight to an I420 picture (encoder/i420.py: libjpeg-turbo to the JPEG's own
  Y, Cb, Cr planes, no BGR in between), or reuses the last picture when the bytes are those of the
  previous frame (the motion gating re-sends the same drawing while nothing moves), and encodes it
  (encoder/fmp4.py);
- writes the generation's Init into the `video_init` hash and every fragment into the `video` stream
  (XADD MAXLEN ~ video.fragments_maxlen) in one Lua script that first checks the lease is still ours:
  a deposed owner (it hung past its TTL) cannot write a single fragment, and finds out by the refusal;
- renews the lease every ttl/3 and stops (releasing it) when nobody has watched for video.viewer_ttl;
- starts a new generation when the frame size changes: a new fencing token (so generations only
  increase across processes and sizes), a new encoder, a new init segment, a keyframe.

The generation is the lease's fencing token: another process's take-over, or this process's next
ownership, always writes a higher one, and the web tier switches init segments on it.
Both video keys expire VIDEO_KEEP seconds after the last write, so an unwatched camera's last
generation does not stay in Redis memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import redis

from common import envelope
from common.connection import CONNECTION_ERRORS, ThrottledLog, describe_error
from common.errors import FramecastError
from common.keys import FRAME_FIELD, Keys
from common.logs import camera_logger
from common.text import as_str
from common.video import Fragment, Init
from common.video_config import VideoConfig
from encoder import i420, metrics
from encoder.fmp4 import EncodeError, Fragmenter, SizeChanged
from tracker.lease import Lease

BATCH = 32  # entries read at once
BEHIND = 3  # more frames than this in one read: skip to the newest
VIDEO_KEEP = 60.0  # seconds the video keys outlive the last write

# KEYS: lease, video stream, video_init hash. ARGV: lease value, maxlen, keep ms, init field count
# (0: none), then the init's fields and values, then the fragment's. 1 written, 0 refused.
_FENCED_WRITE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local n = tonumber(ARGV[4])
local at = 5
if n > 0 then
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], unpack(ARGV, at, at + 2 * n - 1))
  at = at + 2 * n
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, at))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[3])
return 1
"""
# A new generation of the same owner: a new fencing token, taken only while the lease is ours.
# KEYS: lease, its token counter. ARGV: lease value, owner, ttl ms. The new token, or 0.
_NEW_TOKEN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[2] .. ':' .. token, 'PX', ARGV[3])
return token
"""


class FencedVideo:
    """The camera's video keys, written only while `lease` is held. Used by one encoder thread."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, lease: Lease, video: VideoConfig):
        self.client, self.lease, self.video = client, lease, video
        self.stream, self.init_key = keys.video(cam), keys.video_init(cam)
        self._write = client.register_script(_FENCED_WRITE)
        self._new_token = client.register_script(_NEW_TOKEN)

    def write(self, fragment: Fragment, init: Init | None = None) -> bool:
        """XADD the fragment (and first replace the init record); False, and the lease is no longer
        held, when the lease has moved on: nothing was written."""
        if not self.lease.held:
            return False
        args: list = [self.lease.value, self.video.fragments_maxlen, int(VIDEO_KEEP * 1000)]
        init_fields = init.fields() if init is not None else {}
        args.append(len(init_fields))
        for fields in (init_fields, fragment.fields()):
            for name, value in fields.items():
                args += [name, value]
        if int(self._write(keys=[self.lease.key, self.stream, self.init_key], args=args)):
            return True
        self.lease.token = None
        return False

    def new_generation(self) -> int | None:
        """A new fencing token for the same ownership (a new frame size); None when the lease is lost."""
        if not self.lease.held:
            return None
        token = int(self._new_token(keys=[self.lease.key, self.lease.key + ":token"],
                                    args=[self.lease.value, self.lease.owner, self.lease.ttl_ms]))
        self.lease.token = token or None
        return self.lease.token


class CameraEncoder:
    """One camera's encoding while `lease` is held. `run` is the body of the camera's encoder thread;
    `last_watched()` (monotonic seconds) is kept up to date by the service thread."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, lease: Lease, video: VideoConfig,
                 stop: threading.Event, last_watched: Callable[[], float], threads: int = 1):
        self.client, self.cam, self.lease, self.video, self.stop = client, cam, lease, video, stop
        self.last_watched = last_watched
        self.threads = threads
        self.log = camera_logger("framecast.encoder", cam)
        self.annotated = keys.annotated(cam)
        self.out = FencedVideo(client, keys, cam, lease, video)
        self.block_ms = max(10, min(200, int(video.lease_ttl * 1000 / 6)))
        self.fragmenter: Fragmenter | None = None
        self.last_id: str | None = None
        self.encoded = 0
        self.failed = False  # ended by an unexpected error: the service backs off before retaking
        self._jpeg: bytes | None = None
        self._image: np.ndarray | None = None  # the last frame's I420 picture
        self._renew_at = 0.0
        self._throttled = ThrottledLog(60.0)

    # ---- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        """Encode until stopped, unwatched for viewer_ttl (then release the lease), or the lease is
        lost (then stop at once: another process encodes now)."""
        self.log.info("video encoder started", extra={"lease": self.lease.value})
        reason = "stopped"
        try:
            while self.lease.held:
                if self.stop.is_set():
                    break
                if time.monotonic() - self.last_watched() > self.video.viewer_ttl:
                    reason = "unwatched"
                    break
                self.step()
            if self.lease.held:
                self.lease.release()
                self.log.info("video encoder stopped", extra={"reason": reason, "encoded": self.encoded})
            else:
                self.log.warning("video lease lost; another process encodes the camera now",
                                 extra={"encoded": self.encoded})
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError, redis.exceptions.RedisClusterException) as exc:
            # The lease runs out on its own; this process (or another) takes the camera again later.
            self.log.warning("video encoder stopped by a redis error", extra={"error": describe_error(exc)})
            self.lease.token = None
        except Exception as exc:  # noqa: BLE001 - per ownership: logged, counted by the service, retaken
            self.failed = True
            self.log.error("video encoder failed; giving the camera up to be taken again",
                           extra={"error": describe_error(exc)}, exc_info=True)
            try:
                self.lease.release()
            except (*CONNECTION_ERRORS, redis.exceptions.ResponseError):
                self.lease.token = None
        finally:
            if self.fragmenter is not None:
                self.fragmenter.close()
                self.fragmenter = None

    def step(self) -> None:
        """Read what arrived (the newest frame on the first step), encode it, renew the lease."""
        if self.last_id is None:
            entries = self.client.xrevrange(self.annotated, count=1)
            self.last_id = as_str(entries[0][0]) if entries else "$"
        else:
            reply = self.client.xread({self.annotated: self.last_id}, count=BATCH, block=self.block_ms)
            entries = [e for _, stream_entries in (reply.items() if isinstance(reply, dict) else (reply or []))
                       for e in stream_entries]
            if entries:
                self.last_id = as_str(entries[-1][0])
            if len(entries) > BEHIND:
                metrics.FRAMES_SKIPPED.labels(camera=self.cam, reason="behind").inc(len(entries) - 1)
                entries = entries[-1:]
        for entry_id, fields in entries:
            self._renew()
            if not self.lease.held:
                return
            self._take(as_str(entry_id), fields)
        self._renew()

    def _renew(self) -> None:
        now = time.monotonic()
        if now >= self._renew_at and self.lease.held:
            self.lease.renew()
            self._renew_at = now + self.video.lease_ttl / 3

    # ---- one frame ------------------------------------------------------------------------------
    def _take(self, entry_id: str, fields: dict) -> None:
        started = time.thread_time()
        try:
            frame = envelope.decode(fields.get(FRAME_FIELD) or b"")
            if frame.jpeg != self._jpeg or self._image is None:
                self._image = i420.from_jpeg(frame.jpeg)
                self._jpeg = frame.jpeg
        except FramecastError as exc:
            metrics.FRAMES_SKIPPED.labels(camera=self.cam, reason="bad").inc()
            if self._throttled.due(("bad", type(exc))):
                self.log.warning("bad annotated frame skipped", extra={"entry": entry_id, "error": str(exc)})
            return
        seq = f"{frame.run}:{frame.seq}".encode()
        try:
            init, fragment = self._encode(self._image, frame.ts, seq)
        except EncodeError as exc:
            metrics.ERRORS.labels(camera=self.cam, chore="encode").inc()
            if self._throttled.due(("encode", str(exc))):
                self.log.warning("frame not encoded", extra={"entry": entry_id, "error": str(exc)})
            return
        if fragment is None:
            if not self.lease.held:
                return  # lost while starting a new generation
            metrics.FRAMES_SKIPPED.labels(camera=self.cam, reason="stale").inc()
            return
        metrics.ENCODE_SECONDS.labels(camera=self.cam).observe(time.thread_time() - started)
        if not self.out.write(fragment, init):
            metrics.REFUSED.labels(camera=self.cam).inc()
            return
        self.encoded += 1
        metrics.FRAMES_ENCODED.labels(camera=self.cam).inc()
        metrics.BYTES_OUT.labels(camera=self.cam).inc(len(fragment.data) + (len(init.data) if init else 0))

    def _encode(self, picture: np.ndarray, ts: int, seq: bytes) -> tuple[Init | None, Fragment | None]:
        if self.fragmenter is not None:
            try:
                return self.fragmenter.add_i420(picture, ts, seq)
            except SizeChanged as exc:
                self.fragmenter.close()
                self.fragmenter = None
                generation = self.out.new_generation()
                self.log.info("frame size changed: new video generation",
                              extra={"change": str(exc), "generation": generation})
                if generation is None:
                    return None, None
        self.fragmenter = Fragmenter(self.lease.token, keyframe_interval=self.video.keyframe_interval,
                                     crf=self.video.crf, preset=self.video.preset, threads=self.threads)
        metrics.GENERATIONS.labels(camera=self.cam).inc()
        return self.fragmenter.add_i420(picture, ts, seq)
