"""What the routes read about a camera besides the frames: which stream a request means, how old its
newest entry is, and its figures with whatever is wrong with its keys."""

from __future__ import annotations

import time

import redis

from common.keys import Keys
from common.stats import read_stats
from common.text import as_str
from web.refused_keys import RefusedKeyError, reading, refuses_key


def stream_key(keys: Keys, cam: str, raw: bool) -> str:
    """The annotated frames of `cam`, or with `raw` the producer's."""
    return keys.frames(cam) if raw else keys.annotated(cam)


def last_entry_age_s(client: redis.Redis, key: str, cam: str | None = None) -> float | None:
    """Seconds since the newest entry of a stream was added (from its id; no payload is read); None
    when there is no stream. A key of another type raises RefusedKeyError (web.refused_keys)."""
    with reading(key, cam):
        try:
            info = client.xinfo_stream(key)
        except redis.exceptions.ResponseError as exc:
            if refuses_key(exc):
                raise
            return None  # a missing stream answers "no such key"
    last = info.get("last-generated-id") or info.get("last_generated_id")
    if not last or info.get("length", 0) == 0:
        return None
    ms = int(as_str(last).split("-")[0])
    return max(0.0, time.time() - ms / 1000)


def camera_figures(client: redis.Redis, keys: Keys, cam: str) -> tuple[dict[str, float], float | None, list[str]]:
    """A camera's stats, the age of its newest annotated frame, and what is wrong with its keys: each
    key read on its own, so one refused key leaves the other figures (and cameras) readable."""
    stats: dict[str, float] = {}
    age_s, errors = None, []
    try:
        with reading(keys.stats(cam), cam):
            stats = read_stats(client, keys, cam)
    except RefusedKeyError as exc:
        errors.append(str(exc))
    try:
        # What viewers see: the age of the newest annotated frame, from its stream id (no payload read).
        age_s = last_entry_age_s(client, keys.annotated(cam), cam)
    except RefusedKeyError as exc:
        errors.append(str(exc))
    return stats, age_s, errors
