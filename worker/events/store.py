"""Event records in Redis, so any web process serves any event: bounded, indexed by start time.

Per camera (all keys carry the camera's hash tag, so one camera's writes are one slot on a cluster):
- `keys.events(cam)`: sorted set, event id -> start time (epoch seconds), at most `max_events`;
- `keys.event(cam, id)`: hash with `state` (the JSON of the event's latest `after`) and `type` (the
  last message: `new`, `update` or `end`).

Writes can be fenced by the camera's lease: a former owner's late write is refused, so two owners
never both record an event. Trimming returns the ids it removed, so their files can go too.
"""

from __future__ import annotations

import json

import redis

from common.events_store import EventReader
from common.keys import Keys
from worker.events.lease import Lease
from worker.events.lifecycle import EventMessage

_SAVE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('HSET', KEYS[3], 'state', ARGV[4], 'type', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return redis.call('ZCARD', KEYS[2])
"""


class LeaseLostError(Exception):
    """The camera's lease moved to another process: this one must stop emitting events."""


class EventStore(EventReader):
    """The writing side; `get` and `query` come from common.events_store, which web processes share."""

    def __init__(self, client: redis.Redis, keys: Keys, max_events: int = 10_000):
        super().__init__(client, keys)
        self.max_events = max_events
        self._save = client.register_script(_SAVE)

    def save(self, message: EventMessage, lease: Lease | None = None) -> list[str]:
        """Record the event's latest state; returns the ids trimmed to keep `max_events`.
        Raises LeaseLostError when `lease` is given and no longer ours."""
        state = message.after
        cam, event_id = state["camera"], state["id"]
        fence = "" if lease is None else (lease.value or "\x00not-held")
        size = int(self._save(
            keys=[self.keys.tracker_lease(cam), self.keys.events(cam), self.keys.event(cam, event_id)],
            args=[fence, event_id, repr(float(state["start_time"])),
                  json.dumps(state, separators=(",", ":")), message.type]))
        if size < 0:
            if lease is not None:
                lease.token = None
            raise LeaseLostError(f"camera {cam!r}: the tracking lease is held by another process")
        return self._trim(cam, size)

    def _trim(self, cam: str, size: int) -> list[str]:
        excess = size - self.max_events
        if excess <= 0:
            return []
        oldest = [m.decode() for m in self.client.zrange(self.keys.events(cam), 0, excess - 1)]
        pipe = self.client.pipeline(transaction=False)
        for event_id in oldest:
            pipe.delete(self.keys.event(cam, event_id))
        pipe.zrem(self.keys.events(cam), *oldest)
        pipe.execute()
        return oldest
