"""The compose file and Dockerfile, checked without a Docker engine (none runs on this machine)."""

import importlib
import re
import shutil
import subprocess

import pytest
import yaml

from common.config import ENV_VARS, load_config
from framecast.cli import SUBCOMMANDS
from framecast.supervisord import redis_maxmemory
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_docker_compose_accepts_the_file():
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package) is installed by `make test`'s system-deps step"
    for profile in ([], ["--profile", "gpu"]):
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
    known = set(ENV_VARS) | {"FRAMECAST_CONFIG"}
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            assert var in known, f"{name}: {var} is not read by framecast"


def test_producers_and_workers_serve_metrics_on_their_exposed_port(compose):
    for name in ("producer", "worker", "worker-gpu"):
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
    for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
    assert re.search(r"^USER (?!root)\w+", text, re.M), "the image must not run as root"
    assert "common.assets fetch" in text  # the model is fetched at build time, from registries
