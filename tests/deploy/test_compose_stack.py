"""docker-compose.yml for real, as CI runs it: Debian's docker-compose (v1) builds deploy/Dockerfile and
starts redis, a producer, two workers and the web tier behind a token; MJPEG carries the sample clip's
annotated frames, workers scale 2 -> 3 -> 1, and the video keeps flowing when a worker is SIGKILLed.

Cold (engine, stand-in images and image layers to build) this takes a few minutes; warm, about one.
Leave it out with `pytest -m "not compose"`."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
import time

import cv2
import numpy as np
import pytest

from tests.conftest import REPO
from testsupport.redis_server import free_port

pytestmark = [pytest.mark.compose, pytest.mark.timeout(1500)]

CAM = "sample"  # the one camera of the repository's cameras.yaml, which compose mounts
IMAGE = "framecast:latest"
LOGS = REPO / "artifacts" / "compose"  # the containers' logs of each run, kept after it


class Stack:
    """One compose project on a free loopback port, driven through docker-compose and HTTP."""

    def __init__(self, engine, project: str, port: int, token: str):
        self.engine, self.project, self.port, self.token = engine, project, port, token
        env = {k: v for k, v in engine.env.items() if not k.startswith("FRAMECAST_")}
        # A shell's local Redis URL must not reach the containers (they read FRAMECAST_COMPOSE_REDIS_URL):
        # with it they would look for Redis inside themselves and never get ready.
        self.env = {**env, "REDIS_URL": "redis://localhost:6379/0", "FRAMECAST_PORT": f"127.0.0.1:{port}",
                    "FRAMECAST_WEB_TOKEN": token}

    def compose(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([self.engine.compose, "-p", self.project, "-f", str(REPO / "docker-compose.yml"),
                                 *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"docker-compose {' '.join(args)}:\n{result.stderr[-4000:]}"
        return result.stdout

    def containers(self, service: str) -> list[str]:
        """Running container ids of a service, by replica number."""
        out = self.engine.run("ps", "-q", "--filter", f"label=com.docker.compose.project={self.project}",
                              "--filter", f"label=com.docker.compose.service={service}").stdout.split()
        number = lambda cid: int(self.engine.run(  # noqa: E731
            "inspect", "-f", '{{index .Config.Labels "com.docker.compose.container-number"}}', cid).stdout)
        return sorted(out, key=number)

    def get(self, path: str, auth: bool = True) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"} if auth else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def status(self, path: str) -> int | None:
        """The status of GET path; None while nothing answers (Docker's proxy resets connections until
        the container listens)."""
        try:
            return self.get(path)[0]
        except (OSError, http.client.HTTPException):
            return None

    def worker_hosts(self) -> list[str]:
        status, body = self.get("/api/workers")
        assert status == 200, body
        return sorted(w["host"] for w in json.loads(body)["workers"])

    def wait_for_workers(self, count: int, timeout: float = 120) -> list[str]:
        """Waits until /api/workers lists exactly the running worker containers, `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            hosts, running = self.worker_hosts(), sorted(c[:12] for c in self.containers("worker"))
            if len(hosts) == count and hosts == running:
                return hosts
            assert time.monotonic() < deadline, f"/api/workers {hosts}, running containers {running}"
            time.sleep(1)


class MjpegViewer:
    """One viewer of /video_feed/<cam>, reading parts by their Content-Length."""

    def __init__(self, stack: Stack, cam: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        self.conn.request("GET", f"/video_feed/{cam}?token={stack.token}")
        self.response = self.conn.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
        self.buffer = b""

    def part(self) -> tuple[dict[str, str], bytes]:
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                lines = self.buffer[:end].decode("latin-1").split("\r\n")  # boundary line, then headers
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines if ":" in ln)}
                length = int(headers["content-length"])
                if len(self.buffer) >= end + 4 + length:
                    jpeg = self.buffer[end + 4:end + 4 + length]
                    self.buffer = self.buffer[end + 4 + length:]
                    return headers, jpeg
            chunk = self.response.read1(65536)
            assert chunk, "the MJPEG stream ended"
            self.buffer += chunk

    def frames(self, count: int, timeout: float = 60) -> list[int]:
        """The X-Frame-Seq of the next `count` real frames (no-signal pictures have none), each checked to
        be a whole JPEG of the sample clip."""
        seqs: list[int] = []
        deadline = time.monotonic() + timeout
        while len(seqs) < count:
            assert time.monotonic() < deadline, f"only {len(seqs)} frames in {timeout} s"
            headers, jpeg = self.part()
            assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9", "not a JPEG (SOI/EOI markers)"
            if "x-frame-seq" in headers:
                image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None and image.shape == (576, 768, 3)
                seqs.append(int(headers["x-frame-seq"]))
        return seqs

    def close(self) -> None:
        self.conn.close()


@pytest.fixture(scope="module")
def stack(docker_engine):
    stack = Stack(docker_engine, f"fctest{os.getpid()}", free_port(), secrets.token_urlsafe(16))
    before = docker_engine.run("image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).stdout.strip()
    started = time.monotonic()
    try:
        stack.compose("up", "-d", "--build", "--scale", "worker=2", timeout=1200)
        docker_engine.timings["up_build_s"] = time.monotonic() - started
        yield stack
    finally:
        logs = subprocess.run([docker_engine.compose, "-p", stack.project, "logs", "--no-color", "--tail", "200"],
                              cwd=REPO, env=stack.env, capture_output=True, text=True, timeout=120)
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{stack.project}.log").write_text(logs.stdout + logs.stderr)
        stack.compose("down", "-v", "--remove-orphans", "-t", "10", timeout=300)
        # A rebuilt image leaves the previous one dangling: remove that one, so repeated runs do not pile
        # up images (their big layers are shared; only the small code layers differ).
        after = docker_engine.run("image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).stdout.strip()
        if before and before != after:
            docker_engine.run("image", "rm", before, check=False)
        print(f"compose timings: {docker_engine.timings}")


def test_web_is_ready_behind_its_token_with_two_workers(stack):
    started = time.monotonic()
    while (status := stack.status("/readyz")) != 200:
        assert time.monotonic() < started + 240, f"/readyz: {status} after 240 s"
        time.sleep(1)
    stack.engine.timings["ready_s"] = time.monotonic() - started
    assert stack.get("/readyz", auth=False)[0] == 401
    assert stack.get("/healthz", auth=False)[0] == 200
    assert len(stack.wait_for_workers(2)) == 2
    # The healthcheck sends the token too, so Docker calls the web container healthy.
    (web,) = stack.containers("web")
    deadline = time.monotonic() + 90
    while (health := stack.engine.run("inspect", "-f", "{{.State.Health.Status}}", web).stdout.strip()) != "healthy":
        assert health == "starting" and time.monotonic() < deadline, health
        time.sleep(2)


def test_containers_use_the_compose_redis_and_not_the_shell_one(stack):
    (worker, *_) = stack.containers("worker")
    env = stack.engine.run("inspect", "-f", "{{json .Config.Env}}", worker).stdout
    assert "REDIS_URL=redis://redis:6379/0" in json.loads(env)


def test_workers_can_write_to_the_events_volume(stack):
    (worker, *_) = stack.containers("worker")
    check = "import os, sys; sys.exit(not os.access(os.environ['FRAMECAST_EVENTS_DIR'], os.W_OK))"
    assert stack.engine.run("exec", worker, "python", "-c", check, check=False).returncode == 0


def test_mjpeg_carries_the_annotated_sample_clip(stack):
    viewer = MjpegViewer(stack, CAM)
    try:
        seqs = viewer.frames(5)
    finally:
        viewer.close()
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_workers_scale_and_video_survives_a_killed_worker(stack):
    stack.compose("up", "-d", "--no-deps", "--no-recreate", "--no-build", "--scale", "worker=3", "worker")
    assert len(stack.wait_for_workers(3)) == 3

    viewer = MjpegViewer(stack, CAM)
    try:
        last = viewer.frames(3)[-1]
        victim = stack.containers("worker")[-1]  # the newest: scaling down removes it, not a live one
        stack.engine.run("kill", "-s", "KILL", victim)
        # The same viewer keeps getting new frames from the other two workers. (When the victim owned
        # the camera's event tracking, another worker takes over and may first replay a few frames.)
        after = viewer.frames(20)
    finally:
        viewer.close()
    assert max(after) > last
    assert victim not in stack.containers("worker")
    assert len(stack.wait_for_workers(2, timeout=60)) == 2  # its heartbeat expired

    stack.compose("up", "-d", "--no-deps", "--no-recreate", "--no-build", "--scale", "worker=1", "worker")
    assert len(stack.wait_for_workers(1)) == 1
    assert stack.get("/readyz")[0] == 200
