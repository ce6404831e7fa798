"""Typed configuration of events: zones, lines and events per camera; event storage, MQTT and
webhooks for the whole installation. Wired into `common.config` (CameraConfig.zones/lines/events,
Settings.events/mqtt/webhooks), so a bad value fails at start-up with a message naming the field.

Zone and line coordinates are fractions of the frame (0..1, x to the right, y down), so they survive a
change of resolution.
"""

from __future__ import annotations

import logging
import pwd
import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, field_validator, model_validator

from common.config_model import ConfigModel

log = logging.getLogger("framecast.config")

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Event ids: capture time of the first sighting, then a random suffix (Frigate's form). Safe as file
# names and URL parts; the web tier checks ids against this before touching the disk.
EVENT_ID_RE = re.compile(r"^[0-9]{1,12}\.[0-9]{6}-[0-9a-f]{6}$")

# Bounds of one camera's zones and lines. Every tracked object is tested against every zone and line
# on every frame, and every event message recounts them, on the owner's one loop: `python -m
# bench.zones` measured the cost (README, Events). 10,000 zones starved the owner of its lease.
MAX_ZONES = 100
MAX_LINES = 100
MAX_ZONE_POINTS = 32

Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


def _check_name(value: str) -> str:
    if not NAME_RE.match(value):
        raise ValueError("must be 1-64 characters from A-Z a-z 0-9 _ - (it becomes part of MQTT topics)")
    return value


Name = Annotated[str, AfterValidator(_check_name)]


class ZoneConfig(ConfigModel):
    """A named polygon; an object is in it when the bottom centre of its box is."""

    name: Name = Field(description="1-64 of A-Z a-z 0-9 _ -")
    points: list[Point] = Field(min_length=3, max_length=MAX_ZONE_POINTS,
                                description="polygon corners as [x, y] fractions of the frame")
    labels: list[str] = Field(default_factory=list, description="labels this zone counts; empty counts all")

    @field_validator("points")
    @classmethod
    def _not_degenerate(cls, value: list[Point]) -> list[Point]:
        area2 = sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(value, value[1:] + value[:1], strict=True))
        if abs(area2) < 1e-9:
            raise ValueError("the polygon has no area: give at least 3 corners that are not on one line")
        return value


class LineConfig(ConfigModel):
    """A named counting line from points[0] (A) to points[1] (B).

    Crossing it towards `in_side` (the right or left of A->B as seen on screen, y down) is direction
    `in`, the opposite way `out`. A horizontal line drawn left to right has its right side below it.
    """

    name: Name = Field(description="1-64 of A-Z a-z 0-9 _ -")
    points: list[Point] = Field(min_length=2, max_length=2, description="[[xA, yA], [xB, yB]] as fractions")
    in_side: Literal["right", "left"] = Field("right", description="side of A->B that crossing into is `in`")
    labels: list[str] = Field(default_factory=list, description="labels this line counts; empty counts all")

    @field_validator("points")
    @classmethod
    def _distinct(cls, value: list[Point]) -> list[Point]:
        (ax, ay), (bx, by) = value
        if abs(ax - bx) < 1e-9 and abs(ay - by) < 1e-9:
            raise ValueError("the two points of a line must differ")
        return value


def _unique_names(kind: str):
    def check(items: list) -> list:
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.name in seen:
                raise ValueError(f"duplicate {kind} name {item.name!r} (entry {index}): names must be unique per camera")
            seen.add(item.name)
        return items

    return check


def _at_most(limit: int, kind: str):
    def check(items):
        # Before the items are validated: 10,000 of them are refused without building 10,000 models.
        if isinstance(items, list | tuple) and len(items) > limit:
            raise ValueError(f"{len(items)} {kind}s; at most {limit} per camera (each one costs the tracking "
                             f"owner time for every object in every frame): merge {kind}s, or split the "
                             "camera's picture between cameras")
        return items

    return check


Zones = Annotated[list[ZoneConfig], BeforeValidator(_at_most(MAX_ZONES, "zone")),
                  AfterValidator(_unique_names("zone"))]
Lines = Annotated[list[LineConfig], BeforeValidator(_at_most(MAX_LINES, "line")),
                  AfterValidator(_unique_names("line"))]


class EventsConfig(ConfigModel):
    """Per camera: which tracked objects become events, and when."""

    enabled: bool | None = Field(
        None, description="track objects and emit events for this camera; unset: on when the camera has "
        "zones or lines (a plain camera keeps the plain path: workers annotate, no tracking)")
    labels: list[str] = Field(default_factory=list, description="labels that make events; empty: all")
    min_frames: int = Field(3, ge=1, le=100, description="frames a track must be seen before its event starts")
    lost_after: float = Field(2.0, gt=0, le=600, description="seconds unseen before a track's event ends")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="events need a top score of at least this")
    track_iou: float = Field(0.1, gt=0.0, lt=1.0,
                             description="minimum overlap (IoU) of a detection with a track's predicted box")
    snapshots: bool = Field(True, description="keep the best frame of each event as a JPEG")
    clips: bool = Field(True, description="write an H.264 MP4 clip of each ended event")


