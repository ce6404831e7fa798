"""The web tier's Prometheus metrics (per camera; per-viewer labels would grow without bound).

With several gunicorn processes (`framecast web --processes N`) they live in prometheus_client's
multiprocess files (web.serving sets that up) and /metrics sums them over the live processes.
"""

import os
import threading
from collections import deque
from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

import common.metrics  # noqa: F401  (framecast_build_info, on every service's /metrics)
from web.stages import percentile

VIEWERS = Gauge("framecast_web_viewers", "MJPEG viewers connected", ["camera"], multiprocess_mode="livesum")
READERS = Gauge("framecast_web_stream_readers", "Redis stream readers running (one per camera per process)",
                multiprocess_mode="livesum")
FRAMES_SENT = Counter("framecast_web_frames_sent_total", "Frames handed to viewers", ["camera"])
FRAMES_SKIPPED = Counter("framecast_web_frames_skipped_total",
                         "Frames a slow viewer skipped (replaced by a newer one before it was sent)", ["camera"])
FRAMES_OUT_OF_ORDER = Counter("framecast_web_frames_out_of_order_total",
                              "Frames not sent because a newer one had been sent already", ["camera"])
SEND_MS = Histogram("framecast_web_send_ms",
                    "Send stage: from the worker publishing a frame to its part handed to a viewer's socket (ms)",
                    ["camera"], buckets=(0.25, 0.5, 1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 400, 600, 1000, 2000))
BYTES_OUT = Counter("framecast_web_bytes_out_total", "MJPEG bytes handed to viewers", ["camera"])
NO_SIGNAL = Counter("framecast_web_no_signal_total", "Times a camera's feed went to 'no signal'", ["camera"])
READ_ERRORS = Counter("framecast_web_stream_read_errors_total",
                      "Failed reads of a camera's stream (Redis unavailable or restarting)", ["camera"])
FOLLOWERS = Gauge("framecast_web_followers", "Followed feeds open (/api/events/feed, detections?follow=1)",
                  multiprocess_mode="livesum")
FOLLOW_READERS = Gauge("framecast_web_follow_readers",
                       "Redis readers behind followed feeds (one per followed stream per process)",
                       multiprocess_mode="livesum")
FOLLOWERS_DROPPED = Counter("framecast_web_followers_dropped_total",
                            "Followers dropped for falling too far behind, or for a stream Redis refuses")


SEND_WINDOW = 100


class CameraCounts:
    """Every web metric of one camera, updated through named methods (the labelled series are looked
    up once, not on every frame)."""

    def __init__(self, cam: str):
        self._viewers = VIEWERS.labels(camera=cam)
        self._sent = FRAMES_SENT.labels(camera=cam)
        self._send_ms = SEND_MS.labels(camera=cam)
        self._recent_send: deque[float] = deque(maxlen=SEND_WINDOW)  # viewers' threads append
        self._recent_lock = threading.Lock()
        self._bytes = BYTES_OUT.labels(camera=cam)
        self._skipped = FRAMES_SKIPPED.labels(camera=cam)
        self._out_of_order = FRAMES_OUT_OF_ORDER.labels(camera=cam)
        self._no_signal = NO_SIGNAL.labels(camera=cam)
        self._read_errors = READ_ERRORS.labels(camera=cam)

    def viewer_joined(self) -> None:
        self._viewers.inc()

    def viewer_left(self) -> None:
        self._viewers.dec()

    def frame_sent(self, size: int, send_ms: float | None = None) -> None:
        self._sent.inc()
        self._bytes.inc(size)
        if send_ms is not None:
            self._send_ms.observe(send_ms)
            with self._recent_lock:
                self._recent_send.append(send_ms)

    def send_summary(self) -> dict | None:
        """p50/p95 of the send stage over this process's last SEND_WINDOW parts handed to viewers
        (None before any): the browser side of a camera's time, which only this process sees."""
        with self._recent_lock:
            values = list(self._recent_send)
        if not values:
            return None
        return {"frames": len(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}

    def frame_skipped(self) -> None:
        self._skipped.inc()

    def frame_out_of_order(self) -> None:
        self._out_of_order.inc()

    def went_to_no_signal(self) -> None:
        self._no_signal.inc()

    def read_failed(self) -> None:
        self._read_errors.inc()


@cache
def counts_for(cam: str) -> CameraCounts:
    """The one CameraCounts of `cam` in this process."""
    return CameraCounts(cam)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def viewers_per_camera(this_process: dict[str, int]) -> dict[str, int]:
    """Viewers per camera on this host: `this_process`'s own counts, or with several web processes the
    sum over the live ones, read from the multiprocess metrics files (the only place where one process
    can see another's viewers)."""
    if not multiprocess():
        return this_process
    out: dict[str, int] = {}
    for family in registry().collect():
        if family.name == "framecast_web_viewers":
            for sample in family.samples:
                cam = sample.labels.get("camera")
                if cam is not None:
                    out[cam] = out.get(cam, 0) + int(sample.value)
    return out


def registry() -> CollectorRegistry:
    """What /metrics exposes: this process's metrics, or all processes' in multiprocess mode."""
    if not multiprocess():
        return REGISTRY
    merged = CollectorRegistry()
    MultiProcessCollector(merged)
    return merged
