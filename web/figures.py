"""The camera figures one web process shares: computed once per `web.figures_interval` and handed to
every caller of /api/cameras, /api/cameras/<cam> and /readyz (and the snapshots' staleness), so a
request costs a lookup and a copy of bytes however many dashboards are open, and Redis sees one
refresh per interval per process (web.readings: two pipelined round trips for all cameras).

A thread of the figures' own refreshes them while someone asks: it starts with the first caller and
rests after IDLE_AFTER_S without one (a process nobody asks costs Redis nothing); the first caller
after a rest, or any caller when the figures are older than STALE_FIGURES intervals (a refresh that
failed, a Redis outage), computes them itself, so an outage answers 503 as before. One computation
runs at a time: callers arriving meanwhile wait for it and share its result. With an interval of 0
every call computes (and nothing runs in the background).

Each camera's summary is serialised once per refresh (`Figures.fragments`), so a filtered or paged
answer is a join of ready JSON, and a request that was asked already since the refresh gets that
answer again without the app (web.answers). Everything in a `Figures` is as of its `at` time.

Staleness follows the camera's own rate: a camera is stale (and not ready) when its newest annotated
frame is older than max(web.stale_after, STALE_INTERVALS frame intervals), the frame interval being
1 / its measured rate (fps_in, summed over its producers' heartbeats) when that is above 0, else
1 / its configured fps.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from common import threads
from common.config import CameraConfig, Settings
from common.connection import CONNECTION_ERRORS, ThrottledLog, describe_error
from common.keys import Keys
from common.stats import StatsField
from web import metrics as web_metrics
from web.readings import CameraRead, CameraReading, Read, read_all

STALE_INTERVALS = 3  # frame intervals without a frame before a camera is stale
IDLE_AFTER_S = 10.0  # no caller for this long: the refresher rests (dashboards poll every 2 s)
STALE_FIGURES = 2  # figures older than this many intervals are computed by the caller
STATUSES = ("live", "stale", "waiting", "out_of_service")
log = logging.getLogger("framecast.web")


def stale_after(settings_stale_after: float, camera: CameraConfig, fps_in: float | None) -> float:
    """Seconds without a frame after which `camera` is stale: max(web.stale_after, STALE_INTERVALS
    frame intervals at its measured rate when above 0, else at its configured fps)."""
    rate = fps_in if fps_in else camera.fps
    return max(settings_stale_after, STALE_INTERVALS / rate)


def _serialise(value) -> bytes:
    """JSON as Flask's jsonify writes it (sorted keys, compact), as bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Figures:
    """The figures of one refresh; never changed once made."""

    at: float  # epoch seconds when they were computed
    cameras: tuple[dict, ...]  # per camera, in config order: what /api/cameras gives
    fragments: tuple[bytes, ...]  # the same, each as JSON
    index: dict[str, int]  # cam -> its position in cameras
    registry_errors: dict[str, str]
    frame_ms: dict[str, int | None]  # cam -> when its newest annotated frame was added (epoch ms)
    stale_after: dict[str, float]  # cam -> its staleness threshold (s)
    workers_live: int  # live workers (for the dashboard's summary line)

    def camera(self, cam: str) -> dict:
        return self.cameras[self.index[cam]]

    def fragment(self, cam: str) -> bytes:
        return self.fragments[self.index[cam]]


def _fps(members: list[dict]) -> dict[str, float]:
    """Frames/s per camera summed over the live producers or workers that serve it, as each measured
    its own rate for its heartbeat: cluster-wide, and the same in every web process."""
    totals: dict[str, float] = {}
    for member in members:
        rates = member.get("fps")
        if isinstance(rates, dict):
            for cam, rate in rates.items():
                if isinstance(rate, int | float) and not isinstance(rate, bool):
                    totals[cam] = totals.get(cam, 0.0) + rate
    return {cam: round(total, 2) for cam, total in totals.items()}


