"""The dashboard's motion toggle in a real browser (Debian's headless chromium): the tile switches to
the motion view, where the motion boxes are drawn, shows the camera's motion figures, and switches
back; clicking the button does not enlarge the tile."""

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from common.stats import StatsWriter
from tests.web.conftest import KEYS
from tests.web.test_browser import open_page
from tests.web.test_motion_view import BOX, publish_gated

pytestmark = pytest.mark.browser


def yellow_pixels(png: bytes) -> int:
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((image[:, :, 0] > 180) & (image[:, :, 1] > 150) & (image[:, :, 2] < 150)).sum())


def test_the_motion_toggle_shows_the_motion_view(web_process, redis_client):
    from playwright.sync_api import sync_playwright

    server = web_process(cameras=[{"id": "cam1", "source": "pattern", "motion": {"enabled": True}}])
    stats = StatsWriter(redis_client, KEYS, "cam1")
    for field, n in (("inspected_full", 3), ("inspected_regions", 5), ("not_inspected", 92), ("inference_calls", 9)):
        stats.incr(field, n)
    stats.flush()
    stop = threading.Event()
    feeder = threading.Thread(target=publish_gated, args=(redis_client, stop), daemon=True)
    feeder.start()
    try:
        with sync_playwright() as pw:
            browser, page, js_errors, blocked = open_page(pw, 1000, 800)
            page.goto(server.url + "/")
            page.wait_for_function("() => document.querySelector('.tile img').naturalWidth > 0", timeout=20000)
            page.wait_for_function("() => /inspected 8%/.test(document.querySelector('.stats').textContent)",
                                   timeout=20000)
            img = page.locator('.tile[data-camera="cam1"] img')
            plain = yellow_pixels(img.screenshot())
            page.locator('.tile[data-camera="cam1"] .motion-toggle').click()
            assert page.locator("#zoom").is_hidden()
            assert "motion=1" in img.get_attribute("src")
            assert page.locator(".motion-toggle").get_attribute("aria-pressed") == "true"
            deadline, drawn = time.monotonic() + 20, 0
            while time.monotonic() < deadline and drawn < 50:
                time.sleep(0.5)
                drawn = yellow_pixels(img.screenshot())
            assert plain < 5 and drawn >= 50, (plain, drawn, BOX)
            page.locator('.tile[data-camera="cam1"] .motion-toggle').click()
            assert "motion=1" not in img.get_attribute("src")
            assert not js_errors and not blocked, (js_errors, blocked)
            browser.close()
    finally:
        stop.set()
        feeder.join(5)
