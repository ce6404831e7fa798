"""Event records in a real redis-server: latest state, filters, paging, trimming, lease fencing."""

from __future__ import annotations

import time

import pytest

from common.keys import Keys
from tracker.lease import Lease, LeaseLostError
from tracker.lifecycle import EventMessage
from tracker.store import EventStore


def state(n: int, label: str = "person", zones=(), cam: str = "door", end: float | None = None) -> dict:
    return {"id": f"{1000 + n}.000000-abc{n:03d}", "camera": cam, "label": label, "start_time": 1000.0 + n,
            "end_time": end, "entered_zones": list(zones), "top_score": 0.8}


def test_save_get_query_and_trim(redis_client):
    store = EventStore(redis_client, Keys(), max_events=5)
    for n in range(5):
        s = state(n, label="car" if n % 2 else "person", zones=["drive"] if n >= 3 else [])
        assert store.save(EventMessage("new", s, s)) == []
    final = {**state(1, label="car"), "end_time": 1009.0}
    store.save(EventMessage("end", state(1, label="car"), final))
    assert store.get("door", final["id"]) == final
    assert redis_client.hget(Keys().event("door", final["id"]), "type") == b"end"
    assert store.get("door", "1.000000-ffffff") is None

    everything, cursor = store.query("door")
    assert [e["start_time"] for e in everything] == [1004.0, 1003.0, 1002.0, 1001.0, 1000.0] and cursor is None
    cars, _ = store.query("door", label="car")
    assert [e["start_time"] for e in cars] == [1003.0, 1001.0]
    in_drive, _ = store.query("door", zone="drive", label="person")
    assert [e["start_time"] for e in in_drive] == [1004.0]
    window, _ = store.query("door", since=1001.0, until=1003.0)
    assert [e["start_time"] for e in window] == [1003.0, 1002.0, 1001.0]

    first, cursor = store.query("door", limit=2, page=1)
    second, cursor2 = store.query("door", limit=2, before=cursor, page=1)
    third, cursor3 = store.query("door", limit=2, before=cursor2, page=1)
    assert [e["start_time"] for e in first + second + third] == [1004.0, 1003.0, 1002.0, 1001.0, 1000.0]
    assert cursor3 is None or store.query("door", before=cursor3)[0] == []

    s = state(5)
    trimmed = store.save(EventMessage("new", s, s))
    assert trimmed == [state(0)["id"]]
    assert store.get("door", state(0)["id"]) is None
    assert redis_client.zcard(Keys().events("door")) == 5


def test_writes_are_fenced_by_the_lease(redis_client):
    store = EventStore(redis_client, Keys())
    old = Lease(redis_client, Keys().tracker_lease("door"), "old", ttl=0.3)
    assert old.acquire()
    s = state(1)
    store.save(EventMessage("new", s, s), lease=old)
    time.sleep(0.4)
    heir = Lease(redis_client, Keys().tracker_lease("door"), "heir", ttl=5)
    assert heir.acquire()
    with pytest.raises(LeaseLostError):
        store.save(EventMessage("update", s, {**s, "top_score": 0.9}), lease=old)
    assert not old.held and store.get("door", s["id"])["top_score"] == 0.8
    store.save(EventMessage("end", s, {**s, "end_time": 1005.0}), lease=heir)
    assert store.get("door", s["id"])["end_time"] == 1005.0


def test_paging_through_events_that_started_in_the_same_frame(redis_client):
    store = EventStore(redis_client, Keys())
    ids = [f"1000.000000-aaa{n:03d}" for n in range(5)]
    for event_id in ids:  # five objects first seen in one frame: one start time
        s = {**state(0), "id": event_id}
        store.save(EventMessage("new", s, s))
    seen, cursor = [], None
    for _ in range(6):
        events, cursor = store.query("door", limit=2, before=cursor, page=1)
        seen += [e["id"] for e in events]
        if cursor is None:
            break
    assert sorted(seen) == ids and len(seen) == 5
