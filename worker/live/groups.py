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


__all__ = ["GroupMissingError", "claim_stale", "claim_stale_many", "ensure_group", "group_backlogs",
           "is_missing_group", "remove_dead_consumers_many"]


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


def claim_stale(client: redis.Redis, stream: str, consumer: str, min_idle_ms: int, count: int = 16,
                start: str = "0-0"):
    """Entries pending longer than `min_idle_ms` on any consumer, now owned by `consumer`.

    Returns (entries [(id, fields)], deleted ids). Entries trimmed from the stream meanwhile come back
    as deleted; Redis 7 has already removed them from the pending list. Raises GroupMissingError.
    """
    entries, deleted = [], []
    with _group_of(stream):
        while True:
            reply = client.xautoclaim(stream, WORKER_GROUP, consumer, min_idle_ms, start_id=start, count=count)
            start = _take_claimed(reply, entries, deleted)
            if start == "0-0" or len(entries) >= count:
                return entries, deleted


def _take_claimed(reply, entries: list, deleted: list) -> str:
    """Adds an XAUTOCLAIM reply's entries and deleted ids to the lists; returns where to go on from."""
    start, claimed = reply[0], reply[1]
    deleted.extend(reply[2] if len(reply) > 2 else [])
    entries.extend((eid, fields) for eid, fields in claimed if fields is not None)
    deleted.extend(eid for eid, fields in claimed if fields is None)
    return as_str(start)


def claim_stale_many(client: redis.Redis, streams: list[str], consumer: str, min_idle_ms: int,
                     count: int = 16) -> list:
    """`claim_stale` on each of `streams`, the first XAUTOCLAIM of each in one pipeline: per stream,
    (entries, deleted) or the error Redis gave for it. A stream with more to look through (rare: a
    pending list longer than `count`) goes on alone."""
    replies = _pipelined(client, streams, lambda pipe, stream: pipe.xautoclaim(
        stream, WORKER_GROUP, consumer, min_idle_ms, start_id="0-0", count=count))
    out = []
    for stream, reply in zip(streams, replies, strict=True):
        if isinstance(reply, Exception):
            out.append(reply)
            continue
        entries, deleted = [], []
        start = _take_claimed(reply, entries, deleted)
        if start != "0-0" and len(entries) < count:
            try:
                more, more_deleted = claim_stale(client, stream, consumer, min_idle_ms, count - len(entries), start)
            except (GroupMissingError, redis.exceptions.ResponseError) as exc:
                out.append(exc)
                continue
            entries += more
            deleted += more_deleted
        out.append((entries, deleted))
    return out


def remove_dead_consumers_many(client: redis.Redis, streams: list[str], me: str, idle_ms: int) -> list:
    """Delete the consumers of each of `streams` idle longer than `idle_ms` that hold no pending
    entries (a consumer with pending entries is kept until `claim_stale` has taken them over), in two
    pipelines (the readings, then the deletions): per stream, the names removed or Redis's error."""
    replies = _pipelined(client, streams, lambda pipe, stream: pipe.xinfo_consumers(stream, WORKER_GROUP))
    out: list = []
    doomed: list[tuple[str, str]] = []
    for stream, reply in zip(streams, replies, strict=True):
        if isinstance(reply, Exception):
            out.append(reply)
            continue
        names = [as_str(info["name"]) for info in reply
                 if as_str(info["name"]) != me and info.get("pending", 0) == 0 and info.get("idle", 0) > idle_ms]
        doomed += [(stream, name) for name in names]
        out.append(names)
    if doomed:
        pipe = client.pipeline(transaction=False)
        for stream, name in doomed:
            pipe.xgroup_delconsumer(stream, WORKER_GROUP, name)
        pipe.execute(raise_on_error=False)  # a consumer or group gone meanwhile is as good as deleted
    return out


def group_backlogs(client: redis.Redis, streams: list[str]) -> list:
    """Each of `streams`' group backlog in one pipeline: per stream, (lag: entries not yet delivered to
    the group, NaN when Redis cannot tell; pending: delivered but not acked) or the error
    (GroupMissingError when the group is not there)."""
    out: list = []
    for stream, reply in zip(streams, _pipelined(client, streams, lambda pipe, stream: pipe.xinfo_groups(stream)),
                             strict=True):
        if isinstance(reply, Exception):
            out.append(reply)
            continue
        reading = read_backlog(reply)
        out.append(GroupMissingError(f"{stream}: no group {WORKER_GROUP!r}") if reading is None else reading)
    return out


def _pipelined(client: redis.Redis, streams: list[str], command) -> list:
    """One command per stream in one non-transactional pipeline (grouped by node on a cluster); each
    reply or the error Redis gave for that stream. A connection error raises."""
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        command(pipe, stream)
    return pipe.execute(raise_on_error=False)
