"""Many cameras, Redis and the workers (#23, target 1): Redis CPU per frame with 256 cameras <= 1.2 x
with 8 at the same load; at the same 20 frames/s in total, end-to-end latency p50 and p99 with 256
cameras <= 1.25 x those with 8; processed/published >= 0.95 for every camera.

Real processes, one run after the other in one invocation: a private redis-server, one `framecast
producer` with test-pattern cameras (640x360, live mode, motion gating off so that every frame costs
the workers one full inference at both camera counts: the same load) and two pool `framecast worker`
processes (defaults: rendezvous assignment with worker.readers_per_camera 2, i.e. both workers read
every camera; tracker and encoder beside them as in production). First 8 cameras at 2.5 fps, then
256 at 20/256 = 0.078 fps each (20 frames/s in total both times).

The workers are started first and must have registered (their model loaded) before the producer
starts; after every camera has published and a warm-up, a measuring window follows. Its length is
chosen so every camera has several frames in it: full runs 40 s at 8 cameras (~100 frames a camera)
and 90 s at 256 (~7 a camera); --quick 15 s and 30 s (~2 a camera at 256, so its per-camera ratio is
coarse). Within the window, with nothing of the benchmark's own talking to Redis:

- Redis CPU: INFO cpu (used_cpu_user + used_cpu_sys) of the redis-server, its delta over the window,
  per frame processed in the window (detection records whose entry id falls in it);
- latency: per processed frame, capture time (`ts`) to its detection record in Redis (the entry id,
  Redis's ms clock; the worker writes the annotated frame and the record in the same script), p50 and
  p99 over every frame captured-and-published in the window;
- processed/published per camera: frames whose `XADD` to the camera's frames stream falls in the
  window (entry ids), and of those the ones with a detection record (matched by run and seq) after a
  settle time; min over cameras (cameras that published nothing in the window are counted apart);
  frames skipped as stale (the stats hashes' `skipped_stale` delta) and producer drops beside them.

    python -m bench.many_cameras_redis [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import psutil

from bench.harness import Cluster, machine, percentile, tree_cpu
from common import envelope
from common.keys import DETECTIONS_FIELD, FRAME_FIELD
from common.registry import live_members
from common.stats import StatsField

TOTAL_FPS = 20.0
COUNTS = (8, 256)
WORKERS = 2
MAX_WIDTH = 640
CPU_RATIO, LATENCY_RATIO, PROCESSED_SHARE = 1.2, 1.25, 0.95
SETTLE_S = 4.0  # after the window: frames published in it are processed or skipped by then (max_frame_age 1 s)


def redis_cpu_s(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_ms(client) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def command_calls(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in client.info("commandstats").items()}


def command_usec(client) -> dict[str, int]:
    """Redis CPU microseconds spent in each command so far (INFO commandstats)."""
    return {name.removeprefix("cmdstat_"): int(v["usec"]) for name, v in client.info("commandstats").items()}


def all_stats(cluster: Cluster, cams: list[str]) -> dict[str, dict[str, float]]:
    pipe = cluster.client.pipeline(transaction=False)
    for cam in cams:
        pipe.hgetall(cluster.keys.stats(cam))
    out = {}
    for cam, raw in zip(cams, pipe.execute(), strict=True):
        out[cam] = {k.decode(): float(v) for k, v in raw.items() if _is_number(v)}
    return out


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _delta(after: dict, before: dict, cam: str, field: str) -> float:
    return after.get(cam, {}).get(field, 0.0) - before.get(cam, {}).get(field, 0.0)


def _entry_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def measure(workdir: Path, cameras: int, warmup_s: float, window_s: float) -> dict:
    """Two pool workers and one producer with `cameras` pattern cameras sharing TOTAL_FPS; the figures
    of the measuring window."""
    fps = TOTAL_FPS / cameras
    cams = [f"c{i:03d}" for i in range(cameras)]
    config = [{"id": cam, "source": "pattern", "fps": fps, "max_width": MAX_WIDTH, "mode": "live",
               "motion": {"enabled": False}} for cam in cams]
    # every frame of the window (and the warm-up before it) still in the frames stream when read after it
    frames_maxlen = max(100, int(fps * (warmup_s + window_s + 60) * 1.5))
    cluster = Cluster(workdir, config, streams={"frames_maxlen": frames_maxlen, "detections_maxlen": 100_000})
    try:
        workers = [cluster.start("worker") for _ in range(WORKERS)]
        if not cluster.wait_for(lambda: len(live_members(cluster.client, cluster.keys, "worker")) >= WORKERS,
                                180, step=0.5):
            raise RuntimeError(f"the workers did not register within 180 s; see {workdir}")
        producer = cluster.start("producer")
        if not cluster.wait_for(lambda: min(s.get(StatsField.PUBLISHED, 0.0) for s in all_stats(cluster, cams).values()) >= 1,
                                120, step=0.5):
            raise RuntimeError(f"not every camera published within 120 s; see {workdir}")
        time.sleep(warmup_s)
        procs = {"producer": psutil.Process(producer.pid), **{f"worker{i}": psutil.Process(w.pid) for i, w in enumerate(workers)}}

        stats_before = all_stats(cluster, cams)
        cpu_proc_before = {name: tree_cpu(p) for name, p in procs.items()}
        t0 = redis_ms(cluster.client)
        calls0 = command_calls(cluster.client)
        usec0 = command_usec(cluster.client)
        cpu0 = redis_cpu_s(cluster.client)
        started = time.monotonic()
        time.sleep(window_s)
        cpu1 = redis_cpu_s(cluster.client)
        calls = Counter(command_calls(cluster.client))
        calls.subtract(calls0)
        usec = Counter(command_usec(cluster.client))
        usec.subtract(usec0)
        t1 = redis_ms(cluster.client)
        elapsed = time.monotonic() - started
        cpu_proc = {name: tree_cpu(p) - cpu_proc_before[name] for name, p in procs.items()}
        time.sleep(SETTLE_S)
        stats_after = all_stats(cluster, cams)
        for proc in cluster.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a benchmark process exited with {proc.returncode} during the window; see {workdir}")

        latencies, transit, detect, shares, silent, counts = [], [], [], {}, 0, []
        buckets = Counter()  # frames published per 100 ms of the window, all cameras: how bursty the load is
        processed_in_window, per_worker = 0, Counter()
        published_total = processed_total = 0
        for cam in cams:
            published = {}
            for entry_id, fields in cluster.client.xrange(cluster.keys.frames(cam), min=t0, max=t1):
                frame = envelope.decode(fields[FRAME_FIELD])
                published[(frame.run, frame.seq)] = _entry_ms(entry_id)
            done = set()
            for entry_id, fields in cluster.client.xrange(cluster.keys.detections(cam), min=t0):
                record = json.loads(fields[DETECTIONS_FIELD])
                at = _entry_ms(entry_id)
                if at <= t1:
                    processed_in_window += 1
                key = (record["run"], record["seq"])
                if key in published and key not in done:
                    done.add(key)
                    latencies.append(at - record["ts"] / 1e6)
                    stages = record.get("stages_ms", {})
                    if "transit" in stages:
                        transit.append(stages["transit"])
                    if "detect" in stages:
                        detect.append(stages["detect"])
                    per_worker[record.get("worker", "?")] += 1
            published_total += len(published)
            buckets.update(at // 100 for at in published.values())
            counts.append(len(published))
            processed_total += len(done)
            if published:
                shares[cam] = len(done) / len(published)
            else:
                silent += 1
        redis_cpu_ms = (cpu1 - cpu0) * 1000
        frames = max(1, processed_in_window)
        worst = min(shares, key=shares.get) if shares else None
        return {
            "cameras": cameras, "fps_per_camera": round(fps, 4), "window_s": round(elapsed, 1),
            "published": published_total, "processed": processed_total, "processed_in_window": processed_in_window,
            "processed_fps": processed_in_window / elapsed,
            "redis_cpu_ms": redis_cpu_ms, "redis_cpu_ms_per_frame": redis_cpu_ms / frames,
            "redis_cpu_ms_per_published_frame": redis_cpu_ms / max(1, published_total),
            "redis_cpu_share": redis_cpu_ms / 1000 / elapsed,
            # Redis commands per second over the window, the most called first (INFO commandstats)
            "redis_commands_per_s": {k: round(v / elapsed, 1) for k, v in calls.most_common(8)},
            # where Redis's time goes: CPU ms per second of the window in each command, the costliest first
            "redis_command_ms_per_s": {k: round(v / 1000 / elapsed, 2) for k, v in usec.most_common(8)},
            "latency_p50_ms": percentile(latencies, 50), "latency_p99_ms": percentile(latencies, 99),
            "latency_max_ms": max(latencies) if latencies else float("nan"),
            "transit_p50_ms": percentile(transit, 50), "transit_p99_ms": percentile(transit, 99),
            "detect_p50_ms": percentile(detect, 50),
            "min_processed_share": shares[worst] if worst else float("nan"), "worst_camera": worst,
            "cameras_below_share": sum(1 for v in shares.values() if v < PROCESSED_SHARE),
            "cameras_silent_in_window": silent,
            "frames_per_camera_min": min(counts, default=0), "frames_per_camera_max": max(counts, default=0),
            "skipped_stale": sum(_delta(stats_after, stats_before, c, StatsField.SKIPPED_STALE) for c in cams),
            "producer_dropped": sum(_delta(stats_after, stats_before, c, StatsField.DROPPED) for c in cams),
            "frames_by_worker": dict(per_worker),
            # 2 at an even 20 frames/s; the producer starts every camera's schedule at once, so with
            # many cameras their frames come in bursts
            "published_per_100ms_max": max(buckets.values(), default=0),
            "published_100ms_slots_used": round(len(buckets) / max(1, (t1 - t0) / 100), 3),
            "cpu_ms_per_frame": {name: 1000 * v / frames for name, v in cpu_proc.items()},
        }
    finally:
        cluster.close()


def run(workdir: Path, quick: bool = False) -> list[dict]:
    warmup_s = 10.0 if quick else 20.0
    windows = {8: 15.0, 256: 30.0} if quick else {8: 40.0, 256: 90.0}
    rows = [measure(workdir / f"cams-{n}", n, warmup_s, windows[n]) for n in COUNTS]
    small, large = rows

    def ratio(key: str) -> float:
        return large[key] / small[key] if small[key] else float("inf")

    cpu_ratio, p50_ratio, p99_ratio = ratio("redis_cpu_ms_per_frame"), ratio("latency_p50_ms"), ratio("latency_p99_ms")
    min_share = min(r["min_processed_share"] for r in rows)
    figures = {}
    for key, label in (("redis_cpu_ms_per_frame", "redis_cpu_ms_per_frame"), ("latency_p50_ms", "latency_p50_ms"),
                       ("latency_p99_ms", "latency_p99_ms")):
        figures[f"{label}_8"] = small[key]
        figures[f"{label}_256"] = large[key]
    figures.update({"redis_cpu_ratio": cpu_ratio,
                    "redis_cpu_ms_per_published_frame_8, _256": f"{small['redis_cpu_ms_per_published_frame']:.3f}, "
                                                                f"{large['redis_cpu_ms_per_published_frame']:.3f}", "latency_p50_ratio": p50_ratio, "latency_p99_ratio": p99_ratio,
                    "min_processed_over_published_8": small["min_processed_share"],
                    "min_processed_over_published_256": large["min_processed_share"],
                    "cameras_below_0.95_256": large["cameras_below_share"],
                    "skipped_stale_8": small["skipped_stale"], "skipped_stale_256": large["skipped_stale"],
                    "processed_fps_8": small["processed_fps"], "processed_fps_256": large["processed_fps"],
                    "frames_per_camera_min_256": large["frames_per_camera_min"],
                    "published_per_100ms_max_8": small["published_per_100ms_max"],
                    "published_per_100ms_max_256": large["published_per_100ms_max"],
                    "window_s_8, _256": f"{small['window_s']:g}, {large['window_s']:g}"})
    met = (cpu_ratio <= CPU_RATIO and p50_ratio <= LATENCY_RATIO and p99_ratio <= LATENCY_RATIO
           and min_share >= PROCESSED_SHARE and all(r["cameras_silent_in_window"] == 0 for r in rows))
    box = machine()
    return [{"name": f"many cameras 1: Redis and {WORKERS} workers, 8 vs 256 pattern cameras at 20 frames/s in all",
             "unit": "Redis CPU ms per frame, ms, share", "figures": figures, "rows": rows,
             "target": f"Redis CPU per frame at 256 <= {CPU_RATIO} x at 8; latency p50 and p99 at 256 <= "
                       f"{LATENCY_RATIO} x at 8; processed/published >= {PROCESSED_SHARE} for every camera; "
                       f"machine: {box['cores']} cores, {box['cpu']}, load average {box['load']}",
             "met": met}]


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from bench.__main__ import print_result

    parser = argparse.ArgumentParser(prog="python -m bench.many_cameras_redis", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter warm-up and windows")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (the processes' logs)")
    args = parser.parse_args(argv)
    box = machine()
    print(f"machine: {box['cores']} cores, {box['cpu']}, load average {box['load']} at the start")
    if args.keep:
        results = run(args.keep, quick=args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="framecast-bench-") as tmp:
            results = run(Path(tmp), quick=args.quick)
    for result in results:
        print_result(result)
    print(json.dumps(results[0]["rows"], indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
