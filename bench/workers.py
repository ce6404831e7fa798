"""Benchmarks 1 and 2: one worker through Redis vs a bare in-process loop, and 1 vs 2 workers.

Backlog mode on the sample clip: every frame is processed, so frames/s is pure throughput.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import Cluster, median_of, sample_frames
from common.config import CameraConfig
from common.registry import live_members

CAMERA = {"id": "bench", "source": "pattern", "mode": "backlog", "overlay": True,
          "detection": {"min_score": 0.5}}
BIG_STREAMS = {"frames_maxlen": 100_000, "annotated_maxlen": 100_000, "detections_maxlen": 100_000}


def bare_loop_fps(frames) -> float:
    """Decode, detect, annotate and encode in one loop, no Redis: the ceiling for one process."""
    from worker.detectors import create_detector
    from worker.pipeline import FrameProcessor

    camera = CameraConfig(**CAMERA)
    processor = FrameProcessor(camera, create_detector(camera.detection))
    processor.process(frames[0])  # warm-up outside the timing, as the workers get one too
    started = time.perf_counter()
    for frame in frames:
        processor.process(frame)
    return len(frames) / (time.perf_counter() - started)


def redis_workers_fps(frames, workers: int, workdir: Path) -> float:
    """Frames/s of `workers` worker processes draining a backlog of `frames` from Redis."""
    cluster = Cluster(workdir, [CAMERA], streams=BIG_STREAMS)
    try:
        for _ in range(workers):
            cluster.start("worker", "--camera", "bench")
        if not cluster.wait_for(lambda: len(live_members(cluster.client, cluster.keys, "worker")) >= workers, 180):
            raise RuntimeError("workers did not register")
        warm = frames[:2 * workers]
        cluster.publish(warm)  # each worker loads its model and warms up before the timing
        cluster.wait_for(lambda: cluster.client.xlen(cluster.keys.annotated("bench")) >= len(warm), 120)
        timed = [f.__class__(f.cam, f.run, f.seq + len(warm), f.ts, f.width, f.height, f.jpeg) for f in frames]
        target = len(warm) + len(timed)
        started = time.perf_counter()
        cluster.publish(timed)
        if not cluster.wait_for(lambda: cluster.client.xlen(cluster.keys.annotated("bench")) >= target, 600,
                                step=0.02):
            raise RuntimeError("workers did not finish the backlog")
        return len(timed) / (time.perf_counter() - started)
    finally:
        cluster.close()


def run(workdir: Path, repeats: int, frames_count: int) -> list[dict]:
    frames = sample_frames(frames_count)
    bare, bare_all = median_of(repeats, lambda: bare_loop_fps(frames))
    one, one_all = median_of(repeats, lambda: redis_workers_fps(frames, 1, workdir / "w1"))
    two, two_all = median_of(repeats, lambda: redis_workers_fps(frames, 2, workdir / "w2"))
    return [
        {"name": "worker efficiency", "unit": "frames/s",
         "figures": {"bare_loop": bare, "one_worker_via_redis": one, "ratio": one / bare},
         "target": "ratio >= 0.9", "met": one / bare >= 0.9,
         "repeats": {"bare_loop": bare_all, "one_worker_via_redis": one_all}, "frames": frames_count},
        {"name": "scaling (backlog, one camera)", "unit": "frames/s",
         "figures": {"one_worker": one, "two_workers": two, "ratio": two / one},
         "repeats": {"one_worker": one_all, "two_workers": two_all}, "frames": frames_count},
    ]
