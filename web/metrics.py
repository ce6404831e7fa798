"""The web tier's Prometheus metrics (per camera; per-viewer labels would grow without bound).

With several gunicorn processes (`framecast web --processes N`) they live in prometheus_client's
multiprocess files (web.serving sets that up) and /metrics sums them over the live processes.
"""

import os
from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client.multiprocess import MultiProcessCollector

VIEWERS = Gauge("framecast_web_viewers", "MJPEG viewers connected", ["camera"], multiprocess_mode="livesum")
READERS = Gauge("framecast_web_stream_readers", "Redis stream readers running (one per camera per process)",
                multiprocess_mode="livesum")
FRAMES_SENT = Counter("framecast_web_frames_sent_total", "Frames handed to viewers", ["camera"])
FRAMES_SKIPPED = Counter("framecast_web_frames_skipped_total",
                         "Frames a slow viewer skipped (replaced by a newer one before it was sent)", ["camera"])
FRAMES_OUT_OF_ORDER = Counter("framecast_web_frames_out_of_order_total",
                              "Frames not sent because a newer one had been sent already", ["camera"])
BYTES_OUT = Counter("framecast_web_bytes_out_total", "MJPEG bytes handed to viewers", ["camera"])
NO_SIGNAL = Counter("framecast_web_no_signal_total", "Times a camera's feed went to 'no signal'", ["camera"])
READ_ERRORS = Counter("framecast_web_stream_read_errors_total",
                      "Failed reads of a camera's stream (Redis unavailable or restarting)", ["camera"])


class CameraCounts:
    """Every web metric of one camera, updated through named methods (the labelled series are looked
    up once, not on every frame)."""

    def __init__(self, cam: str):
        self._viewers = VIEWERS.labels(camera=cam)
        self._sent = FRAMES_SENT.labels(camera=cam)
        self._bytes = BYTES_OUT.labels(camera=cam)
        self._skipped = FRAMES_SKIPPED.labels(camera=cam)
        self._out_of_order = FRAMES_OUT_OF_ORDER.labels(camera=cam)
        self._no_signal = NO_SIGNAL.labels(camera=cam)
        self._read_errors = READ_ERRORS.labels(camera=cam)

    def viewer_joined(self) -> None:
        self._viewers.inc()

    def viewer_left(self) -> None:
        self._viewers.dec()

    def frame_sent(self, size: int) -> None:
        self._sent.inc()
        self._bytes.inc(size)

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
