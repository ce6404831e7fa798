"""The synthetic scene through the tracker and the event lifecycle: ids, crossings and zones match the
ground truth built into the paths, with every frame, with frames skipped, and with records from two
workers arriving shuffled."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from common.events_config import EventsConfig
from tests.tracker import scene
from tracker.lifecycle import EventLifecycle
from tracker.ordering import Reorderer
from tracker.tracking import CameraTracker, StaleFrameError

# 9 missing frames across the crossing of a and b: the objects move ~49 px meanwhile, more than their
# width, so only predictions that kept moving through the gap find them again.
GAPS = set(range(36, 45)) | {15, 60, 77, 78}


def run_scene(frames, *, seed=7):
    """Track the scene's frames in the order given; return (ids per actor, event messages, lifecycle)."""
    rng = random.Random(seed)
    all_dets = {i: scene.detections(i, rng) for i in range(scene.FRAMES)}
    tracker = CameraTracker(max_missed=20)
    life = EventLifecycle("yard", EventsConfig(min_frames=3, lost_after=2.0), scene.ZONES, scene.LINES)
    ids: dict[str, list[tuple[int, int | None]]] = defaultdict(list)
    messages = []
    for i in frames:
        dets, who = all_dets[i]
        tracked = tracker.update(1, i, dets)
        for det, actor in zip(tracked, who, strict=True):
            assert det[:7] == next(d for d, w in zip(dets, who, strict=True) if w == actor)
            ids[actor].append((i, det[7]))
        messages += life.observe(scene.ts(i), tracked, scene.W, scene.H, jpeg=b"frame%d" % i)
    messages += life.expire(scene.ts(scene.FRAMES) + 10)
    return ids, messages, life


def track_ids(ids: dict, actor: str, frames: range) -> set:
    return {t for i, t in ids[actor] if i in frames}


def check_scene(ids, messages, life, frames):
    # Every actor keeps one id from its second frame on (the first is unconfirmed by the tracker);
    # e gets a second id when it comes back; no two actors ever share one.
    per_actor = {}
    for actor in "abcd":
        got = track_ids(ids, actor, range(1, scene.FRAMES)) - {None}
        assert len(got) == 1, (actor, got)
        per_actor[actor] = got
    first = track_ids(ids, "e", range(1, 21)) - {None}
    second = track_ids(ids, "e", range(62, scene.FRAMES)) - {None}
    assert len(first) == 1 and len(second) == 1 and first != second
    per_actor["e1"], per_actor["e2"] = first, second
    everything = [t for s in per_actor.values() for t in s]
    assert len(everything) == len(set(everything))
    actor_of = {next(iter(s)): name for name, s in per_actor.items()}

    # Events: one per object, new first, end last, no update after the end.
    by_event = defaultdict(list)
    for m in messages:
        by_event[m.after["id"]].append(m)
    assert len(by_event) == 6
    seen_actors = set()
    for event_id, msgs in by_event.items():
        kinds = [m.type for m in msgs]
        assert kinds[0] == "new" and kinds[-1] == "end" and kinds.count("new") == 1 and kinds.count("end") == 1
        final = msgs[-1].after
        actor = actor_of[final["track_id"]]
        seen_actors.add(actor)
        base = actor[0]
        crossed = [(c["line"], c["direction"]) for c in final["lines_crossed"]]
        assert crossed == scene.CROSSINGS[base], actor
        assert final["entered_zones"] == scene.ENTERED[base], actor
        assert final["label"] == ("car" if base == "c" else "person")
        assert final["end_time"] is not None and final["start_time"] < final["end_time"]
        assert all(m.before["id"] == event_id for m in msgs)
        if base == "d":
            zone_changes = [m.after["current_zones"] for m in msgs[:-1]
                            if m.type == "update" and m.after["current_zones"] != m.before["current_zones"]]
            first_zones = msgs[0].after["current_zones"]
            assert ([first_zones] if first_zones else []) + zone_changes == scene.D_ZONE_CHANGES
    assert seen_actors == {"a", "b", "c", "d", "e1", "e2"}
    # e's first event ended while it was away, before its second one started.
    e1 = next(v for v in by_event.values() if actor_of[v[-1].after["track_id"]] == "e1")
    e2 = next(v for v in by_event.values() if actor_of[v[-1].after["track_id"]] == "e2")
    assert messages.index(e1[-1]) < messages.index(e2[0])
    assert e1[-1].after["end_time"] == pytest.approx(scene.ts(max(i for i in frames if i <= 20)))

    counts = life.counts()
    assert counts["lines"]["door"] == {"in": {"person": 1}, "out": {"person": 1}}
    assert counts["lines"]["road"] == {"in": {"car": 1}, "out": {}}


def test_every_frame():
    frames = list(range(scene.FRAMES))
    check_scene(*run_scene(frames), frames)


def test_frames_skipped():
    frames = [i for i in range(scene.FRAMES) if i not in GAPS]
    check_scene(*run_scene(frames), frames)


def test_two_workers_shuffled_and_skipping():
    """Records of two workers arrive interleaved and late; the reorderer restores (run, seq) order."""
    rng = random.Random(3)
    arrivals = []
    for i in range(scene.FRAMES):
        if i in GAPS:
            continue  # skipped as stale by whichever worker took it
        worker_delay = 0.03 if i % 2 else 0.12  # worker 2 is slower
        arrivals.append((i / scene.FPS + worker_delay + rng.uniform(0, 0.05), i))
    arrivals.sort()
    reorder = Reorderer(window=0.3)
    released = []
    for arrived, i in arrivals:
        released += reorder.push(1, i, arrived, i)
    released += reorder.flush()
    assert released == sorted(released) and reorder.late == 0
    assert released == [i for i in range(scene.FRAMES) if i not in GAPS]
    assert [i for _, i in arrivals] != released  # they really did arrive out of order
    check_scene(*run_scene(released), released)


def test_new_run_starts_fresh_tracks_and_stale_frames_are_refused():
    tracker = CameraTracker(max_missed=10)
    box = ["person", 0.9, 100, 100, 140, 200, 0]
    ids = [tracker.update(1, seq, [box])[0][7] for seq in range(5)]
    assert ids[0] is None and len(set(ids[1:])) == 1
    with pytest.raises(StaleFrameError):
        tracker.update(1, 4, [box])
    with pytest.raises(StaleFrameError):
        tracker.update(0, 99, [box])
    # The same box in a new run is a new object: fresh tracker, a new id (ids never repeat).
    new_ids = [tracker.update(2, seq, [box])[0][7] for seq in range(3)]
    assert new_ids[0] is None and new_ids[1] == new_ids[2] and new_ids[1] not in ids
    assert tracker.resets == 2


def test_one_frame_flicker_never_becomes_an_event():
    life = EventLifecycle("yard", EventsConfig(min_frames=3, lost_after=1.0))
    assert life.observe(0.0, [["person", 0.9, 10, 10, 50, 100, 0, 7]], 640, 480) == []
    assert life.observe(5.0, [], 640, 480) == []
    assert life.flickers == 1 and life.open_events == []
