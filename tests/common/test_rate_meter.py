"""RateMeter: the rates in heartbeats, for cameras faster and slower than the heartbeat interval."""

import pytest

from common import stats
from common.stats import RateMeter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(stats.time, "monotonic", clock)
    return clock


def readings(clock, fps: float, seconds: float, every: float = 10 / 3, start: int = 0):
    """Rates read every `every` s from a camera sending a frame every 1/fps s (the first one at 1/fps)."""
    meter, out, t = RateMeter(start), [], 0.0
    while t + every <= seconds:
        t += every
        clock.now = 1000.0 + t
        out.append(meter.rate(start + int(t * fps + 1e-9)))
    return meter, out


def test_a_fast_camera_reads_its_rate_at_every_heartbeat(clock):
    _, rates = readings(clock, fps=10, seconds=30)
    assert all(9.5 <= r <= 10.5 for r in rates), rates


def test_a_camera_slower_than_the_heartbeat_does_not_read_zero(clock):
    _, rates = readings(clock, fps=0.2, seconds=120)
    settled = rates[3:]  # once the window holds two frames
    assert all(0.13 <= r <= 0.31 for r in settled), rates
    assert 0.17 <= sum(settled) / len(settled) <= 0.25  # the window ends on a frame: it reads a little high


def test_a_camera_that_stops_reads_zero_soon(clock):
    meter, _ = readings(clock, fps=10, seconds=20)
    clock.now += 10 / 3
    assert meter.rate(200) == 0.0  # no frame in the reading interval: 33 were expected
    meter, _ = readings(clock, fps=0.2, seconds=60)
    clock.now += 10 / 3
    assert meter.rate(12) > 0  # one slow frame's wait is no stop
    rates = []
    for _ in range(4):
        clock.now += 10 / 3
        rates.append(meter.rate(12))
    assert rates[-1] == 0.0, rates  # 16.7 s without a frame where three were due


def test_a_counter_that_starts_again_is_not_a_negative_rate(clock):
    meter, _ = readings(clock, fps=10, seconds=10)
    clock.now += 1
    assert meter.rate(3) == 0.0
    clock.now += 1
    assert meter.rate(13) == pytest.approx(10)
