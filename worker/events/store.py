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


class EventStore:
    def __init__(self, client: redis.Redis, keys: Keys, max_events: int = 10_000):
        self.client, self.keys, self.max_events = client, keys, max_events
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

    def get(self, cam: str, event_id: str) -> dict | None:
        raw = self.client.hget(self.keys.event(cam, event_id), "state")
        return None if raw is None else json.loads(raw)

    def query(self, cam: str, *, since: float | None = None, until: float | None = None,
              label: str | None = None, zone: str | None = None, limit: int = 100,
              before: tuple[float, str] | None = None, page: int = 200) -> tuple[list[dict], tuple[float, str] | None]:
        """Events of `cam` newest first, started within [since, until], filtered by label and zone
        entered; returns (events, cursor for the next page or None). Reads the index in pages, so
        memory stays bounded whatever the filters skip."""
        out: list[dict] = []
        key = self.keys.events(cam)
        low = float("-inf") if since is None else float(since)
        cursor = before
        while len(out) < limit:
            rows = self._page(key, cursor, until, low, page)
            if not rows:
                return out, None
            pipe = self.client.pipeline(transaction=False)
            for member, _ in rows:
                pipe.hget(self.keys.event(cam, member.decode()), "state")
            for (member, score), raw in zip(rows, pipe.execute(), strict=True):
                cursor = (score, member.decode())
                if raw is None:
                    continue
                state = json.loads(raw)
                if (label is None or state["label"] == label) and (zone is None or zone in state["entered_zones"]):
                    out.append(state)
                    if len(out) == limit:
                        return out, cursor
        return out, cursor

    def _page(self, key: str, cursor: tuple[float, str] | None, until: float | None, low: float,
              page: int) -> list[tuple[bytes, float]]:
        """The next `page` index entries after `cursor`, newest first, none older than `low`. Events
        that started in the same frame share a score, so the cursor is a rank, looked up afresh each
        time (newer events push ranks down); a cursor whose event was trimmed falls back to its score."""
        if cursor is None:
            high = "+inf" if until is None else repr(float(until))
            return self.client.zrevrangebyscore(key, high, repr(low) if low > float("-inf") else "-inf",
                                                start=0, num=page, withscores=True)
        rank = self.client.zrevrank(key, cursor[1])
        if rank is None:
            rows = self.client.zrevrangebyscore(key, f"({cursor[0]!r}", "-inf", start=0, num=page,
                                                withscores=True)
        else:
            rows = self.client.zrevrange(key, rank + 1, rank + page, withscores=True)
        return [(m, s) for m, s in rows if s >= low]
