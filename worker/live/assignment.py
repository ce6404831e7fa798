"""Which cameras a worker reads: rendezvous (highest-random-weight) hashing over the live workers.

Every camera ranks the workers of the pool (the live workers that read by assignment, from the
worker registry's heartbeats) by a hash of (camera, worker); its top `worker.readers_per_camera`
read it. Each worker computes the same ranking from the same registry, with no coordination: when a
worker joins it takes about 1/N of every camera's reader places, and only those move; when one leaves
(deregistered, or its heartbeat older than its TTL) only its places move, each to the next worker in
that camera's ranking. While workers disagree for a moment (one has seen the change, another not
yet) a camera has readers of both views, which the consumer group makes harmless: each entry still
goes to one consumer.

`rank` and `assigned` are pure; `Assignment` is the worker loop's view of the pool, refreshed from the
registry by the loop's thread about every second (a chore between read passes, not per frame).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from common.keys import Keys
from common.registry import live_members

POOL_FIELD = "pool"  # heartbeat field: true for a worker that reads the cameras assigned to it


def weight(cam: str, worker: str) -> int:
    """The worker's weight for the camera: 64 bits of a hash of both, the same on every host."""
    digest = hashlib.blake2b(f"{cam}\x00{worker}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(cam: str, workers: Iterable[str]) -> list[str]:
    """The workers in the camera's order of preference (highest weight first; ties by id)."""
    return sorted(set(workers), key=lambda w: (-weight(cam, w), w))


def readers(cam: str, workers: Iterable[str], per_camera: int) -> list[str]:
    """The workers that read the camera: its top `per_camera` (0: all of them)."""
    ranked = rank(cam, workers)
    return ranked if per_camera <= 0 else ranked[:per_camera]


def assigned(cams: Iterable[str], workers: Iterable[str], me: str, per_camera: int) -> set[str]:
    """The cameras of `cams` that worker `me` reads, `me` counted among `workers` whether listed or not."""
    pool = {*workers, me}
    return {cam for cam in cams if me in readers(cam, pool, per_camera)}


class Assignment:
    """A pool worker's cameras: those of `cams` the ranking gives it among the live pool workers.

    `refresh` reads the registry (two round trips) and returns True when the cameras changed; a
    failed reading raises and keeps the last assignment. With `per_camera` 0 every camera is assigned and the registry is never read. Before the
    first reading the pool is this worker alone (so every camera); the loop makes that reading before
    its first frame read, after its own first heartbeat. Used by the worker loop's thread only.
    """

    def __init__(self, client, keys: Keys, me: str, cams: Iterable[str], per_camera: int):
        self.client = client
        self.keys = keys
        self.me = me
        self.cams = sorted(cams)
        self.per_camera = per_camera
        self.pool: tuple[str, ...] = (me,)
        self.cameras: set[str] = set(self.cams) if per_camera <= 0 else assigned(self.cams, (), me, per_camera)

    @property
    def enabled(self) -> bool:
        return self.per_camera > 0

    def refresh(self) -> bool:
        """Read the pool from the registry; True when this worker's cameras changed."""
        if not self.enabled:
            return False
        members = live_members(self.client, self.keys, "worker")
        return self.update(m["id"] for m in members if m.get(POOL_FIELD) is True)

    def update(self, workers: Iterable[str]) -> bool:
        """Take `workers` as the pool; True when this worker's cameras changed."""
        pool = tuple(sorted({*workers, self.me}))
        if pool == self.pool:
            return False
        self.pool = pool
        cameras = assigned(self.cams, pool, self.me, self.per_camera)
        changed, self.cameras = cameras != self.cameras, cameras
        return changed
