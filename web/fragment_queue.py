"""One H.264 viewer's bounded queue of fMP4 fragments: the video counterpart of web.broadcaster's
one-slot Mailbox.

A JPEG stands alone, so an MJPEG viewer only ever needs the newest one. A fragment does not: a
P-frame decodes only after every fragment since its keyframe. So a viewer gets every fragment, in
order, from a keyframe on, through a queue of at most `limit` fragments. The feed's thread puts and
never waits; when a viewer falls `limit` fragments behind, its queue is emptied and it waits for the
next keyframe (everything it misses is counted as skipped). A slow viewer thus costs only itself:
a gap of up to one keyframe interval in its picture, never a delay to the reader or the others.
A new viewer, too, starts at the next keyframe (what it gets before is skipped, not counted).
"""

from __future__ import annotations

import threading
from collections import deque

from common.video import Fragment
from web.video_metrics import VideoCounts


class FragmentQueue:
    """The fragments one viewer has yet to send: the feed's thread puts, the viewer's thread gets."""

    def __init__(self, cam: str, limit: int, counts: VideoCounts):
        self.cam = cam
        self.limit = limit
        self.counts = counts
        self._cond = threading.Condition()
        self._queue: deque[Fragment] = deque()
        self._at_keyframe = False  # False until a keyframe starts the viewer's run (again)
        self._joined = True  # fragments before the first keyframe are the join wait, not skips
        self.skipped = 0
        self.closed = False

    def put(self, fragment: Fragment) -> None:
        """Invoked by the feed's thread for every fragment of the camera; never blocks."""
        with self._cond:
            if self.closed:
                return
            if len(self._queue) >= self.limit:  # fallen behind: start again at the next keyframe
                self._skip(len(self._queue))
                self._queue.clear()
                self._at_keyframe = False
            if not self._at_keyframe and not fragment.keyframe:
                if not self._joined:
                    self._skip(1)
                return
            self._at_keyframe, self._joined = True, False
            self._queue.append(fragment)
            self._cond.notify()

    def _skip(self, count: int) -> None:
        self.skipped += count
        self.counts.skipped(count)

    def get(self, timeout: float) -> Fragment | None:
        """The next fragment to send, or None after `timeout` (or once closed and empty)."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        """End the viewer's response (shutdown, feed gone); what is queued may still be sent."""
        with self._cond:
            self.closed = True
            self._cond.notify()
