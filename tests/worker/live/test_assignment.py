"""The rendezvous ranking that assigns cameras to workers (worker/live/assignment.py), without Redis."""

from __future__ import annotations

from collections import Counter

from worker.live.assignment import Assignment, assigned, rank, readers

CAMS = [f"cam{i:03d}" for i in range(240)]
WORKERS = [f"host{i}-{1000 + i}-a1b2c{i}" for i in range(6)]


def places(workers, per_camera=2):
    """cam -> its set of readers."""
    return {cam: set(readers(cam, workers, per_camera)) for cam in CAMS}


def test_ranking_is_stable_whatever_order_the_workers_come_in():
    for cam in CAMS[:20]:
        assert rank(cam, WORKERS) == rank(cam, list(reversed(WORKERS))) == rank(cam, WORKERS + WORKERS[:2])
    assert len({tuple(rank(cam, WORKERS)) for cam in CAMS}) > 100  # cameras rank the workers differently


def test_every_camera_gets_its_readers_and_they_spread_evenly():
    load = Counter(w for readers_ in places(WORKERS).values() for w in readers_)
    assert all(len(r) == 2 for r in places(WORKERS).values())
    mean = len(CAMS) * 2 / len(WORKERS)  # 80
    assert set(load) == set(WORKERS)
    assert max(load.values()) <= 1.3 * mean and min(load.values()) >= 0.7 * mean, load


def test_a_worker_joining_takes_only_places_and_a_leaving_one_gives_only_its_own():
    before = places(WORKERS[:5])
    after = places(WORKERS)  # the sixth joins
    moved = 0
    for cam in CAMS:
        lost = before[cam] - after[cam]
        gained = after[cam] - before[cam]
        assert gained <= {WORKERS[5]}  # only the newcomer takes places
        assert len(lost) == len(gained)
        moved += len(gained)
    # about its fair share (2 of 6 places per camera -> 80), nothing more moves
    assert 0.6 * 80 <= moved <= 1.4 * 80
    # the newcomer leaves again: exactly the earlier readers come back
    assert places(WORKERS[:5]) == before
    # another worker leaves: only the cameras it read change, each keeps its other reader
    without = places([w for w in WORKERS if w != WORKERS[2]])
    for cam in CAMS:
        if WORKERS[2] in after[cam]:
            assert len(without[cam] & after[cam]) == 1
        else:
            assert without[cam] == after[cam]


def test_readers_per_camera_zero_and_more_than_the_workers_mean_every_worker():
    assert set(readers("door", WORKERS, 0)) == set(WORKERS)
    assert set(readers("door", WORKERS[:2], 5)) == set(WORKERS[:2])
    assert assigned(CAMS, WORKERS[:1], WORKERS[0], 2) == set(CAMS)


def test_a_worker_counts_itself_and_reports_changes():
    me = WORKERS[0]
    assignment = Assignment(None, None, me, CAMS, 2)
    assert assignment.cameras == set(CAMS)  # alone until the registry is read
    assert assignment.update(WORKERS[1:]) is True  # itself counted although not listed
    assert assignment.cameras == assigned(CAMS, WORKERS, me, 2)
    assert 40 < len(assignment.cameras) < 120
    assert assignment.update(WORKERS) is False  # the same pool
    assert Assignment(None, None, me, CAMS, 0).cameras == set(CAMS)
