"""Event lifecycle on hand-made tracks: message order, before/after, snapshots, geometry edge cases."""

from __future__ import annotations

from common.events_config import EventsConfig, LineConfig, ZoneConfig
from tracker import geometry
from tracker.lifecycle import EventLifecycle

W, H = 1000, 1000
ZONE = ZoneConfig(name="drive", points=[(0.5, 0.0), (1.0, 0.0), (1.0, 1.0), (0.5, 1.0)])
LINE = LineConfig(name="gate", points=[(0.3, 0.0), (0.3, 1.0)], in_side="left")


def det(x: int, score: float, track: int = 1, w: int = 100, label: str = "person") -> list:
    """A box whose bottom centre is at (x, 900) pixels."""
    return [label, score, x - w // 2, 500, x + w // 2, 900, 0, track]


def test_new_update_end_in_order_with_before_and_after():
    life = EventLifecycle("door", EventsConfig(min_frames=3, lost_after=1.0), [ZONE], [LINE])
    out = []
    # Walks right: crosses the gate (x=300) at frame 3, enters the drive (x>=500) at frame 5.
    for i, x in enumerate([100, 150, 200, 350, 450, 550, 600]):
        out += [(i, m) for m in life.observe(10.0 + i * 0.1, [det(x, 0.7)], W, H, jpeg=b"jpeg%d" % i)]
    out += [(9, m) for m in life.expire(10.6 + 1.01)]
    kinds = [(i, m.type) for i, m in out]
    assert kinds == [(2, "new"), (3, "update"), (5, "update"), (9, "end")]
    new, gate, zone, end = (m for _, m in out)
    assert new.before == new.after and new.after["end_time"] is None
    assert new.after["start_time"] == 10.0 and new.after["camera"] == "door"
    # The gate's left side (A->B drawn downwards) is the picture's right: walking right is `in`.
    assert gate.after["lines_crossed"] == [{"line": "gate", "direction": "in", "time": 10.3}]
    assert gate.before["lines_crossed"] == []
    assert zone.before["current_zones"] == [] and zone.after["current_zones"] == ["drive"]
    assert end.before == zone.after  # each before is what was last sent
    assert end.after["end_time"] == 10.6 and end.after["entered_zones"] == ["drive"]
    assert end.after["has_clip"] is True and end.after["has_snapshot"] is True
    assert {m.after["id"] for _, m in out} == {new.after["id"]}
    counts = life.counts()
    assert counts["lines"]["gate"]["in"] == {"person": 1} and counts["zones"]["drive"] == {}


def test_best_snapshot_kept():
    life = EventLifecycle("door", EventsConfig(min_frames=2, lost_after=1.0))
    scores = [0.55, 0.6, 0.92, 0.7, 0.91, 0.5]
    messages = []
    for i, score in enumerate(scores):
        messages += life.observe(float(i) / 10, [det(500, score)], W, H, jpeg=b"jpeg%d" % i)
    messages += life.end_all()
    snapshots = [m for m in messages if m.snapshot is not None]
    assert [m.type for m in messages] == ["new", "update", "end"]
    assert snapshots[-1].snapshot.jpeg == b"jpeg2" and snapshots[-1].snapshot.score == 0.92
    final = messages[-1].after
    assert final["top_score"] == 0.92 and final["score"] == 0.5
    assert final["snapshot"] == {"frame_time": 0.2, "box": [450, 500, 550, 900], "score": 0.92}


def test_a_much_larger_view_of_equal_score_replaces_the_snapshot():
    life = EventLifecycle("door", EventsConfig(min_frames=1, lost_after=1.0))
    life.observe(0.0, [det(500, 0.8, w=100)], W, H, jpeg=b"small")
    messages = life.observe(0.1, [det(500, 0.79, w=200)], W, H, jpeg=b"large")
    assert [m.type for m in messages] == ["update"] and messages[0].snapshot.jpeg == b"large"


def test_labels_and_min_score_gate_events():
    life = EventLifecycle("door", EventsConfig(labels=["car"], min_frames=1, min_score=0.8, lost_after=1.0))
    assert life.observe(0.0, [det(500, 0.9, track=1, label="person")], W, H) == []
    assert life.observe(0.1, [det(500, 0.7, track=2, label="car")], W, H) == []
    # The car becomes an event once it scores min_score.
    assert [m.type for m in life.observe(0.2, [det(500, 0.85, track=2, label="car")], W, H)] == ["new"]
    assert life.counts()["objects"] == {"car": 1}


def test_stopping_on_a_line_and_going_back_is_no_crossing():
    life = EventLifecycle("door", EventsConfig(min_frames=1, lost_after=1.0), lines=[LINE])
    for i, x in enumerate([200, 250, 300, 300, 250, 200]):  # x=300 is on the gate
        life.observe(i / 10, [det(x, 0.8)], W, H)
    assert life.counts()["lines"]["gate"] == {"in": {}, "out": {}}


def test_geometry():
    square = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.6), (0.2, 0.6)]
    assert geometry.point_in_polygon((0.4, 0.4), square)
    assert not geometry.point_in_polygon((0.7, 0.4), square)
    concave = [(0, 0), (1, 0), (1, 1), (0.5, 0.3), (0, 1)]
    assert not geometry.point_in_polygon((0.5, 0.8), concave) and geometry.point_in_polygon((0.2, 0.5), concave)
    assert geometry.anchor([100, 50, 300, 400], 1000, 500) == (0.2, 0.8)
    a, b = (0.0, 0.5), (1.0, 0.5)  # drawn left to right: its right side is below
    assert geometry.crossing((0.5, 0.4), (0.5, 0.6), a, b, "right") == "in"
    assert geometry.crossing((0.5, 0.6), (0.5, 0.4), a, b, "right") == "out"
    assert geometry.crossing((0.5, 0.6), (0.5, 0.4), a, b, "left") == "in"
    short = ((0.0, 0.5), (0.3, 0.5))  # passing beside a short line's end is no crossing
    assert geometry.crossing((0.5, 0.4), (0.5, 0.6), *short) is None
    assert geometry.crossing((0.5, 0.4), (0.5, 0.45), a, b) is None
