"""Which cameras a worker's consumer-group chores visit on a turn: every camera in rotation, at a
command rate that does not grow with the camera count.

A worker keeps three chores on each camera it reads: the group's lag and pending count (a metric),
reclaiming frames left pending by a dead consumer (XAUTOCLAIM), and deleting consumers that are gone.
Visiting every camera at a fixed interval costs Redis one command per camera per interval, so with 256
cameras two workers sent ~490 housekeeping commands a second for 20 frames a second, more than the
frames themselves cost. Each chore here has an interval (how often a camera is visited while the
cameras are few) and a budget (cameras a second at most): a camera is visited every
max(interval, cameras / budget) seconds, in a rotation, and a turn's visits go to Redis as one
pipeline. `hurry` runs a chore over every camera within a few turns (now, and again later if asked), at up to HURRY_BATCH cameras a
turn, whatever the budget: a worker that left the pool (killed, its heartbeat expired) has its
pending frames reclaimed and its consumer deleted then, not a rotation later.

Pure bookkeeping (no Redis); the worker loop's thread owns it.
"""

from __future__ import annotations

from dataclasses import dataclass

HURRY_BATCH = 64  # cameras a turn while a chore hurries through every camera


@dataclass(frozen=True)
class Chore:
    """How often a chore visits each camera: every `interval` seconds, at most `budget` cameras a second."""

    name: str
    interval: float
    budget: float

    def period(self, cameras: int) -> float:
        """Seconds between two visits of one camera when the worker reads `cameras`."""
        return max(self.interval, cameras / self.budget)


class Rotation:
    """One chore's round over the cameras: `take` returns the cameras due on this turn."""

    def __init__(self, chore: Chore):
        self.chore = chore
        self._credit = 0.0  # visits owed, accumulated between turns
        self._last: float | None = None
        self._cursor = 0  # index of the next camera in the (sorted) list given to `take`
        self._hurry = 0  # cameras still to visit at once
        self._hurry_at: list[float] = []  # when to start hurrying (monotonic)

    def hurry(self, now: float, *later: float) -> None:
        """Visit every camera over the next turns, HURRY_BATCH a turn, regardless of the budget; and again
        `later` seconds after `now` (e.g. once what a dead consumer left has been idle long enough)."""
        self._hurry_at += [now, *(now + delay for delay in later)]

    def take(self, cameras: list[str], now: float) -> list[str]:
        """The cameras (of the sorted `cameras`) to visit on a turn at monotonic time `now`."""
        count = len(cameras)
        if count == 0:
            self._last = now
            return []
        if self._last is None:  # the first turn visits every camera (as a first reading should)
            self._last, self._credit = now, float(count)
        if any(at <= now for at in self._hurry_at):
            self._hurry_at = [at for at in self._hurry_at if at > now]
            self._hurry = count
        rate = count / self.chore.period(count)
        self._credit = min(float(count), self._credit + (now - self._last) * rate)
        self._last = now
        visits = int(self._credit)
        self._credit -= visits
        if self._hurry:
            extra = min(self._hurry, HURRY_BATCH)
            self._hurry -= extra
            visits = max(visits, extra)
        visits = min(visits, count)
        start = self._cursor % count
        due = [cameras[(start + i) % count] for i in range(visits)]
        self._cursor = (start + visits) % count
        return due
