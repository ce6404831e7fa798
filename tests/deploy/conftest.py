"""A Docker engine for the compose tests: the one already running, or Debian's docker.io installed
and started here (root only), with local stand-ins for the base images Docker Hub would give."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO

# Debian packages the compose tests need, by the program each one provides.
PACKAGES = {"dockerd": "docker.io", "docker-compose": "docker-compose", "debootstrap": "debootstrap"}
STANDIN_SCRIPT = REPO / "deploy" / "standin-images.sh"


def _which(program: str) -> str | None:
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")


def _docker_cli() -> str | None:
    # Debian's client matches its engine; a newer one elsewhere on PATH insists on BuildKit for `build`.
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else _which("docker")


@dataclass
class DockerEngine:
    docker: str
    compose: str
    env: dict[str, str]
    log: Path
    started: subprocess.Popen | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """`docker ARGS`; a failure shows its output."""
        result = subprocess.run([self.docker, *args], env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        assert not check or result.returncode == 0, f"docker {' '.join(args)}: {result.stderr or result.stdout}"
        return result

    def answers(self) -> bool:
        try:
            return subprocess.run([self.docker, "info"], env=self.env, capture_output=True,
                                  timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False


def _install(missing: list[str]) -> None:
    """apt-get install the packages; `apt-get update` first only when the lists do not have them."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode == 0:
        return
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=True)
    result = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"apt-get install {' '.join(missing)}: {result.stderr[-2000:]}"


def _start_dockerd(engine: DockerEngine) -> None:
    """dockerd in the background, logging to engine.log; returns once the engine answers."""
    with engine.log.open("ab") as log:
        engine.started = subprocess.Popen([_which("dockerd")], stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
    deadline = time.monotonic() + 90
    while not engine.answers():
        if engine.started.poll() is not None or time.monotonic() > deadline:
            tail = engine.log.read_text(errors="replace")[-3000:]
            _stop_dockerd(engine.started)
            pytest.fail(f"dockerd did not come up (log {engine.log}):\n{tail}")
        time.sleep(0.5)


def _stop_dockerd(proc: subprocess.Popen) -> None:
    """SIGTERM the dockerd this session started (it stops its containerd); SIGKILL what outlives 60 s."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory):
    """A Docker engine with docker-compose and the base images of docker-compose.yml; skips only when
    there is none and this user cannot install or start one. Module-scoped: a dockerd started here
    stops as soon as the module that needed it is done."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env.update(DOCKER_BUILDKIT="0", COMPOSE_DOCKER_CLI_BUILD="0")  # the legacy builder: no Docker Hub frontend
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    root = os.geteuid() == 0
    missing = [package for program, package in PACKAGES.items() if not _which(program)]
    if missing and root and _which("apt-get"):
        started = time.monotonic()
        _install(missing)
        install_s = time.monotonic() - started
    else:
        install_s = 0.0
    cli, compose = _docker_cli(), _which("docker-compose")
    if not cli or not compose:
        pytest.skip("no docker / docker-compose, and installing Debian's docker.io needs root and apt-get")
    engine = DockerEngine(cli, compose, env, log, timings={"install_s": install_s})
    if not engine.answers():
        if not root or not _which("dockerd"):
            pytest.skip("no Docker engine answers, and starting dockerd needs root")
        started = time.monotonic()
        _start_dockerd(engine)
        engine.timings["dockerd_s"] = time.monotonic() - started
    try:
        started = time.monotonic()
        result = subprocess.run(["bash", str(STANDIN_SCRIPT)], env={**env, "DOCKER": cli}, capture_output=True,
                                text=True, timeout=900)
        engine.timings["standin_s"] = time.monotonic() - started
        if result.returncode != 0 and not root:
            pytest.skip(f"base images missing and no root to build stand-ins: {result.stderr[-500:]}")
        assert result.returncode == 0, f"{STANDIN_SCRIPT.name}:\n{result.stderr[-3000:]}"
        yield engine
    finally:
        if engine.started is not None:
            _stop_dockerd(engine.started)
