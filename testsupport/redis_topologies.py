"""Redis Cluster and Sentinel set-ups made of real redis-server processes on loopback ports.

For tests and benchmarks of the `redis+cluster://` and `redis+sentinel://` topologies. Every
launcher ends every process it started by its PID and removes its temporary directories in
`cleanup` (also on `__exit__`), whatever state the processes are in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis
from redis.crc import key_slot

from testsupport.redis_server import RedisServer, free_port, redis_binary, stop_process

HOST = "127.0.0.1"


def wait_until(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    """Poll `condition` until it returns something truthy (returned); RuntimeError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (redis.exceptions.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _auth(password: str | None) -> str:
    return f":{quote(password, safe='')}@" if password else ""


class ClusterServers:
    """A Redis Cluster of `masters` masters with `replicas` replicas each (3 + 3 by default).

    A short `node_timeout_ms` makes a replica take over a killed master within a few seconds.
    """

    def __init__(self, masters: int = 3, replicas: int = 1, password: str | None = None,
                 node_timeout_ms: int = 1500):
        self.masters_count = masters
        self.replicas_per_master = replicas
        self.password = password
        self.node_timeout_ms = node_timeout_ms
        self.nodes: dict[int, RedisServer] = {}

    @property
    def url(self) -> str:
        """The `redis+cluster://` URL naming every node as a startup node."""
        hosts = ",".join(f"{HOST}:{port}" for port in self.nodes)
        return f"redis+cluster://{_auth(self.password)}{hosts}"

    def start(self) -> ClusterServers:
        try:
            for _ in range(self.masters_count * (1 + self.replicas_per_master)):
                port = free_port()
                node = RedisServer(port, self.password, args=[
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-port", str(free_port()), "--cluster-node-timeout", str(self.node_timeout_ms)])
                self.nodes[port] = node
                node.start()
            env = dict(os.environ, REDISCLI_AUTH=self.password) if self.password else None
            subprocess.run(
                [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                 *(f"{HOST}:{port}" for port in self.nodes),
                 "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes"],
                check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
            self.wait_ok(60)
        except BaseException:
            self.cleanup()
            raise
        return self

    def client(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node, for CLUSTER and INFO commands."""
        return redis.Redis(HOST, port, password=self.password, socket_timeout=5, socket_connect_timeout=2)

    def _live_ports(self) -> list[int]:
        return [port for port, node in self.nodes.items() if node.proc is not None and node.proc.poll() is None]

    def _cluster_nodes(self) -> list[dict]:
        """CLUSTER NODES as seen by the first live node: id, port, flags, master id, slot ranges."""
        for port in self._live_ports():
            client = self.client(port)
            try:
                text = client.execute_command("CLUSTER", "NODES")
            except redis.exceptions.RedisError:
                continue
            finally:
                client.close()
            text = text.decode() if isinstance(text, bytes) else text
            out = []
            for line in text.strip().splitlines():
                parts = line.split()
                out.append({"id": parts[0], "port": int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                            "flags": set(parts[2].split(",")), "master": parts[3], "slots": parts[8:]})
            return out
        raise RuntimeError("no cluster node answers CLUSTER NODES")

    def is_ok(self) -> bool:
        """Every live node says `cluster_state:ok`, knows every node, and every replica is in sync."""
        ports = self._live_ports()
        for port in ports:
            client = self.client(port)
            try:
                info = client.execute_command("CLUSTER", "INFO")
                info = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{len(self.nodes)}" not in info:
                    return False
                replication = client.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
            finally:
                client.close()
        return bool(ports)

    def wait_ok(self, timeout: float = 40.0) -> float:
        """Wait until `is_ok`; returns the seconds waited."""
        started = time.monotonic()
        wait_until(self.is_ok, timeout, "cluster_state:ok on every live node", interval=0.2)
        return time.monotonic() - started

    def masters(self) -> list[int]:
        """Ports of the masters that serve slots and are not marked failed, in port order."""
        return sorted(n["port"] for n in self._cluster_nodes()
                      if "master" in n["flags"] and "fail" not in n["flags"] and n["slots"])

    def replicas_of(self, master_port: int) -> list[int]:
        nodes = self._cluster_nodes()
        master_id = next(n["id"] for n in nodes if n["port"] == master_port)
        return sorted(n["port"] for n in nodes if n["master"] == master_id)

    def master_for_key(self, key: str) -> int:
        """Port of the master that owns `key`'s hash slot (its `{tag}` when it has one)."""
        slot = key_slot(key.encode())
        for node in self._cluster_nodes():
            if "master" not in node["flags"] or "fail" in node["flags"]:
                continue
            for spec in node["slots"]:
                if spec.startswith("["):  # a slot being migrated
                    continue
                low, _, high = spec.partition("-")
                if int(low) <= slot <= int(high or low):
                    return node["port"]
        raise RuntimeError(f"no master owns slot {slot}")

    def kill(self, port: int) -> None:
        """SIGKILL one node (by its PID), as a crash would; `start_node` brings it back."""
        self.nodes[port].kill()

    def start_node(self, port: int) -> None:
        """Restart a killed node on its port with its nodes.conf: it rejoins (as a replica, if it was
        failed over)."""
        self.nodes[port].start()

    def cleanup(self) -> None:
        for node in self.nodes.values():
            node.cleanup()

    def __enter__(self) -> ClusterServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()


class SentinelProcess:
    """One `redis-server --sentinel` watching `service` (its config file is rewritten by Sentinel)."""

    def __init__(self, service: str, primary_port: int, quorum: int, down_after_ms: int, failover_timeout_ms: int,
                 password: str | None = None, sentinel_password: str | None = None):
        self.port = free_port()
        self.sentinel_password = sentinel_password
        self.dir = Path(tempfile.mkdtemp(prefix="framecast-sentinel-"))
        lines = [f"port {self.port}", f"bind {HOST}", "daemonize no", f"dir {self.dir}", "loglevel warning",
                 f"sentinel monitor {service} {HOST} {primary_port} {quorum}",
                 f"sentinel down-after-milliseconds {service} {down_after_ms}",
                 f"sentinel failover-timeout {service} {failover_timeout_ms}",
                 f"sentinel parallel-syncs {service} 1"]
        if password:
            lines.append(f"sentinel auth-pass {service} {password}")
        if sentinel_password:
            lines += [f"requirepass {sentinel_password}", f"sentinel sentinel-pass {sentinel_password}"]
        self.config = self.dir / "sentinel.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(HOST, self.port, password=self.sentinel_password, socket_timeout=5,
                           socket_connect_timeout=2, decode_responses=True)

    def start(self) -> SentinelProcess:
        self.proc = subprocess.Popen([redis_binary(), str(self.config), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.proc.poll() is None and self.client().ping(), 10, f"sentinel on port {self.port}",
                   interval=0.05)
        return self

    def cleanup(self) -> None:
        stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class SentinelServers:
    """A primary, one replica and `sentinels` Sentinels (quorum 2) monitoring them as `service`.

    Short `down_after_ms` and `failover_timeout_ms` make a failover take a few seconds.
    """

    def __init__(self, service: str = "framecast", sentinels: int = 3, quorum: int = 2, password: str | None = None,
                 sentinel_password: str | None = None, down_after_ms: int = 1000, failover_timeout_ms: int = 3000):
        self.service = service
        self.password = password
        self.sentinel_password = sentinel_password
        self.primary = RedisServer(password=password)
        self.replica = RedisServer(password=password, replicaof=(HOST, self.primary.port))
        self.sentinels = [SentinelProcess(service, self.primary.port, quorum, down_after_ms, failover_timeout_ms,
                                          password, sentinel_password) for _ in range(sentinels)]

    @property
    def servers(self) -> dict[int, RedisServer]:
        return {s.port: s for s in (self.primary, self.replica)}

    @property
    def url(self) -> str:
        """The `redis+sentinel://` URL naming every Sentinel, the service and the Sentinel password."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        query = f"?sentinel_password={quote(self.sentinel_password, safe='')}" if self.sentinel_password else ""
        return f"redis+sentinel://{_auth(self.password)}{hosts}/{self.service}{query}"

    def start(self) -> SentinelServers:
        try:
            self.primary.start()
            self.replica.start().wait_synced(20)
            for sentinel in self.sentinels:
                sentinel.start()
            wait_until(self._sentinels_agree, 30, "every Sentinel to see the primary, the replica and its peers",
                       interval=0.2)
        except BaseException:
            self.cleanup()
            raise
        return self

    def _sentinels_agree(self) -> bool:
        primary = self.primary_port()
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                state = client.sentinel_master(self.service)
            finally:
                client.close()
            if (not state.get("is_master") or state.get("is_sdown") or int(state["port"]) != primary
                    or state.get("num-slaves", 0) < 1 or state.get("num-other-sentinels", 0) < len(self.sentinels) - 1):
                return False
        return True

    def primary_port(self) -> int:
        """The primary's port as the first answering Sentinel reports it."""
        for sentinel in self.sentinels:
            if sentinel.proc is None:
                continue
            client = sentinel.client()
            try:
                host_port = client.sentinel_get_master_addr_by_name(self.service)
            except redis.exceptions.ConnectionError:
                continue
            finally:
                client.close()
            if host_port:
                return int(host_port[1])
        raise RuntimeError(f"no Sentinel knows the primary of {self.service!r}")

    def kill_primary(self) -> int:
        """SIGKILL the current primary (by its PID); returns its port."""
        port = self.primary_port()
        self.servers[port].kill()
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> float:
        """Wait until every Sentinel names a new primary that accepts writes; returns the seconds waited."""
        started = time.monotonic()

        def promoted() -> bool:
            port = self.primary_port()
            if port == old_port:
                return False
            client = redis.Redis(HOST, port, password=self.password, socket_timeout=5)
            try:
                return client.execute_command("ROLE")[0] in (b"master", "master") and self._sentinels_agree()
            finally:
                client.close()

        wait_until(promoted, timeout, f"a new primary of {self.service!r}", interval=0.1)
        return time.monotonic() - started

    def restart(self, port: int) -> None:
        """Start a killed server on its old port as it was configured (a demoted primary starts as a
        primary again; Sentinel then turns it into a replica of the new one)."""
        server = self.servers[port]
        server.replicaof = None
        server.start()

    def cleanup(self) -> None:
        for sentinel in self.sentinels:
            sentinel.cleanup()
        self.replica.cleanup()
        self.primary.cleanup()

    def __enter__(self) -> SentinelServers:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()
