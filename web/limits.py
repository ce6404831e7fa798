"""A cap on the MJPEG streams one client holds open at once in this process, so a single client (a
runaway page, a script) cannot take every connection a process can serve."""

from __future__ import annotations

import threading
from collections.abc import Callable


class StreamLimit:
    """Open streams per client address; `per_client` 0 means no cap."""

    def __init__(self, per_client: int):
        self.per_client = per_client
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}

    def acquire(self, client: str) -> Callable[[], None] | None:
        """Count a new stream of `client`: the function that releases it (safe to call more than
        once), or None when the client is at its cap."""
        with self._lock:
            held = self._open.get(client, 0)
            if self.per_client and held >= self.per_client:
                return None
            self._open[client] = held + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                left = self._open[client] - 1
                if left:
                    self._open[client] = left
                else:
                    del self._open[client]

        return release
