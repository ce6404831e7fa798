"""Fan-out of each camera stream's frames to its viewers: one Redis reader per camera stream per process.

A CameraFeed takes the ordered frames of its FrameSource (web.source) on its own thread, frames each
JPEG as a multipart part once, and puts it into every viewer's one-slot Mailbox. A slow viewer's
mailbox just holds the newest part (the older one is counted as skipped), so it never delays the
reader or the other viewers and never grows. The Broadcaster starts a camera stream's feed with its
first viewer; the feed retires itself `linger` seconds after its last viewer left.

A camera has three views, each its own feed: `annotated` (the workers' frames), `raw` (the
producer's) and `motion` (the annotated frames with the motion boxes drawn: web.motion_view).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from common.envelope import Frame
from common.keys import Keys
from common.threads import service_thread
from web import mjpeg, motion_view
from web.metrics import CameraCounts, counts_for
from web.source import FrameSource, NoSignal
from web.streams import stream_key

VIEWS = ("annotated", "raw", "motion")


def _published_ns(frame: Frame) -> int | None:
    """When the worker handed the frame to Redis (its `published` stage mark), if it says."""
    published_us = frame.marks_us().get("published")
    return None if published_us is None else frame.ts + published_us * 1000


class Mailbox:
    """One viewer's slot for the newest part: the feed's thread puts, the viewer's thread gets."""

    def __init__(self, cam: str, counts: CameraCounts):
        self.cam = cam
        self.counts = counts
        self._cond = threading.Condition()
        self._part: bytes | None = None
        self._published_ns: int | None = None  # when the worker published the part's frame
        self.closed = False

    def put(self, part: bytes, published_ns: int | None = None) -> None:
        with self._cond:
            if self._part is not None:
                self.counts.frame_skipped()
            self._part, self._published_ns = part, published_ns
            self._cond.notify()

    def get(self, timeout: float) -> bytes | None:
        """The newest part, which the viewer's thread writes to its socket at once (so its `send`
        time, publish to here, is measured here), or None after `timeout`."""
        with self._cond:
            if self._part is None and not self.closed:
                self._cond.wait(timeout)
            part, self._part = self._part, None
            published_ns = self._published_ns
        if part is not None:
            send_ms = None if published_ns is None else (time.time_ns() - published_ns) / 1e6
            self.counts.frame_sent(len(part), send_ms)
        return part

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()


class CameraFeed:
    """The viewers of one camera stream in this process, and the thread that feeds them from its source."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, view: str, no_signal_after: float,
                 linger: float):
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}")
        self.cam = cam
        self.view = view
        raw = view == "raw"
        self.render = motion_view.render if view == "motion" else None
        self.no_signal_after = no_signal_after
        self.linger = linger
        self.stop = threading.Event()
        self.source = FrameSource(client, stream_key(keys, cam, raw), cam, raw, no_signal_after, self.stop)
        self._lock = threading.Lock()
        self._viewers: set[Mailbox] = set()
        self._last_viewer_left = time.monotonic()
        self._last_frame_at = 0.0  # monotonic time of the last frame put out
        self._last_part: bytes | None = None
        self._no_signal: bytes | None = None  # the current gap's picture, rendered once
        self.retired = False
        self.thread = service_thread(self._run, f"feed-{cam}-{view}", cam=cam)

    @property
    def out_of_order(self) -> int:
        return self.source.out_of_order

    # ---- viewers (their own threads) -------------------------------------------------------------------
    def add(self, mailbox: Mailbox) -> bool:
        """Add a viewer, who sees the current picture at once; False when the feed has retired."""
        with self._lock:
            if self.retired:
                return False
            self._viewers.add(mailbox)
            fresh = time.monotonic() - self._last_frame_at < self.no_signal_after
            current = self._last_part if fresh else self._no_signal
        if current is not None:
            mailbox.put(current)
        return True

    def remove(self, mailbox: Mailbox) -> None:
        with self._lock:
            self._viewers.discard(mailbox)
            if not self._viewers:
                self._last_viewer_left = time.monotonic()

    def viewers(self) -> int:
        with self._lock:
            return len(self._viewers)

    def close(self) -> None:
        """Stop the reader and release every viewer (their responses end)."""
        self.stop.set()
        with self._lock:
            viewers = list(self._viewers)
        for mailbox in viewers:
            mailbox.close()

    # ---- the feed's thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        frames = self.source.frames()
        try:
            for item in frames:
                if isinstance(item, Frame):
                    self._show(mjpeg.part(self._picture(item), item.seq, item.ts), _published_ns(item))
                elif isinstance(item, NoSignal):
                    self._show_no_signal(item)
                if self.stop.is_set() or self._retire_if_idle():
                    break
        finally:
            frames.close()

    def _picture(self, frame: Frame) -> bytes:
        """The JPEG the view shows; a motion view whose frame cannot be drawn on shows it as it is."""
        if self.render is None:
            return frame.jpeg
        try:
            return self.render(frame)
        except Exception:  # noqa: BLE001 - one bad frame must not stop the feed
            return frame.jpeg

    def _retire_if_idle(self) -> bool:
        """Retire when no viewer has been here for `linger` seconds. Under the lock `add` takes, so a
        viewer never joins a feed that is going away (the Broadcaster starts a new one instead)."""
        with self._lock:
            if self._viewers or time.monotonic() - self._last_viewer_left < self.linger:
                return False
            self.retired = True
            return True

    def _show(self, part: bytes, published_ns: int | None = None) -> None:
        with self._lock:
            self._last_part = part
            self._last_frame_at = time.monotonic()
            self._no_signal = None
            targets = list(self._viewers)
        for mailbox in targets:
            mailbox.put(part, published_ns)

    def _show_no_signal(self, event: NoSignal) -> None:
        """The gap's picture to every viewer: rendered once per gap, re-sent when the source repeats it."""
        with self._lock:
            picture = self._no_signal
        if event.first or picture is None:
            picture = mjpeg.part(mjpeg.no_signal_jpeg(self.cam, since=event.last_frame_at))
        with self._lock:
            self._no_signal = picture
            targets = list(self._viewers)
        for mailbox in targets:
            mailbox.put(picture)