def _serving(workers: list[dict]) -> dict[str, list[str]]:
    """cam -> the ids of the workers whose heartbeat lists it."""
    out: dict[str, list[str]] = {}
    for worker in workers:
        for cam in worker.get("cameras") or []:
            if isinstance(cam, str):
                out.setdefault(cam, []).append(worker["id"])
    return out


def _motion(enabled: bool, stats: dict) -> dict:
    """Motion gating of one camera: whether it is on, frames by how the model saw them, model runs."""
    fields = {"inspected_full": StatsField.INSPECTED_FULL, "inspected_regions": StatsField.INSPECTED_REGIONS,
              "not_inspected": StatsField.NOT_INSPECTED, "inference_calls": StatsField.INFERENCE_CALLS}
    return {"enabled": enabled, **{name: int(stats.get(f, 0)) for name, f in fields.items()}}


def _overlay(camera: CameraConfig) -> dict:
    """What the dashboard draws over a camera's picture: its zones and lines (frame fractions)."""
    return {
        "zones": [{"name": z.name, "points": [list(p) for p in z.points], "labels": list(z.labels)}
                  for z in camera.zones],
        "lines": [{"name": ln.name, "points": [list(p) for p in ln.points], "in_side": ln.in_side,
                   "labels": list(ln.labels)} for ln in camera.lines],
    }


