"""Turning a model's normalised outputs into Detections in image pixels. Pure."""

from __future__ import annotations

import numpy as np

from common.envelope import Detection


def to_detections(boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, labels: dict[int, str],
                  image_shape: tuple) -> list[Detection]:
    """Boxes (ymin, xmin, ymax, xmax) in [0, 1] to (x1, y1, x2, y2) pixels, clipped to the image."""
    height, width = image_shape[:2]
    out = []
    for (ymin, xmin, ymax, xmax), cls, score in zip(boxes, classes, scores, strict=False):
        class_id = int(round(float(cls)))
        x1 = int(np.clip(round(float(xmin) * width), 0, width - 1))
        y1 = int(np.clip(round(float(ymin) * height), 0, height - 1))
        x2 = int(np.clip(round(float(xmax) * width), 0, width - 1))
        y2 = int(np.clip(round(float(ymax) * height), 0, height - 1))
        if x2 <= x1 or y2 <= y1:
            continue
        out.append(Detection(labels.get(class_id, str(class_id)), float(score), (x1, y1, x2, y2), class_id))
    return out
