"""MJPEG multipart framing and the "no signal" picture: pure functions, run once per frame (not per viewer)."""

from __future__ import annotations

import time

import cv2
import numpy as np

from common import jpeg

BOUNDARY = "frame"
MIMETYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
# The stream opens with a boundary; every part then ends with the next boundary, so browsers show a
# frame as soon as it arrives (Chrome otherwise shows the second-to-last image, Chromium bug 527446).
OPENING = f"--{BOUNDARY}\r\n".encode()


def part(jpeg: bytes, seq: int | None = None, ts_ns: int | None = None) -> bytes:
    """One multipart part, with Content-Type and Content-Length, followed by the next boundary."""
    headers = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
    if seq is not None:
        headers += f"X-Frame-Seq: {seq}\r\n"
    if ts_ns is not None:
        headers += f"X-Timestamp: {ts_ns / 1e9:.6f}\r\n"
    return headers.encode() + b"\r\n" + jpeg + f"\r\n--{BOUNDARY}\r\n".encode()


def no_signal_jpeg(cam: str, width: int = 640, height: int = 360, since: float | None = None) -> bytes:
    """A dark frame saying NO SIGNAL with the camera id: shown instead of a frozen picture."""
    image = np.full((height, width, 3), 24, np.uint8)
    cv2.rectangle(image, (0, 0), (width - 1, height - 1), (60, 60, 200), 4)
    font = cv2.FONT_HERSHEY_SIMPLEX
    lines = [("NO SIGNAL", 1.4, (80, 80, 235)), (cam, 0.8, (220, 220, 220))]
    if since is not None:
        lines.append(("last frame " + time.strftime("%H:%M:%S", time.localtime(since)), 0.6, (160, 160, 160)))
    y = height // 2 - 30
    for text, scale, colour in lines:
        (tw, th), _ = cv2.getTextSize(text, font, scale, 2)
        cv2.putText(image, text, ((width - tw) // 2, y), font, scale, colour, 2, cv2.LINE_AA)
        y += th + 24
    return jpeg.encode(image, quality=70)
