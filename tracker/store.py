"""Event records in Redis, so any web process serves any event: bounded, indexed by start time.

Per camera (all keys carry the camera's hash tag, so one camera's writes are one slot on a cluster):
- `keys.events(cam)`: sorted set, event id -> start time (epoch seconds), at most `max_events`;
- `keys.event(cam, id)`: hash with `state` (the JSON of the event's latest `after`) and `type` (the
  last message: `new`, `update` or `end`);
- `keys.eventfeed(cam)`: stream of every message saved (field `e`, JSON), MAXLEN ~1000;
- `keys.counts(cam)`: hash of the camera's counts, replaced with each message that carries them.

Writes can be fenced by the camera's lease: a former owner's late write is refused, so two owners
never both record an event. Trimming returns the ids it removed, so their files can go too.
"""

from __future__ import annotations

import json

import redis

from common.events_store import EventReader
from common.keys import EVENT_FIELD, Keys
from tracker.lease import Lease, LeaseLostError
from tracker.lifecycle import EventMessage

_SAVE = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
redis.call('HSET', KEYS[3], 'state', ARGV[4], 'type', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', ARGV[8], ARGV[6])
end
if ARGV[9] == '1' then
  redis.call('DEL', KEYS[5])
  if #ARGV > 9 then
    redis.call('HSET', KEYS[5], unpack(ARGV, 10))
  end
end
return redis.call('ZCARD', KEYS[2])
"""
FEED_MAXLEN = 1000


class EventStore(EventReader):
    """The writing side; `get` and `query` come from common.events_store, which web processes share."""

    def __init__(self, client: redis.Redis, keys: Keys, max_events: int = 10_000):
        super().__init__(client, keys)
        self.max_events = max_events
        self._save = client.register_script(_SAVE)

    def save(self, message: EventMessage, lease: Lease | None = None, *, feed: bool = True,
             counts: dict[str, int] | None = None) -> list[str]:
        """Record the event's latest state and, in the same atomic step, append the message to the
        camera's event feed (`feed`) and replace its counts hash (`counts`, when given): the feed
        then holds exactly what the store recorded, once. Returns the ids trimmed to keep
        `max_events`. Raises LeaseLostError when `lease` is given and no longer ours."""
        state = message.after
        cam, event_id = state["camera"], state["id"]
        fence = "" if lease is None else (lease.value or "\x00not-held")
        flat = [] if counts is None else [x for field, n in counts.items() for x in (field, int(n))]
        size = int(self._save(
            keys=[self.keys.tracker_lease(cam), self.keys.events(cam), self.keys.event(cam, event_id),
                  self.keys.eventfeed(cam), self.keys.counts(cam)],
            args=[fence, event_id, repr(float(state["start_time"])),
                  json.dumps(state, separators=(",", ":")), message.type,
                  json.dumps(message.to_dict(), separators=(",", ":")) if feed else "", FEED_MAXLEN,
                  EVENT_FIELD, "0" if counts is None else "1", *flat]))
        if size < 0:
            if lease is not None:
                lease.token = None
            raise LeaseLostError(f"camera {cam!r}: the tracking lease is held by another process")
        return self._trim(cam, size)

    def open_events(self, cam: str, page: int = 200) -> list[dict]:
        """The states of `cam`'s events that have no end: after a hand-over, the previous owner's
        orphans (read in pages of the whole index, once per acquisition)."""
        out, cursor = [], None
        while True:
            states, cursor = self.query(cam, limit=page, before=cursor, page=page)
            out += [s for s in states if s.get("end_time") is None]
            if cursor is None or len(states) < page:
                return out

    def counts(self, cam: str) -> dict[str, int]:
        """The camera's counts hash (`line:<name>:<direction>:<label>`, `zone:<name>:<label>`)."""
        return {k.decode(): int(v) for k, v in self.client.hgetall(self.keys.counts(cam)).items()}

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
