"""H.264 MP4 clips through PyAV (FFmpeg's libx264; OpenCV's wheels cannot write H.264).

- `H264Writer`: a generic writer of BGR images, yuv420p, `+faststart` (playable in a browser's <video>
  while it downloads), timestamps from the frames' capture times in a 1/90000 s time base (variable
  frame rate survives exactly), one frame out per frame in. `framecast process` can use it as it uses
  cv2.VideoWriter (`write(image)`, `release()`).
- `FrameBuffer`: one camera's recent frames (JPEG + capture time), bounded by seconds and bytes, from
  which `write_clip` cuts [start - pre_roll, end + post_roll] once the post-roll has been received.
- `enforce_retention`: deletes the oldest event files first, by age and then by a total-size cap.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

TIME_BASE = Fraction(1, 90_000)  # MPEG's clock: fine enough for any capture timing


class ClipError(Exception):
    """A clip could not be written (no decodable frames, or the disk refused it)."""


class H264Writer:
    """Encodes BGR images into an MP4 at `path` (written as `path.part`, renamed on `close`).

    `write(image, ts)` takes the capture time in seconds; without it frames are 1/fps apart. Each
    frame lasts until the next one's time; the last lasts as long as the one before it (or 1/fps).
    Odd widths and heights lose their last column/row (yuv420p needs even sizes); images of another
    size than the first are resized to it. Not thread-safe: one thread writes one clip.
    """

    def __init__(self, path: str | os.PathLike, *, fps: float = 10.0, preset: str = "veryfast",
                 crf: int = 26, threads: int = 1):
        self.path = Path(path)
        self.fps = fps
        self.frames = 0
        self._part = self.path.with_name(self.path.name + ".part")
        self._container = av.open(str(self._part), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._options = {"preset": preset, "crf": str(crf)}
        self._threads = threads
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._held: tuple[np.ndarray, int] | None = None  # one frame waits for the next to know its duration
        self._first_ticks: int | None = None
        self._last_duration = round(1 / (fps * TIME_BASE))
        self._durations: dict[int, int] = {}  # pts -> duration of frames inside the encoder

    def _open_stream(self, width: int, height: int) -> None:
        width, height = width & ~1, height & ~1
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.codec_context.thread_count = self._threads
        stream.options = self._options
        self._stream, self._size = stream, (width, height)

    def write(self, image: np.ndarray, ts: float | None = None) -> None:
        if self._stream is None:
            self._open_stream(image.shape[1], image.shape[0])
        width, height = self._size
        if image.shape[1] & ~1 != width or image.shape[0] & ~1 != height:
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        image = image[:height, :width]
        if ts is None:
            ticks = round(self.frames / (self.fps * TIME_BASE))
        else:
            if self._first_ticks is None:
                self._first_ticks = round(ts / TIME_BASE)
            ticks = round(ts / TIME_BASE) - self._first_ticks
        if self._held is not None:
            held_image, held_ticks = self._held
            ticks = max(ticks, held_ticks + 1)  # timestamps must increase
            self._last_duration = ticks - held_ticks
            self._encode(held_image, held_ticks, ticks - held_ticks)
        self._held = (np.ascontiguousarray(image), ticks)
        self.frames += 1

    def _encode(self, image: np.ndarray, ticks: int, duration: int) -> None:
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts, frame.time_base, frame.duration = ticks, TIME_BASE, duration
        self._durations[ticks] = duration
        self._mux(self._stream.encode(frame))

    def _mux(self, packets) -> None:
        # Some presets leave a packet's duration to the muxer's guess (1/fps); the capture times decide.
        for packet in packets:
            if packet.pts is not None and packet.pts in self._durations:
                packet.duration = self._durations.pop(packet.pts)
            self._container.mux(packet)

    def close(self) -> Path:
        """Flush, finish the file and move it into place; returns the path. Needs at least one frame."""
        if self._held is None:
            self._container.close()
            self._part.unlink(missing_ok=True)
            raise ClipError(f"no frames to write to {self.path.name}")
        self._encode(*self._held, self._last_duration)
        self._held = None
        self._mux(self._stream.encode(None))
        self._container.close()
        os.replace(self._part, self.path)
        return self.path

    release = close  # the cv2.VideoWriter name

    def abort(self) -> None:
        """Give up on the file (an error half-way)."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 - the file is being thrown away anyway
            pass
        self._part.unlink(missing_ok=True)


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


def enforce_retention(root: str | os.PathLike, *, max_age: float, max_bytes: int,
                      now: float | None = None) -> list[Path]:
    """Delete event files under `root` (any depth) older than `max_age` seconds, then the oldest ones
    until the rest fit in `max_bytes`. Files of one event (`<id>.mp4`, `<id>.jpg`) go together, dated
    by their newest file. Returns what was deleted, oldest first."""
    now = time.time() if now is None else now
    groups: dict[Path, list[tuple[Path, os.stat_result]]] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            file = Path(dirpath) / name
            try:
                stat = file.stat()
            except FileNotFoundError:
                continue
            if name.endswith(".part") and now - stat.st_mtime < 3600:
                continue  # being written
            base = name[:-len(".part")] if name.endswith(".part") else name
            stem = file.with_name(base.rsplit(".", 1)[0])  # event ids hold dots: only the suffix goes
            groups.setdefault(stem, []).append((file, stat))
    ordered = sorted(groups.values(), key=lambda files: max(s.st_mtime for _, s in files))
    total = sum(s.st_size for files in ordered for _, s in files)
    deleted: list[Path] = []
    for files in ordered:
        newest = max(s.st_mtime for _, s in files)
        if now - newest <= max_age and total <= max_bytes:
            break
        for file, stat in files:
            try:
                file.unlink()
                deleted.append(file)
            except FileNotFoundError:
                pass
            total -= stat.st_size
    return deleted
