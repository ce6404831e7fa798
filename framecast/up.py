"""`framecast up`: the whole pipeline on this machine under supervisord — a private redis-server,
a producer per camera, N workers and the web tier — until Ctrl-C (or `framecast up --stop`).

`--workers` takes a count for one pool serving every camera (`--workers 2`), workers of a camera's
own (`--workers door=3,yard=1`: each camera its own supervisord program of `framecast worker --camera
ID` processes, which read only that camera's stream), or both (`--workers 2,door=3`: door gets 3 of
its own, the cameras not named share a pool of 2). Every camera must end up with workers: naming
some cameras and giving no count for the rest is an error, and so is a count nothing would use."""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.camera_id import validate_camera_id
from common.config import Settings, load_config
from common.errors import FramecastError
from common.service import fail
from framecast.supervisord import Layout, WorkerGroup, render, worker_ports

STARTUP_TIMEOUT = 180.0  # the first start loads TensorFlow in every worker


@dataclass(frozen=True)
class WorkersSpec:
    """`--workers` as given: a count for the shared pool and/or counts per camera id."""

    pool: int | None
    per_camera: dict[str, int]


def _count(text: str, what: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what}: {text!r} is not a whole number") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{what}: must be at least 1, not {count}")
    return count


def parse_workers(text: str) -> WorkersSpec:
    """Parse `N`, `cam=N,cam=N` or `N,cam=N` (spaces around items allowed); argparse's `type`."""
    pool, per_camera = None, {}
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or "" in items:
        raise argparse.ArgumentTypeError(f"{text!r}: give N, ID=N[,ID=N...] or N,ID=N[,...]")
    for item in items:
        cam, sep, value = item.partition("=")
        if not sep:
            if pool is not None:
                raise argparse.ArgumentTypeError(f"{text!r}: more than one count for the shared pool")
            pool = _count(item, "--workers")
            continue
        cam = cam.strip()
        try:
            validate_camera_id(cam)
        except FramecastError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if cam in per_camera:
            raise argparse.ArgumentTypeError(f"{text!r}: camera {cam!r} named twice")
        per_camera[cam] = _count(value.strip(), f"--workers {cam}")
    return WorkersSpec(pool, per_camera)


def plan_workers(spec: WorkersSpec, settings: Settings) -> list[WorkerGroup]:
    """The worker programs for the configured cameras: the shared pool first (it serves every camera,
    or the cameras not named), then one per named camera in config order. Raises FramecastError
    (exit 2) for an unknown camera, a camera left without workers, or a pool with nothing to serve."""
    for cam in spec.per_camera:
        settings.camera(cam)  # UnknownCameraError names it
    if not spec.per_camera:
        return [WorkerGroup("worker", spec.pool)]  # parse_workers gave a count
    rest = [camera.id for camera in settings.cameras if camera.id not in spec.per_camera]
    named = ",".join(f"{cam}={n}" for cam, n in spec.per_camera.items())
    if rest and spec.pool is None:
        missing = ", ".join(repr(cam) for cam in rest)
        raise FramecastError(f"--workers {named}: camera(s) {missing} would have no workers; name them "
                             f"({rest[0]}=1) or give a count for the cameras not named (--workers 1,{named})")
    if not rest and spec.pool is not None:
        raise FramecastError(f"--workers {spec.pool},{named}: every camera has workers of its own, so the "
                             f"{spec.pool} shared worker(s) would serve none; drop the count")
    groups = [WorkerGroup("worker", spec.pool, tuple(rest))] if rest else []
    groups += [WorkerGroup(f"worker-{camera.id}", spec.per_camera[camera.id], (camera.id,))
               for camera in settings.cameras if camera.id in spec.per_camera]
    return groups


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_from(port: int, count: int = 1, taken: tuple[int, ...] = ()) -> int:
    """The first port from `port` on where `count` consecutive ports are free and none is in `taken`
    (ports already chosen for this cluster but not bound yet)."""
    for candidate in range(port, port + 100):
        if all(candidate + i not in taken and _port_free(candidate + i) for i in range(count)):
            return candidate
    raise FramecastError(f"no {count} free port(s) in a row in {port}-{port + 99 + count - 1}")


