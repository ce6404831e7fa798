"""Test support of the H.264 live view browser tests: a whole framecast on this machine as child
processes (a producer of the sample clip, workers that detect and encode, `framecast web`) on the
test's redis-server, each with its own log file and ended by its PID; and the page's view of one
camera's <video> (dataset.state, framecastStats, currentTime, a picture of it)."""

from __future__ import annotations

import base64
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import yaml
from PIL import Image

from common.keys import Keys
from tests.conftest import REPO
from tests.web.conftest import WebProcess

KEYS = Keys("fc")
CAM = "cam1"
LEASE_TTL = 2.0
VIDEO = {"lease_ttl": LEASE_TTL, "viewer_ttl": 4.0, "keyframe_interval": 1.0, "preset": "ultrafast"}


def camera(**extra) -> dict:
    """The sample clip's pedestrians at 5 fps, without the information overlay: what is drawn on the
    picture is the detections' boxes and tags."""
    return {"id": CAM, "name": "Sample", "source": "sample", "fps": 5, "overlay": False, **extra}


class Cluster:
    """Child processes of one config: start(role) adds one, kill(name) SIGKILLs it, stop_all ends
    the rest (SIGTERM, then SIGKILL), all by PID."""

    def __init__(self, tmp, redis_url: str, video: dict | None = None):
        self.tmp = tmp
        self.config = tmp / "cluster.yaml"
        self.config.write_text(yaml.safe_dump({
            "redis_url": redis_url, "log_format": "text", "video": {**VIDEO, **(video or {})},
            "web": {"reader_linger": 1.0}, "cameras": [camera()]}, sort_keys=False))
        self.procs: dict[str, subprocess.Popen] = {}
        self.web: WebProcess | None = None

    def start(self, role: str, name: str | None = None) -> str:
        name = name or role
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "FRAMECAST_INSTANCE_ID": name}
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen([sys.executable, "-m", "framecast", role, "--config", str(self.config)],
                                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        return name

    def start_web(self) -> WebProcess:
        self.web = WebProcess(self.config)
        return self.web

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)

    def stop_all(self) -> None:
        if self.web is not None and self.web.proc.poll() is None:
            (self.tmp / "web.log").write_text(self.web.stop())
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
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2500:]}" for p in sorted(self.tmp.glob("*.log")))

    def encoder_holder(self, client) -> str | None:
        """The name of the process holding the camera's encoder lease (its value is name:token)."""
        value = client.get(KEYS.encoder_lease(CAM))
        return value.decode().rpartition(":")[0] if value else None


VIDEO_JS = """(cam) => {
    const v = document.querySelector('.tile[data-camera="' + cam + '"] video.live-video');
    if (!v) return null;
    return {state: v.dataset.state || null, t: v.currentTime, paused: v.paused, hidden: v.hidden,
            w: v.videoWidth, h: v.videoHeight, stats: Object.assign({}, v.framecastStats || {}),
            rate: v.playbackRate};
}"""

FRAME_JS = """(cam) => {
    const v = document.querySelector('.tile[data-camera="' + cam + '"] video.live-video');
    const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    c.getContext('2d').drawImage(v, 0, 0);
    return c.toDataURL('image/png');
}"""


def video_of(page, cam: str = CAM) -> dict | None:
    return page.evaluate(VIDEO_JS, cam)


def picture_of(page, cam: str = CAM) -> np.ndarray:
    """The <video>'s current picture at its own size, RGB (drawn to a canvas: the MediaSource is
    same-origin, so the canvas is readable)."""
    url = page.evaluate(FRAME_JS, cam)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def wait_playing(page, cam: str = CAM, timeout: float = 30.0, reconnected: int | None = None) -> dict:
    """Wait until the camera's <video> plays: state "playing" and its currentTime grew between two
    looks (with `reconnected`: on a connection after that many reconnects). Its last look;
    AssertionError with that look on timeout."""
    deadline = time.monotonic() + timeout
    last = first = None
    while time.monotonic() < deadline:
        look = video_of(page, cam)
        fresh = look and (reconnected is None or look["stats"].get("reconnects", 0) > reconnected)
        if fresh and look["state"] == "playing":
            if first is None or look["stats"].get("reconnects") != first["stats"].get("reconnects"):
                first = look
            elif look["t"] > first["t"]:
                return look
        else:
            first = None
        last = look
        time.sleep(0.3)
    raise AssertionError(f"the {cam} video did not play within {timeout} s: {last}")
