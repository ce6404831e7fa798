"""The common CLI layer: which cameras a producer or worker serves (--camera, else $FRAMECAST_CAMERAS),
down to a real worker process that consumes only its cameras' streams."""

import argparse
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np

from common import envelope
from common.envelope import Frame
from common.keys import FRAME_FIELD, Keys
from common.registry import live_members
from common.service import CAMERAS_ENV, add_common_args, camera_ids
from tests.conftest import REPO

KEYS = Keys("fc")


def _parser(cameras: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_common_args(parser, cameras=cameras)
    return parser


def _wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_camera_flags_win_over_the_environment():
    assert camera_ids(_parser().parse_args(["--camera", "yard"]), {CAMERAS_ENV: "door"}) == ["yard"]
    assert camera_ids(_parser().parse_args([]), {CAMERAS_ENV: " door, yard ,"}) == ["door", "yard"]


def test_empty_or_absent_environment_means_every_camera():
    assert camera_ids(_parser().parse_args([]), {CAMERAS_ENV: " , "}) is None
    assert camera_ids(_parser().parse_args([]), {}) is None


def test_services_without_camera_flags_ignore_the_environment():
    assert camera_ids(_parser(cameras=False).parse_args([]), {CAMERAS_ENV: "door"}) is None


def _worker(config, cameras_env: str) -> subprocess.Popen:
    env = {**os.environ, CAMERAS_ENV: cameras_env}
    return subprocess.Popen([sys.executable, "-m", "framecast", "worker", "--config", str(config),
                             "--log-format", "text"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_an_unknown_camera_in_the_environment_exits_2(write_config, redis_url):
    config = write_config([{"id": "door", "source": "pattern"}], redis_url=redis_url)
    proc = _worker(config, "door,gate")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "unknown camera 'gate'" in output


def test_a_worker_consumes_only_the_cameras_in_the_environment(write_config, redis_url, redis_client):
    cams = [{"id": cam, "source": "pattern", "mode": "backlog"} for cam in ("door", "yard")]
    config = write_config(cams, redis_url=redis_url)
    proc = _worker(config, "door")
    try:
        assert _wait_until(lambda: live_members(redis_client, KEYS, "worker") or proc.poll() is not None, 120)
        assert proc.poll() is None, proc.stdout.read()
        (worker,) = live_members(redis_client, KEYS, "worker")
        assert worker["cameras"] == ["door"]

        image = np.full((120, 160, 3), 90, np.uint8)
        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
        for cam in ("door", "yard"):
            for seq in range(5):
                frame = Frame(cam, 1, seq, time.time_ns(), 160, 120, jpeg)
                redis_client.xadd(KEYS.frames(cam), {FRAME_FIELD: envelope.encode(frame)})
        assert _wait_until(lambda: redis_client.xlen(KEYS.annotated("door")) == 5, 60)
        time.sleep(1.0)  # a worker reading yard too would have taken its frames by now
        assert redis_client.xlen(KEYS.annotated("yard")) == 0
        assert redis_client.xinfo_groups(KEYS.frames("yard")) == []  # nobody ever read yard's stream
        assert redis_client.xinfo_groups(KEYS.frames("door"))[0]["entries-read"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
