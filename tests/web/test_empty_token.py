"""An empty token is not "no authentication": `framecast web` on a network address, seen from
another host (network namespaces, tests/netns.py), never serves without a token.

`web.token: ""` (or only whitespace, in the file or in FRAMECAST_WEB_TOKEN) is a config error, exit 2,
before anything listens; an empty FRAMECAST_WEB_TOKEN is an unset variable (the loader's rule for
every variable), so a token is generated; a `web.token_file` that holds no token is a config error
too. Redis, the web tier and the viewer are three hosts: 10.77.0.1, .2 and .3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import redis
import yaml

from tests.conftest import REPO
from tests.netns import Network, network  # noqa: F401  (network: the fixture)
from testsupport.redis_server import redis_binary

pytestmark = pytest.mark.slow

WEB_PORT = 8000
GUARDED = ("/api/cameras", "/", "/api/events", "/api/events/feed", "/video_feed/cam1", "/snapshot/cam1.jpg",
           "/api/cameras/cam1/detections")

# Runs on the viewer host: GET each URL, print [status, ...] as JSON (-1: the connection failed).
CLIENT = """
import http.client, json, sys
out = []
for path in sys.argv[2:]:
    conn = http.client.HTTPConnection(sys.argv[1], 8000, timeout=5)
    try:
        conn.request("GET", path)
        out.append(conn.getresponse().status)
    except OSError:
        out.append(-1)
    finally:
        conn.close()
print(json.dumps(out))
"""


class Site:
    """Redis on one namespace host, `framecast web` on another, requests from a third."""

    def __init__(self, net: Network, tmp_path):
        self.net, self.tmp = net, tmp_path
        self.redis_host = net.add_host("redis", 1)
        self.web_host = net.add_host("web", 2)
        net.add_host("viewer", 3)
        self.redis = subprocess.Popen(
            net.command("redis", redis_binary(), "--port", "6379", "--bind", self.redis_host.address, "--save", "",
                        "--appendonly", "no", "--dir", str(tmp_path), "--protected-mode", "no",
                        "--loglevel", "warning"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(self.redis_host.address, 6379, socket_timeout=5, socket_connect_timeout=2)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.exceptions.ConnectionError:
                    assert time.monotonic() < deadline and self.redis.poll() is None, "redis-server did not start"
                    time.sleep(0.1)
        except BaseException:  # the fixture never gets the Site to close: end the server here
            self.redis.kill()
            self.redis.wait(10)
            raise
        finally:
            client.close()
        self.web: subprocess.Popen | None = None

    def config(self, **web) -> str:
        path = self.tmp / "cameras.yaml"
        path.write_text(yaml.safe_dump({
            "redis_url": f"redis://{self.redis_host.address}:6379/0",
            "web": {"token_file": str(self.tmp / "state" / "web-token"), **web},
            "cameras": [{"id": "cam1", "source": "pattern"}]}, sort_keys=False))
        return str(path)

    def start_web(self, config: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("FRAMECAST_", "REDIS_")) or k == "FRAMECAST_CACHE_DIR"}
        self.web = subprocess.Popen(
            self.net.command("web", sys.executable, "-m", "framecast", "web", "--config", config,
                             "--host", self.web_host.address, "--port", str(WEB_PORT)),
            cwd=REPO, env={**clean, "FRAMECAST_LOG_FORMAT": "text", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        return self.web

    def run_web(self, config: str, env: dict[str, str] | None = None) -> tuple[int, str]:
        """`framecast web` that is expected to exit before it serves: its exit code and output. One
        that serves instead fails the test with what the viewer got from it."""
        proc = self.start_web(config, env)
        deadline = time.monotonic() + 60
        try:
            while proc.poll() is None:
                if self.get("/healthz") == [200]:
                    pytest.fail(f"framecast web served on {self.web_host.address}: "
                                f"{dict(zip(GUARDED, self.get(*GUARDED), strict=True))}")
                assert time.monotonic() < deadline, "framecast web neither served nor exited"
                time.sleep(0.3)
        finally:
            output = self.stop_web()
        return proc.returncode, output

    def wait_serving(self) -> None:
        deadline = time.monotonic() + 60
        while self.get("/healthz") != [200]:
            assert self.web.poll() is None, "framecast web exited: " + self.web.stdout.read().decode()
            assert time.monotonic() < deadline, "framecast web did not start"
            time.sleep(0.3)

    def get(self, *paths: str) -> list[int]:
        """Status of each GET, sent from the viewer host to the web host's network address."""
        result = subprocess.run(self.net.command("viewer", sys.executable, "-c", CLIENT, self.web_host.address,
                                                 *paths), capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def stop_web(self) -> str:
        proc, self.web = self.web, None
        if proc is None:
            return ""
        try:
            family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        if proc.poll() is None:
            proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        for member in family:  # gunicorn's processes, should any outlive their master
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)
        return (out or b"").decode(errors="replace")

    def close(self) -> None:
        self.stop_web()
        self.redis.terminate()
        try:
            self.redis.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.redis.kill()
            self.redis.wait()


