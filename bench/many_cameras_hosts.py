"""Many cameras across hosts (#23, target 4): 1,000 test-pattern cameras across five network-namespace
hosts at a total load this machine carries, every camera flowing, the latency stated, the first
limit named.

Five hosts on a private switch (tests/netns.py: one namespace each, 10.77.0.0/24, no default route,
so no packet leaves the machine; the benchmark reaches them through the switch's test port):

- host1 (10.77.0.1): a Redis Cluster of 3 masters (no replicas), ports 7001-7003, with a password;
- host2 (10.77.0.2): producer A, the first half of the cameras;
- host3 (10.77.0.3): producer B, the second half;
- host4 (10.77.0.4): pool workers 1 and 2, web process A (gunicorn + gevent, one process);
- host5 (10.77.0.5): pool workers 3 and 4, web process B.

The cameras are `pattern` sources (640x360, live mode, motion gating off so every frame is inferred,
one inference thread each), run as `framecast producer|worker|web` in production form (workers are
the pool: rendezvous-assigned, `worker.readers_per_camera` readers per camera; tracker and encoder
beside them, as deployed). The total load is 20 frames/s (the bundled model takes ~17 ms a frame on
this 2-core box, and four workers, two producers, two web processes and three Redis masters share
it): 1000 cameras at 0.02 fps in the full run, so a camera sends one frame every 50 s and the window
is 200 s (each camera publishes 4 frames in it) after a warm-up of one frame period (the first
frames of all cameras come at once, at start). `--quick`: 200 cameras at 0.1 fps (the same 20
frames/s), a 40 s window.

Measured over the window:
- cameras flowing: cameras with at least one frame captured in the window and annotated (target: all);
- latency, capture time to the annotated frame's publication (its entry id in the annotated stream,
  Redis's clock, as bench/latency.py), p50/p95/p99/max over every frame captured in the window;
- published, processed, skipped-stale frames (the cameras' stats hashes, deltas) and processed/published;
- CPU: every Redis master (INFO cpu deltas, the main thread apart: the one core that serves
  commands), every producer, worker and web process (psutil, children included), the busiest thread
  of each (/proc/<pid>/task), and the whole machine (/proc/stat). The first limit is the one nearest
  its ceiling: a single-threaded Redis's main thread or a process's busiest thread at X% of a core,
  the machine at Y% of its cores, or the network at Z% of a 1 Gbit/s link (the veths have no limit of
  their own: the bytes Redis moved are set against the link a real host would have);
- both web processes: GET /api/cameras page by page (`?limit=&offset=`), each must list every camera,
  and every camera with processed frames.

    python -m bench.many_cameras_hosts [--quick]       (root: network namespaces)

Every process is ended by its PID (and its children by theirs), every namespace removed, in a
`finally`, whatever failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import redis
import yaml

from bench.harness import REPO, machine, percentile, tree_cpu
from common import envelope
from common.connection import connect
from common.keys import FRAME_FIELD, Keys
from common.registry import live_members
from common.stats import StatsField
from tests.netns import Network, netns_usable
from testsupport.redis_server import redis_binary

KEYS = Keys("fc")
PASSWORD = "hosts-bench-pw"
WEB_TOKEN = "hosts-bench-token"
REDIS_PORTS = (7001, 7002, 7003)
WEB_PORT = 8000
TOTAL_FPS = 20.0
LINK_BYTES_S = 125e6  # a 1 Gbit/s link: what the bytes through Redis are set against
PAGE = 250
MAX_FRAME_AGE_S = 1.0  # worker.max_frame_age, the default the cameras run with  # /api/cameras page size
HOSTS = (("host1", 1), ("host2", 2), ("host3", 3), ("host4", 4), ("host5", 5))


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAMECAST_", "REDIS_"))
           or k == "FRAMECAST_CACHE_DIR"}
    env.update(PYTHONUNBUFFERED="1", FRAMECAST_LOG_FORMAT="text", **extra)
    return env


class Processes:
    """Every process started here, by name; each ended by its PID (its descendants by theirs)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        proc = subprocess.Popen(argv, cwd=REPO, env=env or _env(), stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def check(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            raise RuntimeError(f"processes exited: {dead}\n{self.tail()}")

    def tail(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}"
                         for path in sorted(self.workdir.glob("*.log")))

    def stop_all(self) -> None:
        """The services first (they deregister and ack through Redis), then the Redis nodes."""
        names = list(self.procs)
        self._stop([n for n in names if not n.startswith("redis-")])
        self._stop([n for n in names if n.startswith("redis-")])
        for log in self._logs:
            log.close()

    def _stop(self, names: list[str]) -> None:
        families = {}
        for name in names:
            proc = self.procs[name]
            try:
                root = psutil.Process(proc.pid)
                families[name] = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                families[name] = []
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in (self.procs[name] for name in names):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for family in families.values():
            for member in family:
                try:
                    member.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(family, timeout=10)


def _wait(condition, timeout: float, what: str, procs: Processes | None = None, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        if procs is not None:
            procs.check()
        try:
            value = condition()
        except (redis.exceptions.RedisError, OSError, ValueError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s: {what}\n{procs.tail() if procs else ''}")
        time.sleep(interval)


# ---- the Redis Cluster on host1 ------------------------------------------------------------------------
def _node(address: str, port: int) -> redis.Redis:
    return redis.Redis(address, port, password=PASSWORD, socket_timeout=10, socket_connect_timeout=3)


def start_cluster(net: Network, procs: Processes, workdir: Path) -> str:
    """Three masters in host1, joined by `redis-cli --cluster create`; returns the redis+cluster URL."""
    address = net.hosts["host1"].address
    for port in REDIS_PORTS:
        data = workdir / f"redis-{port}"
        data.mkdir(parents=True, exist_ok=True)
        procs.start(f"redis-{port}", net.command(
            "host1", redis_binary(), "--port", str(port), "--bind", address, "--requirepass", PASSWORD,
            "--masterauth", PASSWORD, "--save", "", "--appendonly", "no", "--dir", str(data),
            "--daemonize", "no", "--loglevel", "warning", "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"))
    for port in REDIS_PORTS:
        _wait(lambda port=port: _node(address, port).ping(), 15, f"redis-server {address}:{port}", procs, 0.1)
    subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                    *(f"{address}:{port}" for port in REDIS_PORTS), "--cluster-replicas", "0", "--cluster-yes"],
                   check=True, env=dict(os.environ, REDISCLI_AUTH=PASSWORD), stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=60)

    def ok() -> bool:
        for port in REDIS_PORTS:
            info = _node(address, port).execute_command("CLUSTER", "INFO")
            info = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in info or f"cluster_known_nodes:{len(REDIS_PORTS)}" not in info:
                return False
        return True

    _wait(ok, 60, "cluster_state:ok on the three masters", procs, 0.2)
    return f"redis+cluster://:{PASSWORD}@" + ",".join(f"{address}:{port}" for port in REDIS_PORTS)


def redis_cpu(address: str) -> dict[int, dict[str, float]]:
    """Per master: CPU seconds (user + system) of the process and of its main thread, bytes in + out."""
    out = {}
    for port in REDIS_PORTS:
        client = _node(address, port)
        try:
            cpu, stats, calls = client.info("cpu"), client.info("stats"), client.info("commandstats")
        finally:
            client.close()
        main = cpu.get("used_cpu_user_main_thread", cpu["used_cpu_user"]) + cpu.get(
            "used_cpu_sys_main_thread", cpu["used_cpu_sys"])
        out[port] = {"process": cpu["used_cpu_user"] + cpu["used_cpu_sys"], "main": main,
                     "bytes": stats["total_net_input_bytes"] + stats["total_net_output_bytes"],
                     "commands": stats["total_commands_processed"],
                     "calls": {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in calls.items()}}
    return out


# ---- CPU of the services ---------------------------------------------------------------------------
def _threads_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of each thread of `pid` (and of its descendants): {tid: (name, seconds)}."""
    out = {}
    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    tick = os.sysconf("SC_CLK_TCK")
    for proc in family:
        task = Path(f"/proc/{proc.pid}/task")
        try:
            tids = list(task.iterdir())
        except OSError:
            continue
        for tid in tids:
            try:
                stat = (tid / "stat").read_text()
                name = (tid / "comm").read_text().strip()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            out[int(tid.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, from /proc/stat."""
    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), total


