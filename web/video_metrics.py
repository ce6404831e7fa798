"""The H.264 live view's Prometheus metrics in the web tier, per camera (never per viewer).

Kept apart from web.metrics (the MJPEG feeds'): a fragment is not a frame to a viewer (a skipped
fragment costs the viewer the rest of its group of pictures, not one picture), and the two views'
figures are compared side by side on /metrics (bytes out per viewer-second, for one).
"""

from functools import cache

from prometheus_client import Counter, Gauge

VIEWERS = Gauge("framecast_web_video_viewers", "H.264 (fMP4) viewers connected", ["camera"],
                multiprocess_mode="livesum")
READERS = Gauge("framecast_web_video_readers", "Redis readers of cameras' fMP4 streams (one per camera per "
                "process)", multiprocess_mode="livesum")
FRAGMENTS_SENT = Counter("framecast_web_video_fragments_sent_total", "fMP4 fragments handed to viewers",
                         ["camera"])
FRAGMENTS_SKIPPED = Counter("framecast_web_video_fragments_skipped_total",
                            "fMP4 fragments a viewer did not get: it overflowed its queue (or had just "
                            "joined) and waited for the next keyframe", ["camera"])
BYTES_OUT = Counter("framecast_web_video_bytes_out_total", "fMP4 bytes (init segments and fragments) "
                    "handed to viewers", ["camera"])
GENERATIONS = Counter("framecast_web_video_generation_changes_total", "New init segments seen (another "
                      "encoder took over, or a new size): the camera's viewers reconnect", ["camera"])
NO_VIDEO = Counter("framecast_web_video_no_video_total", "H.264 requests answered 503 because no encoder "
                   "published an init segment in time", ["camera"])
READ_ERRORS = Counter("framecast_web_video_read_errors_total", "Failed reads of a camera's fMP4 stream or "
                      "init, or of the viewer announcements", ["camera"])


class VideoCounts:
    """The video metrics of one camera, looked up once (not on every fragment)."""

    def __init__(self, cam: str):
        self._viewers = VIEWERS.labels(camera=cam)
        self._sent = FRAGMENTS_SENT.labels(camera=cam)
        self._skipped = FRAGMENTS_SKIPPED.labels(camera=cam)
        self._bytes = BYTES_OUT.labels(camera=cam)
        self._generations = GENERATIONS.labels(camera=cam)
        self._no_video = NO_VIDEO.labels(camera=cam)
        self._read_errors = READ_ERRORS.labels(camera=cam)

    def viewer_joined(self) -> None:
        self._viewers.inc()

    def viewer_left(self) -> None:
        self._viewers.dec()

    def sent(self, size: int, fragment: bool = True) -> None:
        if fragment:
            self._sent.inc()
        self._bytes.inc(size)

    def skipped(self, count: int = 1) -> None:
        if count:
            self._skipped.inc(count)

    def generation_changed(self) -> None:
        self._generations.inc()

    def no_video(self) -> None:
        self._no_video.inc()

    def read_failed(self) -> None:
        self._read_errors.inc()


@cache
def video_counts_for(cam: str) -> VideoCounts:
    """The one VideoCounts of `cam` in this process."""
    return VideoCounts(cam)
