"""Test support of the encoder tests: annotated frames written into a real Redis the way the worker
and the tracker write them, a viewer announced the way the web tier announces one, and the video
records read back and decoded with PyAV."""

from __future__ import annotations

import io
import threading
import time

import av
import cv2
import numpy as np
import redis

from common import envelope, jpeg
from common.envelope import Frame
from common.keys import FRAME_FIELD, Keys
from common.video import Fragment, Init, decode_fragment, decode_init

KEYS = Keys("fc")


def picture(i: int, width: int = 320, height: int = 240) -> np.ndarray:
    image = np.full((height, width, 3), 90, np.uint8)
    x = (i * 9) % (width - 60)
    cv2.rectangle(image, (x, 60), (x + 50, 140), (0, 255, 0), 2)
    cv2.putText(image, str(i), (10, height - 20), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return image


def add_frame(client: redis.Redis, cam: str, seq: int, *, ts: int | None = None, width: int = 320,
              height: int = 240, data: bytes | None = None) -> bytes:
    """XADD one annotated frame; its JPEG."""
    data = data if data is not None else jpeg.encode(picture(seq, width, height), 85)
    frame = Frame(cam, 1, seq, ts or time.time_ns(), width, height, data, detections=[])
    client.xadd(KEYS.annotated(cam), {FRAME_FIELD: envelope.encode(frame)}, maxlen=500, approximate=True)
    return data


class Feeder:
    """A thread writing a camera's annotated frames at `fps`, like a live camera's tracker."""

    def __init__(self, client: redis.Redis, cam: str, fps: float = 10.0, **frame):
        self.client, self.cam, self.fps, self.frame = client, cam, fps, frame
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            add_frame(self.client, self.cam, self.sent, **self.frame)
            self.sent += 1
            self._stop.wait(1 / self.fps)


def announce(client: redis.Redis, cam: str, viewer: str = "web-1", seconds: float = 30.0) -> None:
    """What a web process streaming the camera's H.264 view writes: its id, expiring in `seconds`."""
    until = time.time() + seconds
    client.zadd(KEYS.video_viewers(cam), {viewer: until})
    client.zadd(KEYS.watched_cameras, {cam: until}, gt=True)


def video(client: redis.Redis, cam: str) -> tuple[Init | None, list[Fragment]]:
    raw = client.hgetall(KEYS.video_init(cam))
    init = decode_init(raw) if raw else None
    return init, [decode_fragment(fields) for _, fields in client.xrange(KEYS.video(cam))]


def playable(init: Init, fragments: list[Fragment]) -> list[Fragment]:
    """The fragments of `init`'s generation from its first keyframe on: what a player appends."""
    own = [f for f in fragments if f.generation == init.generation]
    first = next(i for i, f in enumerate(own) if f.keyframe)
    return own[first:]


def decode(init: Init, fragments: list[Fragment]) -> list[av.VideoFrame]:
    container = av.open(io.BytesIO(init.data + b"".join(f.data for f in fragments)), format="mp4")
    try:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        return list(container.decode(stream))
    finally:
        container.close()


def wait_for(condition, timeout: float, what: str, diagnostics=lambda: ""):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s: {what}\n{diagnostics()}"
        time.sleep(0.05)
    return value
