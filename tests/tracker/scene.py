"""A synthetic scene with known ground truth: objects on known paths, as detections (boxes only).

640x480 at 10 fps, 100 frames. Zone and line coordinates are fractions of the frame.

- `a`: person walking right along y=0.625, `b`: person walking left along y=0.71; their boxes overlap
  while they pass each other around frame 40. Both cross the vertical line `door` and pass the zone
  `porch`.
- `c`: car driving down at x=0.15, crossing the horizontal line `road` (its boxes overlap `d`'s early).
- `d`: person walking right into `lawn`, out of it, turning back and into it again.
- `e`: person seen in frames 0-20, out of view for 4 s, back in frames 61-99: two objects to the
  tracker (nothing re-identifies it), so two tracks and two events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from common.events_config import LineConfig, ZoneConfig

W, H, FPS, FRAMES = 640, 480, 10.0, 100
T0 = 1_700_000_000.0

ZONES = [
    ZoneConfig(name="porch", points=[(0.6, 0.55), (0.9, 0.55), (0.9, 0.8), (0.6, 0.8)]),
    ZoneConfig(name="lawn", points=[(0.2, 0.1), (0.4, 0.1), (0.4, 0.4), (0.2, 0.4)]),
]
LINES = [
    # Drawn top to bottom: its right side (as seen on screen) is the left of the picture.
    LineConfig(name="door", points=[(0.5, 0.3), (0.5, 0.9)], in_side="right"),
    # Drawn left to right: its right side is below it.
    LineConfig(name="road", points=[(0.0, 0.5), (1.0, 0.5)], in_side="right"),
]


@dataclass(frozen=True)
class Actor:
    name: str
    label: str
    size: tuple[int, int]  # box width, height in pixels

    def anchor(self, i: int) -> tuple[float, float] | None:
        """Bottom centre (fractions) in frame i, or None when out of view."""
        t = i / (FRAMES - 1)
        if self.name == "a":
            return (0.08 + 0.84 * t, 0.625)
        if self.name == "b":
            return (0.92 - 0.84 * t, 0.71)
        if self.name == "c":
            return (0.15, 0.1 + 0.8 * t)
        if self.name == "d":  # right to x=0.55 by frame 50, then back to x=0.25
            x = 0.05 + 0.5 * (i / 50) if i <= 50 else 0.55 - 0.3 * ((i - 50) / 49)
            return (x, 0.28)
        if self.name == "e":
            if i <= 20:
                return (0.8, 0.45 - 0.2 * (i / 20))
            if i >= 61:
                return (0.8, 0.25 + 0.2 * ((i - 61) / 38))
            return None
        raise AssertionError(self.name)

    def box(self, i: int) -> list[int] | None:
        point = self.anchor(i)
        if point is None:
            return None
        x, y = point[0] * W, point[1] * H
        w, h = self.size
        return [round(x - w / 2), round(y - h), round(x + w / 2), round(y)]


ACTORS = [Actor("a", "person", (40, 100)), Actor("b", "person", (40, 100)), Actor("c", "car", (80, 50)),
          Actor("d", "person", (36, 90)), Actor("e", "person", (36, 90))]


def ts(i: int) -> float:
    return T0 + i / FPS


def detections(i: int, rng: random.Random) -> tuple[list[list], list[str]]:
    """Frame i's detections (shuffled, scores jittered) and the actor of each, in the same order."""
    dets, who = [], []
    for actor in ACTORS:
        box = actor.box(i)
        if box is not None:
            dets.append([actor.label, round(0.6 + 0.3 * rng.random(), 3), *box, 0 if actor.label == "person" else 2])
            who.append(actor.name)
    order = list(range(len(dets)))
    rng.shuffle(order)
    return [dets[k] for k in order], [who[k] for k in order]


# Ground truth, worked out by hand from the paths above (not with the code under test).
CROSSINGS = {"a": [("door", "out")], "b": [("door", "in")], "c": [("road", "in")], "d": [], "e": []}
ENTERED = {"a": ["porch"], "b": ["porch"], "c": [], "d": ["lawn"], "e": []}
# d's current zones as they change: into the lawn, out of it at x=0.4, back in on the way back.
D_ZONE_CHANGES = [["lawn"], [], ["lawn"]]
