"""The dashboard with 100 cameras in a real browser (Debian's headless chromium, Playwright) against
`framecast web` under gunicorn + gevent (#23): every tile in view updates, tiles out of view cost no
request (no MJPEG, snapshot or events request, counted from the browser's own requests over CDP),
and events are fetched only for cameras with events configured."""

import re
import threading
import time
from collections import Counter

import pytest

from common import envelope
from common.envelope import Frame
from common.keys import FRAME_FIELD
from common.registry import heartbeat
from tests.web.conftest import KEYS, jpeg_of
from tests.web.test_browser import ARTIFACTS, open_page
from tests.web.test_events_api import LINE, ZONE

pytestmark = pytest.mark.browser
COUNT = 100
EVENT_CAMERAS = {"cam000", "cam098"}  # one in the first view, one in the last
_REQUEST = re.compile(r"/(?:video_feed/(?P<feed>[^/?]+)|snapshot/(?P<snap>[^/?]+)\.jpg|api/events\?camera=(?P<ev>[^&]+))")


class Fleet:
    """Frames for every camera twice a second (one pipeline), and a producer's and a worker's
    heartbeats naming them all: what 100 live cameras look like to the web tier."""

    def __init__(self, client, cams: list[str]):
        self.client, self.cams = client, cams
        self.jpegs = [jpeg_of(n) for n in range(12)]  # a different picture each frame
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        seq = 0
        while not self.stop.is_set():
            pipe = self.client.pipeline(transaction=False)
            for cam in self.cams:
                frame = Frame(cam, 1, seq, time.time_ns(), 160, 120, self.jpegs[seq % len(self.jpegs)], [], {})
                pipe.xadd(KEYS.annotated(cam), {FRAME_FIELD: envelope.encode(frame)}, maxlen=10, approximate=True)
            pipe.execute()
            for kind in ("producer", "worker"):
                heartbeat(self.client, KEYS, kind, f"{kind}-1",
                          {"cameras": self.cams, "fps": dict.fromkeys(self.cams, 2.0)}, ttl=5)
            seq += 1
            self.stop.wait(0.5)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def _requested(urls: list[str]) -> dict[str, Counter]:
    """Requests per camera, by kind (feed, snap, ev)."""
    out: dict[str, Counter] = {"feed": Counter(), "snap": Counter(), "ev": Counter()}
    for url in urls:
        match = _REQUEST.search(url)
        if match:
            kind = next(k for k, v in match.groupdict().items() if v)
            out[kind][match.group(kind)] += 1
    return out


IN_VIEW = """() => [...document.querySelectorAll('.tile')].filter((t) => {
    const r = t.getBoundingClientRect();
    return r.bottom > 0 && r.top < innerHeight && r.right > 0 && r.left < innerWidth;
}).map((t) => t.dataset.camera)"""
# A small signature of each tile's current picture (same-origin pictures draw into a canvas).
SIGNATURES = """(cams) => {
    const c = document.createElement('canvas'); c.width = 8; c.height = 6;
    const g = c.getContext('2d', { willReadFrequently: true });
    return Object.fromEntries(cams.map((cam) => {
        const img = document.querySelector('.tile[data-camera="' + cam + '"] img');
        if (!img.naturalWidth) return [cam, null];
        g.drawImage(img, 0, 0, 8, 6);
        return [cam, Array.from(g.getImageData(0, 0, 8, 6).data).join(',')];
    }));
}"""


def _all_changing(page, cams: list[str], timeout: float = 20.0) -> dict[str, bool]:
    """Whether each camera's tile showed a new picture within `timeout`."""
    first = page.evaluate(SIGNATURES, cams)
    changed = {cam: False for cam in cams}
    deadline = time.monotonic() + timeout
    while not all(changed.values()) and time.monotonic() < deadline:
        page.wait_for_timeout(500)
        now = page.evaluate(SIGNATURES, cams)
        for cam in cams:
            changed[cam] |= now[cam] is not None and first[cam] is not None and now[cam] != first[cam]
            if first[cam] is None:
                first[cam] = now[cam]
    return changed


def test_a_hundred_cameras_feed_only_the_tiles_in_view(web_process, redis_client, tmp_path):
    from playwright.sync_api import sync_playwright

    cams = [f"cam{i:03d}" for i in range(COUNT)]
    cameras = [{"id": cam, "source": "pattern", **({"lines": [LINE], "zones": [ZONE]} if cam in EVENT_CAMERAS else {})}
               for cam in cams]
    server = web_process(cameras=cameras, events={"dir": str(tmp_path / "events")})
    ARTIFACTS.mkdir(exist_ok=True)
    with Fleet(redis_client, cams), sync_playwright() as pw:
        browser, page, js_errors, blocked = open_page(pw, 1280, 900)
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.goto(server.url + "/")
        # The tiles grow once their figures arrive, which pushes a row out of view: count from then.
        page.wait_for_function("() => document.querySelector('.tile[data-camera=cam000] .status').textContent === 'live'",
                               timeout=20000)
        page.wait_for_timeout(1500)  # (the browser's events are taken in while playwright waits)
        first_view = page.evaluate(IN_VIEW)
        assert "cam000" in first_view and len(first_view) < 20
        mark = len(urls)
        changed = _all_changing(page, first_view)
        assert all(changed.values()), changed  # every tile in view shows new pictures
        page.wait_for_timeout(2500)  # more than two snapshot rounds
        seen = _requested(urls[mark:])
        assert sum(_requested(urls[:mark])["feed"].values()) <= 4 + 4  # no MJPEG beyond the first four tiles
        requested = set(seen["feed"]) | set(seen["snap"]) | set(seen["ev"])
        assert requested <= set(first_view), requested - set(first_view)  # nothing for tiles out of view
        assert all(seen["snap"][cam] >= 2 for cam in first_view if cam not in cams[:4])
        assert all(_requested(urls)["feed"][cam] >= 1 for cam in first_view if cam in cams[:4])
        assert set(seen["ev"]) == {"cam000"}  # events only for a camera that has them, in view
        assert set(_requested(urls)["ev"]) == {"cam000"}
        page.screenshot(path=str(ARTIFACTS / "dashboard-100-cameras.png"))

        # Scrolled to the end: the tiles now in view update, the ones that left it stop.
        page.locator('.tile[data-camera="cam099"]').scroll_into_view_if_needed()
        page.wait_for_timeout(1500)  # requests under way when the first tiles left the view finish
        last_view = page.evaluate(IN_VIEW)
        assert "cam099" in last_view and not set(last_view) & set(first_view)
        mark = len(urls)
        changed = _all_changing(page, last_view)
        assert all(changed.values()), changed
        page.wait_for_timeout(2500)  # more than two snapshot rounds
        later = _requested(urls[mark:])
        requested = set(later["feed"]) | set(later["snap"]) | set(later["ev"])
        assert requested <= set(last_view), requested - set(last_view)
        assert all(later["snap"][cam] >= 2 for cam in last_view)
        assert set(later["ev"]) <= {"cam098"} and "cam098" in _requested(urls)["ev"]
        metrics = server.get("/metrics").read().decode()
        viewers = re.findall(r'^framecast_web_viewers\{camera="([^"]+)"\} ([0-9.]+)$', metrics, re.M)
        assert [cam for cam, n in viewers if float(n)] == []  # the MJPEG tiles closed their connections
        browser.close()
    assert js_errors == [] and blocked == []
