"""Per-camera counters in Redis (`Keys.stats(cam)`), so any web process on any host can show the
whole cluster's figures. Writers batch increments locally and flush about once a second."""

from __future__ import annotations

import time
from collections import defaultdict

import redis

from common.connection import CONNECTION_ERRORS
from common.keys import Keys

# Counter fields (HINCRBY) and gauge fields (HSET), by writer.
PRODUCER_COUNTERS = ("captured", "published", "dropped", "reconnects")
WORKER_COUNTERS = ("processed", "skipped_stale", "failed", "deadlettered")
GAUGES = ("last_published_ms", "last_processed_ms", "latency_ms", "infer_ms", "source_fps")


class StatsWriter:
    """Accumulates one camera's counters and flushes them to Redis. Not thread-safe: one per loop."""

    def __init__(self, client: redis.Redis, keys: Keys, camera_id: str, interval: float = 1.0):
        self._client = client
        self._key = keys.stats(camera_id)
        self._interval = interval
        self._counts: dict[str, int] = defaultdict(int)
        self._gauges: dict[str, float] = {}
        self._last_flush = time.monotonic()

    def incr(self, field: str, amount: int = 1) -> None:
        self._counts[field] += amount

    def gauge(self, field: str, value: float) -> None:
        self._gauges[field] = value

    def maybe_flush(self) -> None:
        """Flush if the interval has passed; called from the owning loop after each frame."""
        if time.monotonic() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> bool:
        """Write pending increments; on a Redis outage keep them for the next flush. True if written."""
        self._last_flush = time.monotonic()
        if not self._counts and not self._gauges:
            return True
        try:
            pipe = self._client.pipeline(transaction=False)
            for field, amount in self._counts.items():
                pipe.hincrby(self._key, field, amount)
            if self._gauges:
                pipe.hset(self._key, mapping={k: repr(float(v)) for k, v in self._gauges.items()})
            pipe.execute()
        except CONNECTION_ERRORS:
            return False
        self._counts.clear()
        self._gauges.clear()
        return True


class RateMeter:
    """Events per second between successive readings of a growing count: what producers and workers
    put in their heartbeats, so that every web process shows the same rates from its first request."""

    def __init__(self, count: int = 0):
        self._mark = (time.monotonic(), count)

    def rate(self, count: int) -> float:
        now = time.monotonic()
        then, before = self._mark
        self._mark = (now, count)
        return max(0.0, (count - before) / (now - then)) if now > then else 0.0


def read_stats(client: redis.Redis, keys: Keys, camera_id: str) -> dict[str, float]:
    """All counters and gauges of one camera as numbers (missing fields are absent)."""
    raw = client.hgetall(keys.stats(camera_id))
    out: dict[str, float] = {}
    for field, value in raw.items():
        try:
            out[field.decode() if isinstance(field, bytes) else field] = float(value)
        except (TypeError, ValueError):
            continue
    return out
