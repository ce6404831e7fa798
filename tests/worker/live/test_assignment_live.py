"""Cameras assigned to workers by rendezvous hashing (#23), with real processes: one producer of 60
low-rate pattern cameras and three `framecast worker` processes on a real redis-server. Each worker
reads only the cameras the ranking gives it (its consumer is in exactly those groups), every camera
has `worker.readers_per_camera` readers, every camera's frames are processed; a SIGKILLed worker's
places are taken by the others once its heartbeat has expired."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from common.keys import WORKER_GROUP
from common.registry import live_members
from common.stats import read_stats
from common.text import as_str
from tests.conftest import REPO
from tests.worker.live.test_consumer import FRAMECAST, KEYS, wait_until
from worker.live.assignment import readers

pytestmark = pytest.mark.slow

CAMERAS = [f"c{i:02d}" for i in range(60)]
READERS = 2
HEARTBEAT_TTL = 2.0


def _start(role: str, config, logs, name: str | None = None) -> subprocess.Popen:
    """A `framecast <role>` process logging to a file (a pipe nobody reads would fill and block it)."""
    env = {**os.environ, **({"FRAMECAST_INSTANCE_ID": name} if name else {})}
    out = open(logs / f"{name or role}.log", "w")  # noqa: SIM115 - closed with the test's tmp_path
    proc = subprocess.Popen([*FRAMECAST, role, "--config", str(config), "--log-format", "text"], cwd=REPO,
                            stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    proc.name = name or role
    return proc


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _consumers(client) -> dict[str, set[str]]:
    """cam -> the consumers in its frames stream's group (XINFO CONSUMERS), one pipelined round trip."""
    pipe = client.pipeline(transaction=False)
    for cam in CAMERAS:
        pipe.xinfo_consumers(KEYS.frames(cam), WORKER_GROUP)
    return {cam: {as_str(c["name"]) for c in reply} for cam, reply in zip(CAMERAS, pipe.execute(), strict=True)}


def _heartbeat_cameras(client) -> dict[str, set[str]]:
    """worker -> the cameras its heartbeat says it reads."""
    return {m["id"]: set(m.get("cameras") or ()) for m in live_members(client, KEYS, "worker")}


def _expected(workers) -> dict[str, set[str]]:
    return {cam: set(readers(cam, workers, READERS)) for cam in CAMERAS}


def _settled(client, workers) -> bool:
    """Every worker's heartbeat says it reads what the ranking over `workers` gives it, and no group
    has a consumer the ranking does not name (Redis adds a consumer to a group with its first entry)."""
    expected = _expected(workers)
    mine = {w: {cam for cam, r in expected.items() if w in r} for w in workers}
    return (_heartbeat_cameras(client) == mine
            and all(consumers <= expected[cam] for cam, consumers in _consumers(client).items()))


def _counts(client) -> dict[str, dict]:
    return {cam: read_stats(client, KEYS, cam) for cam in CAMERAS}


def test_workers_read_only_their_cameras_and_take_over_a_dead_ones(write_config, redis_url, redis_client, tmp_path):
    cams = [{"id": cam, "source": "pattern", "fps": 0.5, "max_width": 160, "detection": {"threads": 1}}
            for cam in CAMERAS]
    config = write_config(cams, redis_url=redis_url, worker={
        "readers_per_camera": READERS, "heartbeat_ttl": HEARTBEAT_TTL, "claim_idle_ms": 1000,
        "dead_consumer_after": 5, "max_frame_age": 2.0})
    names = [f"w-assign-{i}" for i in range(3)]
    workers = [_start("worker", config, tmp_path, name) for name in names]
    producer = None
    logs = lambda: "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))  # noqa: E731
    try:
        assert wait_until(lambda: set(_heartbeat_cameras(redis_client)) == set(names), 120), logs()
        # The workers registered one after another, so the first ones read every camera for a moment:
        # once each has seen the other two, each reads its share, and leaves the other groups.
        assert wait_until(lambda: _settled(redis_client, names), 30), logs()
        for name in names:  # a bounded set each: about cameras * readers / workers
            share = sum(name in r for r in _expected(names).values())
            assert 25 <= share <= 55, share

        producer = _start("producer", config, tmp_path)
        assert wait_until(lambda: all(c.get("published", 0) >= 15 for c in _counts(redis_client).values()), 120), logs()
        _stop(producer)
        # Drained: every published frame processed or skipped (counted in the transaction of its ack).
        done = lambda c: c.get("processed", 0) + c.get("skipped_stale", 0) + c.get("failed", 0)  # noqa: E731
        assert wait_until(lambda: all(done(c) >= c["published"] for c in _counts(redis_client).values()), 60), logs()
        counts = _counts(redis_client)
        ratios = {cam: c.get("processed", 0) / c["published"] for cam, c in counts.items()}
        assert min(ratios.values()) >= 0.95, sorted(ratios.items(), key=lambda kv: kv[1])[:5]
        # A worker's consumer is only in the groups of cameras assigned to it, and only those workers
        # published the camera's frames (a consumer joins a group with its first entry, and a peer
        # removes it after dead_consumer_after without one: at this low rate one reader may take them all).
        consumers = _consumers(redis_client)
        for cam in CAMERAS:
            who = {m for _, fields in redis_client.xrange(KEYS.detections(cam))
                   for m in names if m.encode() in fields[b"d"]}
            assert who <= _expected(names)[cam] and consumers[cam] <= _expected(names)[cam], (cam, who, consumers)

        # A worker dies: once its heartbeat has expired the two others read every camera (the ranking
        # over two workers with two readers a camera), its consumer leaves the groups, frames flow on.
        producer = _start("producer", config, tmp_path, "producer-2")
        dead = workers[2]
        before = {cam: c.get("processed", 0) for cam, c in _counts(redis_client).items()}
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=10)
        killed = time.monotonic()
        survivors = names[:2]
        assert wait_until(lambda: _settled(redis_client, survivors), 30), logs()
        assert time.monotonic() - killed < HEARTBEAT_TTL + 3 + 10  # TTL, the consumer clean-up, a margin
        orphaned = [cam for cam in CAMERAS if names[2] in _expected(names)[cam]]
        assert wait_until(lambda: all(_counts(redis_client)[cam].get("processed", 0) >= before[cam] + 3
                                      for cam in orphaned), 90), logs()
        assert wait_until(lambda: all(names[2] not in c for c in _consumers(redis_client).values()), 30), logs()
        for worker in workers[:2]:
            assert worker.poll() is None, logs()
    finally:
        if producer is not None:
            _stop(producer)
        for worker in workers:
            _stop(worker)
