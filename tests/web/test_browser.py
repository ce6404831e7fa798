"""The dashboard in a real browser: Debian's headless chromium, driven by Playwright."""

import io
import re
import threading
import time
from contextlib import ExitStack

import numpy as np
import pytest
from PIL import Image  # scikit-image depends on Pillow

from common.registry import heartbeat
from common.stats import RateMeter, StatsWriter
from tests.conftest import REPO
from tests.web.conftest import KEYS, Publisher

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def open_page(pw, width: int, height: int):
    """Debian's headless chromium with one page: (browser, page, page errors, console messages about
    the Content-Security-Policy). The page runs under the server's CSP (so a test's predicates are
    functions, not strings to eval); anything the policy blocks shows up in the console."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    js_errors: list[str] = []
    blocked: list[str] = []
    page.on("pageerror", lambda exc: js_errors.append(str(exc)))
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
    return browser, page, js_errors, blocked


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
        rate = RateMeter(self.seq)
        while not self.stop.is_set():
            fps = {self.cam: rate.rate(self.seq)}  # what the producer and the worker each measure
            for kind in ("producer", "worker"):
                heartbeat(self.client, KEYS, kind, f"{kind}-{self.cam}",
                          {"cameras": [self.cam], "host": "test", "fps": fps}, ttl=5)
            self.stop.wait(1.0)


def _viewers(server) -> dict[str, int]:
    text = server.get("/metrics").read().decode()
    found = re.findall(r'^framecast_web_viewers\{camera="([^"]+)"\} ([0-9.]+)$', text, re.M)
    return {cam: int(float(n)) for cam, n in found if float(n)}


def test_dashboard_shows_moving_video(web_process, redis_client):
    from playwright.sync_api import sync_playwright

    # Six cameras: four MJPEG tiles, two refreshed snapshots (browsers allow ~6 connections per host);
    # cam6 publishes nothing.
    cameras = [{"id": "cam1", "name": "Front door", "source": "pattern"}] + [
        {"id": f"cam{i}", "source": "pattern"} for i in range(2, 7)]
    server = web_process(cameras=cameras)
    ARTIFACTS.mkdir(exist_ok=True)
    others = [FakeCluster(redis_client, f"cam{i}", fps=5) for i in range(2, 6)]
    with FakeCluster(redis_client, "cam1", fps=15), ExitStack() as stack, sync_playwright() as pw:
        for publisher in others:
            stack.enter_context(publisher)
        browser, page, js_errors, blocked = open_page(pw, 1280, 900)
        page.goto(server.url + "/")
        tile = page.locator('.tile[data-camera="cam1"] img')
        page.wait_for_function("() => document.querySelector('.tile img').naturalWidth > 0", timeout=20000)
        page.wait_for_function("() => /in [1-9]/.test(document.querySelector('.stats').textContent)", timeout=20000)
        first = tile.screenshot()
        time.sleep(1.0)
        second = tile.screenshot()
        snapshot_tile = page.locator('.tile[data-camera="cam5"] img')
        assert snapshot_tile.get_attribute("data-mode") == "snapshot"
        page.wait_for_function("() => document.querySelector('.tile[data-camera=cam5] img').naturalWidth > 0",
                               timeout=20000)
        page.wait_for_function("() => document.querySelector('.tile[data-camera=cam6]').classList.contains('offline')",
                               timeout=20000)
        snapshot_src = snapshot_tile.get_attribute("src")
        page.wait_for_function(f"() => document.querySelector('.tile[data-camera=cam5] img').src !== '{snapshot_src}'",
                               timeout=20000)  # the snapshot tile refreshes
        viewers = _viewers(server)
        page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        stats = page.locator('.tile[data-camera="cam1"] .stats').inner_text()
        status = page.locator('.tile[data-camera="cam1"] .status').inner_text()
        page.locator('.tile[data-camera="cam1"]').click()  # enlarge: the zoomed view plays the MJPEG feed
        page.wait_for_function("() => document.querySelector('#zoom img').naturalWidth > 0", timeout=20000)
        assert page.locator("#zoom").is_visible()
        assert tile.get_attribute("src") is None  # the tile's feed pauses: one connection per camera
        page.keyboard.press("Escape")
        page.wait_for_function("() => document.querySelector('.tile img').getAttribute('src')", timeout=10000)
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
    assert blocked == []
    assert viewers == {"cam1": 1, "cam2": 1, "cam3": 1, "cam4": 1}  # four MJPEG connections, no more
    assert first != second, "the camera tile did not change in a second: the video is not moving"
    assert "fps" in stats and "workers 1" in stats and status == "live"
    a = np.asarray(Image.open(io.BytesIO(first)).convert("L"), dtype=np.int16)
    b = np.asarray(Image.open(io.BytesIO(second)).convert("L"), dtype=np.int16)
    assert np.abs(a - b).mean() > 1.0
