"""Many cameras, web (#23, target 3): what `/api/cameras` costs the web tier with 256 cameras when
served from the shared figures (web.figures), and what 20 open dashboards cost beside one.

A private redis-server holds 256 cameras as a running cluster leaves them: a stats hash, annotated
frames (the sample clip's 768x576 JPEGs), 100 detection records with stage marks each, counts, and
the heartbeats of 2 producers and 4 workers naming them all; a feeder thread keeps adding frames and
records at 20 frames/s in total (the issue's load) and renews the heartbeats. `framecast web` runs as
in production (gunicorn + gevent, one process); its CPU is read from /proc (user + system).

- serving: figures_interval 600 s, so after the first request every answer comes from the same
  shared figures: web CPU per request over sequential requests (target: <= 5 ms; all but the first
  are the same request, so they are replays of the first answer, web.answers), and Redis commands
  per request (INFO commandstats);
- per-request computation (figures_interval 0): what every request cost if each computed the
  figures itself (the pipelined reads; before #23 they were ~476 sequential commands at 96 cameras);
- dashboards: figures_interval 1 s (the default), N dashboards each polling /api/cameras every 2 s as
  the page does (staggered; the figures of the 9 cameras in view, `?camera=`, over a kept-open
  connection), for 1 and for 20 dashboards: web CPU per second of each (target: 20
  cost <= 1.2 x one), and what each poll beyond the first dashboard's cost (the difference over the
  19 dashboards' polls a second: between two refreshes the 20 ask the same, and web.answers gives the
  app's first answer again). A dashboard's pictures (snapshots, MJPEG of the tiles in view) cost per viewer
  by nature and are not part of this: the fan-out benchmark measures MJPEG viewers.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import psutil
import yaml

from bench.harness import Cluster, free_port, sample_frames, tree_cpu
from common import envelope
from common.envelope import MARKS, Frame
from common.keys import DETECTIONS_FIELD, FRAME_FIELD
from common.registry import heartbeat

CAMERAS = 256
TARGET_MS = 5.0
TARGET_RATIO = 1.2
LOAD_FPS = 20.0  # frames/s over all cameras, as in the issue
POLL_S = 2.0  # the dashboard's /api/cameras poll
IN_VIEW = 9  # tiles in view on a 1280x900 page (3 columns, 3 rows)
DASHBOARD_QUERY = "/api/cameras?camera=" + ",".join(f"cam{i:03d}" for i in range(IN_VIEW))  # what the page asks


class Client:
    """One HTTP/1.1 connection kept open between requests, as a browser keeps its connection to
    the dashboard's origin (the web tier keeps idle connections 5 s; the dashboard polls every 2 s)."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path: str) -> bytes:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                body = response.read()
                break
            except (ConnectionError, http.client.HTTPException):  # the server closed an idle connection
                self.conn.close()
                if attempt == 2:
                    raise
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
        return body

    def close(self) -> None:
        self.conn.close()


def _get(port: int, path: str) -> bytes:
    client = Client(port)
    try:
        return client.get(path)
    finally:
        client.close()


