"""Permanent Redis errors at start-up (#12 item 7) and the TLS settings (item 9), against real
redis-servers: one with a password, and TLS ones with certificates made here by the openssl CLI."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from common.config import load_config
from common.connection import ThrottledLog, connect, connect_to, permanent_reason
from common.keys import Keys
from common.registry import live_members
from tests.conftest import REPO
from testsupport.redis_server import RedisServer, free_port, redis_binary

PASSWORD = "s3cr3t-pw"
WRONG = "not-the-pw-4711"
SERVICES = [("producer",), ("worker",), ("web", "--host", "127.0.0.1", "--port", str(free_port()))]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN={name}", cwd=directory)


def _signed(directory: Path, name: str, ca: str, san: str | None = None) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=directory)
    extra = []
    if san:
        (directory / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        extra = ["-extfile", f"{name}.ext"]
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", *extra, cwd=directory)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A private CA with a server certificate for 127.0.0.1 and a client certificate."""
    directory = tmp_path_factory.mktemp("tls")
    _ca(directory, "ca")
    _signed(directory, "server", "ca", san="IP:127.0.0.1,DNS:localhost")
    _signed(directory, "client", "ca")
    return directory


class TlsRedis:
    """redis-server on a TLS port only (Debian's 7.0 is built with TLS)."""

    def __init__(self, certs: Path, auth_clients: bool):
        self.certs = certs
        self.port = free_port()
        self.url = f"rediss://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--tls-cert-file", str(certs / "server.crt"),
             "--tls-key-file", str(certs / "server.key"), "--tls-ca-cert-file", str(certs / "ca.crt"),
             "--tls-auth-clients", "yes" if auth_clients else "no", "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        trusted = self.client(cert=auth_clients)
        deadline = time.monotonic() + 10
        while True:
            try:
                trusted.ping()
                break
            except redis.exceptions.ConnectionError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "TLS redis-server did not start"
                time.sleep(0.1)
        trusted.close()

    def client(self, cert: bool = False) -> redis.Redis:
        files = {"ssl_certfile": str(self.certs / "client.crt"), "ssl_keyfile": str(self.certs / "client.key")}
        return redis.Redis.from_url(self.url, ssl_ca_certs=str(self.certs / "ca.crt"), **(files if cert else {}))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def tls_redis(certs):
    servers = []

    def _start(auth_clients: bool = False) -> TlsRedis:
        servers.append(TlsRedis(certs, auth_clients))
        return servers[-1]

    yield _start
    for server in servers:
        server.stop()


@pytest.fixture
def password_redis():
    server = RedisServer(password=PASSWORD).start()
    yield server
    server.cleanup()


def _config(write_config, redis_url: str, **settings) -> Path:
    return write_config([{"id": "cam1", "source": "pattern", "fps": 5}], redis_url=redis_url, **settings)


def _run(service: tuple[str, ...], config: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "framecast", *service, "--config", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env={**_base_env(), **(env or {})})


def _base_env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_") or k == "FRAMECAST_CACHE_DIR"}


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("framecast: error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s[0])
@pytest.mark.parametrize("password", [WRONG, None], ids=["wrong-password", "no-password"])
def test_a_refused_password_exits_3_with_one_line(service, password, password_redis, write_config):
    auth = f":{password}@" if password else ""
    config = _config(write_config, f"redis://{auth}127.0.0.1:{password_redis.port}/0")
    result = _run(service, config)
    assert result.returncode == 3, result.stderr
    line = _one_line_error(result)
    assert "credentials" in line and "REDIS_URL" in line
    assert WRONG not in result.stderr + result.stdout


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s[0])
def test_an_untrusted_certificate_exits_3(service, tls_redis, write_config):
    server = tls_redis()
    result = _run(service, _config(write_config, server.url))
    assert result.returncode == 3, result.stderr
    line = _one_line_error(result)
    assert "certificate" in line and "redis_tls.ca_file" in line


def test_a_producer_waits_for_a_redis_that_is_down(write_config):
    """Down is not permanent: the producer waits, then works once Redis is there."""
    server = RedisServer()
    config = _config(write_config, server.url)
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(config)], cwd=REPO,
                            env=_base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.communicate()[1]
        server.start()
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                live_members(client, Keys(), "producer") and client.xlen(Keys().frames("cam1")) > 0):
            time.sleep(0.2)
        assert live_members(client, Keys(), "producer")
        assert client.xlen(Keys().frames("cam1")) > 0
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
        server.cleanup()
    assert proc.returncode == 0, err
    assert "waiting for Redis" in err


