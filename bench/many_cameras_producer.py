"""Many cameras, the producer (#23, target 2): threads <= 16 + cameras/32, RSS growth <= 1 MB a camera.

One producer process publishes test-pattern cameras into a private redis-server at the same total
load (20 frames/s) twice in one run: 8 cameras at 2.5 fps, then 256 cameras at 0.078 fps. After a
warm-up in which every camera has published, the process is sampled over a window: its threads
(the most seen, psutil `num_threads`), its RSS (median of the samples), its CPU per published frame
(and the motion and encode milliseconds its /metrics summed), and the frames it published (the
cameras' stats hashes). RSS growth per camera is
(RSS at 256 - RSS at 8) / 248. Cameras are 640x360 patterns, motion gating on (live cameras), no
workers (the streams are trimmed by `MAXLEN ~`, which is Redis's memory, not the producer's).

    python -m bench.many_cameras_producer [--quick]     (or python -m bench --only many_cameras_producer)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from bench.harness import Cluster, machine
from common.stats import read_stats
from testsupport.redis_server import free_port

TOTAL_FPS = 20.0
COUNTS = (8, 256)
MAX_WIDTH = 640
RSS_PER_CAMERA_MB = 1.0


def thread_bound(cameras: int) -> float:
    return 16 + cameras / 32


def stage_ms(port: int) -> dict[str, float]:
    """The producer's summed motion and encode milliseconds over all cameras, from its /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    sums = {"motion": 0.0, "encode": 0.0}
    for line in text.splitlines():
        for stage in sums:
            if line.startswith(f"framecast_producer_{stage}_ms_sum{{"):
                sums[stage] += float(line.rsplit(" ", 1)[1])
    return sums


def measure(workdir: Path, cameras: int, warmup_s: float, window_s: float) -> dict:
    """One producer with `cameras` pattern cameras sharing TOTAL_FPS; its figures over the window."""
    fps = TOTAL_FPS / cameras
    cams = [{"id": f"p{i:03d}", "source": "pattern", "fps": fps, "max_width": MAX_WIDTH} for i in range(cameras)]
    metrics_port = free_port()
    cluster = Cluster(workdir, cams, metrics_port=metrics_port)
    try:
        proc = cluster.start("producer")
        ps = psutil.Process(proc.pid)

        def published() -> list[float]:
            return [read_stats(cluster.client, cluster.keys, cam["id"]).get("published", 0.0) for cam in cams]

        # every camera has published once (a camera's first frame is due at its start), then warm up
        if not cluster.wait_for(lambda: min(published()) >= 1, 120, step=0.5):
            raise RuntimeError(f"not every camera published within 120 s; see {workdir}")
        time.sleep(warmup_s)
        stages_before = stage_ms(metrics_port)
        before, cpu_before, started = sum(published()), ps.cpu_times(), time.monotonic()
        threads, rss = [], []
        while time.monotonic() - started < window_s:
            threads.append(ps.num_threads())
            rss.append(ps.memory_info().rss)
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        cpu_after = ps.cpu_times()
        stages = {k: v - stages_before[k] for k, v in stage_ms(metrics_port).items()}
        time.sleep(1.1)  # the stats hashes are written once a second
        frames = sum(published()) - before
        cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
        return {"cameras": cameras, "fps_per_camera": round(fps, 3), "threads_max": max(threads),
                "thread_bound": thread_bound(cameras), "rss_mb": statistics.median(rss) / 2**20,
                "published_fps": frames / elapsed, "cpu_ms_per_frame": 1000 * cpu / max(1, frames),
                "motion_ms_per_frame": stages["motion"] / max(1, frames),
                "encode_ms_per_frame": stages["encode"] / max(1, frames),
                "cameras_silent": sum(1 for p in published() if p == 0)}
    finally:
        cluster.close()


def run(workdir: Path, quick: bool = False) -> list[dict]:
    warmup_s, window_s = (5.0, 10.0) if quick else (15.0, 40.0)
    rows = [measure(workdir / f"cams-{n}", n, warmup_s, window_s) for n in COUNTS]
    small, large = rows
    growth = (large["rss_mb"] - small["rss_mb"]) / (large["cameras"] - small["cameras"])
    figures = {}
    for row in rows:
        n = row["cameras"]
        figures.update({f"threads at {n} (bound)": f"{row['threads_max']} ({row['thread_bound']:.0f})",
                        f"RSS at {n} MB": row["rss_mb"], f"published fps at {n}": row["published_fps"],
                        f"CPU ms/frame at {n}": row["cpu_ms_per_frame"],
                        f"motion, encode ms/frame at {n}": f"{row['motion_ms_per_frame']:.2f}, "
                                                           f"{row['encode_ms_per_frame']:.2f}",
                        f"silent cameras at {n}": row["cameras_silent"]})
    figures["RSS growth per camera MB"] = growth
    met = (all(r["threads_max"] <= r["thread_bound"] and r["cameras_silent"] == 0 for r in rows)
           and growth <= RSS_PER_CAMERA_MB)
    return [{"name": "many cameras 2: one producer, 8 vs 256 pattern cameras at 20 frames/s in all",
             "unit": "threads, MB, frames/s, ms", "figures": figures, "rows": rows,
             "target": f"threads <= 16 + cameras/32 at both, RSS growth <= {RSS_PER_CAMERA_MB} MB a camera",
             "met": met}]


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from bench.__main__ import print_result

    parser = argparse.ArgumentParser(prog="python -m bench.many_cameras_producer", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter warm-up and window")
    args = parser.parse_args(argv)
    box = machine()
    print(f"machine: {box['cores']} cores, {box['cpu']}, load average {box['load']} at the start")
    with tempfile.TemporaryDirectory(prefix="framecast-bench-") as tmp:
        results = run(Path(tmp), quick=args.quick)
    for result in results:
        print_result(result)
    print(json.dumps(results[0]["rows"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
