"""The web tier's Prometheus metrics (per camera; per-viewer labels would grow without bound).

With several gunicorn processes (`framecast web --workers N`) they live in prometheus_client's
multiprocess files (web.serving sets that up) and /metrics sums them over the live processes.
"""

import os

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


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def viewers_of_all_processes() -> dict[str, int]:
    """Viewers per camera summed over the live web processes (multiprocess mode only)."""
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

