"""Typed configuration, validated once at start-up.

Sources, lowest precedence first: the YAML file (`--config`, `FRAMECAST_CONFIG`, or ./cameras.yaml),
environment variables (`REDIS_URL`, `FRAMECAST_*`), then CLI flags. A bad config raises ConfigError
naming the file and the field; values are never echoed back, because some of them are secrets.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from common.camera_id import CAMERA_ID_RE, validate_camera_id
from common.config_model import ConfigModel
from common.detectors import backend as detector_backend
from common.detectors import backend_names
from common.errors import ConfigError, UnknownCameraError
from common.events_config import (
    EventsConfig,
    EventStorageConfig,
    Lines,
    MqttConfig,
    WebhookConfig,
    Zones,
    events_dir_refusal,
)
from common.motion_config import MotionConfig
from common.redaction import redact_url
from common.redis_url import parse_redis_url
from common.video_config import VideoConfig
from common.yamlfile import load_yaml

DEFAULT_CONFIG_FILE = "cameras.yaml"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"

# Environment variable -> dotted config path. Env wins over the file, flags win over env.
ENV_VARS: dict[str, str] = {
    "REDIS_URL": "redis_url",
    "FRAMECAST_KEY_PREFIX": "key_prefix",
    "FRAMECAST_LOG_LEVEL": "log_level",
    "FRAMECAST_LOG_FORMAT": "log_format",
    "FRAMECAST_METRICS_PORT": "metrics_port",
    "FRAMECAST_WEB_HOST": "web.host",
    "FRAMECAST_WEB_PORT": "web.port",
    "FRAMECAST_WEB_TOKEN": "web.token",
    "FRAMECAST_WEB_AUTH": "web.auth",
    "FRAMECAST_WEB_TOKEN_FILE": "web.token_file",
    "FRAMECAST_REDIS_CA_FILE": "redis_tls.ca_file",
    "FRAMECAST_REDIS_CERT_FILE": "redis_tls.cert_file",
    "FRAMECAST_REDIS_KEY_FILE": "redis_tls.key_file",
    "FRAMECAST_MAX_FRAME_AGE": "worker.max_frame_age",
    "FRAMECAST_EVENTS_DIR": "events.dir",
}


class DetectionConfig(ConfigModel):
    """How a camera's frames are detected; consumed by workers and `framecast process`.

    The fields below apply to every backend. A backend's own settings (the tflite backend's
    `threads`) sit beside them and are checked against that backend's declaration
    (`common.detectors`): a setting the chosen backend does not have is an error naming it.
    """

    model_config = ConfigDict(extra="allow", validate_default=True)

    backend: str = Field("tflite", description="detector runtime: the key of an installed backend plugin")
    model: str = Field(
        "default",
        description="'default' (bundled SSD MobileNet v2 COCO), a .tflite file or a SavedModel directory",
    )
    labels_path: str | None = Field(
        None, description="coco_labels.txt or label_map.pbtxt; defaults to the bundled COCO labels"
    )
    min_score: float = Field(0.5, ge=0.0, le=1.0, description="drop detections scoring below this")
    labels: list[str] = Field(default_factory=list, description="labels to keep; empty keeps all")
    min_area: float = Field(0.0, ge=0.0, le=1.0, description="minimum box area as a fraction of the image")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        names = backend_names()
        if value not in names:
            raise ValueError(f"must be one of {', '.join(repr(n) for n in names)}")
        return value

    @model_validator(mode="after")
    def _backend_options(self) -> DetectionConfig:
        declared = detector_backend(self.backend).options
        given = dict(self.__pydantic_extra__ or {})
        unknown = sorted(set(given) - set(declared.model_fields))
        if unknown:
            own = ", ".join(declared.model_fields) or "none"
            raise ValueError(f"{', '.join(unknown)}: not a setting of the {self.backend!r} backend "
                             f"(its own settings: {own})")
        try:
            options = declared.model_validate(given)
        except ValidationError as exc:
            err = exc.errors(include_input=False)[0]
            raise ValueError(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
        self.__pydantic_extra__ = options.model_dump()  # with the backend's defaults filled in
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The backend's own settings, validated, defaults included."""
        return dict(self.__pydantic_extra__ or {})


