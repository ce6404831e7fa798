"""Typed configuration of motion gating, per camera (`cameras[i].motion`): the producer finds motion
in each frame and the workers run the model only on frames that need it (docs/motion.md).

Mask coordinates are fractions of the frame (0..1, x to the right, y down), like zones.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator

from common.config_model import ConfigModel
from common.events_config import Point

MAX_MASKS = 32
MAX_MASK_POINTS = 32


def _at_most_masks(items):
    if isinstance(items, list | tuple) and len(items) > MAX_MASKS:
        raise ValueError(f"{len(items)} masks; at most {MAX_MASKS} per camera: merge masks")
    return items


def _polygon_area(points: list[Point]) -> float:
    return abs(sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True))) / 2


Mask = Annotated[list[Point], Field(min_length=3, max_length=MAX_MASK_POINTS)]


class MotionConfig(ConfigModel):
    """Where and when a camera's frames are worth the model's time."""

    enabled: bool | None = Field(
        None, description="find motion and run the model only where and when something moves "
        "(default: on for live cameras, off for backlog ones, which analyse every frame)")
    threshold: int = Field(25, ge=1, le=255, description="grey-level change (0-255) over the background that "
                           "counts as motion; higher ignores more noise and faint movement")
    min_area: float = Field(0.0003, gt=0, le=0.5, description="smallest moving area, as a fraction of the "
                            "frame (0.0003 of 768x576 is about 11x11 pixels)")
    masks: Annotated[list[Mask], BeforeValidator(_at_most_masks)] = Field(
        default_factory=list, description="polygons ([x, y] fractions) where movement is ignored "
        "(a clock, trees, a road outside the property)")
    full_frame_interval: float = Field(5.0, ge=0.1, le=3600, description="seconds: the whole frame is "
                                       "inspected at least this often, moving or not, so still objects stay known")
    hold: float = Field(2.0, ge=0, le=600, description="seconds after motion ends during which every frame is "
                        "still inspected in full (an object that stops is seen where it stopped)")
    max_regions: int = Field(1, ge=0, le=8, description="most regions the model runs on in one frame; more "
                             "motion than that is inspected as one full frame (0: always full frames)")
    redraw_interval: float = Field(1.0, ge=0, le=60, description="seconds: a frame nothing moved in, whose "
                                   "scene holds still objects, shows the camera's last drawing of them while "
                                   "it is younger than this (no decode, no encode); 0 draws every such frame")
    lighting: float = Field(0.35, gt=0, le=1, description="fraction of the frame changing at once that is "
                            "taken as a lighting change: the background is relearnt and the frame inspected in full")

    @field_validator("masks")
    @classmethod
    def _masks_have_area(cls, value: list[list[Point]]) -> list[list[Point]]:
        for index, points in enumerate(value):
            if _polygon_area(points) < 1e-9:
                raise ValueError(f"mask {index} has no area: give at least 3 corners that are not on one line")
        return value
