"""The Redis worker loop against a real redis-server and the real model."""

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import msgpack

from common import envelope
from common.config import load_config
from common.connection import connect
from common.envelope import Frame
from common.keys import FRAME_FIELD, WORKER_GROUP, Keys
from common.registry import live_members
from common.stats import read_stats
from tests.conftest import REPO
from tests.worker.conftest import make_frame
from worker.live.consumer import Worker

KEYS = Keys("fc")
FRAMECAST = [sys.executable, "-m", "framecast"]


def wait_until(predicate, timeout=60.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def publish(client, frames):
    for frame in frames:
        client.xadd(KEYS.frames(frame.cam), {FRAME_FIELD: envelope.encode(frame)})


def annotated(client, cam):
    return [envelope.decode(f[FRAME_FIELD]) for _, f in client.xrange(KEYS.annotated(cam))]


def pending(client, cam):
    return client.xpending(KEYS.frames(cam), WORKER_GROUP)["pending"]


class InProcessWorker:
    """A Worker running on a thread of the test process (the model is loaded once per session)."""

    def __init__(self, settings, client=None):
        self.stop = threading.Event()
        self.worker = Worker(settings, settings.cameras, client or connect(settings.redis_url), self.stop)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.worker

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=20)
        assert not self.thread.is_alive()


def settings_for(write_config, redis_url, mode="backlog", **worker):
    cam = {"id": "cam1", "source": "pattern", "mode": mode}
    return load_config(write_config([cam], redis_url=redis_url, worker={"claim_idle_ms": 500, **worker}), env={})


def start_worker_process(config_path):
    """A `framecast worker` process; its consumer name (`consumer_name`) is fixed through
    FRAMECAST_INSTANCE_ID, since member ids otherwise carry a random suffix."""
    name = f"{socket.gethostname()}-test-{next(_instances)}-{os.getpid()}"
    proc = subprocess.Popen([*FRAMECAST, "worker", "--config", str(config_path), "--log-format", "text"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "FRAMECAST_INSTANCE_ID": name})
    proc.consumer_name = name
    return proc


_instances = itertools.count()


def test_two_workers_split_the_frames_without_loss_or_duplicates(write_config, redis_url, redis_client,
                                                                  sample_images):
    path = write_config([{"id": "cam1", "source": "pattern", "mode": "backlog"}], redis_url=redis_url)
    procs = [start_worker_process(path) for _ in range(2)]
    try:
        assert wait_until(lambda: len(live_members(redis_client, KEYS, "worker")) == 2, 120)
        frames = [make_frame(sample_images[i % 40], seq=i) for i in range(40)]
        publish(redis_client, frames)
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) >= 40, 180)
        time.sleep(0.5)
        done = annotated(redis_client, "cam1")
        assert sorted(f.seq for f in done) == list(range(40))  # every frame exactly once
        assert len({f.meta["worker"] for f in done}) == 2  # both workers took part
        assert pending(redis_client, "cam1") == 0
        assert redis_client.xlen(KEYS.detections("cam1")) == 40
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


def consumer_name(proc) -> str:
    return proc.consumer_name


def stop_holding_a_frame(proc, client, stream, attempts=400):
    """SIGSTOP `proc` at a moment it holds an unacknowledged frame; returns that entry's id."""
    for _ in range(attempts):
        proc.send_signal(signal.SIGSTOP)
        held = client.xpending_range(stream, WORKER_GROUP, "-", "+", 10, consumername=consumer_name(proc))
        if held:
            return held[0]["message_id"]
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the worker never held a frame")


def test_sigkilled_worker_frames_are_reclaimed_by_the_other(write_config, redis_url, redis_client,
                                                             sample_images):
    path = write_config([{"id": "cam1", "source": "pattern", "mode": "backlog"}], redis_url=redis_url,
                        worker={"claim_idle_ms": 1000, "dead_consumer_after": 2})
    victim, survivor = start_worker_process(path), start_worker_process(path)
    stream = KEYS.frames("cam1")
    try:
        assert wait_until(lambda: len(live_members(redis_client, KEYS, "worker")) == 2, 120)
        publish(redis_client, [make_frame(sample_images[i % 40], seq=i) for i in range(40)])
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) >= 3, 120)
        held = stop_holding_a_frame(victim, redis_client, stream)
        victim.send_signal(signal.SIGKILL)  # dies mid-frame, the frame unacknowledged
        victim.wait(timeout=10)
        held_seq = envelope.decode(redis_client.xrange(stream, held, held)[0][1][FRAME_FIELD]).seq
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) >= 40, 180)
        assert wait_until(lambda: pending(redis_client, "cam1") == 0, 30)
        done = annotated(redis_client, "cam1")
        assert sorted(f.seq for f in done) == list(range(40))  # none lost, none twice
        assert [f.meta["worker"] for f in done if f.seq == held_seq] == [consumer_name(survivor)]
        consumers = lambda: {c["name"] for c in redis_client.xinfo_consumers(stream, WORKER_GROUP)}  # noqa: E731
        assert wait_until(lambda: consumer_name(victim).encode() not in consumers(), 30)  # dead one removed
        assert consumer_name(survivor).encode() in consumers()
    finally:
        for proc in (victim, survivor):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in (victim, survivor):
            proc.wait(timeout=30)


