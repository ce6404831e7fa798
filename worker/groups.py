"""Consumer-group housekeeping on a camera's frames stream: creating the group, reclaiming frames
from dead consumers, removing consumers that are gone. Invoked from the worker loop."""

from __future__ import annotations

import redis

from common.keys import WORKER_GROUP


def ensure_group(client: redis.Redis, stream: str, start_id: str) -> bool:
    """Create the workers' group on `stream` (and the stream) if missing. True if it was created."""
    try:
        client.xgroup_create(stream, WORKER_GROUP, id=start_id, mkstream=True)
        return True
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise


def claim_stale(client: redis.Redis, stream: str, consumer: str, min_idle_ms: int, count: int = 16):
    """Entries pending longer than `min_idle_ms` on any consumer, now owned by `consumer`.

    Returns (entries [(id, fields)], deleted ids): entries trimmed from the stream meanwhile come back
    as deleted, and are acknowledged by Redis's XAUTOCLAIM already.
    """
    entries, deleted, start = [], [], "0-0"
    while True:
        reply = client.xautoclaim(stream, WORKER_GROUP, consumer, min_idle_ms, start_id=start, count=count)
        start, claimed = reply[0], reply[1]
        deleted.extend(reply[2] if len(reply) > 2 else [])
        entries.extend((eid, fields) for eid, fields in claimed if fields is not None)
        deleted.extend(eid for eid, fields in claimed if fields is None)
        if start in (b"0-0", "0-0") or len(entries) >= count:
            return entries, deleted


def remove_dead_consumers(client: redis.Redis, stream: str, me: str, idle_ms: int) -> list[str]:
    """Delete consumers idle longer than `idle_ms` that hold no pending entries; returns their names."""
    removed = []
    for info in client.xinfo_consumers(stream, WORKER_GROUP):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name != me and info.get("pending", 0) == 0 and info.get("idle", 0) > idle_ms:
            client.xgroup_delconsumer(stream, WORKER_GROUP, name)
            removed.append(name)
    return removed


def group_backlog(client: redis.Redis, stream: str) -> tuple[int, int]:
    """(lag: entries not yet delivered to the group, pending: delivered but not acked)."""
    for info in client.xinfo_groups(stream):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == WORKER_GROUP:
            return int(info.get("lag") or 0), int(info.get("pending") or 0)
    return 0, 0
