"""Video sources behind one interface: files, webcams, network streams and the test pattern.

Paced sources (files, the pattern) are read on demand and the publisher sets the rhythm; live
sources (webcams, network streams) deliver frames at their own rate and are read continuously by a
capture thread. Every error is a SourceError whose message never contains credentials.

A source whose stream is Motion-JPEG (MJPEG files, HTTP MJPEG cameras) is read without decoding:
`read` returns the camera's own JPEG as a `SourceJpeg`, which the publisher forwards as it is when no
resize is needed (`jpeg_passthrough`), so such a camera costs no decode and no encode here.
An http(s) MJPEG camera is read by framecast's own multipart reader (producer.multipart), which
holds no part larger than a frame can be; other streams go through FFmpeg.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from common import assets, jpeg
from common.config import CameraConfig
from common.errors import AssetError, SourceError
from common.redaction import redact_url
from producer.multipart import MjpegStream, open_mjpeg
from producer.pattern import render_pattern

# FFmpeg and OpenCV may print a stream URL (with credentials) in their own warnings: keep them quiet.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
NETWORK_TIMEOUT_MS = 5000
_MJPEG = int.from_bytes(b"MJPG", "little")
# An HTTP MJPEG camera's frame is decoded here only when passthrough is off; a header claiming more
# pixels than this (the workers' default max_frame_pixels, 8K) is refused before decoding.
MAX_DECODE_PIXELS = 33_177_600


@dataclass(frozen=True, slots=True)
class SourceJpeg:
    """A frame as the source delivered it: one JPEG, not decoded."""

    data: bytes


Image = np.ndarray | SourceJpeg


class Source(ABC):
    """One opened video source. `read` returns a BGR frame (or the source's own JPEG), or None at the
    end of a file."""

    live: bool = False
    fps: float | None = None
    raw_jpeg: bool = False  # whether reads return the stream's own JPEGs (known once opened)

    @abstractmethod
    def open(self) -> None:
        """Open (or re-open) the source; raise SourceError if it cannot be read."""

    @abstractmethod
    def read(self) -> Image | None:
        """The next frame; None at the end of a non-looping file; SourceError on failure."""

    def skip(self) -> bool:
        """Advance one frame without returning it (cheaper than read where the backend allows)."""
        return self.read() is not None

    def close(self) -> None:  # noqa: B027 - sources without resources need no close
        """Release the source; safe to call twice."""

    @property
    def description(self) -> str:
        return type(self).__name__


class _CaptureSource(Source):
    """A source read through cv2.VideoCapture; an MJPEG stream behind FFmpeg is read as raw JPEGs
    when `passthrough` is set."""

    def __init__(self, passthrough: bool = False):
        self._cap: cv2.VideoCapture | None = None
        self.passthrough = passthrough

    def _open_capture(self) -> cv2.VideoCapture:
        raise NotImplementedError

    def open(self) -> None:
        self.close()
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.description}")
        self._cap = cap
        native = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(native) if native and 0 < native < 1000 else None
        self.raw_jpeg = self.passthrough and self._read_raw_jpeg(cap)

    @staticmethod
    def _read_raw_jpeg(cap: cv2.VideoCapture) -> bool:
        """Switch an MJPEG capture behind FFmpeg to raw packets (each one a JPEG); whether it took."""
        if cap.getBackendName() != "FFMPEG" or int(cap.get(cv2.CAP_PROP_FOURCC)) != _MJPEG:
            return False
        return bool(cap.set(cv2.CAP_PROP_FORMAT, -1))

    def _grab_failed(self) -> Image | None:
        raise SourceError(f"{self.description} stopped delivering frames")

    def _frame(self, frame: np.ndarray) -> Image:
        return SourceJpeg(frame.tobytes()) if self.raw_jpeg else frame

    def read(self) -> Image | None:
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        ok, frame = self._cap.read()
        if not ok or frame is None:
            return self._grab_failed()
        return self._frame(frame)

    def skip(self) -> bool:
        if self._cap is None:
            raise SourceError(f"{self.description} is not open")
        return bool(self._cap.grab())

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FileSource(_CaptureSource):
    """A video file, paced by the publisher; starts again at the end when `loop` is set."""

    def __init__(self, path: str | Path, loop: bool = True, passthrough: bool = False):
        super().__init__(passthrough)
        self.path = Path(path)
        self.loop = loop
        self.rewound = 0

    @property
    def description(self) -> str:
        return f"video file {self.path.name}"

    def _open_capture(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        return cv2.VideoCapture(str(self.path))

    def open(self) -> None:
        super().open()
        ok, _ = self._cap.read()  # a file OpenCV opens but cannot decode is unreadable, not empty
        if not ok:
            self.close()
            raise SourceError(f"{self.description} has no readable frames")
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def _grab_failed(self) -> Image | None:
        if not self.loop:
            return None
        self.rewound += 1
        super().open()  # re-opening is more reliable than seeking across codecs
        ok, frame = self._cap.read()
        if not ok:
            raise SourceError(f"{self.description} became unreadable")
        return self._frame(frame)

    def skip(self) -> bool:
        if super().skip():
            return True
        return self._grab_failed() is not None


class DeviceSource(_CaptureSource):
    """A local camera by device index (/dev/videoN)."""

    live = True

    def __init__(self, index: int):
        super().__init__()  # V4L2, not FFmpeg: frames arrive decoded
        self.index = index

    @property
    def description(self) -> str:
        return f"camera device {self.index}"

    def _open_capture(self) -> cv2.VideoCapture:
        return cv2.VideoCapture(self.index)


class UrlSource(_CaptureSource):
    """A network stream: an http(s) multipart MJPEG camera through producer.multipart, anything
    else (RTSP, HLS, other HTTP bodies) through OpenCV's FFmpeg backend."""

    live = True

    def __init__(self, url: str, passthrough: bool = False):
        super().__init__(passthrough)
        self._url = url
        self._mjpeg: MjpegStream | None = None

    def open(self) -> None:
        self.close()
        if self._url.lower().startswith(("http://", "https://")):
            stream = open_mjpeg(self._url, NETWORK_TIMEOUT_MS / 1000, self.description)
            if stream is not None:
                self._mjpeg, self.fps, self.raw_jpeg = stream, None, self.passthrough
                return
        super().open()

    def read(self) -> Image | None:
        """The next frame; also producer.multipart.OversizedPart, or JpegError (passthrough off), for
        one part the camera sent that cannot be a frame: the connection stays usable."""
        stream = self._mjpeg
        if stream is None:
            return super().read()
        data = stream.read()
        return SourceJpeg(data) if self.raw_jpeg else jpeg.decode(data, max_pixels=MAX_DECODE_PIXELS)

    def skip(self) -> bool:
        stream = self._mjpeg
        if stream is None:
            return super().skip()
        stream.read()
        return True

    def close(self) -> None:
        stream, self._mjpeg = self._mjpeg, None
        if stream is not None:
            stream.close()
        super().close()

    @property
    def description(self) -> str:
        return f"stream {redact_url(self._url)}"

    def _open_capture(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                  NETWORK_TIMEOUT_MS]
        try:
            return cv2.VideoCapture(self._url, cv2.CAP_FFMPEG, params)
        except cv2.error:
            raise SourceError(f"cannot open {self.description}") from None


class PatternSource(Source):
    """The synthetic test pattern, paced by the publisher at the camera's fps."""

    def __init__(self, width: int = 640, height: int = 360, fps: float = 10.0):
        self.width, self.height, self.fps = width, height, fps
        self._index = 0

    @property
    def description(self) -> str:
        return "test pattern"

    def open(self) -> None:
        self._index = 0

    def read(self) -> np.ndarray:
        frame = render_pattern(self._index, self.width, self.height, self.fps or 10.0)
        self._index += 1
        return frame

    def skip(self) -> bool:
        self._index += 1
        return True


def open_source(camera: CameraConfig) -> Source:
    """The (unopened) source a camera's config names. Raises SourceError for an unusable spec."""
    kind = camera.source_kind
    if kind == "device":
        return DeviceSource(int(camera.source))
    passthrough = camera.jpeg_passthrough
    if kind == "url":
        return UrlSource(str(camera.source), passthrough)
    if kind == "pattern":
        width = min(camera.max_width, 1920)
        return PatternSource(width, width * 9 // 16, camera.fps)
    if kind == "sample":
        try:
            return FileSource(assets.sample_path(), loop=camera.loop, passthrough=passthrough)
        except AssetError as exc:
            raise SourceError(str(exc)) from None
    return FileSource(str(camera.source), loop=camera.loop, passthrough=passthrough)
