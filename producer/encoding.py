"""Resize and JPEG-encode a captured frame, once, before it is published. Pure functions."""

from __future__ import annotations

import cv2
import numpy as np

from common.errors import FramecastError


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
