"""A synthetic test pattern that needs no assets: moving shapes, a frame counter and a timestamp."""

from __future__ import annotations

import math
import time

import cv2
import numpy as np


def render_pattern(index: int, width: int = 640, height: int = 360, fps: float = 10.0) -> np.ndarray:
    """The BGR test-pattern frame number `index`; pure, so frames are reproducible."""
    t = index / fps
    image = np.empty((height, width, 3), dtype=np.uint8)
    # Colour bars across the top third, a gradient below: encoders and eyes both see structure.
    bars = [(192, 192, 192), (0, 192, 192), (192, 192, 0), (0, 192, 0), (192, 0, 192), (0, 0, 192), (192, 0, 0)]
    bar_w = max(1, width // len(bars))
    for i, colour in enumerate(bars):
        image[: height // 3, i * bar_w:(i + 1) * bar_w] = colour
    image[: height // 3, len(bars) * bar_w:] = bars[-1]
    ramp = np.linspace(30, 90, width, dtype=np.uint8)
    image[height // 3:] = ramp[None, :, None]
    # A ball bouncing horizontally and a square orbiting: motion that shows dropped frames.
    cx = int((0.5 + 0.4 * math.sin(2 * math.pi * t / 4.0)) * width)
    cy = int(height * 0.62)
    cv2.circle(image, (cx, cy), max(4, height // 10), (40, 200, 255), -1, cv2.LINE_AA)
    ox = int(width / 2 + width * 0.25 * math.cos(2 * math.pi * t / 3.0))
    oy = int(height * 0.62 + height * 0.2 * math.sin(2 * math.pi * t / 3.0))
    side = max(4, height // 12)
    cv2.rectangle(image, (ox - side, oy - side), (ox + side, oy + side), (255, 120, 40), -1)
    scale = max(0.4, height / 720)
    stamp = time.strftime("%H:%M:%S", time.localtime()) + f".{int(time.time() * 1000) % 1000:03d}"
    for text, y in ((f"frame {index}", int(height * 0.92)), (stamp, int(height * 0.98))):
        cv2.putText(image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(image, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image
