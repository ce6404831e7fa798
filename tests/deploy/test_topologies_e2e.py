"""The real services on real topologies, with a fault in the middle: a Sentinel failover under load,
a Redis Cluster master killed under one multi-camera worker, and a multi-host set-up on network
namespaces with one worker's link cut for 20 s. Each test checks that the services are ready again
within a stated bound and that the ledger (tests/ledger.py) holds afterwards.

What the ledger can promise across a failover: Redis replication is asynchronous, so a write the old
primary acknowledged but had not yet sent to its replica is gone after the promotion, and a write
whose reply the dead primary never sent may be sent again. The producer writes one pipeline (at
most `producer.send_queue` frames) at a time, so both effects are confined to the frames around the
replica's last count at the moment of the kill (`boundary`): frames below it were on the replica and
must be accounted for exactly once; frames in the window [boundary - send_queue, boundary +
send_queue) may be missing (lost with their `published` increments, so no counter shows them: only
the gap in `seq` does) or handled twice; everything after the promotion is exactly once again.
Without a failover (the network cut) the ledger is exact.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
import yaml
from redis.crc import key_slot

from common.connection import connect
from common.keys import Keys
from common.stats import StatsField
from tests.conftest import REPO
from tests.ledger import BacklogLedger, LiveBalance, counters, wait_drained
from tests.netns import TEST_ADDRESS, Network, network  # noqa: F401  (network: the fixture)
from testsupport.redis_server import free_port, redis_binary

pytestmark = pytest.mark.slow

KEYS = Keys("fc")
SEND_QUEUE = 8  # producer.send_queue (the default): the frames of one pipeline
READY_BOUND_S = 30.0  # a killed primary or master: services ready again within this
FLOW_BOUND_S = 30.0  # frames flowing again for every camera within this (after the fault)
RETURN_BOUND_S = 30.0  # a worker whose link comes back: heartbeat again within this
CUT_S = 20.0
CLAIM_IDLE_MS = 3000
WEB_TOKEN = "e2e-topologies-token"
WORKER_SETTINGS = {"claim_idle_ms": CLAIM_IDLE_MS, "heartbeat_ttl": 3, "dead_consumer_after": 60}


def _camera(cam: str, mode: str) -> dict:
    return {"id": cam, "source": "pattern", "fps": 8, "max_width": 320, "mode": mode,
            "detection": {"threads": 1}}


class Services:
    """The framecast services as child processes (each ended by PID), one log file each."""

    def __init__(self, tmp: Path, redis_url: str, cameras: list[dict]):
        self.tmp = tmp
        self.redis_url = redis_url
        self.config = tmp / "cameras.yaml"
        self.config.write_text(yaml.safe_dump({"worker": WORKER_SETTINGS,
                                               "web": {"stale_after": 5, "token": WEB_TOKEN},
                                               "cameras": cameras}, sort_keys=False))
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, role: str, *args: str, prefix: tuple[str, ...] = (), shell: str | None = None) -> None:
        """Start `framecast ROLE ARGS` as `name`; `prefix` runs it through another program (ip netns
        exec); `shell` wraps it in `sh -c` with that command before an `exec` of the service."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FRAMECAST_", "REDIS_")) or k == "FRAMECAST_CACHE_DIR"}
        env.update(REDIS_URL=self.redis_url, FRAMECAST_LOG_FORMAT="text")
        argv = [sys.executable, "-m", "framecast", role, "--config", str(self.config), *args]
        if shell is not None:
            argv = ["sh", "-c", f"{shell}; exec \"$@\"", "sh", *argv]
        with (self.tmp / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen([*prefix, *argv], cwd=REPO, env=env, stdout=log,
                                                stderr=subprocess.STDOUT)

    def pids(self, name: str) -> list[psutil.Process]:
        """The process and its descendants (gunicorn's workers, what unshare forked)."""
        try:
            root = psutil.Process(self.procs[name].pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, name: str, timeout: float = 30.0) -> int | None:
        """SIGTERM the service (its innermost framecast process too, when wrapped), SIGKILL what is
        left after `timeout`; returns the exit code."""
        proc = self.procs[name]
        family = self.pids(name)
        for member in family:  # the service itself, not the wrappers (unshare would SIGKILL its child)
            if _cmdline(member)[1:3] == ["-m", "framecast"]:
                _signal(member, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        for member in family:
            _signal(member, signal.SIGKILL)
        psutil.wait_procs(family, timeout=10)
        return proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name, timeout=20)

    def assert_running(self) -> None:
        dead = {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}
        assert not dead, f"services exited: {dead}\n{self.logs()}"

    def logs(self, tail: int = 2500) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-tail:]}"
                         for path in sorted(self.tmp.glob("*.log")))


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.Error:
        pass