NO_SIGNAL_INTERVALS = 3  # frame intervals of silence before "no signal", for cameras slower than web.no_signal_after allows


def no_signal_threshold(no_signal_after: float, fps: float) -> float:
    """Seconds without a frame before a camera's viewers get "no signal": max(web.no_signal_after,
    NO_SIGNAL_INTERVALS frame intervals at its configured fps), so a 0.2 fps camera does not flash
    "no signal" between two of its frames."""
    return max(no_signal_after, NO_SIGNAL_INTERVALS / fps)


class Broadcaster:
    """The feeds of one web process: viewers subscribe and unsubscribe here, and the first viewer of a
    camera stream starts its feed."""

    def __init__(self, client: redis.Redis, keys: Keys, no_signal_after: Callable[[str], float], linger: float):
        self.client = client
        self.keys = keys
        self.no_signal_after = no_signal_after  # cam -> its threshold (no_signal_threshold)
        self.linger = linger
        self._lock = threading.Lock()
        self._feeds: dict[tuple[str, str], CameraFeed] = {}
        self._closed = False
        self.readers_started = 0

    def subscribe(self, cam: str, view: str = "annotated") -> Mailbox:
        """A new viewer's mailbox; starts the camera stream's feed when none is running."""
        counts = counts_for(cam)
        mailbox = Mailbox(cam, counts)
        counts.viewer_joined()  # unsubscribe, which every viewer reaches, counts the leaving
        with self._lock:
            if self._closed:  # shutting down: the viewer's response ends at once
                mailbox.close()
                return mailbox
            feed = self._feeds.get((cam, view))
            if feed is None or not feed.add(mailbox):
                feed = CameraFeed(self.client, self.keys, cam, view, self.no_signal_after(cam), self.linger)
                self._feeds[(cam, view)] = feed
                self.readers_started += 1
                feed.thread.start()
                feed.add(mailbox)
        return mailbox

    def unsubscribe(self, mailbox: Mailbox, view: str = "annotated") -> None:
        mailbox.close()
        with self._lock:
            feed = self._feeds.get((mailbox.cam, view))
        if feed is not None:
            feed.remove(mailbox)
        mailbox.counts.viewer_left()

    def close(self) -> None:
        """Stop every feed and release every viewer (process shutdown, tests)."""
        with self._lock:
            self._closed = True
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for feed in feeds:
            feed.close()
        for feed in feeds:
            feed.thread.join(timeout=5)

    def feeds(self) -> dict[tuple[str, str], CameraFeed]:
        """The running feeds (retired ones are forgotten here)."""
        with self._lock:
            self._feeds = {k: f for k, f in self._feeds.items() if not f.retired}
            return dict(self._feeds)

    def viewer_counts(self) -> dict[str, int]:
        """Viewers per camera in this process (every view together)."""
        out: dict[str, int] = {}
        for (cam, _view), feed in self.feeds().items():
            out[cam] = out.get(cam, 0) + feed.viewers()
        return out
