"""Video files written through PyAV (FFmpeg's libx264; OpenCV's wheels cannot write H.264).

`H264Writer` is a generic writer of BGR images into H.264 MP4 (yuv420p, `+faststart`: playable in
a browser's <video> and on phones while it downloads), used as cv2.VideoWriter is (`write(image)`,
`release()`): event clips (`tracker/clips.py`) and `framecast process` both write through it.
"""

from __future__ import annotations

import os
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
        # OpenCV's BGR -> I420 is the same BT.601 limited-range conversion as FFmpeg's swscale, at a
        # third of its cost (0.9 vs 3.0 ms at 768x576), and it releases the GIL.
        self._held = (cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420), ticks)
        self.frames += 1

    def _encode(self, i420: np.ndarray, ticks: int, duration: int) -> None:
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
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