class Feeder:
    """Frames and detection records at LOAD_FPS over all cameras, round robin, and heartbeats."""

    def __init__(self, cluster: Cluster, cams: list[str], jpegs: list):
        self.cluster, self.cams, self.jpegs = cluster, cams, jpegs
        self.stop = threading.Event()
        self.paused = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.seq = 0

    def frame(self, cam: str):
        frame = self.jpegs[self.seq % len(self.jpegs)]
        ts = time.time_ns() - 60_000_000
        marked = Frame(cam, 1, self.seq, ts, frame.width, frame.height, frame.jpeg, [], {"worker": "bench"})
        marked = marked.stamped(**{m: ts + (i + 1) * 6_000_000 for i, m in enumerate(MARKS)})
        return marked.annotated(frame.jpeg, [], published_ns=ts + 60_000_000)

    def add(self, pipe, cam: str) -> None:
        frame = self.frame(cam)
        keys = self.cluster.keys
        pipe.xadd(keys.annotated(cam), {FRAME_FIELD: envelope.encode(frame)}, maxlen=50, approximate=True)
        pipe.xadd(keys.detections(cam), {DETECTIONS_FIELD: envelope.detections_record(frame)}, maxlen=1000,
                  approximate=True)
        pipe.hincrby(keys.stats(cam), "published", 1)
        pipe.hincrby(keys.stats(cam), "processed", 1)
        self.seq += 1

    def beat(self) -> None:
        client, keys, per = self.cluster.client, self.cluster.keys, CAMERAS // 4
        rate = LOAD_FPS / CAMERAS
        for p in range(2):
            mine = self.cams[p::2]
            heartbeat(client, keys, "producer", f"producer-{p}", {"cameras": mine, "fps": dict.fromkeys(mine, rate)}, 30)
        for w in range(4):
            mine = self.cams[w * per:(w + 1) * per]
            heartbeat(client, keys, "worker", f"worker-{w}", {"cameras": mine, "fps": dict.fromkeys(mine, rate)}, 30)

    def _run(self) -> None:
        beat_at = 0.0
        while not self.stop.is_set():
            started = time.monotonic()
            if self.paused.is_set():
                self.stop.wait(0.05)
                continue
            pipe = self.cluster.client.pipeline(transaction=False)
            self.add(pipe, self.cams[self.seq % len(self.cams)])
            pipe.execute()
            if started - beat_at > 3:
                self.beat()
                beat_at = started
            self.stop.wait(max(0.0, 1 / LOAD_FPS - (time.monotonic() - started)))


def _populate(cluster: Cluster, feeder: Feeder) -> None:
    """Every camera with 100 records, a few frames, counters and counts; the heartbeats."""
    for cam in feeder.cams:
        pipe = cluster.client.pipeline(transaction=False)
        for _ in range(100):
            feeder.add(pipe, cam)
        pipe.hset(cluster.keys.stats(cam), mapping={"dropped": 3, "latency_ms": 64.0, "infer_ms": 31.0})
        pipe.hset(cluster.keys.counts(cam), mapping={"objects:person": 1})
        pipe.execute()
    feeder.beat()


def _web(cluster: Cluster, base: dict, interval: float) -> tuple[int, psutil.Process]:
    """`framecast web` (gunicorn + gevent) on the benchmark's config with `figures_interval`."""
    port = free_port()
    cluster.config = cluster.workdir / f"web-{interval:g}.yaml"
    cluster.config.write_text(yaml.safe_dump({**base, "web": {**base["web"], "figures_interval": interval}}))
    proc = cluster.start("web", "--host", "127.0.0.1", "--port", str(port))
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(port, "/healthz")
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"framecast web did not start; see {cluster.workdir}") from None
            time.sleep(0.2)
    return port, psutil.Process(proc.pid)


def _stop(proc: psutil.Process) -> None:
    proc.terminate()
    proc.wait(20)


def _commands(cluster: Cluster) -> int:
    stats = cluster.client.info("commandstats")
    return sum(v["calls"] for name, v in stats.items() if name != "cmdstat_info")


def _serving(cluster: Cluster, base: dict, feeder: Feeder, requests: int) -> dict:
    """Web CPU and Redis commands per request once the shared figures are computed (the feeder
    paused, so every Redis command counted is the web's)."""
    port, proc = _web(cluster, base, 600)
    body = _get(port, "/api/cameras")  # the one computation
    assert json.loads(body)["total"] == CAMERAS
    feeder.paused.set()
    time.sleep(0.5)
    try:
        client = Client(port)
        cpu, commands = tree_cpu(proc), _commands(cluster)
        for _ in range(requests):
            client.get("/api/cameras")
        cpu_ms = (tree_cpu(proc) - cpu) * 1000 / requests
        commands = _commands(cluster) - commands
    finally:
        feeder.paused.clear()
        _stop(proc)
    return {"cpu_ms": cpu_ms, "bytes": len(body), "commands": commands}


