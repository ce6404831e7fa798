"""What one refresh of the camera figures reads from Redis, for every camera at once: one pipelined
round trip for the cameras and the registries' member lists, one more for the members' heartbeats
(a Redis Cluster splits each by node: a few round trips, never one per camera).

Per camera it reads its stats hash, its counts hash, and only what was added to its streams since
the last refresh: the newest annotated entry after the one already seen (its id says when the
newest frame was published; an annotated frame is read only when one arrived since, never the
whole stream) and the detection records after the newest one taken (the stage window, web.stages).
The ids already seen are kept in `CameraReading`, one per camera, owned by the figures (web.figures)
and used under their lock.

A key Redis refuses (wrong type, no permission) is that camera's or that registry's error, logged by
web.refused_keys; outages raise, as for any route.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from common.config import CameraConfig
from common.connection import describe_error
from common.events_store import parse_counts
from common.keys import Keys
from common.registry import Kind, member_info, member_key
from common.text import as_str
from web.refused_keys import log_refused_key, refuses_key
from web.stages import StageWindow

REGISTRY_AGE_S = 3600.0  # members are looked up among those heart-beating within the last hour


@dataclass
class CameraReading:
    """What a camera's refreshes remember between them: the newest annotated entry seen, and the
    stage window of its detection records."""

    annotated_id: bytes | None = None
    stages: StageWindow = field(default_factory=StageWindow)

    def newest_frame_ms(self) -> int | None:
        """When the newest annotated frame seen was added (epoch ms, from its stream id)."""
        return None if self.annotated_id is None else int(as_str(self.annotated_id).split("-")[0])


@dataclass
class CameraRead:
    """One camera's figures from one refresh."""

    stats: dict[str, float]
    frame_ms: int | None  # when its newest annotated frame was added
    errors: list[str]  # refused keys that put it out of service (stats, annotated frames)
    stages: dict | None  # None: Redis refuses its detections stream
    counts: dict | None  # None: Redis refuses its counts hash (counts_error says why)
    counts_error: str | None = None


@dataclass
class Read:
    """Everything one refresh read."""

    cameras: dict[str, CameraRead]
    members: dict[Kind, list[dict]]
    registry_errors: dict[str, str]  # "workers"/"producers" -> the refused key and Redis's reply


def _after(last_id: bytes | None) -> str | bytes:
    """An XREVRANGE lower bound: after `last_id` (exclusive), or the whole stream."""
    return "-" if last_id is None else b"(" + last_id


def _refusal(key: str, cam: str | None, reply) -> str | None:
    """`reply` as a refused key's error ("<key>: <Redis's reply>", logged once a minute), or None for
    a reply that is not an error. Any other error is raised, as the route would have."""
    if not isinstance(reply, Exception):
        return None
    if not refuses_key(reply):
        raise reply
    reason = describe_error(reply).removeprefix("ResponseError: ")
    log_refused_key(key, reason, cam)
    return f"{key}: {reason}"


def _numbers(raw: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in raw.items():
        try:
            out[as_str(name)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def read_all(client: redis.Redis, keys: Keys, cameras: list[CameraConfig],
             readings: dict[str, CameraReading]) -> Read:
    """Every camera's figures and the live registry members, in two pipelined round trips;
    `readings` (cam -> CameraReading) is brought up to date."""
    now = time.time()
    registries: dict[Kind, str] = {"worker": keys.workers, "producer": keys.producers}
    pipe = client.pipeline(transaction=False)
    for zset in registries.values():
        pipe.zrangebyscore(zset, now - REGISTRY_AGE_S, "+inf")
    for camera in cameras:
        reading = readings[camera.id]
        pipe.hgetall(keys.stats(camera.id))
        pipe.xrevrange(keys.annotated(camera.id), min=_after(reading.annotated_id), count=1)
        pipe.xrevrange(keys.detections(camera.id), min=_after(reading.stages.last_id), count=reading.stages.window)
        pipe.hgetall(keys.counts(camera.id))
    replies = pipe.execute(raise_on_error=False)

    registry_errors: dict[str, str] = {}
    names: dict[Kind, list[str]] = {}
    for (kind, zset), reply in zip(registries.items(), replies[:2], strict=True):
        error = _refusal(zset, None, reply)
        if error is not None:
            registry_errors[kind + "s"] = error
        else:
            names[kind] = [as_str(member) for member in reply]
    members = _members(client, keys, names, registry_errors)

    out: dict[str, CameraRead] = {}
    for i, camera in enumerate(cameras):
        cam, reading = camera.id, readings[camera.id]
        stats_reply, annotated_reply, detections_reply, counts_reply = replies[2 + 4 * i:6 + 4 * i]
        errors = []
        stats: dict[str, float] = {}
        if (error := _refusal(keys.stats(cam), cam, stats_reply)) is not None:
            errors.append(error)
        else:
            stats = _numbers(stats_reply)
        if (error := _refusal(keys.annotated(cam), cam, annotated_reply)) is not None:
            errors.append(error)
            reading.annotated_id = None  # read the stream afresh once Redis takes it again
        elif annotated_reply:
            reading.annotated_id = annotated_reply[0][0]
        stages = None
        if _refusal(keys.detections(cam), cam, detections_reply) is None:
            reading.stages.take(detections_reply)
            stages = reading.stages.summary()
        counts_error = _refusal(keys.counts(cam), cam, counts_reply)
        counts = None if counts_error is not None else parse_counts(counts_reply)
        out[cam] = CameraRead(stats, reading.newest_frame_ms(), errors, stages, counts, counts_error)
    return Read(out, members, registry_errors)


def _members(client: redis.Redis, keys: Keys, names: dict[Kind, list[str]],
             registry_errors: dict[str, str]) -> dict[Kind, list[dict]]:
    """The live members of each readable registry (one pipelined round trip for all of them); a
    member hash Redis refuses makes its registry's error."""
    members: dict[Kind, list[dict]] = {kind: [] for kind in ("worker", "producer")}
    asked = [(kind, name) for kind, found in names.items() for name in found]
    if not asked:
        return members
    pipe = client.pipeline(transaction=False)
    for kind, name in asked:
        pipe.hgetall(member_key(keys, kind, name))
    now = time.time()
    for (kind, name), reply in zip(asked, pipe.execute(raise_on_error=False), strict=True):
        error = _refusal(member_key(keys, kind, name), None, reply)
        if error is not None:
            registry_errors.setdefault(kind + "s", error)
            continue
        info = member_info(name, reply, now)
        if info is not None:
            members[kind].append(info)
    for kind in [k for k in members if k + "s" in registry_errors]:
        members[kind] = []  # a registry partly refused is unknown, not short of a member
    return {kind: sorted(found, key=lambda info: info["id"]) for kind, found in members.items()}