def test_the_ca_setting_makes_a_private_ca_trusted(tls_redis, write_config, certs):
    server = tls_redis()
    config = _config(write_config, server.url)
    settings = load_config(config, env={"FRAMECAST_REDIS_CA_FILE": str(certs / "ca.crt")})
    assert connect_to(settings).ping()
    # ... and the services use it: a producer publishes over TLS
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(config)], cwd=REPO,
                            env={**_base_env(), "FRAMECAST_REDIS_CA_FILE": str(certs / "ca.crt")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = server.client()
    try:
        deadline = time.monotonic() + 30
        while client.xlen(Keys().frames("cam1")) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert client.xlen(Keys().frames("cam1")) >= 3, proc.stderr.read() if proc.poll() is not None else ""
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_client_certificates_from_the_settings(tls_redis, write_config, certs):
    server = tls_redis(auth_clients=True)
    config = _config(write_config, server.url, redis_tls={"ca_file": str(certs / "ca.crt")})
    without = _run(("producer",), config)
    assert without.returncode == 3, without.stderr
    assert "certificate" in _one_line_error(without)
    config = _config(write_config, server.url, redis_tls={
        "ca_file": str(certs / "ca.crt"), "cert_file": str(certs / "client.crt"), "key_file": str(certs / "client.key")})
    assert connect_to(load_config(config, env={})).ping()


def test_tls_settings_reach_sentinel_clients_and_need_a_tls_url(write_config, certs, tmp_path):
    config = _config(write_config, "rediss+sentinel://127.0.0.1:1/main", redis_tls={"ca_file": str(certs / "ca.crt")})
    client = connect_to(load_config(config, env={}))  # lazy: no connection is made
    assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == str(certs / "ca.crt")
    plain = _config(write_config, "redis://127.0.0.1:1/0", redis_tls={"ca_file": str(certs / "ca.crt")})
    with pytest.raises(Exception, match="rediss://"):
        load_config(plain, env={})
    missing = _config(write_config, "rediss://127.0.0.1:1/0", redis_tls={"ca_file": str(tmp_path / "nope.crt")})
    with pytest.raises(Exception, match="redis_tls.ca_file"):
        load_config(missing, env={})


def test_permanent_reason_tells_refusals_from_outages(password_redis):
    with pytest.raises(redis.exceptions.RedisError) as refused:
        connect(f"redis://:{WRONG}@127.0.0.1:{password_redis.port}/0", retries=0).ping()
    assert "credentials" in permanent_reason(refused.value)
    with pytest.raises(redis.exceptions.ConnectionError) as down:
        connect(f"redis://127.0.0.1:{free_port()}/0", retries=0).ping()
    assert permanent_reason(down.value) is None


def test_throttled_log_allows_one_line_per_subject_per_interval():
    throttle = ThrottledLog(interval=0.3)
    assert throttle.due("a") and throttle.due("b")
    assert not throttle.due("a") and not throttle.due("b")
    time.sleep(0.35)
    assert throttle.due("a")


def test_a_password_changed_during_a_run_is_logged_at_a_bounded_rate(write_config, own_redis):
    """Not fatal during a run (the operator may be rotating it), but not a single line either: the
    producer keeps retrying and says why once a minute."""
    config = _config(write_config, own_redis.url)
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(config),
                             "--log-format", "text"], cwd=REPO, env=_base_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    admin = redis.Redis.from_url(own_redis.url)
    try:
        deadline = time.monotonic() + 30
        while not live_members(admin, Keys(), "producer") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live_members(admin, Keys(), "producer")
        admin.config_set("requirepass", PASSWORD)
        admin = redis.Redis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{own_redis.port}/0")
        admin.client_kill_filter(_type="normal", skipme=True)  # its connections log in again, and fail
        time.sleep(8)  # about four heartbeats, each refused
        assert proc.poll() is None
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    refused = [line for line in err.splitlines() if "Redis refuses this producer" in line]
    assert len(refused) == 1, err
    assert "credentials" in refused[0] and PASSWORD not in err
