import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from common import envelope
from common.config import load_config
from common.connection import connect
from common.keys import FRAME_FIELD, Keys
from common.registry import live_members
from common.stats import read_stats
from producer.capture import LatestFrame
from producer.publisher import CameraPublisher
from producer.sources import Source
from tests.conftest import REPO
from testsupport.redis_server import free_port

FRAMECAST = [sys.executable, "-m", "framecast"]


def frames_in(client, cam):
    return [envelope.decode(fields[FRAME_FIELD]) for _, fields in client.xrange(Keys().frames(cam))]


def run_for(publisher, seconds):
    thread = threading.Thread(target=publisher.run, daemon=True)
    thread.start()
    time.sleep(seconds)
    publisher.stop.set()
    thread.join(timeout=10)
    assert not thread.is_alive()


def make_publisher(write_config, redis_url, cam, source=None, **settings):
    cfg = load_config(write_config([cam], redis_url=redis_url, **settings), env={})
    client = connect(redis_url)
    return CameraPublisher(cfg.cameras[0], cfg, client, threading.Event(), source=source)


def test_pattern_publishes_increasing_sequence(write_config, redis_url, redis_client):
    pub = make_publisher(write_config, redis_url, {"id": "pat", "source": "pattern", "fps": 20})
    run_for(pub, 1.5)
    frames = frames_in(redis_client, "pat")
    assert len(frames) >= 5
    seqs = [f.seq for f in frames]
    assert seqs == sorted(set(seqs))
    assert all(f.run == frames[0].run for f in frames)
    stats = read_stats(redis_client, Keys(), "pat")
    assert stats["published"] == len(frames)


def test_stream_length_is_bounded(write_config, redis_url, redis_client):
    pub = make_publisher(write_config, redis_url, {"id": "b", "source": "pattern"}, streams={"frames_maxlen": 10})
    image = np.zeros((90, 160, 3), np.uint8)
    for _ in range(600):
        assert pub.publish(image, time.time_ns())
    length = redis_client.xlen(Keys().frames("b"))
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default), never more than that over.
    assert 10 <= length <= 110


def test_sample_clip_is_paced_at_native_fps(write_config, redis_url, redis_client):
    pub = make_publisher(write_config, redis_url, {"id": "s", "source": "sample", "fps": 30, "max_width": 384})
    run_for(pub, 2.0)
    frames = frames_in(redis_client, "s")
    # vtest.avi is 10 fps: the 30 fps cap must not speed it up.
    assert 5 <= len(frames) <= 2.0 * 10 + 3
    assert frames[0].width == 384 and frames[0].height == 288
    gaps = np.diff([f.ts for f in frames]) / 1e6
    assert np.median(gaps) > 60  # ~100 ms apart, never back-to-back


def test_fps_cap_decimates_a_file(write_config, redis_url, redis_client, short_clip):
    pub = make_publisher(write_config, redis_url, {"id": "cap", "source": str(short_clip), "fps": 4})
    run_for(pub, 2.0)
    assert 2 <= len(frames_in(redis_client, "cap")) <= 2.0 * 4 + 2


def test_broken_source_is_retried_without_leaking_password(write_config, redis_url, redis_client, log_lines):
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/live"
    pub = make_publisher(write_config, redis_url, {"id": "door", "source": url})
    run_for(pub, 2.5)
    logs = log_lines.getvalue()
    assert "source unavailable, retrying" in logs
    assert '"camera": "door"' in logs
    assert "hunter2" not in logs
    assert read_stats(redis_client, Keys(), "door")["reconnects"] >= 2


def test_missing_file_recovers_when_it_appears(write_config, redis_url, redis_client, short_clip, tmp_path):
    target = tmp_path / "later.avi"
    pub = make_publisher(write_config, redis_url, {"id": "late", "source": str(target)})
    thread = threading.Thread(target=pub.run, daemon=True)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive() and redis_client.xlen(Keys().frames("late")) == 0
    target.write_bytes(short_clip.read_bytes())
    deadline = time.monotonic() + 15
    while redis_client.xlen(Keys().frames("late")) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    pub.stop.set()
    thread.join(timeout=10)
    assert redis_client.xlen(Keys().frames("late")) > 0


