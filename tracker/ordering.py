"""Putting one camera's detection records back in (run, seq) order before they are tracked.

Workers finish frames out of order (several of them share a camera), so records reach the tracking
stage slightly shuffled. The reorderer holds them for at most `window` seconds of arrival time and
releases them in order; a frame still missing when a later one has waited out the window is given up
on (it was skipped as stale, dead-lettered, or is just too late) and the tracker sees a gap. A frame
arriving after its place was released is refused and counted (`late`).
"""

from __future__ import annotations

import heapq
from typing import Any


class Reorderer:
    """Not thread-safe: the tracking loop owns it."""

    def __init__(self, window: float = 0.5, max_held: int = 1000):
        self.window = window
        self.max_held = max_held
        self.released: tuple[int, int] | None = None  # (run, seq) of the last item released
        self.late = 0
        self._heap: list[tuple[int, int, float, int, Any]] = []
        self._count = 0  # tie-breaker so items never get compared

    def push(self, run: int, seq: int, arrived: float, item: Any) -> list[Any]:
        """Hold `item`; return the items now due, in order. `arrived` is a monotonic time in seconds."""
        if self.released is not None and (run, seq) <= self.released:
            self.late += 1
            return []
        self._count += 1
        heapq.heappush(self._heap, (run, seq, arrived, self._count, item))
        return self.pop_due(arrived)

    def pop_due(self, now: float) -> list[Any]:
        """Items that are next in line, or that waited `window` (and everything before them)."""
        out = []
        while self._heap:
            run, seq, arrived, _, item = self._heap[0]
            next_in_line = self.released is not None and run == self.released[0] and seq == self.released[1] + 1
            if not (next_in_line or now - arrived >= self.window or len(self._heap) > self.max_held
                    or self._oldest_waited(now)):
                break
            heapq.heappop(self._heap)
            self.released = (run, seq)
            out.append(item)
        return out

    def _oldest_waited(self, now: float) -> bool:
        # A later item that has waited out the window releases everything before it, even if the
        # items before it arrived more recently.
        return any(now - arrived >= self.window for _, _, arrived, _, _ in self._heap)

    def flush(self) -> list[Any]:
        """Everything held, in order (shutdown or hand-over)."""
        out = []
        while self._heap:
            run, seq, _, _, item = heapq.heappop(self._heap)
            self.released = (run, seq)
            out.append(item)
        return out

    def __len__(self) -> int:
        return len(self._heap)
