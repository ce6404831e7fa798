"""The dashboard in a real browser: Debian's headless chromium, driven by Playwright."""

import io
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image  # scikit-image depends on Pillow

from tests.conftest import REPO
from tests.redis_server import free_port
from tests.web.conftest import Publisher

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts"


@pytest.fixture
def web_process(write_config, redis_url):
    """`framecast web` (gunicorn + gevent, as in production) on a free port."""
    port = free_port()
    path = write_config([{"id": "cam1", "name": "Test camera", "source": "pattern"}], redis_url=redis_url)
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "web", "--config", str(path), "--host", "127.0.0.1",
                             "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    import http.client

    deadline = time.monotonic() + 60
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "framecast web did not start"
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=20)


def test_dashboard_shows_moving_video(web_process, redis_client):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with Publisher(redis_client, "cam1", fps=15), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(web_process + "/")
        tile = page.locator('.tile[data-camera="cam1"] img')
        page.wait_for_function("document.querySelector('.tile img').naturalWidth > 0", timeout=20000)
        page.wait_for_function("document.querySelector('.stats').textContent.includes('fps')", timeout=20000)
        first = tile.screenshot()
        time.sleep(1.0)
        second = tile.screenshot()
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        stats = page.locator(".tile .stats").inner_text()
        browser.close()
    assert first != second, "the camera tile did not change in a second: the video is not moving"
    assert "fps" in stats and "workers" in stats
    a = np.asarray(Image.open(io.BytesIO(first)).convert("L"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(second)).convert("L"), dtype=np.int16)
    assert np.abs(a - b).mean() > 1.0
