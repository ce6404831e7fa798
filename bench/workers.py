"""Benchmarks 1 and 2: one worker through Redis vs a bare in-process loop, and 1 vs 2 workers.

Backlog mode on the sample clip: every frame is processed, so frames/s is pure throughput.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.harness import Cluster, interleaved, median_ratio, sample_frames
from common.config import CameraConfig
from common.registry import live_members

CAMERA = {"id": "bench", "source": "pattern", "mode": "backlog", "overlay": True,
          "detection": {"min_score": 0.5}}
BIG_STREAMS = {"frames_maxlen": 100_000, "annotated_maxlen": 100_000, "detections_maxlen": 100_000}


def bare_loop_fps(frames) -> float:
    """Decode, detect, annotate and encode in one loop, no Redis: the ceiling for one process."""
    from worker.detect import create_detector
    from worker.detect.pipeline import FrameProcessor

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
    fps = interleaved(repeats, {
        "bare_loop": lambda: bare_loop_fps(frames),
        "one_worker": lambda: redis_workers_fps(frames, 1, workdir / "w1"),
        "two_workers": lambda: redis_workers_fps(frames, 2, workdir / "w2"),
    })
    bare, one, two = (statistics.median(fps[k]) for k in ("bare_loop", "one_worker", "two_workers"))
    efficiency = median_ratio(fps["one_worker"], fps["bare_loop"])
    return [
        {"name": "worker efficiency", "unit": "frames/s",
         "figures": {"bare_loop": bare, "one_worker_via_redis": one, "ratio": efficiency},
         "target": "ratio >= 0.9", "met": efficiency >= 0.9,
         "repeats": {"bare_loop": fps["bare_loop"], "one_worker_via_redis": fps["one_worker"]},
         "frames": frames_count},
        {"name": "scaling (backlog, one camera)", "unit": "frames/s",
         "figures": {"one_worker": one, "two_workers": two,
                     "ratio": median_ratio(fps["two_workers"], fps["one_worker"])},
         "repeats": {"one_worker": fps["one_worker"], "two_workers": fps["two_workers"]}, "frames": frames_count},
    ]
