"""What every benchmark shares: machine facts, medians, a private Redis, sample frames, processes."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import psutil
import redis
import yaml

from common import assets, envelope
from common.envelope import Frame
from common.keys import FRAME_FIELD, Keys
from testsupport.redis_server import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent
FRAMECAST = [sys.executable, "-m", "framecast"]


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The load average says whether other work shared the machine (figures of a busy one are not comparable).
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "load": load}


def interleaved(repeats: int, runs: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    """Each repeat runs every design once, one after the other, so that a noisy neighbour or a
    throttled core hits the designs of one repeat alike; compare them with `median_ratio`."""
    values: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            values[name].append(run())
    return values


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the per-repeat ratios (designs measured side by side in the same repeat)."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def sample_frames(count: int, cam: str = "bench", max_width: int = 768, quality: int = 80) -> list[Frame]:
    """The first `count` frames of the sample clip as raw envelopes (JPEG-encoded once, here)."""
    cap = cv2.VideoCapture(str(assets.sample_path()))
    frames, run = [], time.time_ns()
    while len(frames) < count:
        ok, image = cap.read()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(str(assets.sample_path()))
            continue
        height, width = image.shape[:2]
        if width > max_width:
            image = cv2.resize(image, (max_width, round(height * max_width / width)), interpolation=cv2.INTER_AREA)
            height, width = image.shape[:2]
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        frames.append(Frame(cam, run, len(frames), time.time_ns(), width, height, jpeg))
    cap.release()
    return frames


class Cluster:
    """A private redis-server plus config file and framecast subprocesses for one benchmark."""

    def __init__(self, workdir: Path, cameras: list[dict], **settings):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer().start()
        self.client = redis.Redis.from_url(self.redis.url)
        self.keys = Keys("fc")
        self.config = workdir / "bench.yaml"
        self.config.write_text(yaml.safe_dump({"redis_url": self.redis.url, "log_format": "text",
                                               "log_level": "WARNING", **settings, "cameras": cameras}))
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        log = open(self.workdir / f"{args[0]}-{len(self.procs)}.log", "w")  # noqa: SIM115 - closed with the proc
        proc = subprocess.Popen([*FRAMECAST, *args, "--config", str(self.config)], cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs.append(proc)
        return proc

    def publish(self, frames: list[Frame], maxlen: int | None = None) -> None:
        pipe = self.client.pipeline(transaction=False)
        for frame in frames:
            pipe.xadd(self.keys.frames(frame.cam), {FRAME_FIELD: envelope.encode(frame)},
                      maxlen=maxlen, approximate=True)
        pipe.execute()

    def annotated(self, cam: str) -> list[Frame]:
        return [envelope.decode(f[FRAME_FIELD]) for _, f in self.client.xrange(self.keys.annotated(cam))]

    def wait_for(self, predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            for proc in self.procs:
                if proc.poll() not in (None, 0):
                    raise RuntimeError(f"a benchmark process exited with {proc.returncode}; see {self.workdir}")
            time.sleep(step)
        return False

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.client.close()
        self.redis.cleanup()



def tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds (user + system, from /proc/<pid>/stat) of a process and its children; 0 once gone."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in family:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


__all__ = ["Cluster", "free_port", "interleaved", "machine", "median_ratio", "percentile", "sample_frames", "tree_cpu", "REPO", "FRAMECAST"]
