"""Two real `framecast encoder` processes on a real redis-server, one watched camera: exactly one
encodes it; SIGKILL that one and the other takes the camera over within the lease TTL plus a poll,
with a new generation that starts with a keyframe and its own init segment. Every process is
started here and ended by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from encoder.service import POLL_INTERVAL
from tests.conftest import REPO
from tests.encoder.feed import KEYS, Feeder, announce, decode, playable, video, wait_for

pytestmark = pytest.mark.slow

CAM = "lobby"
LEASE_TTL = 2.0
SCHEDULING = 1.0  # seconds of slack for two processes and the test sharing two cores


class Encoders:
    """`framecast encoder` child processes, each with its own log file, ended by PID."""

    def __init__(self, tmp, redis_url: str):
        self.tmp = tmp
        self.config = tmp / "cameras.yaml"
        self.config.write_text(yaml.safe_dump({
            "redis_url": redis_url, "log_format": "text",
            "video": {"lease_ttl": LEASE_TTL, "viewer_ttl": 5.0, "keyframe_interval": 1.0, "preset": "ultrafast"},
            "cameras": [{"id": CAM, "source": "pattern", "fps": 10}]}, sort_keys=False))
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "FRAMECAST_INSTANCE_ID": name}
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "framecast", "encoder", "--config", str(self.config)],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))


def test_the_other_encoder_takes_over_a_killed_holder_with_a_new_generation(tmp_path, redis_url, redis_client):
    encoders = Encoders(tmp_path, redis_url)

    def holder() -> str | None:
        value = redis_client.get(KEYS.encoder_lease(CAM))
        return value.decode().rpartition(":")[0] if value else None

    def watched_and(condition):
        def check():
            announce(redis_client, CAM, "web-test", seconds=5)
            return condition()
        return check

    try:
        encoders.start("enc-a")
        encoders.start("enc-b")
        with Feeder(redis_client, CAM, fps=10):
            wait_for(watched_and(lambda: redis_client.xlen(KEYS.video(CAM)) >= 10), 60, "fragments", encoders.logs)
            first = holder()
            assert first in ("enc-a", "enc-b")
            other = "enc-b" if first == "enc-a" else "enc-a"
            before, _ = video(redis_client, CAM)
            assert redis_client.get(KEYS.encoder_lease(CAM)).decode() == f"{first}:{before.generation}"

            encoders.kill(first)
            killed = time.monotonic()
            wait_for(watched_and(lambda: holder() == other), LEASE_TTL + POLL_INTERVAL + SCHEDULING + 5,
                     "the other encoder's take-over", encoders.logs)
            took = time.monotonic() - killed
            wait_for(watched_and(lambda: video(redis_client, CAM)[0].generation > before.generation), 10,
                     "the new generation's init", encoders.logs)
            wait_for(watched_and(lambda: len(playable(*video(redis_client, CAM))) >= 10), 10,
                     "fragments of the new generation", encoders.logs)
        assert took <= LEASE_TTL + POLL_INTERVAL + SCHEDULING, f"took over after {took:.2f} s"

        after, fragments = video(redis_client, CAM)
        assert redis_client.get(KEYS.encoder_lease(CAM)).decode() == f"{other}:{after.generation}"
        assert after.data != before.data or after.generation != before.generation
        generations = [f.generation for f in fragments]
        assert generations == sorted(generations)  # no fragment of the dead owner after the new one's
        own = [f for f in fragments if f.generation == after.generation]
        assert own[0].keyframe
        frames = decode(after, own)
        assert len(frames) == len(own) and frames[0].key_frame
        pts = [f.pts for f in frames]
        assert pts == sorted(set(pts))
        assert encoders.procs[other].poll() is None, encoders.logs()
    finally:
        encoders.stop_all()