def _per_request(cluster: Cluster, base: dict, requests: int) -> float:
    """Web CPU per request when every request computes the figures (figures_interval 0)."""
    port, proc = _web(cluster, base, 0)
    _get(port, "/api/cameras")
    client = Client(port)
    cpu = tree_cpu(proc)
    for _ in range(requests):
        client.get("/api/cameras")
    cpu_ms = (tree_cpu(proc) - cpu) * 1000 / requests
    _stop(proc)
    return cpu_ms


def _dashboards(port: int, proc: psutil.Process, count: int, seconds: float) -> float:
    """Web CPU (cores) while `count` dashboards poll /api/cameras every POLL_S, staggered."""
    stop = threading.Event()

    def dashboard(offset: float) -> None:
        stop.wait(offset)
        client = Client(port)
        while not stop.is_set():
            started = time.monotonic()
            client.get(DASHBOARD_QUERY)
            stop.wait(max(0.0, POLL_S - (time.monotonic() - started)))

    threads = [threading.Thread(target=dashboard, args=(POLL_S * i / count,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    stop.wait(POLL_S + 1)  # every dashboard started, the refresher running
    cpu, started = tree_cpu(proc), time.monotonic()
    stop.wait(seconds)
    cores = (tree_cpu(proc) - cpu) / (time.monotonic() - started)
    stop.set()
    for thread in threads:
        thread.join(10)
    return cores


def run(workdir: Path, quick: bool = False) -> list[dict]:
    cams = [f"cam{i:03d}" for i in range(CAMERAS)]
    cameras = [{"id": cam, "source": "pattern", "fps": LOAD_FPS / CAMERAS} for cam in cams]
    cluster = Cluster(workdir, cameras, web={"auth": "none"})
    base = yaml.safe_load(cluster.config.read_text())
    feeder = Feeder(cluster, cams, sample_frames(8))
    requests, seconds = (100, 10.0) if quick else (400, 30.0)
    try:
        _populate(cluster, feeder)
        feeder.thread.start()
        serving = _serving(cluster, base, feeder, requests)
        compute_ms = _per_request(cluster, base, max(20, requests // 10))
        port, proc = _web(cluster, base, 1)
        one = _dashboards(port, proc, 1, seconds)
        twenty = _dashboards(port, proc, 20, seconds)
    finally:
        feeder.stop.set()
        if feeder.thread.is_alive():
            feeder.thread.join(5)
        cluster.close()
    ratio = twenty / one if one else float("inf")
    poll_ms = (twenty - one) * 1000 / (19 / POLL_S)  # web CPU per poll of the 19 dashboards beyond the first
    figures = {
        "cameras": CAMERAS,
        "response_kb": round(serving["bytes"] / 1024, 1),
        "serving_cpu_ms_per_request": round(serving["cpu_ms"], 3),
        "redis_commands_per_served_request": round(serving["commands"] / requests, 3),
        "computing_cpu_ms_per_request": round(compute_ms, 2),
        "one_dashboard_web_cores": round(one, 4),
        "twenty_dashboards_web_cores": round(twenty, 4),
        "twenty_over_one": round(ratio, 3),
        "dashboard_cpu_ms_per_poll": round(poll_ms, 3),
    }
    return [{
        "name": f"many cameras, web (target 3): /api/cameras with {CAMERAS} cameras from the shared figures",
        "unit": "web CPU ms per request, cores",
        "figures": figures,
        "target": f"serving_cpu_ms_per_request <= {TARGET_MS} and twenty_over_one <= {TARGET_RATIO}",
        "met": serving["cpu_ms"] <= TARGET_MS and ratio <= TARGET_RATIO,
    }]
