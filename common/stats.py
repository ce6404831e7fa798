"""Per-camera figures, each kept in two places through one call: the process's Prometheus metrics
(what an operator scrapes per process) and the camera's stats hash in Redis (`Keys.stats(cam)`, what
any web process on any host shows for the whole cluster).

A service describes its figures once (`Figure`s) and counts through a `CameraAccount`; increments
for Redis are batched and written about once a second, or in the same pipeline as the write they
describe (`queue`/`settle`), which makes them exact even when the process is killed right after.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import redis

from common.connection import CONNECTION_ERRORS
from common.keys import Keys
from common.text import as_str


class StatsField:
    """Field names of the Redis stats hash: the writers' and the readers' one vocabulary."""

    PUBLISHED = "published"  # producer: frames added to the camera's stream
    DROPPED = "dropped"  # producer: frames not published (late, redis, encode, backpressure, shutdown)
    LOST = "lost"  # producer: backlog frames gone from a reset stream before workers acknowledged them
    RECONNECTS = "reconnects"  # producer: source re-open attempts
    PROCESSED = "processed"  # workers: frames detected and published
    SKIPPED_STALE = "skipped_stale"  # workers: live frames acked unprocessed because they were stale
    FAILED = "failed"  # workers: frames dead-lettered
    LATENCY_MS = "latency_ms"  # workers (gauge): capture to annotated frame, last frame
    INFER_MS = "infer_ms"  # workers (gauge): detector time, last frame
    INSPECTED_FULL = "inspected_full"  # workers: frames the model saw whole
    INSPECTED_REGIONS = "inspected_regions"  # workers: frames the model saw only where they moved
    NOT_INSPECTED = "not_inspected"  # workers: frames nothing moved in (no inference)
    INFERENCE_CALLS = "inference_calls"  # workers: model runs (a regions frame may take several)


@dataclass(frozen=True)
class Figure:
    """One named per-camera figure: its Prometheus metric (labelled `camera`, maybe more) and, when
    the cluster view shows it, its field in the Redis stats hash."""

    metric: Any  # prometheus_client Counter, Gauge or Histogram
    field: str | None = None


class StatsWriter:
    """Accumulates one camera's Redis counters and gauges; the threads of one camera share it."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, interval: float = 1.0):
        self._client = client
        self.key = keys.stats(cam)
        self._interval = interval
        self._counts: dict[str, int] = defaultdict(int)
        self._gauges: dict[str, float] = {}
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def incr(self, field: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[field] += amount

    def gauge(self, field: str, value: float) -> None:
        with self._lock:
            self._gauges[field] = value

    def _queue_pending(self, pipe) -> None:
        for field, amount in self._counts.items():
            pipe.hincrby(self.key, field, amount)
        if self._gauges:
            pipe.hset(self.key, mapping={k: repr(float(v)) for k, v in self._gauges.items()})

    def queue(self, pipe) -> tuple[dict[str, int], dict[str, float]]:
        """Add the pending figures to `pipe`, the caller's pipeline; returns what it took, for `settle`."""
        with self._lock:
            self._queue_pending(pipe)
            taken = (dict(self._counts), dict(self._gauges))
            self._counts.clear()
            self._gauges.clear()
            return taken

    def settle(self, taken: tuple[dict[str, int], dict[str, float]], written: bool) -> None:
        """After the pipeline given to `queue` ran (`written`) or failed: keep what it did not write."""
        if written:
            return
        with self._lock:
            counts, gauges = taken
            for field, amount in counts.items():
                self._counts[field] += amount
            for field, value in gauges.items():
                self._gauges.setdefault(field, value)

    def maybe_flush(self) -> None:
        """Flush if the interval has passed; called from the owning loop after each frame."""
        if time.monotonic() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> bool:
        """Write pending increments; on a Redis outage keep them for the next flush. True if written."""
        self._last_flush = time.monotonic()
        pipe = self._client.pipeline(transaction=False)
        taken = self.queue(pipe)
        if not len(pipe):
            return True
        try:
            pipe.execute()
        # an outage (RedisClusterException, not a RedisError: no cluster node reachable), or a key of
        # the wrong type
        except (*CONNECTION_ERRORS, redis.exceptions.RedisError, redis.exceptions.RedisClusterException):
            self.settle(taken, False)
            return False
        return True


class CameraAccount:
    """One camera's figures in one process: every call updates Prometheus and, for figures with a
    stats field, the Redis hash. `queue`/`settle` belong to the one thread that writes the camera's
    frames; the other calls may come from any of the camera's threads."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, interval: float = 1.0):
        self.cam = cam
        self.stats = StatsWriter(client, keys, cam, interval)
        self._queued: list[tuple[tuple, Figure | None, int, dict[str, str]]] = []

    def queue(self, pipe, figure: Figure | None = None, amount: int = 1, **labels: str) -> None:
        """Put the pending Redis figures, plus `amount` of `figure`, in the caller's pipeline (the one
        that does what the figure counts), so the count is written exactly when the work is; call
        `settle` after the pipeline ran or failed. Several figures may be queued in one pipeline
        before its one `settle`."""
        taken = self.stats.queue(pipe)
        if figure is not None and amount > 0 and figure.field:
            pipe.hincrby(self.stats.key, figure.field, amount)
        self._queued.append((taken, figure, amount, labels))

    def settle(self, written: bool) -> None:
        """After the pipeline given to `queue`: count the figures in Prometheus if it was written, and
        keep the other pending figures for the next write if it was not."""
        queued, self._queued = self._queued, []
        for taken, figure, amount, labels in queued:
            self.stats.settle(taken, written)
            if written and figure is not None and amount > 0:
                figure.metric.labels(camera=self.cam, **labels).inc(amount)

    def count(self, figure: Figure, amount: int = 1, **labels: str) -> None:
        if amount <= 0:
            return
        figure.metric.labels(camera=self.cam, **labels).inc(amount)
        if figure.field:
            self.stats.incr(figure.field, amount)

    def set(self, figure: Figure, value: float, **labels: str) -> None:
        figure.metric.labels(camera=self.cam, **labels).set(value)
        if figure.field:
            self.stats.gauge(figure.field, value)

    def observe(self, figure: Figure, value: float, **labels: str) -> None:
        """A histogram sample; the stats hash keeps the latest value as a gauge."""
        figure.metric.labels(camera=self.cam, **labels).observe(value)
        if figure.field:
            self.stats.gauge(figure.field, value)


class RateMeter:
    """Events per second of a growing count, read now and then (a heartbeat): what producers and
    workers put in their heartbeats, so that every web process shows the same rates from its first
    request.

    The rate is taken over the shortest recent window that holds at least MIN_EVENTS events (at most
    MAX_WINDOW_S seconds), not only since the previous reading: a camera slower than one frame per
    reading interval (0.2 fps read every 3 s) reads about its rate, not 0 and 1/interval in turns. A
    count that stopped growing reads 0 once it has been still for as long as MIN_EVENTS events take at
    the rate it had, so a camera that stops still reads 0 at the next reading or two."""

    MIN_EVENTS = 2
    MAX_WINDOW_S = 60.0

    def __init__(self, count: int = 0):
        now = time.monotonic()
        self._marks: deque[tuple[float, int]] = deque([(now, count)])  # readings, oldest first
        self._grew_at = now  # the reading at which the count last grew
        self._rate_then = 0.0  # the rate read then

    def rate(self, count: int) -> float:
        now = time.monotonic()
        last_at, last = self._marks[-1]
        if count < last or now <= last_at:  # a counter that started again: no window to measure over
            self._marks = deque([(now, count)])
            self._grew_at, self._rate_then = now, 0.0
            return 0.0
        self._marks.append((now, count))
        while len(self._marks) > 2 and now - self._marks[1][0] >= self.MAX_WINDOW_S:
            self._marks.popleft()
        since_at, since = self._marks[0]
        for at, value in reversed(list(self._marks)[:-1]):
            if count - value >= self.MIN_EVENTS:
                since_at, since = at, value
                break
        rate = (count - since) / (now - since_at)
        if count > last:
            self._grew_at, self._rate_then = now, rate
            return rate
        return 0.0 if self._rate_then * (now - self._grew_at) >= self.MIN_EVENTS else rate


def read_stats(client: redis.Redis, keys: Keys, cam: str) -> dict[str, float]:
    """All counters and gauges of one camera as numbers (missing fields are absent)."""
    raw = client.hgetall(keys.stats(cam))
    out: dict[str, float] = {}
    for field, value in raw.items():
        try:
            out[as_str(field)] = float(value)
        except (TypeError, ValueError):
            continue
    return out
