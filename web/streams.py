"""What the routes read about a camera's streams besides the frames: which stream a request means,
and how old its newest entry is."""

from __future__ import annotations

import time

import redis

from common.connection import CONNECTION_ERRORS
from common.keys import Keys
from common.text import as_str


def stream_key(keys: Keys, cam: str, raw: bool) -> str:
    """The annotated frames of `cam`, or with `raw` the producer's."""
    return keys.frames(cam) if raw else keys.annotated(cam)


def last_entry_age_s(client: redis.Redis, key: str) -> float | None:
    """Seconds since the newest entry of a stream was added (from its id; no payload is read)."""
    try:
        info = client.xinfo_stream(key)
    except Exception as exc:  # a missing stream answers with an error
        if isinstance(exc, CONNECTION_ERRORS):
            raise
        return None
    last = info.get("last-generated-id") or info.get("last_generated_id")
    if not last or info.get("length", 0) == 0:
        return None
    ms = int(as_str(last).split("-")[0])
    return max(0.0, time.time() - ms / 1000)
