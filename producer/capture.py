"""A live source's capture: the one thread a live camera still has, and the one-frame slot it fills.

Webcams and network streams deliver frames at their own rate, and OpenCV's VideoCapture (devices,
RTSP, anything behind FFmpeg) and the HTTP MJPEG reader (producer.multipart) can only be read by
blocking, so each live camera keeps a thread that reads as fast as the source delivers into a
`LatestFrame`, and wakes the camera's task on the producer's pool, which publishes the newest frame.
Paced sources (files, the pattern) have no such thread: the pool reads them when a frame is due.
"""

from __future__ import annotations

import threading
import time

from common.errors import FramecastError, SourceError
from producer import metrics


class LatestFrame:
    """A one-frame mailbox between a live source's capture thread and the camera's task.

    `put` is invoked from the capture thread, `take` and `reset_overwritten` from the camera's task.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item: tuple | None = None
        self._overwritten = 0

    def put(self, image, ts_ns: int) -> None:
        with self._cond:
            if self._item is not None:
                self._overwritten += 1
            self._item = (image, ts_ns)
            self._cond.notify()

    def take(self, timeout: float = 0.0) -> tuple[tuple | None, int]:
        """(newest (image, ts_ns) or None after `timeout`, frames overwritten since the last count)."""
        with self._cond:
            if self._item is None and timeout > 0:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            overwritten, self._overwritten = self._overwritten, 0
            return item, overwritten

    def reset_overwritten(self) -> int:
        with self._cond:
            overwritten, self._overwritten = self._overwritten, 0
            return overwritten


def capture(publisher, slot: LatestFrame) -> None:
    """Body of a live source's capture thread: read as fast as the source delivers, waking the
    camera's task after each frame (and once more when the thread ends, so the task finishes).

    A connection that ends is reopened on the backoff schedule; a frame the source refuses (over the
    envelope limit, not a JPEG) is dropped and counted, and the connection kept."""
    source, stop, account, log = publisher.source, publisher.stop, publisher.account, publisher.log
    reopening = False
    try:
        while not stop.is_set():
            if not publisher.open_source(reopening):
                return
            reopening = True
            while not stop.is_set():
                try:
                    image = source.read()
                except SourceError as exc:
                    account.set(metrics.UP, 0)
                    log.warning("source failed, reconnecting", extra={"error": str(exc)})
                    source.close()
                    break
                except FramecastError as exc:
                    account.count(metrics.DROPPED, reason="encode")
                    log.warning("frame discarded", extra={"error": str(exc)})
                    continue
                if image is None:
                    break
                account.count(metrics.CAPTURED)
                slot.put(image, time.time_ns())
                del image  # the slot holds the only reference: an overwritten frame is freed at once
                publisher.wake()
    finally:
        publisher.wake()
