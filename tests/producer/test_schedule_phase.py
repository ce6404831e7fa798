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


def test_one_producer_spreads_its_cameras_of_one_rate_evenly():
    from common.config import CameraConfig
    from producer.publisher import spread_phases

    slow = [CameraConfig(id=f"cam{i:03d}", source="pattern", fps=0.078) for i in range(256)]
    fast = [CameraConfig(id=f"f{i}", source="pattern", fps=10) for i in range(3)]
    phases = spread_phases(slow + fast)
    assert set(phases) == {c.id for c in slow + fast}
    ordered = sorted(phases[c.id] for c in slow)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    assert all(abs(g - 1 / 256) < 1e-9 for g in gaps)  # one frame every period / 256
    # 128 slots of the period: exactly two cameras each (hashed phases put up to 8 in one)
    assert set(Counter(int(phases[c.id] * 128 + 1e-9) for c in slow).values()) == {2}
    fast_phases = sorted(phases[c.id] for c in fast)
    assert all(abs((b - a) - 1 / 3) < 1e-9 for a, b in zip(fast_phases, fast_phases[1:], strict=False))
    assert spread_phases(slow + fast) == phases  # the same cameras, the same phases
