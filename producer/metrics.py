"""The producer's figures per camera: Prometheus metrics (label `camera`), and for those the cluster
view shows, their field in the camera's Redis stats hash (`Figure`, counted through a CameraAccount)."""

from prometheus_client import Counter, Gauge, Histogram

from common.metrics import MS_BUCKETS
from common.stats import Figure, StatsField

FRAMES_CAPTURED = Counter("framecast_producer_frames_captured_total", "Frames read from the source", ["camera"])
FRAMES_PUBLISHED = Counter("framecast_producer_frames_published_total", "Frames added to Redis", ["camera"])
FRAMES_DROPPED = Counter(
    "framecast_producer_frames_dropped_total",
    "Frames not published: late (publisher behind the source), queue_full (Redis slower than the camera), "
    "redis (unavailable), encode (failed, the camera's own JPEG was not one, or over the 16 MiB envelope limit), "
    "backpressure (a live source while a backlog camera's workers are behind), shutdown (queued at exit)",
    ["camera", "reason"],
)
FRAMES_LOST = Counter(
    "framecast_producer_frames_lost_total",
    "Backlog frames published but gone before the workers acknowledged them (the stream was reset: "
    "Redis restarted without persistence, FLUSHALL)", ["camera"],
)
FRAMES_DECIMATED = Counter(
    "framecast_producer_frames_decimated_total", "Source frames skipped to respect the fps cap", ["camera"]
)
BACKPRESSURE_WAITS = Counter("framecast_producer_backpressure_waits_total",
                             "Polls spent holding a backlog camera's frames back while its workers are behind",
                             ["camera"])
FRAMES_PASSED_THROUGH = Counter(
    "framecast_producer_frames_passthrough_total",
    "Frames published as the source's own JPEG, neither decoded nor re-encoded (jpeg_passthrough)", ["camera"],
)
ENCODE_MS = Histogram("framecast_producer_encode_ms", "Resize and JPEG encode time, or the passthrough check (ms)", ["camera"],
                      buckets=MS_BUCKETS)
MOTION_MS = Histogram("framecast_producer_motion_ms", "Motion detection CPU time per frame, its reduced JPEG "
                      "decode included (ms)", ["camera"], buckets=(0.1, 0.25, 0.5, *MS_BUCKETS))
FRAMES_VERDICT = Counter("framecast_producer_frames_verdict_total",
                         "Frames published by motion verdict: full (the model sees the whole frame), regions "
                         "(only where it moved), none (nothing moved: no inference)", ["camera", "inspect"])
SOURCE_RECONNECTS = Counter("framecast_producer_source_reconnects_total", "Source re-open attempts", ["camera"])
SOURCE_UP = Gauge("framecast_producer_source_up", "1 while the source delivers frames", ["camera"])

CAPTURED = Figure(FRAMES_CAPTURED)
PUBLISHED = Figure(FRAMES_PUBLISHED, StatsField.PUBLISHED)
DROPPED = Figure(FRAMES_DROPPED, StatsField.DROPPED)
LOST = Figure(FRAMES_LOST, StatsField.LOST)
DECIMATED = Figure(FRAMES_DECIMATED)
PASSED_THROUGH = Figure(FRAMES_PASSED_THROUGH)
ENCODE = Figure(ENCODE_MS)
MOTION = Figure(MOTION_MS)
VERDICT = Figure(FRAMES_VERDICT)
RECONNECTS = Figure(SOURCE_RECONNECTS, StatsField.RECONNECTS)
UP = Figure(SOURCE_UP)