def test_stale_frames_are_skipped_and_counted_in_live_mode(write_config, redis_url, redis_client, sample_images):
    settings = settings_for(write_config, redis_url, mode="live", max_frame_age=1.0)
    with InProcessWorker(settings):
        assert wait_until(lambda: redis_client.exists(KEYS.frames("cam1")), 30)
        old = time.time_ns() - 5_000_000_000
        publish(redis_client, [make_frame(sample_images[i], seq=i, ts=old) for i in range(10)])
        publish(redis_client, [make_frame(sample_images[10], seq=10)])
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) >= 1, 60)
        assert wait_until(lambda: read_stats(redis_client, KEYS, "cam1").get("skipped_stale", 0) >= 10, 30)
    assert [f.seq for f in annotated(redis_client, "cam1")] == [10]
    assert pending(redis_client, "cam1") == 0


def test_corrupt_entries_are_dead_lettered_and_the_worker_goes_on(write_config, redis_url, redis_client,
                                                                  sample_images):
    settings = settings_for(write_config, redis_url)
    key = KEYS.frames("cam1")
    good = make_frame(sample_images[0], seq=0)
    bad_jpeg = Frame("cam1", 1, 1, time.time_ns(), 10, 10, b"\xff\xd8 not really a jpeg")
    redis_client.xadd(key, {FRAME_FIELD: envelope.encode(good)})
    redis_client.xadd(key, {FRAME_FIELD: envelope.encode(bad_jpeg)})
    redis_client.xadd(key, {FRAME_FIELD: b"\x00garbage that is not msgpack"})
    redis_client.xadd(key, {FRAME_FIELD: msgpack.packb({"v": 99})})
    redis_client.xadd(key, {"other": b"no frame field"})
    redis_client.xadd(key, {FRAME_FIELD: envelope.encode(make_frame(sample_images[1], seq=5))})
    with InProcessWorker(settings):
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) >= 2, 60)
        assert wait_until(lambda: redis_client.xlen(KEYS.deadletter("cam1")) >= 4, 30)
    assert [f.seq for f in annotated(redis_client, "cam1")] == [0, 5]
    reasons = [f[b"reason"] for _, f in redis_client.xrange(KEYS.deadletter("cam1"))]
    assert reasons == [b"jpeg", b"envelope", b"envelope", b"malformed"]
    errors = b" ".join(f[b"error"] for _, f in redis_client.xrange(KEYS.deadletter("cam1")))
    assert b"unsupported envelope version 99" in errors
    assert pending(redis_client, "cam1") == 0
    assert read_stats(redis_client, KEYS, "cam1")["failed"] == 4


def test_worker_resumes_after_redis_restart(write_config, own_redis, sample_images):
    settings = settings_for(write_config, own_redis.url)
    client = connect(own_redis.url)
    with InProcessWorker(settings):
        publish(client, [make_frame(sample_images[0], seq=0)])
        assert wait_until(lambda: client.xlen(KEYS.annotated("cam1")) == 1, 60)
        own_redis.restart(downtime=1.0)  # no persistence: streams and the consumer group are gone
        assert client.ping()
        publish(client, [make_frame(sample_images[i], seq=i) for i in range(1, 4)])
        assert wait_until(lambda: client.xlen(KEYS.annotated("cam1")) == 3, 60)
        assert client.xinfo_groups(KEYS.frames("cam1"))  # the group was re-created


def test_sigterm_exits_cleanly_with_nothing_pending(write_config, redis_url, redis_client, sample_images):
    path = write_config([{"id": "cam1", "source": "pattern", "mode": "backlog"}], redis_url=redis_url)
    proc = start_worker_process(path)
    assert wait_until(lambda: len(live_members(redis_client, KEYS, "worker")) == 1, 120)
    publish(redis_client, [make_frame(sample_images[i % 40], seq=i) for i in range(60)])
    assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) >= 5, 60)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "worker stopped" in err
    assert pending(redis_client, "cam1") == 0
    assert live_members(redis_client, KEYS, "worker") == []
    assert redis_client.xlen(KEYS.annotated("cam1")) < 60  # it stopped mid-stream, not at the end


def test_unknown_camera_and_bad_model_exit_2(write_config, redis_url, tmp_path):
    path = write_config([{"id": "cam1", "source": "pattern", "detection": {"model": str(tmp_path / "x.tflite")}}],
                        redis_url=redis_url)
    env = {**os.environ}
    result = subprocess.run([*FRAMECAST, "worker", "--config", str(path)], capture_output=True, text=True,
                            cwd=REPO, timeout=120, env=env)
    assert result.returncode == 2 and "does not exist" in result.stderr
    result = subprocess.run([*FRAMECAST, "worker", "--config", str(path), "--camera", "nope"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2 and "unknown camera 'nope'" in result.stderr
