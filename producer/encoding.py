"""Resize and JPEG-encode a captured frame, once, before it is published; or forward the camera's own
JPEG as it is. Pure functions."""

from __future__ import annotations

import cv2
import numpy as np

from common import jpeg
from common.errors import FramecastError
from producer.sources import Image, SourceJpeg


def fit_width(image: np.ndarray, max_width: int) -> np.ndarray:
    """Downscale `image` to at most `max_width` pixels wide, keeping its aspect; never upscale."""
    height, width = image.shape[:2]
    if width <= max_width:
        return image
    new_height = max(1, round(height * max_width / width))
    return cv2.resize(image, (max_width, new_height), interpolation=cv2.INTER_AREA)


def encode_frame(image: np.ndarray, max_width: int, quality: int) -> tuple[bytes, int, int]:
    """(jpeg bytes, width, height) of the frame as it will be published."""
    resized = fit_width(image, max_width)
    ok, buf = cv2.imencode(".jpg", resized, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise FramecastError("JPEG encoding failed")
    height, width = resized.shape[:2]
    return buf.tobytes(), width, height


def prepare_frame(image: Image, max_width: int, quality: int, *, max_pixels: int) -> tuple[bytes, int, int, bool]:
    """(jpeg bytes, width, height, passed through) of a frame as it will be published.

    A source's own JPEG no wider than `max_width` goes out as it came (with the standard Huffman tables
    added when the camera left them out); a wider one, or one over `max_pixels`, is decoded and
    re-encoded like any frame. Raises FramecastError (JpegError) for a JPEG that is not one."""
    if isinstance(image, SourceJpeg):
        width, height = jpeg.check_size(image.data)
        if width <= max_width and width * height <= max_pixels:
            return jpeg.with_huffman_tables(image.data), width, height, True
        return (*encode_frame(jpeg.decode(image.data, max_pixels=max_pixels), max_width, quality), False)
    return (*encode_frame(image, max_width, quality), False)
