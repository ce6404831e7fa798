"""Where to run the model on a frame with motion, and the detections of those regions as one list. Pure.

A model costs the same per call whatever it is given: the crop is resized to its input (e.g. 300x300
for SSD MobileNet) either way. So a region pays when it *enlarges* what moves (a square of the
model's side cut from a 768x576 frame shows objects about twice as large as the whole frame squeezed
into the model), and each region is one more call. `plan_regions` follows from that:

- each motion box, with a margin of ~18% of its longer side on every side so the object is not cut by
  the region's edge, becomes a **square** (the model's input is square: no distortion), at least
  `model_side` and at most the frame's shorter side, shifted to lie inside the frame;
- two regions are merged (into the square around both clusters of boxes) while the merged square is at
  most 1.2 x the larger of the two: the objects in it shrink by at most that. Regions that overlap by
  half of the smaller one are merged whatever it costs: two calls would see the same pixels twice;
- the answer is None, meaning "run the model once on the full frame instead", when the regions would
  be more than `max_regions` calls, or cover more than `full_frame_fraction` of the frame (the full
  frame then sees everything almost as large, in one call), or when a cluster of motion does not fit
  in a square of the frame's shorter side, or when the frame is too small for a region to enlarge
  anything (shorter side under 1.5 x `model_side`), or for a storm of more than 32 motion boxes.
So the model never runs more than `max_regions` times on a frame, however sensitive motion is.

`detect_in_regions` runs a detector on each region's crop of the full-resolution frame, maps the boxes
back to the frame, and removes the duplicates of objects seen by two overlapping regions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from common.envelope import Detection

Box = tuple[int, int, int, int]  # (x1, y1, x2, y2) pixels of the full frame; x2, y2 exclusive for regions

PAD = 1.35  # a region's side over the longer side of the motion it covers
MERGE_GROWTH = 1.2  # a merged region's side over the larger of the two it replaces, at most
MOSTLY = 0.5  # overlap, as a share of the smaller region, that merges two regions anyway
MIN_GAIN = 1.5  # the frame's shorter side over model_side below which regions enlarge nothing
MAX_MOTION_BOXES = 32  # more is a storm (rain, snow, a shaking camera): the full frame
EDGE = 5  # pixels: a detection this close to a region's inner edge is cut by it
SAME_OBJECT_IOU = 0.5
INSIDE = 0.8  # share of the smaller box inside the larger one that makes them one object
INSIDE_MIN_AREA = 0.05  # ... unless the smaller is under this share of the larger (a car behind a car)


def plan_regions(motion_boxes: Sequence[Box], frame_size: tuple[int, int], model_side: int, *,
                 max_regions: int = 2, full_frame_fraction: float = 0.5) -> list[Box] | None:
    """The square regions (x1, y1, x2, y2) to run the model on, [] without motion, or None for the
    full frame (see the module docstring for the rule)."""
    width, height = frame_size
    boxes = [b for b in (_clip(b, frame_size) for b in motion_boxes) if b is not None]
    if not boxes:
        return []
    if min(width, height) < MIN_GAIN * model_side or len(boxes) > MAX_MOTION_BOXES:
        return None
    clusters = _clusters(boxes, frame_size, model_side)
    if clusters is None or len(clusters) > max_regions:
        return None
    regions = [region for _, region in clusters]
    if _union_area(regions) > full_frame_fraction * width * height:
        return None
    return regions


def detect_in_regions(detect: Callable[[np.ndarray], list[Detection]], image: np.ndarray,
                      regions: Sequence[Box]) -> list[Detection]:
    """Detections of `detect` on each region's crop of `image`, in frame pixels, duplicates removed.

    `detect` gets a view of the frame (not contiguous memory; the backends resize it first) and
    returns boxes in the crop's pixels. An object seen by two regions (same label, IoU >= 0.5, or
    one box mostly inside the other) is kept once: the box not cut by a region's inner edge, then
    the higher score. Detections of one region are the model's own call and are all kept.
    """
    height, width = image.shape[:2]
    found: list[tuple[bool, Detection, int]] = []  # (cut, detection, region index)
    for index, (x1, y1, x2, y2) in enumerate(regions):
        for det in detect(image[y1:y2, x1:x2]):
            bx1, by1, bx2, by2 = det.box
            box = (min(bx1 + x1, width - 1), min(by1 + y1, height - 1),
                   min(bx2 + x1, width - 1), min(by2 + y1, height - 1))
            found.append((_is_cut(box, (x1, y1, x2, y2), (width, height)),
                          Detection(det.label, det.score, box, det.class_id), index))
    found.sort(key=lambda item: (item[0], -item[1].score))
    kept: list[tuple[Detection, int]] = []
    for _, det, index in found:
        if not any(other.label == det.label and region != index and _same_object(det.box, other.box)
                   for other, region in kept):
            kept.append((det, index))
    return sorted((det for det, _ in kept), key=lambda d: -d.score)


def _clip(box: Sequence[float], frame_size: tuple[int, int]) -> Box | None:
    """The box in whole pixels (rounded outwards) inside the frame, or None when nothing is left."""
    width, height = frame_size
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2, y2 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def _square(union: Box, frame_size: tuple[int, int], model_side: int) -> Box | None:
    """The padded square region around `union`, inside the frame; None if it cannot hold it."""
    width, height = frame_size
    x1, y1, x2, y2 = union
    longer, limit = max(x2 - x1, y2 - y1), min(width, height)
    if longer > limit:
        return None
    side = min(limit, max(model_side, math.ceil(longer * PAD)))
    left = min(max(0, round((x1 + x2 - side) / 2)), width - side)
    top = min(max(0, round((y1 + y2 - side) / 2)), height - side)
    return (left, top, left + side, top + side)


def _clusters(boxes: list[Box], frame_size: tuple[int, int], model_side: int) -> list[tuple[Box, Box]] | None:
    """(union of motion, region) pairs after merging; None when a box does not fit in a region.

    Each box, the largest first, joins the cluster it merges with into the smallest region, or starts
    one; then clusters are merged, the smallest resulting region first, while any pair may be.
    """
    clusters: list[tuple[Box, Box]] = []
    for box in sorted(boxes, key=_area, reverse=True):
        region = _square(box, frame_size, model_side)
        if region is None:
            return None
        joined = _cheapest(clusters, [(box, region)], frame_size, model_side)
        if joined is None:
            clusters.append((box, region))
        else:
            clusters[joined[0]] = joined[2]
    while len(clusters) > 1:
        best = _cheapest(clusters, clusters, frame_size, model_side)
        if best is None:
            break
        i, j, merged = best
        clusters[i] = merged
        del clusters[j]
    return clusters


def _cheapest(clusters: list[tuple[Box, Box]], others: list[tuple[Box, Box]], frame_size: tuple[int, int],
              model_side: int) -> tuple[int, int, tuple[Box, Box]] | None:
    """(i, j, merged) for the allowed merge of clusters[i] with others[j] into the smallest region
    (j > i when `others` is `clusters`), or None."""
    best = None
    for i, a in enumerate(clusters):
        for j, b in enumerate(others):
            if others is clusters and j <= i:
                continue
            merged = _merged(a, b, frame_size, model_side)
            if merged is not None and (best is None or _side(merged[1]) < _side(best[2][1])):
                best = (i, j, merged)
    return best


def _merged(a: tuple[Box, Box], b: tuple[Box, Box], frame_size: tuple[int, int],
            model_side: int) -> tuple[Box, Box] | None:
    """The cluster of a and b when merging them is worth it, else None."""
    union = _union(a[0], b[0])
    region = _square(union, frame_size, model_side)
    if region is None:
        return None
    larger = max(model_side, _side(a[1]), _side(b[1]))
    overlap = _area(_intersection(a[1], b[1])) / min(_area(a[1]), _area(b[1]))
    if _side(region) <= larger * MERGE_GROWTH or overlap >= MOSTLY:
        return union, region
    return None


def _union_area(regions: Sequence[Box]) -> int:
    """Pixels covered by any of the (few) regions, by cutting the plane at their edges."""
    xs = sorted({x for r in regions for x in (r[0], r[2])})
    ys = sorted({y for r in regions for y in (r[1], r[3])})
    area = 0
    for x1, x2 in zip(xs, xs[1:], strict=False):
        for y1, y2 in zip(ys, ys[1:], strict=False):
            if any(r[0] <= x1 and x2 <= r[2] and r[1] <= y1 and y2 <= r[3] for r in regions):
                area += (x2 - x1) * (y2 - y1)
    return area


def _is_cut(box: Box, region: Box, frame_size: tuple[int, int]) -> bool:
    """Whether the detection touches an edge of its region that is not an edge of the frame."""
    width, height = frame_size
    x1, y1, x2, y2 = box
    rx1, ry1, rx2, ry2 = region
    return ((rx1 > 0 and x1 - rx1 <= EDGE) or (ry1 > 0 and y1 - ry1 <= EDGE)
            or (rx2 < width and rx2 - 1 - x2 <= EDGE) or (ry2 < height and ry2 - 1 - y2 <= EDGE))


def _same_object(a: Box, b: Box) -> bool:
    inter = _area(_intersection(a, b))
    if not inter:
        return False
    smaller, larger = sorted((_area(a), _area(b)))
    if inter / (smaller + larger - inter) >= SAME_OBJECT_IOU:
        return True
    return inter >= INSIDE * smaller and smaller >= INSIDE_MIN_AREA * larger


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _intersection(a: Box, b: Box) -> Box:
    return (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))


def _area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _side(region: Box) -> int:
    return region[2] - region[0]
