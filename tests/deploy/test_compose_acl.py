"""The compose override that runs the stack as framecast's Redis users, checked with the real
docker-compose (`config`) and a real redis-server loading the rendered ACL file. The roles themselves
are proven with the real services in test_acl.py."""

import os
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from tests.conftest import REPO
from testsupport.redis_server import RedisServer

OVERRIDE = REPO / "deploy" / "redis" / "docker-compose.acl.yml"
ROLE_OF = {"producer": "producer", "worker": "worker", "worker-busy": "worker", "worker-gpu": "worker",
           "web": "web"}


def _render(tmp_path):
    env_file, acl = tmp_path / "passwords.env", tmp_path / "users.acl"
    subprocess.run([sys.executable, str(REPO / "deploy" / "redis" / "make-acl.py"), "--out", str(acl),
                    "--env-file", str(env_file), "--acl-mode", "0644", "--redis-version", "7.0"],
                   check=True, capture_output=True, timeout=60)
    passwords = dict(line.split("=", 1) for line in env_file.read_text().split() if "=" in line)
    return acl, env_file, passwords


def _config(env_file=None, extra_env=None):
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package) is installed by `make test`'s system-deps step"
    args = [binary, "-f", str(REPO / "docker-compose.yml"), "-f", str(OVERRIDE)]
    if env_file:
        args += ["--env-file", str(env_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_REDIS_")}
    return subprocess.run([*args, "--profile", "busy", "--profile", "gpu", "config"], capture_output=True,
                          text=True, cwd=REPO, timeout=60, env={**env, **(extra_env or {})})


def test_every_service_logs_in_as_its_role(tmp_path):
    _acl, env_file, passwords = _render(tmp_path)
    result = _config(env_file)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for service, role in ROLE_OF.items():
        url = urlsplit(services[service]["environment"]["REDIS_URL"])
        assert (url.username, url.hostname) == (role, "redis"), service
        assert url.password == passwords[f"FRAMECAST_REDIS_{role.upper()}_PASSWORD"], service
    command = services["redis"]["command"]
    assert command[command.index("--aclfile") + 1] == "/etc/redis/users.acl"
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in services["redis"]["volumes"]]
    assert any(m.startswith(str(REPO / "run" / "redis" / "users.acl")) and "/etc/redis/users.acl" in m
               for m in mounts), mounts


def test_without_the_passwords_compose_stops_naming_what_to_do():
    result = _config()
    assert result.returncode != 0
    assert "FRAMECAST_REDIS_" in result.stderr and "make-acl.py" in result.stderr


@pytest.mark.parametrize("role", ["producer", "worker", "web"])
def test_the_rendered_file_loads_and_admits_each_role(tmp_path, role):
    acl, _env, passwords = _render(tmp_path)
    server = RedisServer(args=["--aclfile", str(acl)]).start()
    try:
        client = redis.Redis(host="127.0.0.1", port=server.port, username=role,
                             password=passwords[f"FRAMECAST_REDIS_{role.upper()}_PASSWORD"])
        assert client.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command("FLUSHALL")
        client.close()
    finally:
        server.cleanup()
