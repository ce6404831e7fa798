"""Prometheus metrics of the live video encoder, per camera (label `camera`): frames encoded and
skipped (by reason), the seconds a frame costs (JPEG decode + H.264 encode), the fMP4 bytes written,
generations started, errors survived; and how many cameras this process encodes now. None has a
field in the camera's stats hash: the encoder's output is the video stream itself."""

from prometheus_client import Counter, Gauge, Histogram

FRAMES_ENCODED = Counter("framecast_video_frames_encoded_total",
                         "Annotated frames encoded into the camera's H.264 live view", ["camera"])
FRAMES_SKIPPED = Counter("framecast_video_frames_skipped_total",
                         "Annotated frames not encoded, by reason: behind (the encoder skipped to the newest "
                         "frame), stale (its capture time was not after the previous one's), bad (an "
                         "undecodable envelope or JPEG)", ["camera", "reason"])
ENCODE_SECONDS = Histogram("framecast_video_encode_seconds",
                           "CPU time of one frame: JPEG decode (or the reused picture) plus H.264 encode",
                           ["camera"], buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0))
BYTES_OUT = Counter("framecast_video_bytes_total",
                    "Bytes of fMP4 (init segments and fragments) written to Redis", ["camera"])
GENERATIONS = Counter("framecast_video_generations_total",
                      "Generations this process started (a lease taken, or a new frame size)", ["camera"])
REFUSED = Counter("framecast_video_writes_refused_total",
                  "Fragments the fenced write refused: the lease had moved to another process", ["camera"])
ERRORS = Counter("framecast_video_errors_total",
                 "Errors the encoder survived, by chore: lease (taking a camera), watch (reading the viewers), "
                 "encoder (a camera's encoding stopped by an error; taken again after a backoff), encode "
                 "(x264 refused a frame)", ["camera", "chore"])
ENCODING = Gauge("framecast_video_cameras_encoding", "Cameras whose live video this process encodes now")
