"""The read side of event records in Redis (the tracking owner writes them, tracker/store.py;
any web process reads them), and of the live counts.

Per camera (all keys carry the camera's hash tag):
- `keys.events(cam)`: sorted set, event id -> start time (epoch seconds), bounded by the writer;
- `keys.event(cam, id)`: hash with `state` (the JSON of the event's latest `after`) and `type` (the
  last message: `new`, `update` or `end`);
- `keys.counts(cam)`: hash of line crossings `line:<name>:<direction>:<label>` and zone occupancy
  `zone:<name>:<label>`.
"""

from __future__ import annotations

import json
from typing import Protocol

import redis

from common.events_config import EVENT_ID_RE
from common.text import as_str

STATE_FIELD = "state"

Cursor = tuple[float, str]  # (start time, event id) of the last event a page returned


class EventIndexKeys(Protocol):
    def events(self, cam: str) -> str: ...

    def event(self, cam: str, event_id: str) -> str: ...


class InvalidEventIdError(ValueError):
    """Not an event id (common.events_config.EVENT_ID_RE): never used to build a key or a path."""


def validate_event_id(event_id: str) -> str:
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        raise InvalidEventIdError(f"not an event id: {str(event_id)[:80]!r} (expected e.g. 1700000000.123456-0a1b2c)")
    return event_id


class EventReader:
    """Reads one installation's event records; thread-safe as the client is."""

    def __init__(self, client: redis.Redis, keys: EventIndexKeys):
        self.client, self.keys = client, keys

    def get(self, cam: str, event_id: str) -> dict | None:
        raw = self.client.hget(self.keys.event(cam, validate_event_id(event_id)), STATE_FIELD)
        return None if raw is None else json.loads(raw)

    def query(self, cam: str, *, since: float | None = None, until: float | None = None,
              label: str | None = None, zone: str | None = None, limit: int = 100,
              before: Cursor | None = None, page: int = 200) -> tuple[list[dict], Cursor | None]:
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
                pipe.hget(self.keys.event(cam, as_str(member)), STATE_FIELD)
            for (member, score), raw in zip(rows, pipe.execute(), strict=True):
                cursor = (score, as_str(member))
                if raw is None:
                    continue
                state = json.loads(raw)
                if (label is None or state["label"] == label) and (zone is None or zone in state["entered_zones"]):
                    out.append(state)
                    if len(out) == limit:
                        return out, cursor
        return out, cursor

    def _page(self, key: str, cursor: Cursor | None, until: float | None, low: float,
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


def parse_counts(fields: dict) -> dict:
    """The counts hash as {"lines": {line: {direction: {label: n}}}, "zones": {zone: {label: n}}};
    fields of another form are left out (names have no ':'; labels may)."""
    lines: dict[str, dict[str, dict[str, int]]] = {}
    zones: dict[str, dict[str, int]] = {}
    for raw_field, raw_value in fields.items():
        field, value = as_str(raw_field), as_str(raw_value)
        try:
            number = int(float(value))
        except ValueError:
            continue
        kind, _, rest = field.partition(":")
        if kind == "line":
            parts = rest.split(":", 2)
            if len(parts) == 3 and all(parts):
                lines.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = number
        elif kind == "zone":
            name, _, label = rest.partition(":")
            if name and label:
                zones.setdefault(name, {})[label] = number
    return {"lines": lines, "zones": zones}


def read_counts(client: redis.Redis, key: str) -> dict:
    """A camera's live counts (see parse_counts) from its counts hash at `key`."""
    return parse_counts(client.hgetall(key))