class CpuSample:
    def __init__(self, services: dict[str, int], redis_address: str):
        self.at = time.monotonic()
        self.procs = {}
        for name, pid in services.items():
            try:
                self.procs[name] = tree_cpu(psutil.Process(pid))
            except psutil.NoSuchProcess:
                self.procs[name] = 0.0
        self.threads = {name: _threads_cpu(pid) for name, pid in services.items()}
        self.redis = redis_cpu(redis_address)
        self.machine = _machine_busy()


def cpu_figures(first: CpuSample, last: CpuSample) -> tuple[dict, list[tuple[str, float, str]]]:
    """Cores used by each part over the window, and the candidates for the first limit:
    (what, fraction of its ceiling, how it is said)."""
    seconds = last.at - first.at
    cores = os.cpu_count() or 1
    figures, limits = {}, []
    for port in REDIS_PORTS:
        a, b = first.redis[port], last.redis[port]
        main = (b["main"] - a["main"]) / seconds
        figures[f"redis_{port}_cpu_pct"] = round(100 * (b["process"] - a["process"]) / seconds, 1)
        figures[f"redis_{port}_main_thread_pct"] = round(100 * main, 1)
        figures[f"redis_{port}_commands_per_s"] = round((b["commands"] - a["commands"]) / seconds)
        calls = {name: (n - a["calls"].get(name, 0)) / seconds for name, n in b["calls"].items()}
        figures[f"redis_{port}_top_commands_per_s"] = ", ".join(
            f"{name} {rate:.0f}" for name, rate in sorted(calls.items(), key=lambda kv: -kv[1])[:5])
        limits.append((f"redis master :{port}", main, f"single-threaded Redis master :{port} at "
                                                       f"{100 * main:.1f}% of a core"))
    net = sum(last.redis[p]["bytes"] - first.redis[p]["bytes"] for p in REDIS_PORTS) / seconds
    figures["redis_net_mbytes_per_s"] = round(net / 1e6, 2)
    limits.append(("network", net / LINK_BYTES_S, f"network: {net / 1e6:.2f} MB/s through Redis, "
                                                  f"{100 * net / LINK_BYTES_S:.1f}% of a 1 Gbit/s link"))
    for name in first.procs:
        used = (last.procs[name] - first.procs[name]) / seconds
        figures[f"{name}_cpu_pct"] = round(100 * used, 1)
        before = first.threads[name]
        busiest = max(((tname, (cpu - before.get(tid, (tname, 0.0))[1]) / seconds)
                       for tid, (tname, cpu) in last.threads[name].items()), key=lambda x: x[1],
                      default=("?", 0.0))
        figures[f"{name}_busiest_thread_pct"] = round(100 * busiest[1], 1)
        limits.append((f"{name} thread", busiest[1], f"{name}'s busiest thread ({busiest[0]}) at "
                                                     f"{100 * busiest[1]:.1f}% of a core"))
    busy = (last.machine[0] - first.machine[0]) / ((last.machine[1] - first.machine[1]) or 1)
    figures["machine_cpu_pct"] = round(100 * busy, 1)
    figures["machine_cores_busy"] = round(busy * cores, 2)
    limits.append(("machine", busy, f"the machine's CPU: {busy * cores:.2f} of {cores} cores busy "
                                    f"({100 * busy:.1f}%)"))
    return figures, sorted(limits, key=lambda x: -x[1])