def _binary(name: str, hint: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise FramecastError(f"{name} not found: {hint}")
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(layout: Layout, timeout: float = 60.0) -> int:
    """Stop a running cluster started in this run directory; returns the exit code."""
    if not layout.pidfile.exists():
        print(f"framecast: nothing running in {layout.run_dir}")
        return 0
    pid = int(layout.pidfile.read_text().strip() or 0)
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            print(f"framecast: supervisord {pid} did not stop in {timeout:.0f} s", file=sys.stderr)
            return 1
    print("framecast: stopped")
    return 0


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float) -> bool:
    """Poll the local web tier's /readyz until frames flow (or the time is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return True
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(1.0)
    return False


def build_parser() -> argparse.ArgumentParser:
    summary, workers = (" ".join(part.split()) for part in __doc__.split("\n\n"))
    parser = argparse.ArgumentParser(prog="framecast up", description=summary, epilog=workers)
    parser.add_argument("--config", "-c", default=os.environ.get("FRAMECAST_CONFIG", "cameras.yaml"),
                        help="camera config (default: cameras.yaml)")
    parser.add_argument("--workers", type=parse_workers, default="2", metavar="N|ID=N,...",
                        help="detector worker processes: N shared by every camera (default 2), ID=N,... "
                             "a camera's own workers, or N,ID=N,... both (the N serve the cameras not named)")
    parser.add_argument("--port", type=int, default=8000, help="web port (default 8000, next free if taken)")
    parser.add_argument("--redis-port", type=int, default=6390, help="private Redis port (next free if taken)")
    parser.add_argument("--metrics-port", type=int, metavar="BASE",
                        help="serve Prometheus from the producers and workers on BASE, BASE+1, ... "
                             "(next free run if taken; default: metrics_port of the config, 0 = off)")
    parser.add_argument("--run-dir", default="run", help="logs, Redis data and supervisord files (default ./run)")
    parser.add_argument("--stop", action="store_true", help="stop the cluster running in --run-dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = Layout(Path(args.run_dir).resolve())
    if args.stop:
        return stop(layout)
    try:
        settings = load_config(args.config, env={})
        if not settings.cameras:
            raise FramecastError(f"{args.config}: no cameras configured")
        groups = plan_workers(args.workers, settings)
        workers = sum(group.count for group in groups)
        if layout.pidfile.exists() and _alive(int(layout.pidfile.read_text().strip() or 0)):
            raise FramecastError(f"already running in {layout.run_dir} (stop it with `framecast up --stop`)")
        bindir = Path(sys.executable).parent
        framecast_bin = str(bindir / "framecast") if (bindir / "framecast").exists() else _binary("framecast", "")
        redis_bin = _binary("redis-server", "run `make install` (installs Debian's redis-server)")
        supervisord = str(bindir / "supervisord") if (bindir / "supervisord").exists() else _binary(
            "supervisord", "pip install supervisor")
        web_port = _free_port_from(args.port)
        redis_port = _free_port_from(args.redis_port, taken=(web_port,))
        metrics_base = settings.metrics_port if args.metrics_port is None else args.metrics_port
        if metrics_base:  # one port per producer and per worker process
            metrics_base = _free_port_from(metrics_base, len(settings.cameras) + workers,
                                           taken=(web_port, redis_port))
    except FramecastError as exc:
        fail(exc)
    for directory in (layout.run_dir, layout.logs, layout.redis_dir, layout.events_dir):
        directory.mkdir(parents=True, exist_ok=True)
    layout.conf.write_text(render(settings, layout, framecast_bin=framecast_bin, redis_bin=redis_bin,
                                  config_path=Path(args.config).resolve(), redis_port=redis_port,
                                  web_port=web_port, workers=groups, metrics_port=metrics_base))
    proc = subprocess.Popen([supervisord, "-c", str(layout.conf)], start_new_session=True)

    def _forward(signum, _frame):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, _forward)
    signal.signal(signal.SIGTERM, _forward)
    url = f"http://localhost:{web_port}/"
    print(f"framecast: starting {len(settings.cameras)} camera(s), {workers} worker(s), web on port "
          f"{web_port}, redis on {redis_port}; logs in {layout.logs}", flush=True)
    if metrics_base:
        last = metrics_base + len(settings.cameras) + workers - 1
        print(f"framecast: Prometheus metrics of the producers and workers on ports {metrics_base}-{last} "
              f"(producers first), of the web tier on {url}metrics", flush=True)
    for group, first in zip(groups, worker_ports(settings, groups, metrics_base), strict=True):
        if group.cams is not None:  # a plain pool has nothing to add to the line above
            ports = f", metrics on {first}-{first + group.count - 1}" if metrics_base else ""
            print(f"framecast: {group.name}: {group.count} worker(s) for {', '.join(group.cams)}{ports}",
                  flush=True)
    if _wait_ready(web_port, proc, STARTUP_TIMEOUT):
        print(f"framecast: up — open {url}  (Ctrl-C or `make stop` stops everything)", flush=True)
    elif proc.poll() is None:
        print(f"framecast: web at {url} but frames are not flowing yet; see {layout.logs}", flush=True)
    code = proc.wait()
    print("framecast: stopped", flush=True)
    return 0 if code in (0, -signal.SIGTERM) else code
