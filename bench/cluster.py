"""Benchmark 6: the whole pipeline on one machine against its ceiling, and what a frame costs.

A backlog camera looping over the sample clip (re-muxed at 120 fps, so the producer is never what waits),
its producer, redis-server, the workers and one web process with one MJPEG viewer, all on this
machine. For each worker layout (worker processes x inference threads each): frames/s through the
whole pipeline, and the CPU time per frame of every process in it (from /proc/<pid>/stat, child
processes included; the viewer, a socket reading in this process, is left out). Redis's share is
reported on its own (CPU ms and bytes in and out per frame, from /proc and INFO stats), and from it
how many 10 fps cameras one Redis instance carries before its one core is the limit.

Compared, in the same repeat, with the offline benchmark's ceiling (`bench.offline.stage_costs`:
cores / per-stage CPU of a frame) and with the bare single-process loop of benchmark 1 (JPEG decode,
detect with one inference thread, annotate, JPEG encode, no Redis) for CPU per frame.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from bench.harness import REPO, Cluster, free_port, interleaved, median_ratio, tree_cpu
from bench.offline import cut_clip
from common.registry import live_members

THROUGHPUT_TARGET, CPU_TARGET = 0.7, 1.2
CLIP_FPS = 120  # the camera's fps cap is 120 too: frames are offered far faster than workers take them
# frames_maxlen as deployed: the producer of a backlog camera holds back ~maxlen frames ahead of the
# workers, so it publishes as many frames as they process. The annotated stream keeps every frame
# (they are counted).
STREAMS = {"frames_maxlen": 100, "annotated_maxlen": 100_000, "detections_maxlen": 100_000}
CAMERA_FPS = 10  # what "a camera" means when sizing Redis


def fast_clip(workdir: Path, frames: int) -> Path:
    """The first `frames` frames of the sample clip in an MJPEG AVI that declares 120 fps (the
    camera loops over it)."""
    return cut_clip(workdir, frames, fps=CLIP_FPS)


def bare_loop_cpu_ms(count: int) -> float:
    """CPU ms per frame of benchmark 1's bare loop with one inference thread (in a fresh process)."""
    code = ("import time; from bench.harness import sample_frames; from common.config import CameraConfig; "
            "from worker.detect import create_detector; from worker.detect.pipeline import FrameProcessor; "
            f"frames = sample_frames({count}); "
            "camera = CameraConfig(id='bench', source='pattern', overlay=True, detection={'threads': 1}); "
            "p = FrameProcessor(camera, create_detector(camera.detection)); p.process(frames[0]); "
            "t = time.process_time(); [p.process(f) for f in frames]; "
            "print((time.process_time() - t) * 1000 / len(frames))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def ceiling_fps(workdir: Path, clip: Path, frames: int) -> float:
    """The offline ceiling, measured now: cores / (decode + inference + annotate + encode) CPU ms."""
    code = ("import json; from bench.offline import stage_costs; "
            f"print(json.dumps(stage_costs({str(clip)!r}, {str(workdir)!r}, {min(frames, 150)})))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    stages = json.loads(done.stdout.strip().splitlines()[-1])["stages_ms"]
    return (os.cpu_count() or 1) * 1000.0 / sum(stages.values())


def _view(port: int, stop: threading.Event, received: list[int]) -> None:
    """One MJPEG viewer: reads the annotated feed and throws it away, counting bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /video_feed/bench HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        while not stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except TimeoutError:
                continue
            if not data:
                break
            received[0] += len(data)


def pipeline(workdir: Path, clip: Path, frames: int, workers: int, threads: int) -> dict:
    """Frames/s and CPU per frame of producer + redis + `workers` x `threads` workers + web + 1 viewer."""
    camera = {"id": "bench", "source": str(clip), "mode": "backlog", "fps": CLIP_FPS, "loop": True,
              "overlay": True, "detection": {"min_score": 0.5, "threads": threads}}
    cluster = Cluster(workdir, [camera], streams=STREAMS)
    stop, received = threading.Event(), [0]
    try:
        port = free_port()
        web = cluster.start("web", "--host", "127.0.0.1", "--port", str(port), "--processes", "1")
        worker_procs = [cluster.start("worker", "--camera", "bench") for _ in range(workers)]
        if not cluster.wait_for(lambda: len(live_members(cluster.client, cluster.keys, "worker")) >= workers, 180):
            raise RuntimeError("workers did not register")
        if not cluster.wait_for(lambda: _listening(port), 60):
            raise RuntimeError("web did not start")
        viewer = threading.Thread(target=_view, args=(port, stop, received), daemon=True)
        viewer.start()
        producer = cluster.start("producer", "--camera", "bench")
        annotated = cluster.keys.annotated("bench")
        warm = min(20, frames // 4)  # models loaded and warm, streams busy: the timing starts here
        if not cluster.wait_for(lambda: cluster.client.xlen(annotated) >= warm, 180, step=0.01):
            raise RuntimeError("no annotated frames")
        procs = {"producer": producer, "redis": cluster.redis.proc, "web": web,
                 **{f"worker{i}": p for i, p in enumerate(worker_procs)}}
        handles = {name: psutil.Process(p.pid) for name, p in procs.items()}

        def snapshot() -> dict:
            stats = cluster.client.info("stats")
            return {"t": time.perf_counter(), "n": cluster.client.xlen(annotated),
                    "cpu": {name: tree_cpu(h) for name, h in handles.items()},
                    "net_in": stats["total_net_input_bytes"], "net_out": stats["total_net_output_bytes"]}

        first = snapshot()
        end_at = first["n"] + frames
        if not cluster.wait_for(lambda: cluster.client.xlen(annotated) >= end_at, 900, step=0.01):
            raise RuntimeError("the pipeline did not finish the clip")
        last = snapshot()
        done = last["n"] - first["n"]
        cpu_ms = {name: (last["cpu"][name] - first["cpu"][name]) * 1000 / done for name in handles}
        return {"fps": done / (last["t"] - first["t"]), "frames": done, "cpu_ms": cpu_ms,
                "total_cpu_ms": sum(cpu_ms.values()),
                "redis_in_bytes": (last["net_in"] - first["net_in"]) / done,
                "redis_out_bytes": (last["net_out"] - first["net_out"]) / done,
                "viewer_bytes": received[0]}
    finally:
        stop.set()
        cluster.close()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def layouts(cores: int) -> list[tuple[int, int]]:
    """(worker processes, inference threads each) worth trying on `cores` cores."""
    return list(dict.fromkeys([(1, cores), (cores, 1), (1, 1)]))


def run(workdir: Path, repeats: int, frames: int) -> list[dict]:
    clip = fast_clip(workdir, min(frames, 200))
    cores = os.cpu_count() or 1
    runs: dict = {"ceiling": lambda: ceiling_fps(workdir, clip, frames),
                  "bare_loop_cpu_ms": lambda: bare_loop_cpu_ms(min(frames, 150))}
    results: dict[str, list[dict]] = {}
    for workers, threads in layouts(cores):
        name = f"{workers}x{threads}"
        results[name] = []
        runs[name] = (lambda name=name, w=workers, t=threads:
                      results[name].append(pipeline(workdir / name, clip, frames, w, t)) or results[name][-1]["fps"])
    values = interleaved(repeats, runs)
    ceilings, bare = values["ceiling"], values["bare_loop_cpu_ms"]
    best = max(results, key=lambda name: statistics.median(values[name]))
    throughput_ratio = median_ratio(values[best], ceilings)
    cpu_ratio = median_ratio([r["total_cpu_ms"] for r in results[best]], bare)
    redis_ms = statistics.median(r["cpu_ms"]["redis"] for r in results[best])
    redis_bytes = statistics.median(r["redis_in_bytes"] + r["redis_out_bytes"] for r in results[best])
    figures = {
        "ceiling_fps": statistics.median(ceilings),
        **{f"pipeline_{name}_fps": statistics.median(values[name]) for name in results},
        "best_layout": best, "best_vs_ceiling": throughput_ratio,
        "bare_loop_cpu_ms": statistics.median(bare),
        **{f"pipeline_{name}_cpu_ms": statistics.median(r["total_cpu_ms"] for r in results[name]) for name in results},
        **{f"best_{part}_cpu_ms": statistics.median(r["cpu_ms"][part] for r in results[best])
           for part in results[best][0]["cpu_ms"]},
        "best_cpu_vs_bare_loop": cpu_ratio,
        "redis_cpu_ms_per_frame": redis_ms,
        "redis_in_bytes_per_frame": statistics.median(r["redis_in_bytes"] for r in results[best]),
        "redis_out_bytes_per_frame": statistics.median(r["redis_out_bytes"] for r in results[best]),
        # One redis-server runs commands on one core: it is the limit when its CPU per second reaches it.
        "cameras_per_redis_cpu": 1000.0 / (redis_ms * CAMERA_FPS),
        "redis_mbytes_per_s_per_camera": redis_bytes * CAMERA_FPS / 1e6,
    }
    met = throughput_ratio >= THROUGHPUT_TARGET and cpu_ratio <= CPU_TARGET
    return [{
        "name": "cluster on one machine: producer + redis + workers + web with one viewer, backlog camera "
                f"({frames} frames; layouts are worker processes x inference threads)",
        "unit": "frames/s, CPU ms per frame, bytes per frame",
        "figures": figures,
        "target": f"best layout >= {THROUGHPUT_TARGET} x ceiling and CPU per frame <= {CPU_TARGET} x bare loop",
        "met": met, "repeats": {**values, **{f"{name}_detail": rs for name, rs in results.items()}},
        "frames": frames,
    }]