# ---- what the pipeline did ---------------------------------------------------------------------------
def counters(client, cams: list[str]) -> dict[str, dict[str, float]]:
    pipe = client.pipeline()
    for cam in cams:
        pipe.hgetall(KEYS.stats(cam))
    out = {}
    for cam, raw in zip(cams, pipe.execute(), strict=True):
        out[cam] = {}
        for k, v in raw.items():
            try:
                out[cam][k.decode() if isinstance(k, bytes) else k] = float(v)
            except (TypeError, ValueError):
                pass
    return out


def latencies(client, cams: list[str], start_s: float, end_s: float) -> dict[str, list[float]]:
    """Per camera: ms from capture to the annotated frame in Redis (entry id: Redis's clock) of each
    frame captured in [start_s, end_s); each stage's ms of those frames into STAGE_MS."""
    STAGE_MS.clear()
    pipe = client.pipeline()
    for cam in cams:
        pipe.xrange(KEYS.annotated(cam), min=str(int(start_s * 1000)))
    out = {}
    for cam, entries in zip(cams, pipe.execute(), strict=True):
        out[cam] = []
        for entry_id, fields in entries:
            frame = envelope.decode(fields[FRAME_FIELD])
            if start_s * 1e9 <= frame.ts < end_s * 1e9:
                out[cam].append(int(entry_id.split(b"-")[0]) - frame.ts / 1e6)
                for stage, ms in frame.stage_ms().items():
                    STAGE_MS.setdefault(stage, []).append(ms)
    return out


STAGE_MS: dict[str, list[float]] = {}  # every stage's ms over the window's frames (common.envelope STAGES)


