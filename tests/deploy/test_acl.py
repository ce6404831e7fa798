"""Redis least privilege (deploy/redis/users.acl, rendered by make-acl.py): the real producer, two
workers and the web tier (gunicorn), each logged in as its own ACL user, run the pipeline end to end
with not one command refused (ACL LOG stays empty, so a code change that needs a new command fails
here); a real `framecast tracker` as the tracker user then tracks the event camera that a
`--no-tracker` worker detects; a worker, then a `framecast encoder` as the worker user, encodes the
live video a viewer announced as the web user asks for, which the web user reads; and each user is
refused, with NOPERM, what its role must not do."""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
import yaml

from common import envelope
from tests.conftest import REPO
from testsupport.redis_server import RedisServer, free_port, redis_binary

pytestmark = pytest.mark.slow

MAKE_ACL = REPO / "deploy" / "redis" / "make-acl.py"
ROLES = ("admin", "producer", "worker", "tracker", "web")
SERVICES = ("producer", "worker", "tracker", "web")
TRACKER = "tracker-acl"  # the tracker's instance id: its lease value and the frames' `tracker` meta
CAMERAS = [  # a live camera and a backlog one (whose group the producer creates and watches)
    # door counts crossings of a line: its tracking owner (a worker) and the events API run as their roles too
    {"id": "door", "source": "pattern", "fps": 10, "max_width": 320, "detection": {"threads": 1},
     "lines": [{"name": "gate", "points": [[0.5, 0.0], [0.5, 1.0]]}]},
    {"id": "yard", "source": "pattern", "fps": 5, "max_width": 320, "mode": "backlog", "detection": {"threads": 1}},
]


def _redis_version() -> str:
    out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    return re.search(r"v=(\d+\.\d+)", out).group(1)


