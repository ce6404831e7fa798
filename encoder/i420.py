"""I420 pictures for the H.264 encoder: limited-range BT.601 Y, U, V planes of even size in one array
of shape (height * 3 / 2, width), the layout `av.VideoFrame.from_ndarray(..., format="yuv420p")` takes.

`from_jpeg` is the encoder's path. A JPEG already holds Y, Cb and Cr planes (4:2:0 from our JPEG
encoding): libjpeg-turbo's TurboJPEG API decodes it straight to them (`tjDecompressToYUVPlanes`: no
chroma upsampling, no YCbCr -> BGR), and one scale-and-offset pass per plane maps JPEG's full range
to the limited range the stream signals (Y 16-235, Cb/Cr 16-240). Decoding to BGR and converting
back to I420 did both colour conversions and a chroma resampling for nothing: on the sample clip's
768x576 frames this path costs about 1 ms of CPU a frame less (bench/live_video.py).
`from_bgr` (OpenCV's BGR -> I420, the same limited-range BT.601) is for pictures that only exist as
BGR, and the fallback for JPEGs that are not 4:2:0 YCbCr (greyscale, 4:4:4...) or when the
TurboJPEG library (Debian's libturbojpeg0, installed by deploy/system-deps.sh and the image) is
missing: then `FAST` is False and the encoder logs it once at start.

Through ctypes rather than a PyPI binding: simplejpeg has no planar decode, PyTurboJPEG 2 needs
TurboJPEG 3 (Debian ships 2.1) and is itself a ctypes wrapper of the same library; the few calls
used here are the TurboJPEG 2 API, which TurboJPEG 3 keeps. A TurboJPEG handle is not thread-safe:
each thread (one per encoded camera) has its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import cv2
import numpy as np

from common import jpeg

_TJSAMP_420 = 2
_TJCS_YCbCr = 1
_TJERR_WARNING = 0  # tjGetErrorCode: the picture was decoded, the data had a recoverable flaw

# JPEG (JFIF) is full range; H.264 here is limited range, as OpenCV's BGR -> I420 writes it:
# limited = full * scale + offset, rounded (Y 0-255 -> 16-235, Cb/Cr 0-255 -> 16-240 around 128).
LUMA = (219 / 255, 16.0)
CHROMA = (224 / 255, 128 * (1 - 224 / 255))


def _load() -> ctypes.CDLL | None:
    for name in ("libturbojpeg.so.0", ctypes.util.find_library("turbojpeg")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        int_p, handle = ctypes.POINTER(ctypes.c_int), ctypes.c_void_p
        lib.tjInitDecompress.restype = handle
        lib.tjInitDecompress.argtypes = []
        lib.tjDestroy.argtypes = [handle]
        lib.tjDecompressHeader3.argtypes = [handle, ctypes.c_char_p, ctypes.c_ulong, int_p, int_p, int_p, int_p]
        lib.tjDecompressToYUVPlanes.argtypes = [handle, ctypes.c_char_p, ctypes.c_ulong,
                                                ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, int_p,
                                                ctypes.c_int, ctypes.c_int]
        lib.tjPlaneWidth.argtypes = lib.tjPlaneHeight.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.tjGetErrorStr2.restype = ctypes.c_char_p
        lib.tjGetErrorStr2.argtypes = [handle]
        lib.tjGetErrorCode.argtypes = [handle]
        return lib
    return None


_lib = _load()
FAST = _lib is not None  # JPEGs decode straight to planes; else through BGR
_local = threading.local()


class _Decompressor:
    """One thread's TurboJPEG handle, destroyed with the thread's locals."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib, self.handle = lib, lib.tjInitDecompress()
        if not self.handle:
            raise MemoryError("tjInitDecompress failed")

    def __del__(self):
        if self.handle:
            self.lib.tjDestroy(self.handle)
            self.handle = None

    def error(self) -> str:
        return (self.lib.tjGetErrorStr2(self.handle) or b"").decode(errors="replace")

    def decode(self, data: bytes) -> np.ndarray | None:
        """The I420 picture of a 4:2:0 YCbCr JPEG (see `from_jpeg`), or None for any other JPEG.
        Raises JpegError for what TurboJPEG cannot decode."""
        width, height, subsampling, colorspace = (ctypes.c_int() for _ in range(4))
        if self.lib.tjDecompressHeader3(self.handle, data, len(data), ctypes.byref(width), ctypes.byref(height),
                                        ctypes.byref(subsampling), ctypes.byref(colorspace)) != 0:
            raise jpeg.JpegError(f"undecodable JPEG ({len(data)} bytes): {self.error()}")
        if subsampling.value != _TJSAMP_420 or colorspace.value != _TJCS_YCbCr:
            return None
        w, h = width.value, height.value
        even_w, even_h = w & ~1, h & ~1
        if even_w == 0 or even_h == 0:
            raise jpeg.JpegError(f"JPEG of {w}x{h} has no even-sized picture")
        picture = np.empty((even_h * 3 // 2, even_w), np.uint8)
        y, chroma = picture[:even_h], picture[even_h:].reshape(2, even_h // 2, even_w // 2)  # U then V
        targets = (y, chroma[0], chroma[1])
        # The plane sizes TurboJPEG writes (padded to its subsampling: odd sizes round up), asked of it
        # rather than assumed: a plane smaller than that would be written past its end.
        shapes = [(self.lib.tjPlaneHeight(i, h, _TJSAMP_420), self.lib.tjPlaneWidth(i, w, _TJSAMP_420))
                  for i in range(3)]
        if shapes == [t.shape for t in targets]:  # straight into the picture's planes
            planes = targets
        else:  # decode aside, keep the even part
            planes = tuple(np.empty(shape, np.uint8) for shape in shapes)
        pointers = (ctypes.c_void_p * 3)(*(plane.ctypes.data for plane in planes))
        if self.lib.tjDecompressToYUVPlanes(self.handle, data, len(data), pointers, w, None, h, 0) != 0 \
                and self.lib.tjGetErrorCode(self.handle) != _TJERR_WARNING:
            raise jpeg.JpegError(f"undecodable JPEG ({len(data)} bytes): {self.error()}")
        for plane, target, (scale, offset) in zip(planes, targets, (LUMA, CHROMA, CHROMA), strict=True):
            # convertScaleAbs, not a LUT: one pass on this thread (cv2.LUT wakes OpenCV's pool each call)
            cv2.convertScaleAbs(plane[:target.shape[0], :target.shape[1]], target, scale, offset)
        return picture


def _decompressor() -> _Decompressor:
    found = getattr(_local, "decompressor", None)
    if found is None:
        found = _local.decompressor = _Decompressor(_lib)
    return found


def size(picture: np.ndarray) -> tuple[int, int]:
    """(width, height) of an I420 picture."""
    return picture.shape[1], picture.shape[0] * 2 // 3


def from_bgr(image: np.ndarray) -> np.ndarray:
    """The I420 picture of a BGR image, less its last row and column when they are odd."""
    height, width = image.shape[0] & ~1, image.shape[1] & ~1
    return cv2.cvtColor(np.ascontiguousarray(image[:height, :width]), cv2.COLOR_BGR2YUV_I420)


def from_jpeg(data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
    """The I420 picture of JPEG bytes (even size: an odd last row and column are dropped), its header
    checked first (common/jpeg.py `check_size`). Raises JpegError when it cannot be decoded."""
    if not data:
        raise jpeg.JpegError("undecodable JPEG (0 bytes)")
    jpeg.check_size(data, max_pixels=max_pixels)
    picture = _decompressor().decode(data) if FAST else None
    if picture is None:
        return from_bgr(jpeg.decode(data, max_pixels=max_pixels))
    return picture