@pytest.fixture
def site(network, tmp_path):  # noqa: F811
    built = Site(network, tmp_path)
    try:
        yield built
    finally:
        built.close()
        network.cleanup()
        assert not network.leftovers()


@pytest.mark.parametrize("where", ["file, empty", "file, whitespace", "env, whitespace"])
def test_an_empty_token_is_a_config_error(site, where):
    """`web.token: ""` used to mean no authentication at all on the network address."""
    blank = "" if where.endswith("empty") else " \t "
    config = site.config(token=blank) if where.startswith("file") else site.config()
    env = {"FRAMECAST_WEB_TOKEN": blank} if where.startswith("env") else None
    code, output = site.run_web(config, env)
    assert code == 2, output
    assert "config error" in output and "web.token: is empty" in output
    assert site.get(*GUARDED, "/healthz") == [-1] * (len(GUARDED) + 1)  # nothing listened, ever
    assert not (site.tmp / "state" / "web-token").exists()  # and no token was made up instead


def test_an_empty_token_variable_is_unset_so_a_token_is_generated(site):
    site.start_web(site.config(), env={"FRAMECAST_WEB_TOKEN": ""})
    site.wait_serving()
    assert site.get(*GUARDED) == [401] * len(GUARDED)
    assert site.get(*(f"{path}?token=" for path in GUARDED)) == [401] * len(GUARDED)  # an empty token sent
    token = (site.tmp / "state" / "web-token").read_text().strip()
    assert len(token) >= 32
    assert site.get("/api/cameras?token=" + token, "/api/events?token=" + token) == [200, 200]
    assert site.get("/api/cameras?token=" + token[:-1]) == [401]
    output = site.stop_web()
    assert output.count(token) == 1  # shown once, at its creation


@pytest.mark.parametrize("content", ["", "  \n\n"])
def test_a_token_file_without_a_token_is_a_config_error(site, content):
    path = site.tmp / "state" / "web-token"
    path.parent.mkdir(mode=0o700)
    path.write_text(content)
    code, output = site.run_web(site.config())
    assert code == 2, output
    assert f"web.token_file {path} holds no token" in output and "File exists" not in output
    assert site.get("/api/cameras", "/healthz") == [-1, -1]
    assert path.read_text() == content  # not overwritten: whoever made it meant a token


def test_a_set_token_guards_every_endpoint_from_another_host(site):
    site.start_web(site.config(token="  padded-token-0123456789  "))  # the padding is dropped
    site.wait_serving()
    assert site.get(*GUARDED) == [401] * len(GUARDED)
    assert site.get("/api/cameras?token=padded-token-0123456789") == [200]
    site.stop_web()
    assert not (site.tmp / "state" / "web-token").exists()
