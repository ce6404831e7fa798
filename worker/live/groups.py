"""Consumer-group housekeeping on a camera's frames stream, as the workers do it: reclaiming frames
from dead consumers, removing consumers that are gone, measuring lag, and telling a vanished group
(re-created with `common.groups.ensure_group`) from other Redis errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from common.errors import FramecastError
from common.groups import ensure_group, read_backlog
from common.keys import WORKER_GROUP
from common.text import as_str

# Replies meaning the stream or its group is gone: Redis restarted without persistence, FLUSHALL,
# or the key was deleted (a client blocked in XREADGROUP gets UNBLOCKED then).
_MISSING = ("NOGROUP", "UNBLOCKED", "no such key")


__all__ = ["GroupMissingError", "claim_stale", "ensure_group", "group_backlog", "is_missing_group",
           "remove_dead_consumers"]


class GroupMissingError(FramecastError):
    """A camera's frames stream or its consumer group vanished; the worker re-creates it."""


def is_missing_group(exc: BaseException) -> bool:
    """True for the Redis errors that mean "re-create the group and carry on"."""
    return isinstance(exc, redis.exceptions.ResponseError) and any(m in str(exc) for m in _MISSING)


@contextmanager
def _group_of(stream: str) -> Iterator[None]:
    """Turns Redis's "no such group/key" replies about `stream` into GroupMissingError; other
    errors pass through."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        if is_missing_group(exc):
            raise GroupMissingError(f"{stream}: {exc}") from None
        raise


def claim_stale(client: redis.Redis, stream: str, consumer: str, min_idle_ms: int, count: int = 16):
    """Entries pending longer than `min_idle_ms` on any consumer, now owned by `consumer`.

    Returns (entries [(id, fields)], deleted ids). Entries trimmed from the stream meanwhile come back
    as deleted; Redis 7 has already removed them from the pending list. Raises GroupMissingError.
    """
    entries, deleted, start = [], [], "0-0"
    with _group_of(stream):
        while True:
            reply = client.xautoclaim(stream, WORKER_GROUP, consumer, min_idle_ms, start_id=start, count=count)
            start, claimed = reply[0], reply[1]
            deleted.extend(reply[2] if len(reply) > 2 else [])
            entries.extend((eid, fields) for eid, fields in claimed if fields is not None)
            deleted.extend(eid for eid, fields in claimed if fields is None)
            if as_str(start) == "0-0" or len(entries) >= count:
                return entries, deleted


def remove_dead_consumers(client: redis.Redis, stream: str, me: str, idle_ms: int) -> list[str]:
    """Delete consumers idle longer than `idle_ms` that hold no pending entries; returns their names.

    A consumer with pending entries is kept until `claim_stale` has taken them over.
    """
    removed = []
    with _group_of(stream):
        for info in client.xinfo_consumers(stream, WORKER_GROUP):
            name = as_str(info["name"])
            if name != me and info.get("pending", 0) == 0 and info.get("idle", 0) > idle_ms:
                client.xgroup_delconsumer(stream, WORKER_GROUP, name)
                removed.append(name)
    return removed


def group_backlog(client: redis.Redis, stream: str) -> tuple[float, int]:
    """(lag: entries not yet delivered to the group, pending: delivered but not acked); lag is NaN
    when Redis cannot tell. Raises GroupMissingError when the group is gone."""
    with _group_of(stream):
        reading = read_backlog(client.xinfo_groups(stream))
    if reading is None:
        raise GroupMissingError(f"{stream}: no group {WORKER_GROUP!r}")
    return reading