def _get(port: int, path: str, timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _mjpeg_frames(port: int, path: str, count: int, timeout: float = 20.0) -> list[bytes]:
    """The first `count` JPEGs of a multipart/x-mixed-replace response."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200, path
        assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        buffer, jpegs, deadline = b"", [], time.monotonic() + timeout
        while len(jpegs) < count and time.monotonic() < deadline:
            buffer += response.read1(65536)
            while (start := buffer.find(b"\xff\xd8")) >= 0 and (end := buffer.find(b"\xff\xd9", start + 2)) >= 0:
                jpegs.append(buffer[start:end + 2])
                buffer = buffer[end + 2:]
        return jpegs
    finally:
        conn.close()


def _wait(condition, timeout: float, what: str, diagnostics=lambda: ""):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s: {what}\n{diagnostics()}"
        time.sleep(0.3)
    return value


class Services:
    """redis-server with the rendered ACL file and the services as subprocesses, one user each."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.passwords = {role: secrets.token_urlsafe(24) for role in ROLES}
        self.acl = tmp / "users.acl"
        env = {**os.environ, **{f"FRAMECAST_REDIS_{r.upper()}_PASSWORD": p for r, p in self.passwords.items()}}
        subprocess.run([sys.executable, str(MAKE_ACL), "--out", str(self.acl), "--redis-version", _redis_version()],
                       env=env, check=True, capture_output=True, timeout=30)
        self.redis = RedisServer(args=["--aclfile", str(self.acl)])
        self.config = tmp / "cameras.yaml"
        self.config.write_text(yaml.safe_dump({
            "worker": {"claim_idle_ms": 500, "dead_consumer_after": 2, "heartbeat_ttl": 3},
            "web": {"stale_after": 5},
            "cameras": CAMERAS}, sort_keys=False))
        self.web_port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    def url(self, role: str) -> str:
        return f"redis://{role}:{self.passwords[role]}@127.0.0.1:{self.redis.port}/0"

    def client(self, role: str, **kwargs) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis.port, username=role, password=self.passwords[role],
                           **kwargs)

    def start(self, name: str, role: str, *args: str, instance: str | None = None, user: str | None = None) -> None:
        """Run `framecast <role>` logged in as ACL user `user` (by default the role's own)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FRAMECAST_", "REDIS_")) or k == "FRAMECAST_CACHE_DIR"}
        env.update(REDIS_URL=self.url(user or role), FRAMECAST_LOG_FORMAT="text")
        if instance:
            env["FRAMECAST_INSTANCE_ID"] = instance
        with (self.tmp / f"{name}.log").open("wb") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "framecast", role, "--config", str(self.config), *args],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

    def logs(self) -> str:
        """The services' output and the commands Redis refused them, for failure messages."""
        admin = self.client("admin", decode_responses=True)
        try:
            refused = "\n".join(map(str, _denials(admin)))
        finally:
            admin.close()
        return "\n".join([f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                          for path in sorted(self.tmp.glob("*.log"))] + [f"--- ACL LOG\n{refused}"])

    def end(self, name: str) -> int | None:
        """SIGTERM one service and wait for it; its exit code (None when it had already exited)."""
        proc = self.procs[name]
        if proc.poll() is not None:
            return None
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM each service (gunicorn stops its own workers), SIGKILL what outlives 20 s."""
        family = []
        for proc in self.procs.values():
            try:
                family += psutil.Process(proc.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _, alive = psutil.wait_procs(family, timeout=10)
        for child in alive:
            child.kill()
        self.redis.cleanup()


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    cluster = Services(tmp_path_factory.mktemp("acl"))
    cluster.redis.start()  # the default user may PING unauthenticated: that is how it is seen to be up
    try:
        cluster.start("producer", "producer")
        cluster.start("worker-1", "worker")
        cluster.start("worker-2", "worker")
        cluster.start("web", "web", "--host", "127.0.0.1", "--port", str(cluster.web_port))
        yield cluster
    finally:
        cluster.stop()


def _denials(admin: redis.Redis) -> list[dict]:
    return [{k: v for k, v in entry.items() if k in ("username", "reason", "object", "context")}
            for entry in admin.acl_log() if entry["username"] in SERVICES]


def test_services_run_the_pipeline_as_their_own_users_with_nothing_refused(services):
    admin = services.client("admin", decode_responses=True)
    port = services.web_port

    def ready():
        try:
            return _get(port, "/readyz", timeout=5)[0] == 200
        except OSError:
            return False

    _wait(ready, 60, "/readyz 200 (frames annotated for every camera)", services.logs)
    for cam in ("door", "yard"):
        assert admin.xlen(f"fc:annotated:{{{cam}}}") > 0 and admin.xlen(f"fc:detections:{{{cam}}}") > 0

    status, body = _get(port, "/api/cameras")
    assert status == 200 and {c["id"] for c in json.loads(body)["cameras"]} == {"door", "yard"}
    _wait(lambda: len(json.loads(_get(port, "/api/workers")[1])["workers"]) == 2, 30,
          "/api/workers lists both workers", services.logs)
    assert _get(port, "/api/cameras/yard")[0] == 200
    assert _get(port, "/snapshot/door.jpg")[0] == 200
    status, body = _get(port, "/api/cameras/door/detections?limit=5")
    assert status == 200 and 1 <= len(body.splitlines()) <= 5
    assert _get(port, "/metrics")[0] == 200
    assert len(_mjpeg_frames(port, "/video_feed/door", 3)) == 3
    assert len(_mjpeg_frames(port, "/video_feed/yard?raw=1", 2)) == 2

    # A corrupt frame, sent as the producer user, goes to the dead-letter stream through a worker.
    producer = services.client("producer")
    producer.xadd("fc:frames:{yard}", {"f": b"not an envelope"})
    _wait(lambda: admin.xlen("fc:deadletter:{yard}") > 0, 20, "the worker dead-lettered the corrupt frame",
          services.logs)

    # A worker that dies: the other reclaims its pending frames and removes it from the group.
    services.procs["worker-2"].kill()
    services.procs["worker-2"].wait()
    _wait(lambda: len(admin.xinfo_consumers("fc:frames:{door}", "detectors")) == 1, 30,
          "the surviving worker removed the dead consumer", services.logs)
    _wait(lambda: len(json.loads(_get(port, "/api/workers")[1])["workers"]) == 1, 20,
          "the dead worker's heartbeat expired", services.logs)
    assert _get(port, "/readyz")[0] == 200

    for name, proc in services.procs.items():
        assert name == "worker-2" or proc.poll() is None, f"{name} exited\n{services.logs()}"
    assert _denials(admin) == [], services.logs()
    admin.close()


def test_a_tracker_tracks_the_event_camera_as_its_own_user_with_nothing_refused(services):
    admin = services.client("admin", decode_responses=True)
    raw = services.client("admin")
    services.start("worker-3", "worker", "--no-tracker")
    services.start("tracker", "tracker", instance=TRACKER)
    # The workers that track give the door camera up on SIGTERM (they release its lease): only the
    # tracker is left to take it, and only the --no-tracker worker to detect.
    for name in ("worker-1", "worker-2"):
        assert services.end(name) in (0, None), services.logs()
    _wait(lambda: (admin.get("fc:tracker:{door}") or "").startswith(f"{TRACKER}:"), 30,
          "the tracker took the door camera's lease", services.logs)

    def tracked_by_the_tracker():
        entries = raw.xrevrange("fc:annotated:{door}", count=3)
        frames = [envelope.decode(fields[b"f"]) for _, fields in entries]
        return len(frames) == 3 and all(f.meta.get("tracker") == TRACKER for f in frames)

    _wait(tracked_by_the_tracker, 60, "annotated door frames published by the tracker", services.logs)
    record = json.loads(raw.xrevrange("fc:detections:{door}", count=1)[0][1][b"d"])
    assert all("track_id" in d for d in record["detections"])
    assert json.loads(admin.get("fc:trackerstate:{door}"))["owner"] == TRACKER
    assert admin.xlen("fc:untracked:{door}") > 0  # what worker-3 detected, for the tracker
    for name in ("tracker", "worker-3", "producer", "web"):
        assert services.procs[name].poll() is None, f"{name} exited\n{services.logs()}"
    assert _denials(admin) == [], services.logs()
    admin.close()
    raw.close()


def test_the_live_video_is_encoded_as_the_worker_user_and_read_as_the_web_user(services):
    """A viewer announced as the web user (ZADD on the camera's viewers) makes a worker encode the
    door camera (its encoder lease, fenced writes of fragments and init); the web user reads them
    back; a `framecast encoder`, logged in as the worker user too, takes the camera over when that
    worker stops. Nothing is refused."""
    admin = services.client("admin", decode_responses=True)
    web = services.client("web")
    encoder = "encoder-acl"

    def announce():
        web.zadd("fc:viewers:{door}", {"web-acl": time.time() + 30})
        web.zadd("fc:{registry}:watched", {"door": time.time() + 30}, gt=True)
        return True

    announce()
    _wait(lambda: admin.xlen("fc:video:{door}") >= 5, 60, "fragments of the door camera", services.logs)
    init = web.hgetall("fc:videoinit:{door}")
    fragments = [fields for _, fields in web.xrange("fc:video:{door}")]
    assert init[b"init"][4:8] == b"ftyp" and int(init[b"w"]) > 0
    assert fragments and all(f[b"m"][4:8] == b"moof" for f in fragments)
    generation = int(init[b"g"])

    services.start("encoder", "encoder", instance=encoder, user="worker")  # the encoder role's user
    assert services.end("worker-3") in (0, None), services.logs()  # it releases the camera on its way out
    _wait(lambda: announce() and (admin.get("fc:encoder:{door}") or "").startswith(f"{encoder}:"), 30,
          "the encoder took the door camera's video", services.logs)
    _wait(lambda: int(web.hget("fc:videoinit:{door}", "g") or 0) > generation, 30,
          "the encoder's own generation", services.logs)
    web.zrem("fc:viewers:{door}", "web-acl")
    assert services.procs["encoder"].poll() is None, services.logs()
    assert _denials(admin) == [], services.logs()
    admin.close()
    web.close()


# What each role must not do: (user, command). Every one must be refused with NOPERM.
FORBIDDEN_EVERYONE = [("CONFIG", "GET", "*"), ("CONFIG", "SET", "maxmemory", "1"), ("FLUSHALL",), ("FLUSHDB",),
                      ("KEYS", "*"), ("SCAN", "0"), ("ACL", "LIST"), ("ACL", "SETUSER", "x", "on"),
                      ("CLIENT", "LIST"), ("CLIENT", "KILL", "ID", "1"), ("REPLICAOF", "NO", "ONE"),
                      ("EVAL", "return 1", "0"), ("SET", "fc:other", "1"), ("GET", "fc:other"),
                      ("PUBLISH", "fc:events", "x")]
FORBIDDEN = {
    "producer": [
        ("XREADGROUP", "GROUP", "detectors", "me", "STREAMS", "fc:frames:{door}", ">"),
        ("XACK", "fc:frames:{door}", "detectors", "0-1"),
        ("XRANGE", "fc:annotated:{door}", "-", "+"),
        ("XREVRANGE", "fc:detections:{door}", "+", "-", "COUNT", "1"),
        ("XADD", "fc:annotated:{door}", "*", "f", "x"),
        ("DEL", "fc:frames:{door}"),
        ("HSET", "fc:{registry}:worker:w1", "pid", "1"),
        ("ZADD", "fc:{registry}:workers", "1", "w1"),
        ("ZADD", "fc:viewers:{door}", "1", "p1"),
        ("XADD", "fc:video:{door}", "*", "m", "x"),
    ],
    "worker": [
        ("XADD", "fc:frames:{door}", "*", "f", "x"),
        ("XRANGE", "fc:annotated:{door}", "-", "+"),
        ("DEL", "fc:annotated:{door}"),
        ("XTRIM", "fc:frames:{door}", "MAXLEN", "0"),
        ("HSET", "fc:{registry}:producer:p1", "pid", "1"),
        ("ZADD", "fc:{registry}:producers", "1", "p1"),
        ("XGROUP", "DESTROY", "fc:frames:{door}", "detectors"),
        ("ZADD", "fc:viewers:{door}", "1", "w1"),  # only the web tier announces viewers
        ("XRANGE", "fc:video:{door}", "-", "+"),
        ("XTRIM", "fc:video:{door}", "MAXLEN", "0"),
        ("XTRIM", "fc:annotated:{door}", "MAXLEN", "0"),
    ],
    "tracker": [  # it reads the untracked streams and writes its own keys, nothing of the frames' side
        ("XADD", "fc:untracked:{door}", "*", "f", "x"),
        ("XADD", "fc:detected:{door}", "*", "f", "x"),
        ("DEL", "fc:untracked:{door}"),
        ("XTRIM", "fc:untracked:{door}", "MAXLEN", "0"),
        ("XREAD", "STREAMS", "fc:frames:{door}", "0"),
        ("XREADGROUP", "GROUP", "detectors", "t", "STREAMS", "fc:frames:{door}", ">"),
        ("XADD", "fc:frames:{door}", "*", "f", "x"),
        ("XRANGE", "fc:annotated:{door}", "-", "+"),
        ("DEL", "fc:detections:{door}"),
        ("XADD", "fc:deadletter:{door}", "*", "f", "x"),
        ("HINCRBY", "fc:stats:{door}", "processed", "1"),
        ("HGETALL", "fc:stats:{door}"),
        ("HSET", "fc:{registry}:worker:t1", "pid", "1"),
        ("ZADD", "fc:{registry}:workers", "1", "t1"),
        ("EVALSHA", "0" * 40, "1", "fc:frames:{door}"),
        ("SET", "fc:encoder:{door}", "t:1"),  # the tracker user hosts no encoder
        ("XADD", "fc:video:{door}", "*", "m", "x"),
    ],
    "web": [
        ("XADD", "fc:frames:{door}", "*", "f", "x"),
        ("XADD", "fc:annotated:{door}", "*", "f", "x"),
        ("DEL", "fc:stats:{door}"),
        ("HSET", "fc:stats:{door}", "published", "0"),
        ("ZREM", "fc:{registry}:workers", "w1"),
        ("XGROUP", "CREATE", "fc:frames:{door}", "web", "$"),
        ("XREADGROUP", "GROUP", "detectors", "web", "STREAMS", "fc:frames:{door}", ">"),
        ("XRANGE", "fc:deadletter:{door}", "-", "+"),
        ("XADD", "fc:video:{door}", "*", "m", "x"),
        ("HSET", "fc:videoinit:{door}", "init", "x"),
        ("DEL", "fc:videoinit:{door}"),
        ("SET", "fc:encoder:{door}", "web:1"),
        ("DEL", "fc:viewers:{door}"),
    ],
}
CASES = [(role, cmd) for role in SERVICES for cmd in FORBIDDEN[role] + FORBIDDEN_EVERYONE]


@pytest.mark.parametrize(("role", "command"), CASES, ids=[f"{r}-{' '.join(c[:2])}" for r, c in CASES])
def test_each_role_is_refused_what_it_must_not_do(services, role, command):
    client = services.client(role)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()


def test_the_default_user_may_only_ping_and_passwords_are_checked(services):
    anonymous = redis.Redis(host="127.0.0.1", port=services.redis.port)
    assert anonymous.ping()
    for command in [("GET", "fc:stats:{door}"), ("XADD", "fc:frames:{door}", "*", "f", "x"), ("INFO",)]:
        with pytest.raises(redis.exceptions.NoPermissionError):
            anonymous.execute_command(*command)
    anonymous.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=services.redis.port, username="web",
                    password=services.passwords["producer"]).ping()


def test_acl_log_records_a_refused_command(services):
    """The guard above relies on ACL LOG recording refusals from these users: it does."""
    admin, web = services.client("admin", decode_responses=True), services.client("web")
    with pytest.raises(redis.exceptions.NoPermissionError):
        web.execute_command("FLUSHALL")
    assert {"username": "web", "reason": "command", "object": "flushall", "context": "toplevel"} in _denials(admin)
