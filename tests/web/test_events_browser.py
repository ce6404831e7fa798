"""The dashboard's events in a real browser (Debian's headless chromium, Playwright) against `framecast
web` under gunicorn + gevent: the events panel's thumbnail, a clip that plays in a <video>, the
configured line drawn over the picture, live counts; nothing blocked by the Content-Security-Policy."""

import json

import pytest

from tests.web.conftest import KEYS
from tests.web.test_browser import ARTIFACTS, FakeCluster, open_page
from tests.web.test_events_api import LINE, ZONE, Seeder

pytestmark = pytest.mark.browser
SCREENSHOTS = ARTIFACTS  # git-ignored: a test run never rewrites the pictures kept in docs/


def test_events_panel_plays_a_clip_over_an_overlay(web_process, redis_client, tmp_path):
    from playwright.sync_api import sync_playwright

    cameras = [{"id": "cam1", "name": "Front door", "source": "pattern", "lines": [LINE], "zones": [ZONE]}]
    server = web_process(cameras=cameras, events={"dir": str(tmp_path / "events")})
    seed = Seeder(redis_client, tmp_path / "events")
    older = seed.event("cam1", 1_795_000_000.0, zones=["drive"])
    event = seed.event("cam1", 1_795_000_100.0, clip_frames=40, zones=["drive"], lines=["door"])
    redis_client.hset(KEYS.counts("cam1"), mapping={"line:door:in:person": 3, "line:door:out:person": 1,
                                                     "zone:drive:person": 2})
    SCREENSHOTS.mkdir(exist_ok=True)
    with FakeCluster(redis_client, "cam1", fps=10), sync_playwright() as pw:
        browser, page, js_errors, blocked = open_page(pw, 1100, 900)
        page.goto(server.url + "/")
        panel = '.tile[data-camera="cam1"] .events'
        page.wait_for_function(f"() => [...document.querySelectorAll('{panel} img')].length === 2 && "
                               f"[...document.querySelectorAll('{panel} img')].every(i => i.naturalWidth > 0)",
                               timeout=20000)
        buttons = page.locator(f"{panel} button.event")
        assert buttons.nth(0).get_attribute("data-event") == event["id"]  # newest first
        assert buttons.nth(1).get_attribute("data-event") == older["id"]
        assert "door in" in buttons.nth(0).inner_text() and "zones drive" in buttons.nth(0).inner_text()

        # The overlay: the configured line, where it belongs on the picture (half-way down, 10% to 90%).
        page.wait_for_function("() => document.querySelector('.tile .frame img').naturalWidth > 0 && "
                               "document.querySelector('.tile .overlay line.line[data-name=door]')", timeout=20000)
        page.wait_for_function("() => document.querySelector('.tile .overlay').getAttribute('viewBox') === "
                               "'0 0 ' + document.querySelector('.tile .frame img').naturalWidth + ' ' + "
                               "document.querySelector('.tile .frame img').naturalHeight", timeout=10000)
        geometry = page.evaluate("""() => {
            const img = document.querySelector('.tile .frame img').getBoundingClientRect();
            const line = document.querySelector('.tile .overlay line.line').getBoundingClientRect();
            const zone = document.querySelector('.tile .overlay polygon.zone').getBoundingClientRect();
            return {img: [img.left, img.top, img.width, img.height], line: [line.left, line.top, line.width],
                    zone: [zone.top, zone.height]};
        }""")
        (left, top, width, height), (line_left, line_top, line_width) = geometry["img"], geometry["line"]
        # The picture is 4:3 like its frame, so the fractions apply to the img's box (3 px of stroke).
        assert abs(line_left - (left + 0.1 * width)) < 4 and abs(line_width - 0.8 * width) < 6
        assert abs(line_top - (top + 0.5 * height)) < 4
        assert abs(geometry["zone"][0] - (top + 0.6 * height)) < 4
        page.wait_for_function("() => /door in 3 · out 1/.test(document.querySelector('.tile .counts').textContent)",
                               timeout=10000)
        counts = page.locator(".tile .counts").inner_text()
        assert "drive now 2" in counts
        page.screenshot(path=str(SCREENSHOTS / "events-dashboard.png"), full_page=True)

        buttons.nth(0).click()
        assert page.locator("#player").is_visible() and not page.locator("#zoom").is_visible()
        codec = page.evaluate("() => document.querySelector('#player video').canPlayType('video/mp4; codecs=\"avc1.64000d\"')")
        try:
            page.wait_for_function("() => { const v = document.querySelector('#player video');"
                                   " return v.readyState >= 2 && v.currentTime > 0.3; }", timeout=20000)
            played = True
        except Exception:  # noqa: BLE001 - reported below with what the element says
            played = False
        video = page.evaluate("""() => { const v = document.querySelector('#player video');
            return {readyState: v.readyState, currentTime: v.currentTime, duration: v.duration,
                    width: v.videoWidth, height: v.videoHeight, error: v.error && [v.error.code, v.error.message],
                    src: v.currentSrc}; }""")
        page.screenshot(path=str(SCREENSHOTS / "events-player.png"))
        page.keyboard.press("Escape")
        assert not page.locator("#player").is_visible()
        browser.close()
    assert played, f"the clip did not play (canPlayType avc1: {codec!r}): {json.dumps(video)}"
    assert video["width"] == 320 and video["height"] == 240 and 3.5 < video["duration"] < 4.5
    assert f"/api/events/{event['id']}/clip.mp4" in video["src"]
    assert js_errors == [] and blocked == []
