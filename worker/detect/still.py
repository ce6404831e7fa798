"""A camera's last drawing, reused for frames nothing moved in: the same objects on a picture where
nothing changed but sensor noise need neither a decode nor an encode. Used by the worker pipeline and
by the tracking owner; one per camera per process, fed in (roughly) capture order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Drawing:
    jpeg: bytes
    shows: Any  # what was drawn (detections, or tracked detections with their ids), compared with ==
    ts: float  # capture time (s) of the frame drawn


class LastDrawing:
    """The newest drawing and whether a still frame may show it: while it shows the same objects and
    is younger than `interval` seconds (0: never)."""

    def __init__(self, interval: float):
        self.interval = interval
        self.drawing: Drawing | None = None

    def reusable(self, shows: Any, ts: float) -> Drawing | None:
        """The drawing a still frame captured at `ts` showing `shows` may carry instead of its own, or None."""
        drawing = self.drawing
        if drawing is None or drawing.shows != shows or not 0 <= ts - drawing.ts < self.interval:
            return None
        return drawing

    def keep(self, jpeg: bytes, shows: Any, ts: float) -> None:
        """Remember a new drawing (an older frame's, drawn late, does not replace a newer one)."""
        if self.drawing is None or ts >= self.drawing.ts:
            self.drawing = Drawing(jpeg, shows, ts)
