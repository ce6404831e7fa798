"""Secure by default: `framecast web` on a non-loopback address without a token generates one, keeps
it, and shows it once; loopback and `web.auth: none` stay open."""

import re
import stat

from tests.web.conftest import WebProcess
from web.access import is_loopback

ANNOUNCED = re.compile(r"open the dashboard at http://\S+/\?token=([A-Za-z0-9_-]+)")


def test_loopback_addresses():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.4", "camera-host"))


def _config(write_config, redis_url, tmp_path, **web):
    return write_config([{"id": "cam1", "source": "pattern"}], redis_url=redis_url,
                        web={"token_file": str(tmp_path / "state" / "web-token"), **web})


def test_a_network_address_without_a_token_gets_a_generated_one(write_config, redis_url, tmp_path):
    config = _config(write_config, redis_url, tmp_path)
    server = WebProcess(config, "--host", "0.0.0.0")  # the later --host wins over the fixture's loopback
    try:
        assert server.get("/api/cameras").status == 401
        assert server.get("/").status == 401
        assert server.get("/healthz").status == 200
        token_path = tmp_path / "state" / "web-token"
        token = token_path.read_text().strip()
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        assert server.get(f"/api/cameras?token={token}").status == 200
        assert server.get("/api/cameras", headers={"Authorization": f"Bearer {token}"}).status == 200
        page = server.get(f"/?token={token}")
        html = page.read().decode()
        assert page.status == 200
        for asset in re.findall(r'(?:href|src)="(/static/[^"]+)"', html):  # the page passes the token on
            assert server.get(asset.replace("&amp;", "&")).status == 200, asset
        server.restart()  # the same token, kept in the file, and not shown again
        assert server.get(f"/api/cameras?token={token}").status == 200
        assert server.get("/api/cameras").status == 401
    finally:
        second = server.stop()
    assert token not in second
    # `restart` replaced the first process's output: run once more from scratch to see the first start
    token_path.unlink()
    fresh = WebProcess(config, "--host", "0.0.0.0")
    output = fresh.stop()
    announced = ANNOUNCED.findall(output)
    assert len(announced) == 1 and output.count(announced[0]) == 1  # shown once, on stderr, nowhere else
    assert announced[0] == token_path.read_text().strip()


def test_loopback_and_an_explicit_opt_out_stay_open(write_config, redis_url, tmp_path, monkeypatch):
    config = _config(write_config, redis_url, tmp_path)
    loopback = WebProcess(config)  # the fixture's 127.0.0.1
    try:
        assert loopback.get("/api/cameras").status == 200
    finally:
        assert "token" not in loopback.stop()
    monkeypatch.setenv("FRAMECAST_WEB_AUTH", "none")  # the process inherits the environment
    opted_out = WebProcess(config, "--host", "0.0.0.0")
    try:
        assert opted_out.get("/api/cameras").status == 200
    finally:
        opted_out.stop()
    assert not (tmp_path / "state" / "web-token").exists()