class EventStorageConfig(ConfigModel):
    """Where snapshots and clips live, and how long."""

    dir: str = Field("events", description="directory of snapshots and clips (a volume in compose)")
    max_age_hours: float = Field(72.0, gt=0, description="clips and snapshots older than this are deleted")
    max_size_mb: float = Field(2048.0, gt=0, description="total size cap; the oldest files go first")
    pre_roll: float = Field(2.0, ge=0, le=60, description="seconds of video before an event in its clip")
    post_roll: float = Field(2.0, ge=0, le=60, description="seconds of video after an event in its clip")
    max_clip_seconds: float = Field(120.0, gt=0, le=3600,
                                    description="longest clip; frames are buffered in memory this long")
    max_events: int = Field(10_000, ge=1, le=10_000_000, description="event records kept in Redis per camera")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast", description="libx264 preset: faster encodes cost more bytes")
    crf: int = Field(26, ge=0, le=51, description="libx264 quality (lower is better and bigger)")
    lease_ttl: float = Field(5.0, ge=0.5, le=120, description="seconds a dead tracking owner keeps its "
                             "cameras before another process takes them over")
    reorder_window: float = Field(1.0, gt=0, le=30, description="seconds a detection waits for the frames "
                                  "before it (a frame lost without a skip marker delays tracking this long)")
    untracked_maxlen: int = Field(600, ge=10, le=100_000, description="entries kept in each event camera's "
                                  "untracked stream (raw JPEGs with detections, not yet tracked): what a new "
                                  "owner can catch up on")

    @model_validator(mode="before")
    @classmethod
    def _renamed_maxlen(cls, data):
        """`detected_maxlen` is this field's name in the previous release: still read (with a warning)
        until the next release drops it."""
        if not isinstance(data, dict) or "detected_maxlen" not in data:
            return data
        if "untracked_maxlen" in data:
            raise ValueError("give untracked_maxlen only (detected_maxlen is its old name)")
        log.warning("config: events.detected_maxlen is deprecated and read until the next release; "
                    "rename it to events.untracked_maxlen")
        data = dict(data)
        data["untracked_maxlen"] = data.pop("detected_maxlen")
        return data


def resolve_events_dir(directory: str, config_path: str | None) -> Path:
    """`events.dir` as a path: a relative one is relative to the config file's folder (as file sources
    are), or to the working directory when there is no file."""
    root = Path(directory).expanduser()
    if root.is_absolute() or not config_path:
        return root
    return Path(config_path).resolve().parent / root


def _homes() -> set[Path]:
    homes = {Path.home()}
    try:
        homes.update(Path(entry.pw_dir) for entry in pwd.getpwall() if entry.pw_dir)
    except OSError:  # no user database (some containers): the current user's home is still checked
        pass
    return {home.resolve() for home in homes}


def events_dir_refusal(directory: str, config_path: str | None) -> str | None:
    """Why `events.dir` must not be used, or None. Retention only ever deletes framecast's own files,
    but a folder holding the config, the whole file system or someone's home is never a store of
    videos: such a setting is a mistake (`dir: .`), refused at start-up rather than acted on."""
    where = resolve_events_dir(directory, config_path).resolve()
    config_dir = Path(config_path).resolve().parent if config_path else Path.cwd().resolve()
    if where == config_dir:
        return (f"events.dir: {directory!r} is the config file's own folder ({config_dir}); use a folder of "
                "its own for snapshots and clips, e.g. 'events'")
    if where == Path(where.anchor):
        return f"events.dir: {directory!r} is the root of the file system; use a folder of its own, e.g. /var/lib/framecast/events"
    if where in _homes():
        return (f"events.dir: {directory!r} is a home directory ({where}); use a folder of its own inside it, "
                "e.g. ~/framecast-events")
    return None


class MqttConfig(ConfigModel):
    """An MQTT broker that receives events, counts and availability."""

    enabled: bool = False
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = Field(False, description="connect with TLS (system CA certificates)")
    client_id: str | None = Field(None, description="MQTT client id; default framecast-<host>-<pid>")
    topic_prefix: str = Field("framecast", pattern=r"^[^#+\s]{1,64}$",
                              description="topics are <prefix>/events, <prefix>/<cam>/<label>, <prefix>/available")
    keepalive: int = Field(30, ge=5, le=3600, description="seconds; the broker sends the last will after 1.5x")
    queue_size: int = Field(1000, ge=1, le=1_000_000, description="messages held while the broker is away")


class WebhookConfig(ConfigModel):
    """One URL that receives each event as a signed JSON POST."""

    url: SecretStr = Field(description="http(s) URL; treated as a secret (many webhook URLs are)")
    secret: SecretStr | None = Field(None, description="HMAC-SHA256 key for X-Framecast-Signature")
    types: list[Literal["new", "update", "end"]] = Field(
        default_factory=lambda: ["new", "end"], description="event message types sent to this URL")
    timeout: float = Field(5.0, gt=0, le=120, description="seconds per attempt")
    max_attempts: int = Field(5, ge=1, le=100, description="attempts per message before it is dropped")
    queue_size: int = Field(200, ge=1, le=100_000, description="messages waiting or retrying for this URL")

    @field_validator("url")
    @classmethod
    def _http(cls, value: SecretStr) -> SecretStr:
        url = value.get_secret_value()
        if not re.match(r"^https?://[^/\s]+", url, re.IGNORECASE):
            raise ValueError("must be an http:// or https:// URL")
        try:  # what the sender connects to; the message never quotes the URL (it is a secret)
            parts = urlsplit(url)
            valid = bool(parts.hostname) and (parts.port is None or parts.port > 0)
        except ValueError:  # a port that is not a number in 0-65535
            valid = False
        if not valid:
            raise ValueError("has no valid host[:port] (credentials go as user:password@host, with any "
                             "@ / : ? # in them percent-encoded: %40 %2F %3A %3F %23)")
        return value
