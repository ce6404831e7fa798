"""The worker's Prometheus metrics, per camera (label `camera`) where they concern one, and the
per-camera figures a `CameraAccount` counts: each defined once, with its Redis stats field when the
cluster view shows it."""

from prometheus_client import Counter, Gauge, Histogram

from common.metrics import MS_BUCKETS
from common.stats import Figure, StatsField

STAGE_BUCKETS = (0.1, 0.25, 0.5, *MS_BUCKETS)  # most stages of a frame take well under a millisecond

FRAMES_PROCESSED = Counter("framecast_worker_frames_processed_total", "Frames detected and published", ["camera"])
FRAMES_SKIPPED = Counter("framecast_worker_frames_skipped_total",
                         "Frames acked without processing because they were stale (live mode)", ["camera"])
FRAMES_FAILED = Counter("framecast_worker_frames_failed_total",
                        "Frames that could not be processed and were dead-lettered, by reason",
                        ["camera", "reason"])
FRAMES_RECLAIMED = Counter("framecast_worker_frames_reclaimed_total",
                           "Frames claimed from consumers that stopped processing them", ["camera"])
INFERENCE_MS = Histogram("framecast_worker_inference_ms", "Detector time per frame (ms)", ["camera"],
                         buckets=MS_BUCKETS)
END_TO_END_MS = Histogram("framecast_worker_end_to_end_ms", "Capture to annotated frame published (ms)",
                          ["camera"], buckets=MS_BUCKETS)
STAGE_MS = Histogram("framecast_worker_stage_ms",
                     "Time per pipeline stage of each published frame, from its stage marks (ms): producer "
                     "encode, queue (producer send queue), transit (Redis and the wait for a worker), decode, "
                     "detect, annotate, reencode, publish", ["camera", "stage"], buckets=STAGE_BUCKETS)
FRAMES_FENCED = Counter("framecast_worker_frames_fenced_total",
                        "Frames whose results were not published because another consumer had reclaimed them "
                        "(or they were acknowledged) by the time this worker published them", ["camera"])
FRAMES_LOST = Counter("framecast_worker_frames_lost_total",
                      "Backlog frames trimmed from the stream while a consumer held them unacknowledged", ["camera"])
GROUP_LAG = Gauge("framecast_worker_group_lag", "Entries in the frames stream not yet read by the group",
                  ["camera"])
GROUP_PENDING = Gauge("framecast_worker_group_pending", "Entries read by the group but not acknowledged",
                      ["camera"])
REDIS_OUTAGES = Counter("framecast_worker_redis_outages_total",
                        "Times the worker lost Redis and started reconnecting")
GROUPS_RECREATED = Counter("framecast_worker_groups_recreated_total",
                           "Consumer groups the worker re-created after they vanished (Redis restart, FLUSHALL)",
                           ["camera"])
CAMERA_REFUSED_KEYS = Counter("framecast_worker_camera_refused_keys_total",
                              "Times a camera was taken out of service for a key Redis refuses (e.g. a stream "
                              "of the wrong type), or the refusal changed", ["camera"])
READ_PASSES = Counter("framecast_worker_read_passes_total",
                      "Read passes: naming every stream the worker serves, or only those the arrivals "
                      "stream announced", ["kind"])
CAMERA_OUT_OF_SERVICE = Gauge("framecast_worker_camera_out_of_service",
                              "1 while the camera is out of service for a key Redis refuses, retried every "
                              "10-30 s", ["camera"])

PROCESSED = Figure(FRAMES_PROCESSED, StatsField.PROCESSED)
SKIPPED = Figure(FRAMES_SKIPPED, StatsField.SKIPPED_STALE)
FAILED = Figure(FRAMES_FAILED, StatsField.FAILED)
RECLAIMED = Figure(FRAMES_RECLAIMED)
FENCED = FRAMES_FENCED
LOST = Figure(FRAMES_LOST, StatsField.LOST)
INFERENCE = Figure(INFERENCE_MS, StatsField.INFER_MS)
END_TO_END = Figure(END_TO_END_MS, StatsField.LATENCY_MS)
STAGE = Figure(STAGE_MS)
LAG = Figure(GROUP_LAG)
PENDING = Figure(GROUP_PENDING)
RECREATED = Figure(GROUPS_RECREATED)
REFUSED_KEYS = Figure(CAMERA_REFUSED_KEYS)
OUT_OF_SERVICE = Figure(CAMERA_OUT_OF_SERVICE)

# Motion gating: how each frame was inspected, per the producer's verdict and the worker's region plan.
FRAMES_INSPECTED = Counter("framecast_worker_frames_inspected_total",
                           "Frames by what the model saw: full (the whole frame), regions (squares around "
                           "motion), none (nothing moved: no decode, no inference)", ["camera", "inspect"])
INFERENCE_RUNS = Counter("framecast_worker_inference_calls_total",
                         "Model runs (a regions frame runs it once per region)", ["camera"])
REGIONS_PER_FRAME = Histogram("framecast_worker_regions_per_frame", "Regions the model ran on, per regions frame",
                              ["camera"], buckets=(1, 2, 3, 4, 6, 8))

INSPECTED = {"full": Figure(FRAMES_INSPECTED, StatsField.INSPECTED_FULL),
             "regions": Figure(FRAMES_INSPECTED, StatsField.INSPECTED_REGIONS),
             "none": Figure(FRAMES_INSPECTED, StatsField.NOT_INSPECTED)}
INFERENCE_CALLS = Figure(INFERENCE_RUNS, StatsField.INFERENCE_CALLS)
REGIONS = Figure(REGIONS_PER_FRAME)
