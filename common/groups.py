"""The detector workers' consumer group on a camera's frames stream, as producers and workers both
see it: creating it, and reading how far behind it is."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from common.connection import CONNECTION_ERRORS
from common.keys import WORKER_GROUP
from common.text import as_str


def ensure_group(client: redis.Redis, stream: str, start_id: str) -> bool:
    """Create the workers' group on `stream` (and the stream) if missing. True if it was created.

    `start_id` is '$' for live cameras (a fresh group starts at new frames: old ones are stale anyway)
    and '0' for backlog cameras (frames queued before any worker started are processed too).
    """
    try:
        client.xgroup_create(stream, WORKER_GROUP, id=start_id, mkstream=True)
        return True
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise


def is_missing_key(exc: BaseException) -> bool:
    """True for the reply to XINFO on a stream that does not exist (and nothing else: failover
    replies such as CLUSTERDOWN or READONLY are ResponseErrors too)."""
    return (isinstance(exc, redis.exceptions.ResponseError) and not isinstance(exc, CONNECTION_ERRORS)
            and "no such key" in str(exc).lower())


def read_backlog(groups_reply, group: str = WORKER_GROUP) -> tuple[float, int] | None:
    """(lag, pending) of `group` from an XINFO GROUPS reply, or None when the group is not there.

    Lag counts entries not yet delivered to the group; it is NaN when Redis cannot tell (after some
    deletions it reports nil): unknown, not 0. Pending counts entries delivered but not acknowledged.
    """
    for info in groups_reply or []:
        if as_str(info["name"]) == group:
            lag = info.get("lag")
            return (float("nan") if lag is None else float(lag)), int(info.get("pending") or 0)
    return None


@dataclass
class GroupBacklog:
    """A producer's running view of its backlog camera's group: frames not yet acknowledged."""

    outstanding: int = 0  # lag + pending at the last reading
    seen: bool = False  # the group has been read at least once

    def update(self, reading: tuple[float, int] | None) -> int | None:
        """Take in a reading; returns the frames lost when the group vanished (else None)."""
        if reading is None:
            lost = self.outstanding if self.seen else 0
            self.outstanding, self.seen = 0, False
            return lost
        lag, pending = reading
        # Unknown lag: count what is pending only; the stream's bound still holds the rest.
        self.outstanding = pending + (0 if lag != lag else int(lag))
        self.seen = True
        return None
