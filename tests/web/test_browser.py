"""The dashboard in a real browser: Debian's headless chromium, driven by Playwright."""

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image  # scikit-image depends on Pillow

from common.registry import heartbeat
from common.stats import StatsWriter
from tests.conftest import REPO
from tests.web.conftest import KEYS, Publisher

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


class FakeCluster(Publisher):
    """Frames at `fps` plus what a producer and a worker would report: counters and a heartbeat."""

    def _run(self):
        stats = StatsWriter(self.client, KEYS, self.cam, interval=0.5)
        beat = threading.Thread(target=self._beat, daemon=True)
        beat.start()
        while not self.stop.is_set():
            started = time.monotonic()
            self.publish_one()
            stats.incr("published")
            stats.incr("processed")
            stats.gauge("latency_ms", 40 + self.seq % 7)
            stats.gauge("infer_ms", 21.5)
            stats.maybe_flush()
            self.stop.wait(max(0.0, 1 / self.fps - (time.monotonic() - started)))

    def _beat(self):
        while not self.stop.is_set():
            heartbeat(self.client, KEYS, "worker", "worker-1", {"cameras": [self.cam], "host": "test"}, ttl=5)
            self.stop.wait(1.0)


def test_dashboard_shows_moving_video(web_process, redis_client):
    from playwright.sync_api import sync_playwright

    server = web_process()
    ARTIFACTS.mkdir(exist_ok=True)
    with FakeCluster(redis_client, "cam1", fps=15), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        js_errors = []
        page.on("pageerror", lambda exc: js_errors.append(str(exc)))
        page.goto(server.url + "/")
        tile = page.locator('.tile[data-camera="cam1"] img')
        page.wait_for_function("document.querySelector('.tile img').naturalWidth > 0", timeout=20000)
        page.wait_for_function("/in \\d/.test(document.querySelector('.stats').textContent)", timeout=20000)
        first = tile.screenshot()
        time.sleep(1.0)
        second = tile.screenshot()
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
        stats = page.locator(".tile .stats").inner_text()
        status = page.locator(".tile .status").inner_text()
        page.locator('.tile[data-camera="cam1"]').click()  # enlarge: the zoomed view plays the MJPEG feed
        page.wait_for_function("document.querySelector('#zoom img').naturalWidth > 0", timeout=20000)
        assert page.locator("#zoom").is_visible()
        assert tile.get_attribute("src") is None  # the tile's feed pauses: one connection per camera
        page.keyboard.press("Escape")
        page.wait_for_function("document.querySelector('.tile img').getAttribute('src')", timeout=10000)
        assert not page.locator("#zoom").is_visible()
        # The web server restarts under the page: the tile's watchdog reconnects and the video moves again.
        server.restart()
        deadline = time.monotonic() + 40
        moving_again = False
        while not moving_again and time.monotonic() < deadline:
            before = tile.screenshot()
            time.sleep(1.0)
            moving_again = before != tile.screenshot() and tile.evaluate("img => img.naturalWidth > 0")
        debug = tile.evaluate("img => JSON.stringify({src: img.src, ds: img.dataset, w: img.naturalWidth, c: img.complete})")
        debug += page.locator("#summary").inner_text()
        browser.close()
    assert moving_again, "the tile did not recover after the web server restarted: " + debug
    assert js_errors == []
    assert first != second, "the camera tile did not change in a second: the video is not moving"
    assert "fps" in stats and "workers 1" in stats and status == "live"
    a = np.asarray(Image.open(io.BytesIO(first)).convert("L"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(second)).convert("L"), dtype=np.int16)
    assert np.abs(a - b).mean() > 1.0
