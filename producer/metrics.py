"""The producer's Prometheus metrics (one registry per process; label `camera`)."""

from prometheus_client import Counter, Gauge, Histogram

from common.metrics import MS_BUCKETS

FRAMES_CAPTURED = Counter("framecast_producer_frames_captured_total", "Frames read from the source", ["camera"])
FRAMES_PUBLISHED = Counter("framecast_producer_frames_published_total", "Frames added to Redis", ["camera"])
FRAMES_DROPPED = Counter(
    "framecast_producer_frames_dropped_total",
    "Frames not published: late (publisher behind the source), redis (unavailable), encode (failed)",
    ["camera", "reason"],
)
FRAMES_DECIMATED = Counter(
    "framecast_producer_frames_decimated_total", "Source frames skipped to respect the fps cap", ["camera"]
)
ENCODE_MS = Histogram("framecast_producer_encode_ms", "Resize and JPEG encode time (ms)", ["camera"],
                      buckets=MS_BUCKETS)
SOURCE_RECONNECTS = Counter("framecast_producer_source_reconnects_total", "Source re-open attempts", ["camera"])
SOURCE_UP = Gauge("framecast_producer_source_up", "1 while the source delivers frames", ["camera"])
