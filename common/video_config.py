"""Typed configuration of the H.264 live view (`video:`): one encoder per camera for the whole
cluster, fragmented MP4 in Redis, streamed by the web tier (docs/video.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from common.config_model import ConfigModel


class VideoConfig(ConfigModel):
    """How annotated frames become the H.264 live view."""

    enabled: bool = Field(True, description="encode annotated H.264 for the cameras someone watches "
                          "that way, and serve /video/<cam>.mp4 (false: MJPEG only)")
    keyframe_interval: float = Field(2.0, ge=0.2, le=10, description="seconds between two keyframes: a "
                                     "new viewer waits up to this long for its first picture")
    crf: int = Field(26, ge=0, le=51, description="x264 constant rate factor: lower is better quality "
                     "and more bytes (18 near lossless, 28 small)")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "superfast", description="x264 preset: slower ones spend more encoder CPU for fewer bytes")
    lease_ttl: float = Field(3.0, ge=0.5, le=60, description="seconds an encoding owner holds a camera "
                             "without renewing; another process takes it over after that")
    viewer_ttl: float = Field(5.0, ge=1, le=120, description="seconds a web process's announcement that "
                              "someone watches a camera stays valid (it renews every third of it)")
    fragments_maxlen: int = Field(120, ge=10, le=10_000, description="fragments kept per camera in "
                                  "Redis (one per frame: at 10 fps, 12 s)")
    viewer_queue: int = Field(30, ge=2, le=1000, description="fragments waiting for one slow viewer; "
                              "past that it skips to the next keyframe")