def test_redis_outage_drops_and_counts_then_resumes(write_config, own_redis, log_lines):
    pub = make_publisher(write_config, own_redis.url, {"id": "r", "source": "pattern", "fps": 20})
    thread = threading.Thread(target=pub.run, daemon=True)
    thread.start()
    time.sleep(0.8)
    own_redis.kill()
    time.sleep(1.5)
    own_redis.start()
    client = connect(own_redis.url)
    deadline = time.monotonic() + 20
    while client.xlen(Keys().frames("r")) == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    pub.stop.set()
    thread.join(timeout=10)
    assert thread.is_alive() is False
    assert client.xlen(Keys().frames("r")) > 0  # publishing resumed on the restarted server
    from producer import metrics

    dropped = metrics.FRAMES_DROPPED.labels(camera="r", reason="redis")._value.get()
    assert dropped >= 5
    assert "redis unavailable" in log_lines.getvalue() and "redis reachable again" in log_lines.getvalue()


class FastLiveSource(Source):
    """A live source delivering frames much faster than the camera's fps cap."""

    live = True
    fps = 200.0

    def __init__(self):
        self.count = 0

    def open(self):
        pass

    def read(self):
        time.sleep(0.005)
        self.count += 1
        return np.full((48, 64, 3), self.count % 255, np.uint8)


def test_live_source_never_queues(write_config, redis_url, redis_client):
    source = FastLiveSource()
    pub = make_publisher(write_config, redis_url, {"id": "live", "source": 0, "fps": 5}, source=source)
    run_for(pub, 2.0)
    frames = frames_in(redis_client, "live")
    assert 3 <= len(frames) <= 2.0 * 5 + 2
    assert source.count > 5 * len(frames)  # the rest were skipped, not queued
    # Each published frame is the newest one: capture times are close to publish times.
    assert all(abs(int(eid.split(b"-")[0]) - f.ts // 1_000_000) < 500
               for (eid, _), f in zip(redis_client.xrange(Keys().frames("live")), frames, strict=True))


def test_latest_frame_slot_counts_overwrites():
    slot = LatestFrame()
    assert slot.take(timeout=0.01) == (None, 0)
    for i in range(4):
        slot.put(i, i)
    item, overwritten = slot.take(timeout=0.01)
    assert item == (3, 3) and overwritten == 3


def _cli(*args, env_extra=None, **kw):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([*FRAMECAST, *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env, **kw)


@pytest.mark.parametrize("camera, message", [("bad id", "invalid camera id"), ("nope", "unknown camera 'nope'")])
def test_cli_refuses_bad_camera(camera, message, redis_url):
    result = _cli("producer", "--camera", camera, "--redis-url", redis_url)
    assert result.returncode == 2
    assert message in result.stderr


def test_cli_sigterm_stops_cleanly(write_config, redis_url, redis_client):
    path = write_config([{"id": "p1", "source": "pattern", "fps": 10}], redis_url=redis_url)
    proc = subprocess.Popen([*FRAMECAST, "producer", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while redis_client.xlen(Keys().frames("p1")) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(redis_client.zrange(Keys().producers, 0, -1)) == 1  # heart-beating
    fps, deadline = 0.0, time.monotonic() + 15
    while not 7 < fps < 13 and time.monotonic() < deadline:  # the heartbeat carries the published rate
        time.sleep(0.5)
        fps = next(iter(live_members(redis_client, Keys(), "producer")), {}).get("fps", {}).get("p1", 0.0)
    assert 7 < fps < 13, fps
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "producer stopped" in err
    assert redis_client.zrange(Keys().producers, 0, -1) == []  # deregistered
