"""H.264 MP4 clips through PyAV (FFmpeg's libx264; OpenCV's wheels cannot write H.264).

- `H264Writer` (now in `worker/detect/media.py`): a generic writer of BGR images, yuv420p, `+faststart`
  (playable in a browser's <video> while it downloads), timestamps from the frames' capture times in a 1/90000 s time base (variable
  frame rate survives exactly), one frame out per frame in. `framecast process` can use it as it uses
  cv2.VideoWriter (`write(image)`, `release()`).
- `FrameBuffer`: one camera's recent frames (JPEG + capture time), bounded by seconds and bytes, from
  which `write_clip` cuts [start - pre_roll, end + post_roll] once the post-roll has been received.
(Retention, which deletes the oldest event files, is EventFiles.enforce_retention in recordings.py.)
"""

from __future__ import annotations

import bisect
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from worker.detect.media import TIME_BASE, ClipError, H264Writer  # noqa: F401 - the clip writer, re-exported


class FrameBuffer:
    """A camera's most recent frames as (capture ts seconds, JPEG bytes), oldest first.

    Bounded by `max_seconds` of capture time and `max_bytes` of JPEG data, whichever is hit first.
    Owned by the tracking loop's thread.
    """

    def __init__(self, max_seconds: float, max_bytes: int = 256 << 20):
        self.max_seconds = max_seconds
        self.max_bytes = max_bytes
        self.bytes = 0
        self._frames: deque[tuple[float, bytes]] = deque()

    def add(self, ts: float, jpeg: bytes) -> None:
        if self._frames and ts <= self._frames[-1][0]:
            return  # out of order or repeated: the clip's timeline only moves forward
        self._frames.append((ts, jpeg))
        self.bytes += len(jpeg)
        while self._frames and (ts - self._frames[0][0] > self.max_seconds or self.bytes > self.max_bytes):
            self.bytes -= len(self._frames.popleft()[1])

    def between(self, start: float, end: float) -> list[tuple[float, bytes]]:
        times = [f[0] for f in self._frames]
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        return list(self._frames)[lo:hi]

    @property
    def newest(self) -> float | None:
        return self._frames[-1][0] if self._frames else None

    def __len__(self) -> int:
        return len(self._frames)


@dataclass(frozen=True)
class ClipInfo:
    path: Path
    frames: int
    duration: float  # seconds, as the MP4 will report it
    bytes: int
    encode_ms: float


def clip_window(start: float, end: float, pre_roll: float, post_roll: float, max_seconds: float) -> tuple[float, float]:
    """The capture-time span of an event's clip; a long event keeps its beginning."""
    first = start - pre_roll
    return first, min(end + post_roll, first + max_seconds)


def write_clip(path: str | os.PathLike, frames: Sequence[tuple[float, bytes]], *, fps: float = 10.0,
               preset: str = "veryfast", crf: int = 26) -> ClipInfo:
    """Encode (ts, JPEG) frames in order into an MP4; undecodable JPEGs are left out."""
    started = time.perf_counter()
    writer = H264Writer(path, fps=fps, preset=preset, crf=crf)
    written: list[float] = []
    try:
        for ts, jpeg in frames:
            image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                continue
            writer.write(image, ts)
            written.append(ts)
        out = writer.close()
    except Exception:
        writer.abort()
        raise
    last = (written[-1] - written[-2]) if len(written) > 1 else 1.0 / fps
    return ClipInfo(out, len(written), written[-1] - written[0] + last, out.stat().st_size,
                    (time.perf_counter() - started) * 1000)