class CameraConfig(ConfigModel):
    """One camera: where frames come from and how they are published and detected."""

    id: str = Field(description="1-64 of A-Z a-z 0-9 _ -; part of Redis keys and URLs")
    source: str | int = Field(
        description="file path, 'sample', device index, rtsp:// or http(s):// URL, or 'pattern'"
    )
    name: str | None = Field(None, description="display name")
    fps: float = Field(10.0, gt=0, le=120, description="frame-rate cap")
    max_width: int = Field(1280, ge=16, le=7680, description="frames wider than this are downscaled")
    jpeg_quality: int = Field(80, ge=1, le=100)
    jpeg_passthrough: bool = Field(
        True, description="MJPEG sources: publish the camera's own JPEGs (no decode, no re-encode) when "
        "they are no wider than max_width; jpeg_quality then applies only to frames that are resized"
    )
    loop: bool = Field(True, description="files: start again at the end (false: publish once)")
    mode: Literal["live", "backlog"] = Field(
        "live", description="live skips frames older than max_frame_age; backlog processes every frame"
    )
    max_frame_age: float | None = Field(
        None, gt=0, description="seconds; overrides worker.max_frame_age for this camera"
    )
    overlay: bool | None = Field(
        None, description="draw camera id, time and fps on annotated frames (default: on without motion "
        "gating; off with it, since drawing it on a frame nothing moved in costs a decode and an encode)")
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    zones: Zones = Field(default_factory=list, description="named polygons (frame fractions) for events")
    lines: Lines = Field(default_factory=list, description="named counting lines (frame fractions)")
    events: EventsConfig = Field(default_factory=EventsConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not CAMERA_ID_RE.match(value):
            raise ValueError("must be 1-64 characters from A-Z a-z 0-9 _ -")
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def events_enabled(self) -> bool:
        """Whether this camera's detections are tracked into events (and annotated by its tracking
        owner): `events.enabled` when set, else whether it has zones or lines."""
        if self.events.enabled is not None:
            return self.events.enabled
        return bool(self.zones or self.lines)

    @property
    def overlay_enabled(self) -> bool:
        """Whether annotated frames carry the overlay: `overlay` when set, else only without motion
        gating (a frame nothing moved in is otherwise published without a decode or an encode)."""
        if self.overlay is not None:
            return self.overlay
        return not self.motion_enabled

    @property
    def motion_enabled(self) -> bool:
        """Whether the producer gates this camera's frames by motion: `motion.enabled` when set, else
        whether the camera is live (a backlog camera analyses every frame)."""
        if self.motion.enabled is not None:
            return self.motion.enabled
        return self.mode == "live"

    @property
    def source_kind(self) -> str:
        """One of 'device', 'url', 'pattern', 'sample', 'file'."""
        return source_kind(self.source)

    @property
    def source_display(self) -> str:
        """The source with any credentials removed: safe for logs, APIs and pages."""
        return redact_url(str(self.source))


def source_kind(source: str | int) -> str:
    """Classify a camera source string; shared by the producer and the APIs."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return "device"
    text = source.strip()
    if text.lower() in ("pattern", "testpattern", "test-pattern"):
        return "pattern"
    if text.lower() == "sample":
        return "sample"
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) and not text.lower().startswith("file://"):
        return "url"
    return "file"


class StreamLimits(ConfigModel):
    """MAXLEN of each per-camera stream (approximate trimming, `MAXLEN ~`)."""

    frames_maxlen: int = Field(100, ge=1, le=1_000_000, description="raw frames kept per camera")
    annotated_maxlen: int = Field(50, ge=1, le=1_000_000, description="annotated frames kept per camera")
    detections_maxlen: int = Field(100_000, ge=1, le=10_000_000, description="detection records kept")
    deadletter_maxlen: int = Field(100, ge=1, le=100_000, description="bad frames kept for inspection")


class ProducerConfig(ConfigModel):
    send_queue: int = Field(8, ge=1, le=1000, description="encoded frames waiting for Redis per camera; "
                            "each round trip sends all of them (live: the oldest is dropped when full)")


class WorkerConfig(ConfigModel):
    max_frame_age: float = Field(1.0, gt=0, description="seconds; live mode skips older frames")
    claim_idle_ms: int = Field(5000, ge=100, description="reclaim frames pending this long on a dead consumer")
    dead_consumer_after: float = Field(60.0, gt=0, description="seconds idle before a consumer is removed")
    heartbeat_ttl: float = Field(10.0, gt=0, description="seconds a heartbeat stays valid")
    readers_per_camera: int = Field(
        2, ge=0, le=1000, description="workers that read each camera, chosen by rendezvous hashing over the "
        "live workers (any of them takes any frame); 0: every worker reads every camera. Workers started "
        "for named cameras (--camera) read exactly those")
    block_ms: int = Field(1000, ge=10, le=5000, description="XREADGROUP block time (below the socket timeout)")
    max_frame_pixels: int = Field(
        33_177_600, ge=1, description="frames whose JPEG header claims more pixels are dead-lettered "
        "undecoded (default: 8K UHD, 7680x4320)"
    )


class WebConfig(ConfigModel):
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    token: SecretStr | None = Field(None, description="when set, required on every endpoint but /healthz")
    auth: Literal["auto", "none"] = Field(
        "auto", description="auto: a token is required when one is set or when listening on a non-loopback "
        "address (one is generated and kept in token_file); none: no authentication at all")
    token_file: str | None = Field(None, description="where a generated token is kept (default: "
                                   "$XDG_STATE_HOME/framecast/web-token, else ~/.local/state/framecast/web-token)")
    no_signal_after: float = Field(3.0, gt=0, description="seconds without frames before 'no signal'")
    reader_linger: float = Field(10.0, ge=0, description="seconds a camera reader (MJPEG, or a followed stream's) "
                                 "lives after its last viewer or follower")
    stale_after: float = Field(5.0, gt=0, description="seconds; /readyz, /api/cameras and snapshots call older "
                               "frames stale (a camera slower than 3 frames in that time: 3 of its frame intervals)")
    figures_interval: float = Field(1.0, ge=0, description="seconds between two computations of the camera figures "
                                    "(/api/cameras, /readyz) each web process shares among its callers; 0: one "
                                    "per request")
    write_timeout: float = Field(15.0, gt=0, description="seconds a viewer may stall a write before it is dropped")
    max_streams_per_client: int = Field(64, ge=0, description="MJPEG streams one client address may hold open "
                                        "at once per web process, and followed feeds (/api/events/feed, "
                                        "detections?follow=1) counted apart (beyond: 429); 0 is no cap")

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token would authenticate nobody and guard nothing: web.auth would serve openly on a
        # network address. Refused rather than replaced by a generated one: whoever wrote `token: ""`
        # (or a template whose secret did not expand) meant a token, and hosts behind one address
        # would each generate a different one. Whitespace around a token is dropped (a Bearer header's is).
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("is empty: set a token, or remove web.token (on a network address a token "
                             "is then generated and kept in web.token_file)")
        return SecretStr(token)


class RedisTlsConfig(ConfigModel):
    """Files for TLS to Redis (rediss:// URLs): a private CA, and a client certificate when the server
    asks for one (`tls-auth-clients yes`)."""

    ca_file: FilePath | None = Field(None, description="PEM CA bundle that signed the server's certificate")
    cert_file: FilePath | None = Field(None, description="PEM client certificate")
    key_file: FilePath | None = Field(None, description="PEM private key of cert_file")

    @model_validator(mode="after")
    def _pair(self) -> RedisTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both or neither")
        return self

    @property
    def configured(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


class Settings(ConfigModel):
    """The whole framecast configuration."""

    redis_url: SecretStr = Field(SecretStr(DEFAULT_REDIS_URL),
                                 description="redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// URL")
    redis_tls: RedisTlsConfig = Field(default_factory=RedisTlsConfig)
    key_prefix: str = Field("fc", pattern=r"^[A-Za-z0-9_.-]{1,32}$", description="prefix of every Redis key")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    metrics_port: int = Field(0, ge=0, le=65535, description="Prometheus port of producer/worker; 0 is off")
    streams: StreamLimits = Field(default_factory=StreamLimits)
    producer: ProducerConfig = Field(default_factory=ProducerConfig)
    worker: WorkerConfig = Field(default_factory=WorkerConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    video: VideoConfig = Field(default_factory=VideoConfig)
    events: EventStorageConfig = Field(default_factory=EventStorageConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    cameras: list[CameraConfig] = Field(default_factory=list)
    config_path: str | None = Field(None, description="where the file was read from (set by the loader)")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        parse_redis_url(value.get_secret_value())  # its errors never quote the URL
        return value

    @model_validator(mode="after")
    def _tls_needs_rediss(self) -> Settings:
        if self.redis_tls.configured and not parse_redis_url(self.redis_url.get_secret_value()).tls:
            raise ValueError("redis_tls: the files are for TLS: use a rediss://, rediss+cluster:// or "
                             "rediss+sentinel:// URL")
        return self

    @model_validator(mode="after")
    def _events_dir_is_its_own(self) -> Settings:
        if (refusal := events_dir_refusal(self.events.dir, self.config_path)) is not None:
            raise ValueError(refusal)
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        seen: set[str] = set()
        for index, camera in enumerate(self.cameras):
            if camera.id in seen:
                raise ValueError(f"cameras[{index}].id: duplicate camera id {camera.id!r}")
            seen.add(camera.id)
        return self

    def camera(self, camera_id: str) -> CameraConfig:
        """Return the camera with this id; raise InvalidCameraIdError or UnknownCameraError."""
        validate_camera_id(camera_id)
        for camera in self.cameras:
            if camera.id == camera_id:
                return camera
        raise UnknownCameraError(camera_id)

    def select_cameras(self, camera_ids: list[str] | None) -> list[CameraConfig]:
        """The cameras named (all when none are named), in the order given."""
        if not camera_ids:
            return list(self.cameras)
        return [self.camera(cid) for cid in camera_ids]

    def max_frame_age(self, camera: CameraConfig) -> float:
        return camera.max_frame_age if camera.max_frame_age is not None else self.worker.max_frame_age

    @property
    def redis_url_display(self) -> str:
        return redact_url(self.redis_url.get_secret_value())


def _set_dotted(target: dict, dotted: str, value: Any) -> None:
    node = target
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _merge(base: dict, extra: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_location(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part in ("str", "int", "function-after", "function-before") or "[" in str(part):
            continue  # union-member tags pydantic adds; they mean nothing to a user
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _describe(errors: list[dict], data: dict) -> list[str]:
    lines = []
    for err in errors:
        where = _format_location(tuple(err.get("loc", ())))
        # Say which camera a field belongs to, so a long file is easy to fix.
        loc = err.get("loc", ())
        if len(loc) >= 2 and loc[0] == "cameras" and isinstance(loc[1], int):
            cameras = data.get("cameras") or []
            entry = cameras[loc[1]] if loc[1] < len(cameras) else None
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                where += f" (camera {entry['id'][:64]!r})"
        message = err.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        lines.append(f"  {where}: {message}")
    return lines


def resolve_config_path(path: str | os.PathLike | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """(path, explicit): --config, else FRAMECAST_CONFIG, else ./cameras.yaml."""
    if path:
        return Path(path), True
    if env.get("FRAMECAST_CONFIG"):
        return Path(env["FRAMECAST_CONFIG"]), True
    return Path(DEFAULT_CONFIG_FILE), False


def load_config(
    path: str | os.PathLike | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    require_file: bool = True,
) -> Settings:
    """Read, merge and validate the configuration. Called once at each service's start-up.

    `overrides` maps dotted paths (e.g. "redis_url", "web.port") to values from CLI flags; None values
    are ignored so unset flags do not mask env or file values.
    """
    env = os.environ if env is None else env
    file_path, explicit = resolve_config_path(path, env)
    data: dict[str, Any] = {}
    shown = str(file_path)
    if file_path.exists():
        raw = load_yaml(file_path, shown)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{shown}: the top level must be a mapping with a 'cameras' list")
        data = raw
    elif explicit or require_file:
        raise ConfigError(
            f"{shown}: config file not found; pass --config FILE, set FRAMECAST_CONFIG, "
            f"or create {DEFAULT_CONFIG_FILE} (the repository ships one to copy)"
        )

    # Camera defaults: a `defaults:` mapping merged under every camera.
    defaults = data.pop("defaults", None)
    if defaults is not None:
        if not isinstance(defaults, dict):
            raise ConfigError(f"{shown}: defaults: must be a mapping of camera settings")
        cameras = data.get("cameras")
        if isinstance(cameras, list):
            data["cameras"] = [_merge(defaults, c) if isinstance(c, dict) else c for c in cameras]

    for var, dotted in ENV_VARS.items():
        if env.get(var) not in (None, ""):
            _set_dotted(data, dotted, env[var])
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted, value)

    # Relative file sources are relative to the config file, not to the working directory.
    base_dir = file_path.resolve().parent if file_path.exists() else Path.cwd()
    cameras = data.get("cameras")
    if isinstance(cameras, list):
        for camera in cameras:
            if isinstance(camera, dict) and isinstance(camera.get("source"), str):
                src = camera["source"]
                if source_kind(src) == "file":
                    p = Path(src[len("file://"):] if src.lower().startswith("file://") else src).expanduser()
                    camera["source"] = str(p if p.is_absolute() else (base_dir / p))
    data["config_path"] = str(file_path) if file_path.exists() else None
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = _describe(exc.errors(include_input=False), data)
        raise ConfigError(f"{shown}: invalid config:\n" + "\n".join(lines)) from None