class SharedFigures:
    """The camera figures of one web process (see the module docstring)."""

    def __init__(self, settings: Settings, client: redis.Redis, keys: Keys,
                 viewers: Callable[[], dict[str, int]], stopping: threading.Event):
        self.settings = settings
        self.interval = settings.web.figures_interval
        self._client, self._keys, self._viewers, self._stopping = client, keys, viewers, stopping
        self._readings = {camera.id: CameraReading() for camera in settings.cameras}
        self._overlays = {camera.id: _overlay(camera) for camera in settings.cameras}
        self._figures: Figures | None = None
        self._computed = 0.0  # monotonic time of the newest figures
        self._asked = 0.0  # monotonic time of the last caller
        self._lock = threading.Lock()  # one computation at a time; guards the readings
        self._thread_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failures = ThrottledLog(60.0)
        self.refreshes = 0  # computations so far (the tests and the benchmark count them)

    def latest(self) -> Figures | None:
        """The newest figures, computing none (None before the first): for callers that must not
        cost a refresh, such as a snapshot."""
        return self._figures

    def fresh(self) -> Figures | None:
        """The figures `current` would give now without computing, else None (before the first, when
        they are too old, with an interval of 0): for web.answers, which falls back on the app then.
        Counts as a caller, as `current` does."""
        if self.interval == 0:
            return None
        self._asked = time.monotonic()
        figures = self._figures
        if figures is None or self._asked - self._computed > STALE_FIGURES * self.interval:
            return None
        self._start_refresher()
        return figures

    def current(self) -> Figures:
        """The figures, at most about one interval old. Runs on the request's thread/greenlet."""
        self._asked = time.monotonic()
        if self.interval == 0:
            with self._lock:
                return self._compute()
        figures = self._figures
        if figures is None or time.monotonic() - self._computed > STALE_FIGURES * self.interval:
            with self._lock:  # a computation under way: wait for it and take its figures
                if self._figures is None or time.monotonic() - self._computed > STALE_FIGURES * self.interval:
                    self._compute()
                figures = self._figures
        self._start_refresher()
        return figures

    def _start_refresher(self) -> None:
        if self._thread is not None or self._stopping.is_set():
            return
        with self._thread_lock:
            if self._thread is None:
                self._thread = threads.start_thread(self._refresh_loop, "web-figures")

    def _refresh_loop(self) -> None:
        """The refresher's thread (a greenlet under gunicorn): a refresh per interval while callers ask."""
        while not self._stopping.is_set():
            now = time.monotonic()
            due = self._computed + self.interval
            if now - self._asked > IDLE_AFTER_S or now < due:
                self._stopping.wait(min(0.5, max(0.005, due - now)))
                continue
            try:
                with self._lock:
                    if time.monotonic() >= self._computed + self.interval:
                        self._compute()
            except (*CONNECTION_ERRORS, redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
                # Callers compute (and answer 503) once the figures are STALE_FIGURES intervals old.
                if self._failures.due("refresh"):
                    log.warning("camera figures not refreshed", extra={"error": describe_error(exc)})
                self._stopping.wait(self.interval)

    def _compute(self) -> Figures:
        """Read everything and build the figures; under self._lock."""
        read = read_all(self._client, self._keys, self.settings.cameras, self._readings)
        figures = self._build(read, time.time())
        self._figures, self._computed = figures, time.monotonic()
        self.refreshes += 1
        return figures

    def _build(self, read: Read, now: float) -> Figures:
        workers, producers = read.members["worker"], read.members["producer"]
        fps_in = None if "producers" in read.registry_errors else _fps(producers)
        fps_out = None if "workers" in read.registry_errors else _fps(workers)
        serving = _serving(workers)
        viewers = self._viewers()
        web_stale_after = self.settings.web.stale_after
        cameras, thresholds = [], {}
        for camera in self.settings.cameras:
            cam = camera.id
            figures = read.cameras[cam]
            cam_fps_in = None if fps_in is None else fps_in.get(cam, 0.0)
            threshold = stale_after(web_stale_after, camera, cam_fps_in)
            thresholds[cam] = threshold
            cameras.append(self._summary(camera, figures, now, threshold, cam_fps_in,
                                         None if fps_out is None else fps_out.get(cam, 0.0),
                                         serving.get(cam, []), viewers.get(cam, 0)))
        return Figures(now, tuple(cameras), tuple(_serialise(c) for c in cameras),
                       {c["id"]: i for i, c in enumerate(cameras)}, dict(read.registry_errors),
                       {cam: figures.frame_ms for cam, figures in read.cameras.items()}, thresholds, len(workers))

    def _summary(self, camera: CameraConfig, figures: CameraRead, now: float, threshold: float,
                 fps_in: float | None, fps_out: float | None, workers: list[str], viewers: int) -> dict:
        stats = figures.stats
        age_s = None if figures.frame_ms is None else max(0.0, now - figures.frame_ms / 1000)
        status = "live" if age_s is not None and age_s < threshold else ("stale" if age_s is not None else "waiting")
        summary = {
            "id": camera.id, "name": camera.display_name, "source_kind": camera.source_kind,
            "source": camera.source_display, "mode": camera.mode,
            "status": "out_of_service" if figures.errors else status,
            "fps_in": fps_in, "fps_out": fps_out,
            "latency_ms": stats.get(StatsField.LATENCY_MS), "infer_ms": stats.get(StatsField.INFER_MS),
            "last_frame_age_s": None if age_s is None else round(age_s, 3), "stale_after_s": round(threshold, 3),
            "published": int(stats.get(StatsField.PUBLISHED, 0)), "processed": int(stats.get(StatsField.PROCESSED, 0)),
            "dropped": int(stats.get(StatsField.DROPPED, 0)), "lost": int(stats.get(StatsField.LOST, 0)),
            "skipped_stale": int(stats.get(StatsField.SKIPPED_STALE, 0)),
            "failed": int(stats.get(StatsField.FAILED, 0)), "source_reconnects": int(stats.get(StatsField.RECONNECTS, 0)),
            "motion": _motion(camera.motion_enabled, stats),
            "workers": workers, "viewers": viewers,
            "stages": figures.stages,  # p50/p95 per stage, newest frames
            "send_ms": web_metrics.counts_for(camera.id).send_summary(),  # this process's viewers
            **self._overlays[camera.id], "counts": figures.counts,
        }
        if figures.counts_error is not None:
            summary["counts_error"] = figures.counts_error
        if figures.errors:
            summary["error"] = "; ".join(figures.errors)
        return summary
