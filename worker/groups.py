"""Consumer-group housekeeping on a camera's frames stream: creating the group, reclaiming frames
from dead consumers, removing consumers that are gone, measuring lag. Invoked from the worker loop."""

from __future__ import annotations

import redis

from common.errors import FramecastError
from common.keys import WORKER_GROUP

# Replies meaning the stream or its group is gone: Redis restarted without persistence, FLUSHALL,
# or the key was deleted (a client blocked in XREADGROUP gets UNBLOCKED then).
_MISSING = ("NOGROUP", "UNBLOCKED", "no such key")


class GroupMissingError(FramecastError):
    """A camera's frames stream or its consumer group vanished; the worker re-creates it."""


def is_missing_group(exc: BaseException) -> bool:
    """True for the Redis errors that mean "re-create the group and carry on"."""
    return isinstance(exc, redis.exceptions.ResponseError) and any(m in str(exc) for m in _MISSING)


def _name(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


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


def claim_stale(client: redis.Redis, stream: str, consumer: str, min_idle_ms: int, count: int = 16):
    """Entries pending longer than `min_idle_ms` on any consumer, now owned by `consumer`.

    Returns (entries [(id, fields)], deleted ids). Entries trimmed from the stream meanwhile come back
    as deleted; Redis 7 has already removed them from the pending list. Raises GroupMissingError.
    """
    entries, deleted, start = [], [], "0-0"
    try:
        while True:
            reply = client.xautoclaim(stream, WORKER_GROUP, consumer, min_idle_ms, start_id=start, count=count)
            start, claimed = reply[0], reply[1]
            deleted.extend(reply[2] if len(reply) > 2 else [])
            entries.extend((eid, fields) for eid, fields in claimed if fields is not None)
            deleted.extend(eid for eid, fields in claimed if fields is None)
            if _name(start) == "0-0" or len(entries) >= count:
                return entries, deleted
    except redis.exceptions.ResponseError as exc:
        if is_missing_group(exc):
            raise GroupMissingError(f"{stream}: {exc}") from None
        raise


def remove_dead_consumers(client: redis.Redis, stream: str, me: str, idle_ms: int) -> list[str]:
    """Delete consumers idle longer than `idle_ms` that hold no pending entries; returns their names.

    A consumer with pending entries is kept until `claim_stale` has taken them over.
    """
    removed = []
    try:
        for info in client.xinfo_consumers(stream, WORKER_GROUP):
            name = _name(info["name"])
            if name != me and info.get("pending", 0) == 0 and info.get("idle", 0) > idle_ms:
                client.xgroup_delconsumer(stream, WORKER_GROUP, name)
                removed.append(name)
    except redis.exceptions.ResponseError as exc:
        if is_missing_group(exc):
            raise GroupMissingError(f"{stream}: {exc}") from None
        raise
    return removed


def group_backlog(client: redis.Redis, stream: str) -> tuple[float, int]:
    """(lag: entries not yet delivered to the group, pending: delivered but not acked).

    Lag is NaN when Redis cannot tell (its XINFO reports nil after some deletions): unknown, not 0.
    """
    try:
        groups = client.xinfo_groups(stream)
    except redis.exceptions.ResponseError as exc:
        if is_missing_group(exc):
            raise GroupMissingError(f"{stream}: {exc}") from None
        raise
    for info in groups:
        if _name(info["name"]) == WORKER_GROUP:
            lag = info.get("lag")
            return (float("nan") if lag is None else float(lag)), int(info.get("pending") or 0)
    raise GroupMissingError(f"{stream}: no group {WORKER_GROUP!r}")
