"""The supervisord configuration of a one-machine framecast, generated from the camera config:
a private redis-server, a producer program per camera, worker programs with `numprocs` (one shared
pool, and one per camera given its own workers), the web tier.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from common.config import Settings

# Size of one stream entry of the sample clip at 768 px, quality 80 (measured: 77 KB mean, 78 KB max).
FRAME_BYTES_ESTIMATE = 80 * 1024
DETECTION_RECORD_BYTES = 400


def redis_maxmemory(settings: Settings, frame_bytes: int = FRAME_BYTES_ESTIMATE) -> int:
    """Bytes of Redis memory the configured stream bounds need, with room for `MAXLEN ~` slack
    (up to one 100-entry node per stream) and a 64 MiB floor for everything else."""
    streams = settings.streams
    per_camera = ((streams.frames_maxlen + 100) + (streams.annotated_maxlen + 100)) * frame_bytes
    per_camera += (streams.deadletter_maxlen + 100) * frame_bytes // 4
    per_camera += (streams.detections_maxlen + 100) * DETECTION_RECORD_BYTES
    return 64 * 1024 * 1024 + max(1, len(settings.cameras)) * per_camera


@dataclass(frozen=True)
class WorkerGroup:
    """One supervisord worker program: `count` processes serving `cams` (None: every camera)."""

    name: str
    count: int
    cams: tuple[str, ...] | None = None

    def args(self) -> list[str]:
        """The `framecast worker` flags that pick this group's cameras."""
        return [arg for cam in self.cams or () for arg in ("--camera", cam)]


@dataclass(frozen=True)
class Layout:
    """Where a local cluster keeps its files."""

    run_dir: Path

    @property
    def conf(self) -> Path:
        return self.run_dir / "supervisord.conf"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "supervisord.pid"

    @property
    def socket(self) -> Path:
        return self.run_dir / "supervisor.sock"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    @property
    def events_dir(self) -> Path:
        """Event snapshots and clips: written by the workers' tracking owners, served by the web tier."""
        return self.run_dir / "events"

    @property
    def redis_dir(self) -> Path:
        return self.run_dir / "redis"


def _program(name: str, command: list[str], env: dict[str, str], logs: Path, priority: int,
             numprocs: int = 1, numprocs_start: int = 0) -> str:
    environment = ",".join(f'{k}="{v}"' for k, v in env.items())
    process_name = "%(program_name)s-%(process_num)d" if numprocs > 1 else "%(program_name)s"
    return f"""
[program:{name}]
command={" ".join(shlex.quote(part) for part in command)}
process_name={process_name}
numprocs={numprocs}
numprocs_start={numprocs_start}
priority={priority}
environment={environment}
autostart=true
autorestart=true
startsecs=2
startretries=1000
stopsignal=TERM
stopwaitsecs=15
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile={logs}/{process_name}.log
stdout_logfile_maxbytes=10MB
stdout_logfile_backups=2
"""


def worker_ports(settings: Settings, groups: list[WorkerGroup], metrics_port: int) -> list[int]:
    """The first metrics port of each worker group: after the producers' (one per camera), the groups
    in order, one port per process; all 0 without `metrics_port`."""
    if not metrics_port:
        return [0] * len(groups)
    first, out = metrics_port + len(settings.cameras), []
    for group in groups:
        out.append(first)
        first += group.count
    return out


def render(settings: Settings, layout: Layout, *, framecast_bin: str, redis_bin: str, config_path: Path,
           redis_port: int, web_port: int, workers: int | list[WorkerGroup], metrics_port: int = 0) -> str:
    """The supervisord.conf text. Passwords stay out of it: the local Redis has none.

    `workers` is a count (one pool serving every camera) or the worker groups. With `metrics_port`
    the producers serve Prometheus on it and the next ports, one per camera, then the workers, one per
    process, group after group: supervisord numbers the worker processes from the port they get
    (`worker-<port>`, `worker-door-<port>`). Without it every process is told 0, whatever the config
    file says, so processes of one machine never compete for one port."""
    groups = [WorkerGroup("worker", workers)] if isinstance(workers, int) else workers
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {"REDIS_URL": redis_url, "FRAMECAST_CONFIG": str(config_path), "PYTHONUNBUFFERED": "1",
           "FRAMECAST_EVENTS_DIR": str(layout.events_dir)}
    parts = [f"""[supervisord]
nodaemon=true
silent=true
pidfile={layout.pidfile}
logfile={layout.logs}/supervisord.log
logfile_maxbytes=10MB
childlogdir={layout.logs}
loglevel=info

[unix_http_server]
file={layout.socket}
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{layout.socket}
"""]
    parts.append(_program(
        "redis",
        [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(layout.redis_dir),
         "--save", "", "--appendonly", "no", "--maxmemory", str(redis_maxmemory(settings)),
         "--maxmemory-policy", "noeviction", "--daemonize", "no"],
        {}, layout.logs, priority=10))
    for i, camera in enumerate(settings.cameras):
        port = metrics_port + i if metrics_port else 0
        parts.append(_program(f"producer-{camera.id}", [framecast_bin, "producer", "--camera", camera.id,
                                                        "--metrics-port", str(port)], env, layout.logs, priority=30))
    for group, first_port in zip(groups, worker_ports(settings, groups, metrics_port), strict=True):
        parts.append(_program(group.name, [framecast_bin, "worker", *group.args(), "--metrics-port",
                                           "%(process_num)d" if metrics_port else "0"],
                              env, layout.logs, priority=20, numprocs=group.count, numprocs_start=first_port))
    parts.append(_program("web", [framecast_bin, "web", "--host", "127.0.0.1", "--port", str(web_port)], env,
                          layout.logs, priority=40))
    return "".join(parts)
