"""Paced cameras (files, test patterns) start at their own phase of the frame period, so many cameras
of one rate do not send in the same instant."""

from collections import Counter

from producer.publisher import schedule_phase


def test_phases_are_stable_and_spread_over_the_period():
    ids = [f"cam{i:03d}" for i in range(256)]
    phases = [schedule_phase(cam) for cam in ids]
    assert phases == [schedule_phase(cam) for cam in ids]  # the same camera, the same phase
    assert all(0.0 <= p < 1.0 for p in phases)
    # 128 slots of the period: in phase, all 256 would share one; spread, a slot holds a few
    slots = Counter(int(p * 128) for p in phases)
    assert max(slots.values()) <= 8 and len(slots) >= 80