def api_cameras(address: str) -> dict:
    """GET /api/cameras page by page from one web process: the cameras it lists."""
    listed, offset, pages, total = {}, 0, 0, None
    conn = http.client.HTTPConnection(address, WEB_PORT, timeout=30)
    try:
        while offset is not None:
            conn.request("GET", f"/api/cameras?limit={PAGE}&offset={offset}",
                         headers={"Authorization": f"Bearer {WEB_TOKEN}"})
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"GET /api/cameras from {address}: {response.status} {body[:200]!r}")
            page = json.loads(body)
            total = page["total"]
            for camera in page["cameras"]:
                listed[camera["id"]] = camera
            offset, pages = page.get("next_offset"), pages + 1
    finally:
        conn.close()
    statuses: dict[str, int] = {}
    for camera in listed.values():
        statuses[camera["status"]] = statuses.get(camera["status"], 0) + 1
    return {"total": total, "listed": len(listed), "pages": pages, "ids": set(listed),
            "with_processed": sum(1 for c in listed.values() if c.get("processed", 0) > 0),
            "statuses": statuses}


def _healthy(address: str) -> bool:
    conn = http.client.HTTPConnection(address, WEB_PORT, timeout=3)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    finally:
        conn.close()


# ---- the run -----------------------------------------------------------------------------------------
def run(workdir: Path, quick: bool = False) -> list[dict]:
    reason = netns_usable()
    if reason:
        raise RuntimeError(f"many_cameras_hosts needs network namespaces: {reason}")
    count, window_s = (200, 40.0) if quick else (1000, 200.0)
    fps = TOTAL_FPS / count
    warmup_s = 1 / fps + 5  # one frame period: past the first frames every camera sends at once
    cams = [f"cam{i:04d}" for i in range(count)]
    workdir.mkdir(parents=True, exist_ok=True)
    procs = Processes(workdir)
    net = None
    client = None
    try:
        net = Network()
        for name, octet in HOSTS:
            net.add_host(name, octet)
        redis_address = net.hosts["host1"].address
        url = start_cluster(net, procs, workdir)
        config = workdir / "cameras.yaml"
        config.write_text(yaml.safe_dump({
            "redis_url": url, "log_level": "WARNING", "log_format": "text",
            "web": {"token": WEB_TOKEN},
            "cameras": [{"id": cam, "source": "pattern", "fps": fps, "max_width": 640, "mode": "live",
                         "motion": {"enabled": False}, "detection": {"threads": 1}} for cam in cams],
        }, sort_keys=False))
        client = connect(url)
        framecast = [sys.executable, "-m", "framecast"]

        def service(name: str, host: str, role: str, *args: str, **env: str) -> None:
            procs.start(name, net.command(host, *framecast, role, "--config", str(config), *args), _env(**env))

        placement = {"worker1": "host4", "worker2": "host4", "worker3": "host5", "worker4": "host5"}
        for name, host in placement.items():
            service(name, host, "worker")
        webs = {"webA": "host4", "webB": "host5"}
        for name, host in webs.items():
            service(name, host, "web", "--host", net.hosts[host].address, "--port", str(WEB_PORT),
                    "--processes", "1")
        _wait(lambda: len(live_members(client, KEYS, "worker")) >= 4, 240, "4 workers registered", procs, 1.0)
        for host in webs.values():
            _wait(lambda host=host: _healthy(net.hosts[host].address), 90, f"web on {host}", procs)
        half = count // 2
        service("producerA", "host2", "producer", FRAMECAST_CAMERAS=",".join(cams[:half]))
        service("producerB", "host3", "producer", FRAMECAST_CAMERAS=",".join(cams[half:]))
        _wait(lambda: len(live_members(client, KEYS, "producer")) >= 2, 120, "2 producers registered", procs, 1.0)
        time.sleep(warmup_s)
        procs.check()

        pids = {name: procs.procs[name].pid for name in ("producerA", "producerB", *placement, *webs)}
        before = counters(client, cams)
        start_s = time.time()
        first = CpuSample(pids, redis_address)
        time.sleep(window_s)
        procs.check()
        last = CpuSample(pids, redis_address)
        end_s = time.time()
        time.sleep(5)  # the frames captured at the end of the window published, the stats written
        after = counters(client, cams)
        lat = latencies(client, cams, start_s, end_s)
        web = {name: api_cameras(net.hosts[host].address) for name, host in webs.items()}
        workers_live = live_members(client, KEYS, "worker")
        procs.check()
    finally:
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - the cleanup goes on
                pass
        procs.stop_all()
        if net is not None:
            net.cleanup()
            left = net.leftovers()
            if left:
                raise RuntimeError(f"namespaces left behind: {left}")

    def delta(cam: str, field: str) -> float:
        return after[cam].get(field, 0.0) - before[cam].get(field, 0.0)

    published = sum(delta(cam, StatsField.PUBLISHED) for cam in cams)
    processed = sum(delta(cam, StatsField.PROCESSED) for cam in cams)
    skipped = sum(delta(cam, StatsField.SKIPPED_STALE) for cam in cams)
    dropped = sum(delta(cam, StatsField.DROPPED) for cam in cams)
    values = [ms for cam in cams for ms in lat[cam]]
    flowing = sum(1 for cam in cams if lat[cam])
    silent = [cam for cam in cams if not lat[cam]]
    cpu, limits = cpu_figures(first, last)
    # The live latency budget: a frame older than worker.max_frame_age when its turn comes is skipped
    # stale, so the wait between the producer's send and a worker's read ("transit": the read pass of
    # the worker loop) is a limit of its own, however idle the CPUs are.
    transit = STAGE_MS.get("transit", [])
    if transit:
        p99 = percentile(transit, 99)
        limits.append(("worker read pass", p99 / (MAX_FRAME_AGE_S * 1000),
                       f"the worker loop's read pass: a frame waits {percentile(transit, 50):.0f} ms (p50), "
                       f"{p99:.0f} ms (p99) in its stream before a worker reads it, "
                       f"{100 * p99 / (MAX_FRAME_AGE_S * 1000):.0f}% of max_frame_age ({MAX_FRAME_AGE_S:g} s); "
                       f"skipped stale {int(skipped)} of {int(published)} published"))
        limits.sort(key=lambda x: -x[1])
    web_ok = all(w["total"] == count and w["ids"] == set(cams) and w["with_processed"] == count
                 for w in web.values())
    figures = {
        "cameras": count, "fps_per_camera": round(fps, 4), "window_s": window_s,
        "cameras_flowing": flowing,
        "latency_p50_ms": round(percentile(values, 50), 1), "latency_p95_ms": round(percentile(values, 95), 1),
        "latency_p99_ms": round(percentile(values, 99), 1),
        "latency_max_ms": round(max(values), 1) if values else float("nan"),
        "frames_in_window": len(values),
        "published": int(published), "processed": int(processed), "skipped_stale": int(skipped),
        "dropped": int(dropped),
        "processed_over_published": round(processed / published, 3) if published else float("nan"),
        "published_fps": round(published / window_s, 2), "processed_fps": round(processed / window_s, 2),
        "workers_live": len(workers_live),
        **{f"{name}_api_cameras": f"{w['listed']}/{w['total']} listed, {w['with_processed']} processed, "
                                  f"{w['pages']} pages, {json.dumps(w['statuses'], sort_keys=True)}"
           for name, w in web.items()},
        **{f"stage_{stage}_p50_p99_ms": f"{percentile(v, 50):.1f}/{percentile(v, 99):.1f}"
           for stage, v in STAGE_MS.items()},
        **cpu,
        "first_limit": limits[0][2],
        "next_limits": "; ".join(x[2] for x in limits[1:4]),
    }
    if silent:
        figures["silent_cameras_sample"] = ",".join(silent[:10])
        figures["silent_cameras_published_processed_skipped"] = "{:.0f}/{:.0f}/{:.0f}".format(
            *(sum(delta(cam, f) for cam in silent)
              for f in (StatsField.PUBLISHED, StatsField.PROCESSED, StatsField.SKIPPED_STALE)))
    box = machine()
    return [{
        "name": f"many cameras 4: {count} pattern cameras at {fps:g} fps ({TOTAL_FPS:g} frames/s) on five "
                "namespace hosts (Redis Cluster 3 masters, 2 producers, 4 workers, 2 web)",
        "unit": "cameras, ms, frames, % of a core",
        "figures": figures,
        "target": f"every camera flowing ({count}/{count}) and both web processes list every camera with "
                  f"processed frames; latency p99 stated; first limit named; machine: {box['cores']} cores, "
                  f"{box['cpu']}, load average {box['load']}",
        "met": flowing == count and web_ok and bool(values),
        "limits": [{"what": w, "fraction": round(f, 4), "said": s} for w, f, s in limits],
    }]


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import print_result

    parser = argparse.ArgumentParser(prog="python -m bench.many_cameras_hosts", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 cameras, a 40 s window")
    parser.add_argument("--keep", help="keep the logs and config in this directory")
    args = parser.parse_args(argv)
    box = machine()
    print(f"machine: {box['cores']} cores, {box['cpu']}, load average {box['load']} at the start")
    if args.keep:
        results = run(Path(args.keep), quick=args.quick)
    else:
        with tempfile.TemporaryDirectory(prefix="framecast-bench-") as tmp:
            results = run(Path(tmp), quick=args.quick)
    for result in results:
        print_result(result)
        print("  limits: " + json.dumps(result["limits"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
