"""A real redis-server on a free loopback port, for tests and benchmarks (never fakeredis).

Several of them make the other topologies: `testsupport.redis_topologies`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_binary() -> str:
    path = shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)
    if path is None:
        raise RuntimeError("redis-server is not installed: run `make install` (installs Debian's redis-server)")
    return path


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM `proc` and wait for it; SIGKILL it when it does not end within `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """One redis-server process; `restart` keeps the port so clients can reconnect to it."""

    def __init__(self, port: int | None = None, password: str | None = None,
                 replicaof: tuple[str, int] | None = None, args: list[str] | None = None):
        self.port = port or free_port()
        self.password = password
        self.replicaof = replicaof
        self.args = list(args or [])
        self.dir = Path(tempfile.mkdtemp(prefix="framecast-redis-"))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replicaof:
            args += ["--replicaof", self.replicaof[0], str(self.replicaof[1])]
        args += self.args
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password)
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()
        return self

    def wait_synced(self, timeout: float = 30.0) -> RedisServer:
        """A replica: wait until its link to the primary is up (the first full sync can take seconds:
        a diskless sync waits `repl-diskless-sync-delay`, 5 s by default, for more replicas)."""
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5)
        try:
            while True:
                try:
                    if client.info("replication").get("master_link_status") == "up":
                        return self
                except (redis.exceptions.RedisError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the replica on port {self.port} did not sync within {timeout:g} s")
                time.sleep(0.1)
        finally:
            client.close()

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, downtime: float = 0.0) -> None:
        self.kill()
        time.sleep(downtime)
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