def _get(host: str, port: int, path: str, timeout: float = 5.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {WEB_TOKEN}"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _ready(host: str, port: int) -> bool:
    try:
        return _get(host, port, "/readyz")[0] == 200
    except (OSError, ValueError):
        return False


def _wait(condition, timeout: float, what: str, services: Services | None = None, interval: float = 0.2):
    """Poll until `condition()` is truthy (returned); fail naming `what`, with the services' logs,
    and at once if a service exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        if services is not None:
            services.assert_running()
        try:
            value = condition()
        except (redis.exceptions.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s: {what}\n{services.logs() if services else ''}")
        time.sleep(interval)


def _processed(client, cams: list[str]) -> dict[str, int]:
    return {cam: counters(client, KEYS, cam)[StatsField.PROCESSED] for cam in cams}


def _wait_flowing(client, cams: list[str], frames: int, timeout: float, services: Services) -> float:
    """Wait until every camera has `frames` more processed frames than now; returns the seconds."""
    started = time.monotonic()
    base = _wait(lambda: _processed(client, cams), 30, "reading the stats", services)

    def flowing():
        now = _processed(client, cams)
        return all(now[cam] >= base[cam] + frames for cam in cams)

    _wait(flowing, timeout, f"{frames} more processed frames on each of {cams}", services, interval=0.3)
    return time.monotonic() - started


def _replica_count(host: str, port: int, password: str, cams: list[str], cluster: bool = False) -> dict[str, int]:
    """`published` of each camera on a replica, read while it is still a replica (nothing more can
    reach it from a dead primary): the replicated part of what the producer had written."""
    client = redis.Redis(host, port, password=password, socket_timeout=5)
    try:
        if cluster:
            client.execute_command("READONLY")
        assert client.execute_command("ROLE")[0] in (b"slave", "slave")
        out = {cam: int(client.hget(KEYS.stats(cam), StatsField.PUBLISHED) or 0) for cam in cams}
        assert client.execute_command("ROLE")[0] in (b"slave", "slave"), "promoted while being read"
        return out
    finally:
        client.close()


def _check_backlog_across_failover(ledger: BacklogLedger, boundary: int) -> dict:
    """The backlog promise across an async-replication failover (see the module docstring)."""
    window = range(boundary - SEND_QUEUE, boundary + SEND_QUEUE)
    assert len(ledger.runs()) == 1, ledger.summary()
    missing = [seq for _, seq in ledger.missing]
    duplicated = [seq for _, seq in ledger.duplicates]
    assert all(seq in window for seq in missing), f"frames lost outside the failover window {window}: " \
        + ledger.summary()
    assert all(seq in window for seq in duplicated), f"frames handled twice outside {window}: " + ledger.summary()
    assert len(missing) <= SEND_QUEUE and len(duplicated) <= SEND_QUEUE, ledger.summary()
    assert not ledger.unhandled, ledger.summary()
    # A record, its ack and its count are one transaction: the counts match the records exactly.
    assert ledger.stats[StatsField.PROCESSED] + ledger.stats[StatsField.FAILED] == sum(ledger.handled.values()), \
        ledger.summary()
    return {"boundary": boundary, "lost": len(missing), "duplicated": len(duplicated),
            "handled": sum(ledger.handled.values())}


def _check_backlog_exact(ledger: BacklogLedger) -> None:
    assert not ledger.missing and not ledger.duplicates and not ledger.unhandled, ledger.summary()
    assert ledger.stats[StatsField.PROCESSED] + ledger.stats[StatsField.FAILED] == sum(ledger.handled.values()), \
        ledger.summary()
    assert ledger.stats[StatsField.LOST] == 0, ledger.summary()


def _live_evidence(client, live: LiveBalance) -> str:
    """A live camera's balance with what the streams show, for failure messages: the frames still in
    the stream without a record (neither processed nor, with skipped_stale 0, skipped) and the group."""
    frames = BacklogLedger.read(client, KEYS, live.cam)
    return (f"{live.summary()}\n  frames in the stream without a record: {frames.unhandled}\n"
            f"  group: {client.xinfo_groups(KEYS.frames(live.cam))}")


def _stop_producer_and_drain(services: Services, client, cams: list[str]) -> float:
    """Stop the producer cleanly, then wait for the workers to acknowledge every frame left."""
    assert services.stop("producer") == 0, services.logs()
    return wait_drained(client, KEYS, cams, timeout=60)


# ---- 1. Sentinel -----------------------------------------------------------------------------------
def test_sentinel_failover_under_load(redis_sentinel, tmp_path):
    """Producer, two workers and the web tier on `redis+sentinel://`; SIGKILL the primary while a
    backlog and a live camera flow; the services follow the promoted replica and the ledger holds."""
    cams = {"yard": "backlog", "door": "live"}
    services = Services(tmp_path, redis_sentinel.url, [_camera(cam, mode) for cam, mode in cams.items()])
    web_port = free_port()
    client = connect(redis_sentinel.url)
    report: dict = {}
    try:
        services.start("producer", "producer")
        services.start("worker-a", "worker")
        services.start("worker-b", "worker")
        services.start("web", "web", "--host", "127.0.0.1", "--port", str(web_port))
        _wait(lambda: _ready("127.0.0.1", web_port), 90, "/readyz 200 before the fault", services)
        _wait_flowing(client, list(cams), 20, 60, services)
        services.assert_running()

        replica = redis_sentinel.replica.port if redis_sentinel.primary_port() == redis_sentinel.primary.port \
            else redis_sentinel.primary.port
        killed_at = time.monotonic()
        old = redis_sentinel.kill_primary()
        boundary = _replica_count("127.0.0.1", replica, redis_sentinel.password, list(cams))
        promoted_s = redis_sentinel.wait_for_failover(old, timeout=READY_BOUND_S)
        _wait(lambda: _ready("127.0.0.1", web_port), READY_BOUND_S - (time.monotonic() - killed_at),
              f"/readyz 200 within {READY_BOUND_S:.0f} s of the kill", services)
        ready_s = time.monotonic() - killed_at
        flowing_s = _wait_flowing(client, list(cams), 20, FLOW_BOUND_S, services)
        services.assert_running()
        assert redis_sentinel.primary_port() == replica

        drained_s = _stop_producer_and_drain(services, client, list(cams))
        for name in ("worker-a", "worker-b", "web"):
            assert services.stop(name) == 0, services.logs()

        backlog = BacklogLedger.read(client, KEYS, "yard")
        report["yard"] = _check_backlog_across_failover(backlog, boundary["yard"])
        live = LiveBalance.read(client, KEYS, "door")
        # A live pipeline whose frames reached the replica but whose count did not is not re-sent.
        assert 0 <= live.unbalanced <= SEND_QUEUE, _live_evidence(client, live)
        report.update(promoted_s=round(promoted_s, 1), ready_s=round(ready_s, 1),
                      flowing_again_s=round(flowing_s + ready_s, 1), drained_s=round(drained_s, 1),
                      door=live.summary(), yard_ledger=backlog.summary())
        print("sentinel failover:", json.dumps(report))
    finally:
        services.stop_all()
        client.close()


# ---- 2. Redis Cluster ------------------------------------------------------------------------------
def _cameras_on_distinct_masters(cluster, count: int) -> list[tuple[str, int]]:
    """Camera ids whose keys hash to `count` different masters, with each one's master port."""
    chosen: dict[int, str] = {}
    masters = cluster.masters()
    for i in range(1000):
        cam = f"cam{i}"
        port = cluster.master_for_key(KEYS.frames(cam))
        assert key_slot(KEYS.frames(cam).encode()) == key_slot(KEYS.stats(cam).encode())
        chosen.setdefault(port, cam)
        if len(chosen) == min(count, len(masters)):
            break
    assert len(chosen) == count, f"no {count} cameras on distinct masters: {chosen}"
    return [(cam, port) for port, cam in chosen.items()]


def test_cluster_master_killed_under_one_multi_camera_worker(redis_cluster, cluster_url, tmp_path):
    """Three cameras on three masters, ONE worker process serving all of them, a producer and the web
    tier; SIGKILL the backlog camera's master; its replica takes over, every camera flows again, and
    the ledger holds (exactly, for the cameras whose master lived)."""
    placed = _cameras_on_distinct_masters(redis_cluster, 3)
    (failing, failing_master), (steady, _), (live_cam, _) = placed
    modes = {failing: "backlog", steady: "backlog", live_cam: "live"}
    cams = list(modes)
    services = Services(tmp_path, cluster_url, [_camera(cam, mode) for cam, mode in modes.items()])
    web_port = free_port()
    client = connect(cluster_url)
    report: dict = {"cameras": {cam: port for cam, port in placed}}
    try:
        services.start("producer", "producer")
        services.start("worker", "worker")
        services.start("web", "web", "--host", "127.0.0.1", "--port", str(web_port))
        _wait(lambda: _ready("127.0.0.1", web_port), 90, "/readyz 200 before the fault", services)
        _wait_flowing(client, cams, 20, 60, services)
        services.assert_running()

        replica = redis_cluster.replicas_of(failing_master)[0]
        killed_at = time.monotonic()
        redis_cluster.kill(failing_master)
        boundary = _replica_count("127.0.0.1", replica, redis_cluster.password, [failing], cluster=True)
        _wait(lambda: replica in redis_cluster.masters(), READY_BOUND_S, "the replica promoted", services)
        promoted_s = time.monotonic() - killed_at
        _wait(lambda: _ready("127.0.0.1", web_port), READY_BOUND_S - (time.monotonic() - killed_at),
              f"/readyz 200 within {READY_BOUND_S:.0f} s of the kill", services)
        ready_s = time.monotonic() - killed_at
        flowing_s = _wait_flowing(client, cams, 20, FLOW_BOUND_S, services)
        services.assert_running()

        drained_s = _stop_producer_and_drain(services, client, cams)
        for name in ("worker", "web"):
            assert services.stop(name) == 0, services.logs()

        failed_over = BacklogLedger.read(client, KEYS, failing)
        report[failing] = _check_backlog_across_failover(failed_over, boundary[failing])
        untouched = BacklogLedger.read(client, KEYS, steady)
        _check_backlog_exact(untouched)
        live = LiveBalance.read(client, KEYS, live_cam)
        assert live.unbalanced == 0, live.summary()
        report.update(promoted_s=round(promoted_s, 1), ready_s=round(ready_s, 1),
                      flowing_again_s=round(flowing_s + ready_s, 1), drained_s=round(drained_s, 1),
                      steady=untouched.summary(), live=live.summary())
        print("cluster failover:", json.dumps(report))
    finally:
        services.stop_all()
        client.close()
        if redis_cluster.nodes[failing_master].proc is None:  # the session's cluster: back to 3 + 3
            redis_cluster.start_node(failing_master)
            redis_cluster.wait_ok(60)


# ---- 3. Hosts on network namespaces ----------------------------------------------------------------
REDIS_PASSWORD = "netns-pw"
WORKER_HOSTNAME = "worker"


def _worker_heartbeats(web: str) -> list[dict]:
    status, body = _get(web, 8000, "/api/workers")
    assert status == 200, body
    return body["workers"]


def _pending_of(client, cam: str, consumer: str) -> list[str]:
    rows = client.xpending_range(KEYS.frames(cam), "detectors", "-", "+", 1000, consumername=consumer)
    return [row["message_id"].decode() if isinstance(row["message_id"], bytes) else row["message_id"]
            for row in rows]


def test_multi_host_worker_link_cut(network: Network, tmp_path):  # noqa: F811
    """Redis, the producer, two workers and the web tier on five namespace hosts; the two workers
    share a hostname and are both PID 1 (the identity collision of containers); one worker's cable
    is pulled for 20 s: video keeps flowing through the other, which reclaims any frame the cut worker
    held; the cut worker comes back; the ledger is exact."""
    hosts = {name: network.add_host(name, octet) for name, octet in
             (("redis", 1), ("producer", 2), ("worker-a", 3), ("worker-b", 4), ("web", 5))}
    redis_addr, web_addr = hosts["redis"].address, hosts["web"].address
    url = f"redis://:{REDIS_PASSWORD}@{redis_addr}:6379/0"
    cams = {"yard": "backlog", "door": "live"}
    services = Services(tmp_path, url, [_camera(cam, mode) for cam, mode in cams.items()])
    report: dict = {}
    redis_proc = subprocess.Popen(network.command("redis", redis_binary(), "--port", "6379", "--bind", redis_addr,
                                                  "--requirepass", REDIS_PASSWORD, "--save", "", "--appendonly",
                                                  "no", "--dir", str(tmp_path), "--loglevel", "warning"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(redis_addr, 6379, password=REDIS_PASSWORD, socket_timeout=5, socket_connect_timeout=2)
    try:
        _wait(client.ping, 15, f"redis-server on {redis_addr} (from the test's port {TEST_ADDRESS})")
        services.start("producer", "producer", prefix=tuple(network.command("producer")))
        for name in ("worker-a", "worker-b"):
            # Same hostname (UTS namespace), and PID 1 of a PID namespace: what two containers look like.
            services.start(name, "worker", shell=f"hostname {WORKER_HOSTNAME}", prefix=(
                *network.command(name), "unshare", "--uts", "--pid", "--fork", "--kill-child=SIGKILL",
                "--mount-proc"))
        services.start("web", "web", "--host", web_addr, "--port", "8000", prefix=tuple(network.command("web")))
        _wait(lambda: _ready(web_addr, 8000), 90, "/readyz 200 before the fault", services)

        # Two distinct workers, though they share hostname and PID, each with its own address.
        def both_processing():
            workers = _worker_heartbeats(web_addr)
            return workers if len(workers) == 2 and all(w.get("processed") for w in workers) else None

        workers = _wait(both_processing, 60, "two workers in /api/workers, both processing", services)
        assert {w["host"] for w in workers} == {WORKER_HOSTNAME} and {w["pid"] for w in workers} == {1}, workers
        assert len({w["id"] for w in workers}) == 2, workers
        by_ip = {w["ip"]: w["id"] for w in workers}
        assert set(by_ip) == {hosts["worker-a"].address, hosts["worker-b"].address}, workers
        cut_id, other_id = by_ip[hosts["worker-a"].address], by_ip[hosts["worker-b"].address]
        report["workers"] = [{k: w[k] for k in ("id", "host", "pid", "ip")} for w in workers]

        before = _processed(client, list(cams))
        cut_at = time.monotonic()
        network.cut("worker-a")
        time.sleep(1.0)
        # Cut mid-frame, it strands the frame it holds; cut while idle, nothing: it blocks on the
        # arrivals stream, not in the group, and reads the group only once an announcement reached it.
        stranded = {cam: _pending_of(client, cam, cut_id) for cam in cams}
        report["stranded"] = {cam: len(ids) for cam, ids in stranded.items()}
        # The cut worker's heartbeat expires; frames keep flowing through the other one.
        _wait(lambda: [w["id"] for w in _worker_heartbeats(web_addr)] == [other_id], CUT_S - 2,
              "the cut worker's heartbeat to expire", services)
        # Its pending frames are claimed by the other worker after claim_idle_ms.
        _wait(lambda: not any(_pending_of(client, cam, cut_id) for cam in cams), CUT_S - (time.monotonic() - cut_at),
              "the cut worker's pending frames reclaimed", services)
        reclaimed_s = time.monotonic() - cut_at
        remaining = CUT_S - (time.monotonic() - cut_at)
        if remaining > 0:
            time.sleep(remaining)
        during = _processed(client, list(cams))
        assert all(during[cam] > before[cam] + 20 for cam in cams), (before, during)
        assert _ready(web_addr, 8000), "video stopped while one worker was cut off"
        network.restore("worker-a")
        restored_at = time.monotonic()
        _wait(lambda: cut_id in [w["id"] for w in _worker_heartbeats(web_addr)], RETURN_BOUND_S,
              f"the cut worker's heartbeat back within {RETURN_BOUND_S:.0f} s", services)
        back_s = time.monotonic() - restored_at
        back_processed = next(w["processed"] for w in _worker_heartbeats(web_addr) if w["id"] == cut_id)
        _wait(lambda: next((w["processed"] for w in _worker_heartbeats(web_addr) if w["id"] == cut_id), 0)
              > back_processed, RETURN_BOUND_S, "the returned worker processing again", services)
        services.assert_running()

        drained_s = _stop_producer_and_drain(services, client, list(cams))
        for name in ("worker-a", "worker-b", "web"):
            assert services.stop(name) == 0, services.logs()

        backlog = BacklogLedger.read(client, KEYS, "yard")
        _check_backlog_exact(backlog)
        live = LiveBalance.read(client, KEYS, "door")
        assert live.unbalanced == 0, live.summary()
        report.update(stranded_at_cut={cam: len(ids) for cam, ids in stranded.items()},
                      pending_reclaimed_after_s=round(reclaimed_s, 1), heartbeat_back_after_s=round(back_s, 1),
                      processed_during_cut={cam: during[cam] - before[cam] for cam in cams},
                      drained_s=round(drained_s, 1), yard=backlog.summary(), door=live.summary())
        print("netns link cut:", json.dumps(report))
    finally:
        services.stop_all()
        client.close()
        if redis_proc.poll() is None:
            redis_proc.kill()
        redis_proc.wait(timeout=10)
        network.cleanup()
    assert not network.leftovers()
