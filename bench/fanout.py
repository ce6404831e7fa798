"""Benchmark 4: N concurrent MJPEG viewers of one camera on one web process — share of published
frames each viewer receives, CPU of the web process, Redis commands/s — framecast's broadcaster
side by side with the naive design where every viewer polls Redis itself."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from bench.harness import REPO, Cluster, free_port, percentile, sample_frames, tree_cpu
from bench.viewers import watch
from common import envelope
from common.keys import FRAME_FIELD

FPS = 10.0


def _feed(cluster: Cluster, frames, stop: threading.Event, counter: list[int]) -> None:
    """Publishes annotated frames at FPS, as a worker would, until stopped."""
    key = cluster.keys.annotated("bench")
    index = 0
    start = time.monotonic()
    while not stop.is_set():
        frame = frames[index % len(frames)]
        frame = frame.annotated(frame.jpeg, [])
        frame = frame.__class__(frame.cam, frame.run, index, time.time_ns(), frame.width, frame.height, frame.jpeg,
                                [], {})
        cluster.client.xadd(key, {FRAME_FIELD: envelope.encode(frame)}, maxlen=50, approximate=True)
        counter[0] += 1
        index += 1
        stop.wait(max(0.0, start + index / FPS - time.monotonic()))


def _serve(design: str, cluster: Cluster, port: int) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": cluster.redis.url, "PYTHONUNBUFFERED": "1"}
    log = open(cluster.workdir / f"web-{design}.log", "w")  # noqa: SIM115 - lives as long as the server
    if design == "framecast":
        cmd = [sys.executable, "-m", "framecast", "web", "--config", str(cluster.config), "--host", "127.0.0.1",
               "--port", str(port)]
    else:
        cmd = [sys.executable, "-m", "gunicorn", "-k", "gevent", "-w", "1", "--timeout", "0",
               "--worker-connections", "2000", "-b", f"127.0.0.1:{port}", "bench.naive_web:app"]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def _measure(design: str, viewers: int, seconds: float, workdir: Path) -> dict:
    # Every viewer here shares one address: lift the per-client stream cap (64 by default), or
    # viewers beyond it are refused with 429 and the benchmark measures the cap instead of the fan-out.
    cluster = Cluster(workdir / f"{design}-{viewers}", [{"id": "bench", "source": "pattern"}],
                      web={"max_streams_per_client": 0})
    port = free_port()
    server = _serve(design, cluster, port)
    stop, published = threading.Event(), [0]
    feeder = threading.Thread(target=_feed, args=(cluster, sample_frames(50), stop, published), daemon=True)
    try:
        feeder.start()
        import http.client

        def up() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz" if design == "framecast" else "/nothing")
                conn.getresponse().read()
                return True
            except OSError:
                return False

        if not cluster.wait_for(up, 60):
            raise RuntimeError(f"{design} web server did not start")
        proc = psutil.Process(server.pid)
        result: dict = {}

        async def observe():
            loop = asyncio.get_running_loop()
            task = loop.create_task(watch("127.0.0.1", port, "/video_feed/bench", viewers, seconds, settle=3.0))
            await asyncio.sleep(3.0)  # the same settle time watch() uses before counting
            cpu0, pub0 = tree_cpu(proc), published[0]
            cmd0 = int(cluster.client.info("stats")["total_commands_processed"])
            t0 = time.monotonic()
            counts = await task
            elapsed = time.monotonic() - t0
            cmd1 = int(cluster.client.info("stats")["total_commands_processed"])
            result.update(counts=counts, elapsed=elapsed, cpu=tree_cpu(proc) - cpu0,
                          published=published[0] - pub0, commands=cmd1 - cmd0 - (published[0] - pub0) - 1)

        asyncio.run(observe())
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        cluster.close()
    published_n = max(1, result["published"])
    shares = [min(1.0, c / published_n) for c in result["counts"]]
    return {"viewers": viewers, "share_min": min(shares), "share_median": statistics.median(shares),
            "share_p5": percentile(shares, 5), "viewers_ge_95pct": sum(s >= 0.95 for s in shares) / len(shares),
            "web_cpu_pct": 100.0 * result["cpu"] / result["elapsed"],
            "redis_reads_per_s": result["commands"] / result["elapsed"], "published": result["published"]}


def run(workdir: Path, viewer_counts: list[int], seconds: float) -> list[dict]:
    rows = {design: [_measure(design, n, seconds, workdir) for n in viewer_counts]
            for design in ("framecast", "naive_poll")}
    fc_100 = next((r for r in rows["framecast"] if r["viewers"] == 100), None)
    reads = [r["redis_reads_per_s"] for r in rows["framecast"]]
    return [{
        "name": "MJPEG fan-out (one camera, 10 fps, one web process)", "unit": "see columns",
        "figures": rows,
        "target": "Redis reads/s independent of viewers; >= 95% of frames to each of 100 viewers",
        "met": bool(fc_100) and fc_100["share_min"] >= 0.95 and max(reads) <= 3 * max(1.0, min(reads)),
    }]
