"""The arrivals stream, as a worker reads it: which of its cameras just had frames, so a read pass
names those streams only.

An XREADGROUP costs Redis in proportion to the streams it names (17 us at 1 camera, 245 us at 96;
a blocking one also registers and unregisters the client on every key), and a worker reading 256
cameras sent ~40 such reads a second for 20 frames: most of Redis's CPU. The producer announces each
round's cameras on one stream (`Keys.arrivals`, after the frames); a worker blocks on that one key
with XREAD (each worker reads every announcement: it is not a consumer group) and then reads the
consumer group of the cameras named, without blocking.

A camera is *announced* once an arrival has named it. `FrameReader` (reads.py) reads by arrivals
while some of its cameras are announced and the link is quick; the others it sweeps (reads without
being told): a camera never announced (a producer of an earlier version, frames written by other
means) every UNANNOUNCED_SWEEP_S while its sweeps find frames, each empty sweep doubling that up to
SAFETY_SWEEP_S (so a dead camera costs one read of its stream every 2 s, not one every pass); and
every camera every SAFETY_SWEEP_S, for announcements lost (trimmed while a worker was behind, a Redis
restart, the key's cluster node failing over). A safety sweep that finds frames on an announced
camera that nobody announced takes it back to unannounced: a producer that stopped announcing delays
its frames up to SAFETY_SWEEP_S once, then UNANNOUNCED_SWEEP_S. With no camera announced, or the
stream refused or unreachable, a worker reads as before: every stream in one blocking read.

`Arrivals` holds the reading position; used by the worker loop's thread only.
"""

from __future__ import annotations

import time

import redis

from common.connection import CONNECTION_ERRORS, ThrottledLog, describe_error
from common.keys import ARRIVALS_FIELD
from common.text import as_str

SAFETY_SWEEP_S = 2.0  # every camera, non-blocking, for announcements lost
UNANNOUNCED_SWEEP_S = 0.25  # a camera never announced whose last sweep found frames
RETRY_S = 10.0  # after the stream was refused or its node did not answer: read every stream meanwhile
READ_COUNT = 1000  # announcements taken at once


class Arrivals:
    """The worker's position in the arrivals stream and what it read there."""

    def __init__(self, client, key: str, cluster: bool, log):
        self.client = client
        self.key = key
        self.cluster = cluster
        self.log = log
        self.cursor: str | None = None  # the last entry read; None until the first reading
        self.down_until = 0.0  # monotonic: refused or unreachable until then
        self._throttled = ThrottledLog(60.0)

    def usable(self, now: float) -> bool:
        return now >= self.down_until

    def read(self, block_ms: int | None) -> set[str] | None:
        """The camera ids announced since the last reading (blocking up to `block_ms` for one when
        given), or None when the stream cannot be read now (refused, or its cluster node down: read
        every stream for RETRY_S). An outage of a single server raises (the loop backs off)."""
        try:
            if self.cursor is None:
                last = self.client.xrevrange(self.key, count=1)
                self.cursor = as_str(last[0][0]) if last else "0-0"
            reply = self.client.xread({self.key: self.cursor}, count=READ_COUNT, block=block_ms)
        except (*CONNECTION_ERRORS, redis.exceptions.ResponseError, redis.exceptions.RedisClusterException) as exc:
            if isinstance(exc, CONNECTION_ERRORS) and not self.cluster:
                raise
            self.down_until = time.monotonic() + RETRY_S
            if self._throttled.due("arrivals"):
                self.log.warning("cannot read the arrivals stream; reading every camera's stream meanwhile",
                                 extra={"error": describe_error(exc)})
            return None
        cams: set[str] = set()
        for _stream, entries in _items(reply):
            for entry_id, fields in entries:
                self.cursor = as_str(entry_id)
                named = fields.get(ARRIVALS_FIELD) if fields else None
                if named:
                    cams.update(as_str(named).split(","))
        return cams


def _items(reply):
    return reply.items() if isinstance(reply, dict) else (reply or [])
