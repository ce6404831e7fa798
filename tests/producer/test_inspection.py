"""The inspection gate: full frames on the interval, after recalibration and during the hold after
motion; regions while something moves; nothing otherwise."""

from common.envelope import MAX_MOTION_BOXES
from common.motion_config import MotionConfig
from producer.inspection import InspectionGate
from producer.motion import MotionResult

STILL = MotionResult((), 0.0, False)
MOVING = MotionResult(((0.25, 0.25, 0.5, 0.75),), 0.02, False)
RESET = MotionResult((), 0.6, True)


def verdicts(gate, results, fps=10.0):
    return [gate.verdict(result, i / fps, 768, 576).inspect for i, result in enumerate(results)]


def test_still_scene_is_inspected_in_full_only_on_the_interval():
    gate = InspectionGate(MotionConfig(full_frame_interval=2.0, hold=1.0))
    got = verdicts(gate, [RESET] + [STILL] * 49)
    assert [i for i, v in enumerate(got) if v == "full"] == [0, 20, 40]
    assert got.count("none") == 47


def test_motion_gives_regions_with_pixel_boxes_then_a_full_hold():
    gate = InspectionGate(MotionConfig(full_frame_interval=60.0, hold=1.0))
    results = [RESET] + [STILL] * 4 + [MOVING] * 5 + [STILL] * 20
    got = verdicts(gate, results)
    assert got[:5] == ["full", "none", "none", "none", "none"]
    assert got[5:10] == ["regions"] * 5
    assert got[10:20] == ["full"] * 10  # the hold: 1 s at 10 fps after the last motion (t=0.9 s)
    assert set(got[21:]) == {"none"}
    verdict = InspectionGate(MotionConfig()).verdict(MOVING, 0.0, 768, 576)
    assert verdict.boxes == ((192, 144, 384, 432),)


def test_recalibration_inspects_the_frame_in_full():
    gate = InspectionGate(MotionConfig(full_frame_interval=60.0, hold=0.0))
    got = verdicts(gate, [RESET, STILL, STILL, RESET, STILL])
    assert got == ["full", "none", "none", "full", "none"]


def test_no_regions_when_max_regions_is_zero_and_too_many_boxes_mean_full():
    gate = InspectionGate(MotionConfig(max_regions=0, full_frame_interval=60.0))
    assert verdicts(gate, [RESET, MOVING]) == ["full", "full"]
    many = MotionResult(tuple((i / 100, 0.0, i / 100 + 0.005, 0.01) for i in range(MAX_MOTION_BOXES + 1)), 0.1, False)
    gate = InspectionGate(MotionConfig(full_frame_interval=60.0))
    gate.verdict(RESET, 0.0, 768, 576)
    verdict = gate.verdict(many, 0.1, 768, 576)
    assert verdict.inspect == "full" and verdict.boxes == ()


def test_cameras_started_together_spread_their_periodic_full_frames():
    """Each camera's periodic full frames fall at a phase of its own (from its id), at most an interval
    and a frame apart, so 24 cameras started at once do not hand the workers 24 full frames at once."""
    config = MotionConfig(full_frame_interval=5.0, hold=0.0)
    at: dict[int, int] = {}
    for n in range(24):
        got = verdicts(InspectionGate(config, cam=f"cam{n:03d}"), [RESET] + [STILL] * 199)
        fulls = [i for i, v in enumerate(got) if v == "full"]
        assert fulls[0] == 0 and len(fulls) in (4, 5)  # the start, then one in each 5 s slot of 20 s
        assert all(0 < b - a <= 51 for a, b in zip(fulls, fulls[1:], strict=False))
        for i in fulls[1:]:
            at[i] = at.get(i, 0) + 1
    assert max(at.values()) <= 4, at  # one frame of 50 per slot: 24 cameras spread over it
    assert verdicts(InspectionGate(config, cam="cam007"), [RESET] + [STILL] * 99) == \
        verdicts(InspectionGate(config, cam="cam007"), [RESET] + [STILL] * 99)  # the same after a restart
