"""The worker's consumer-group chores: a rotation over the cameras at a bounded command rate (pure),
and a real worker's housekeeping commands on a real redis-server, counted by Redis."""

from collections import Counter

import pytest

from common.config import load_config
from common.connection import connect
from tests.worker.live.test_consumer import InProcessWorker, wait_until
from worker.live.consumer import DEAD_CONSUMERS, LAG, RECLAIM_BUDGET
from worker.live.housekeeping import HURRY_BATCH, Chore, Rotation

CAMS = [f"c{i:03d}" for i in range(200)]


def visits(rotation: Rotation, cams: list[str], seconds: float, turn: float = 0.25, start: float = 0.0) -> Counter:
    seen: Counter = Counter()
    steps = round(seconds / turn)
    for i in range(steps + 1):
        seen.update(rotation.take(cams, start + i * turn))
    return seen


def test_few_cameras_are_each_visited_every_interval():
    rotation = Rotation(Chore("lag", interval=2.0, budget=8.0))
    seen = visits(rotation, CAMS[:8], 20.0)
    # the first turn visits all 8, then each camera every 2 s: 10 more visits each in 20 s
    assert set(seen.values()) <= {10, 11} and set(seen) == set(CAMS[:8])


def test_many_cameras_are_visited_in_rotation_within_the_budget():
    rotation = Rotation(Chore("lag", interval=2.0, budget=8.0))
    seen = visits(rotation, CAMS, 100.0)
    total = sum(seen.values())
    assert total <= len(CAMS) + 8 * 100 + 1  # the first full turn, then 8 cameras a second
    assert total >= len(CAMS) + 8 * 100 - 8
    # every camera in turn: 200 cameras at 8 a second is one visit each 25 s, so 4 (or 5) in 100 s
    assert set(seen) == set(CAMS) and max(seen.values()) - min(seen.values()) <= 1


def test_the_visit_rate_does_not_depend_on_how_often_turns_come():
    chore = Chore("reclaim", interval=2.5, budget=8.0)
    coarse = sum(visits(Rotation(chore), CAMS, 60.0, turn=1.0).values())
    fine = sum(visits(Rotation(chore), CAMS, 60.0, turn=0.05).values())
    assert abs(coarse - fine) <= 2


def test_hurry_visits_every_camera_now_and_again_later():
    rotation = Rotation(Chore("consumers", interval=10.0, budget=2.0))
    visits(rotation, CAMS, 10.0)  # the first full turn is behind
    rotation.hurry(20.0, 5.0)
    now_seen = visits(rotation, CAMS, 0.75, start=20.0)  # four turns
    assert set(now_seen) == set(CAMS)  # HURRY_BATCH a turn: 200 cameras in 4 turns
    assert max(now_seen.values()) == 1
    between = visits(rotation, CAMS, 3.0, start=21.25)
    assert sum(between.values()) <= 2 * 3 + 1  # back to the budget
    later = visits(rotation, CAMS, 1.0, start=25.0)
    assert set(later) == set(CAMS)
    assert HURRY_BATCH < len(CAMS)  # the hurry is spread over turns, not one burst


def test_cameras_joining_and_leaving_the_rotation():
    rotation = Rotation(Chore("lag", interval=1.0, budget=100.0))
    assert rotation.take([], 0.0) == []
    assert sorted(rotation.take(CAMS[:3], 1.0)) == CAMS[:3]
    assert sorted(rotation.take(CAMS[:5], 2.0)) == CAMS[:5]  # each due after its 1 s interval
    assert rotation.take(CAMS[:5], 2.1) == []


def _housekeeping_calls(client) -> Counter:
    stats = client.info("commandstats")
    return Counter({name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
                    for name in ("xinfo|groups", "xautoclaim", "xinfo|consumers")})


@pytest.mark.parametrize("cameras", [4, 160])
def test_a_worker_s_housekeeping_commands_are_bounded_whatever_the_camera_count(write_config, redis_url,
                                                                                  redis_client, cameras):
    """A real worker over `cameras` idle live cameras for a window after its start: Redis counts its
    lag readings, reclaims and consumer listings. With few cameras each is visited at its interval;
    with 160, at most the chore's budget a second, not one command per camera per interval."""
    cams = [{"id": f"h{i:03d}", "source": "pattern", "mode": "live"} for i in range(cameras)]
    settings = load_config(write_config(cams, redis_url=redis_url,
                                        worker={"claim_idle_ms": 5000, "dead_consumer_after": 30}), env={})
    window = 6.0
    redis_client.execute_command("CONFIG", "RESETSTAT")  # the server is the session's: other tests' calls
    with InProcessWorker(settings, connect(settings.redis_url)) as worker:
        assert wait_until(lambda: _housekeeping_calls(redis_client)["xinfo|consumers"] >= cameras, 60)
        before = _housekeeping_calls(redis_client)  # the first full turn is behind
        redis_client.execute_command("CONFIG", "RESETSTAT")
        wait_until(lambda: False, window)
        calls = _housekeeping_calls(redis_client)
        assert worker.processed == 0
    assert before["xinfo|groups"] >= cameras and before["xautoclaim"] >= cameras
    per_camera_interval = {"xinfo|groups": LAG.interval, "xautoclaim": 2.5, "xinfo|consumers": DEAD_CONSUMERS.interval}
    budgets = {"xinfo|groups": LAG.budget, "xautoclaim": RECLAIM_BUDGET, "xinfo|consumers": DEAD_CONSUMERS.budget}
    for command, interval in per_camera_interval.items():
        natural = cameras * window / interval  # one command per camera per interval
        bounded = min(natural, budgets[command] * window)
        assert calls[command] <= bounded * 1.3 + 2, (command, calls, bounded)
        if cameras > 100:
            assert calls[command] < natural / 2, (command, calls, natural)
        else:
            assert calls[command] >= natural * 0.6 - 2, (command, calls, natural)  # each camera still visited
