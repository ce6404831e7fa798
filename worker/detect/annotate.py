"""Drawing detections and an information overlay on frames. Pure functions: inputs are not modified."""

from __future__ import annotations

import colorsys
import hashlib
import time

import cv2
import numpy as np

from common.envelope import Detection

FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour_for(label: str) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per label (the same in every process and run)."""
    hue = int(hashlib.md5(label.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def luminance(colour: tuple[int, int, int]) -> float:
    """Perceived brightness (0-255) of a BGR colour."""
    b, g, r = colour
    return 0.114 * b + 0.587 * g + 0.299 * r


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever stands out more on `background`."""
    return (0, 0, 0) if luminance(background) > 140 else (255, 255, 255)


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """A filled tag with contrasting text, kept inside the frame (above the box, else inside it)."""
    height, width = image.shape[:2]
    (tw, th), baseline = cv2.getTextSize(text, FONT, scale, 1)
    pad = 3
    tag_h = th + baseline + 2 * pad
    top = y - tag_h if y - tag_h >= 0 else y
    top = max(0, min(top, height - tag_h))  # a box along the bottom edge: tag stays in the frame
    left = min(max(0, x), max(0, width - tw - 2 * pad))
    cv2.rectangle(image, (left, top), (left + tw + 2 * pad, top + tag_h), colour, -1)
    cv2.putText(image, text, (left + pad, top + pad + th), FONT, scale, text_colour(colour), 1, cv2.LINE_AA)


def draw_detections(image: np.ndarray, detections: list[Detection],
                    track_ids: list[int | None] | None = None) -> np.ndarray:
    """A copy of `image` with a box and a `label score` tag per detection, in the label's colour;
    with `track_ids` (one per detection, from the camera's tracker) the tag reads `label #id score`."""
    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(2, round(min(height, width) / 300))
    scale = max(0.4, min(height, width) / 900)
    for index, det in enumerate(detections):
        x1, y1, x2, y2 = det.box
        colour = colour_for(det.label)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        track_id = track_ids[index] if track_ids is not None else None
        name = det.label if track_id is None else f"{det.label} #{track_id}"
        _label(out, f"{name} {det.score:.0%}", x1, y1, colour, scale)
    return out


def draw_overlay(image: np.ndarray, cam: str, ts_ns: int | None = None, fps: float | None = None) -> np.ndarray:
    """A copy of `image` with camera id, capture time (now when not given) and fps in the top-left
    corner, white on a darkened band so it reads on any picture."""
    out = image.copy()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((time.time_ns() if ts_ns is None else ts_ns) / 1e9))
    text = f"{cam}  {stamp}" + (f"  {fps:.1f} fps" if fps else "")
    scale = max(0.4, min(out.shape[:2]) / 900)
    (tw, th), baseline = cv2.getTextSize(text, FONT, scale, 1)
    region = out[0:th + baseline + 10, 0:min(out.shape[1], tw + 12)]
    region[:] = (region * 0.45).astype(np.uint8)  # darken for legibility on any background
    cv2.putText(out, text, (6, th + 5), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
