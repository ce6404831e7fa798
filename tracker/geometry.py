"""Zones and lines in frame fractions: where a box's anchor is, and which way it crossed a line.

Pure functions on plain tuples. Coordinates are fractions of the frame (x right, y down), so config
written for one resolution holds for another. An object's position is the anchor of its box: the
bottom centre, where it touches the ground.
"""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]


def anchor(box: Sequence[float], width: int, height: int) -> Point:
    """The bottom centre of a pixel box (x1, y1, x2, y2) as frame fractions."""
    x1, _, x2, y2 = box[:4]
    return ((x1 + x2) / 2.0 / width, y2 / height)


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd rule (ray casting to the right). Points on an edge count as inside on two sides only."""
    x, y = point
    inside = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < x_cross:
                inside = not inside
    return inside


def side(point: Point, a: Point, b: Point) -> float:
    """Cross product (B - A) x (P - A): > 0 right of A->B as seen on screen (y down), < 0 left, 0 on it."""
    return (b[0] - a[0]) * (point[1] - a[1]) - (b[1] - a[1]) * (point[0] - a[0])


def _orientation(p: Point, q: Point, r: Point) -> int:
    value = side(r, p, q)
    return 0 if abs(value) < 1e-12 else (1 if value > 0 else -1)


def _on_segment(p: Point, q: Point, r: Point) -> bool:
    """r lies on segment p-q, given the three are collinear."""
    return min(p[0], q[0]) - 1e-12 <= r[0] <= max(p[0], q[0]) + 1e-12 and \
        min(p[1], q[1]) - 1e-12 <= r[1] <= max(p[1], q[1]) + 1e-12


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether segment p1-p2 and segment q1-q2 touch or cross."""
    o1, o2 = _orientation(p1, p2, q1), _orientation(p1, p2, q2)
    o3, o4 = _orientation(q1, q2, p1), _orientation(q1, q2, p2)
    if o1 != o2 and o3 != o4:
        return True
    return ((o1 == 0 and _on_segment(p1, p2, q1)) or (o2 == 0 and _on_segment(p1, p2, q2))
            or (o3 == 0 and _on_segment(q1, q2, p1)) or (o4 == 0 and _on_segment(q1, q2, p2)))


def crossing(previous: Point, current: Point, a: Point, b: Point, in_side: str = "right") -> str | None:
    """'in', 'out' or None for an anchor that moved from `previous` to `current` past segment A-B.

    A crossing needs both positions strictly on opposite sides and the path to meet the segment
    itself (not its extension). Callers pass as `previous` the last position that was strictly on one
    side, so an object that stops on the line and goes back is not counted (hysteresis).
    """
    before, after = side(previous, a, b), side(current, a, b)
    if before == 0 or after == 0 or (before > 0) == (after > 0):
        return None
    if not segments_intersect(previous, current, a, b):
        return None
    into_right = after > 0
    return "in" if into_right == (in_side == "right") else "out"
