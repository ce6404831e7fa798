"""The dashboard's per-stage bars in a real browser (Debian's headless chromium via Playwright), under
the server's strict Content-Security-Policy: the bars' widths are set through the CSSOM."""

import time

import pytest

from common import envelope
from common.keys import DETECTIONS_FIELD, FRAME_FIELD
from tests.web.conftest import KEYS
from tests.web.test_browser import ARTIFACTS, FakeCluster, open_page
from tests.web.test_stage_api import marked_frame

pytestmark = pytest.mark.browser
GROUPS = ["producer", "queue", "network", "model", "worker", "browser"]


class TimedCluster(FakeCluster):
    """A fake cluster whose frames carry stage marks and whose detection records carry the stages."""

    def publish_one(self):
        frame = marked_frame(self.cam, self.seq)
        pipe = self.client.pipeline(transaction=False)
        pipe.xadd(KEYS.annotated(self.cam), {FRAME_FIELD: envelope.encode(frame)}, maxlen=50, approximate=True)
        pipe.xadd(KEYS.detections(self.cam), {DETECTIONS_FIELD: envelope.detections_record(frame)}, maxlen=500,
                  approximate=True)
        pipe.execute()
        self.seq += 1


def test_dashboard_shows_a_stage_bar_per_camera(web_process, redis_client):
    from playwright.sync_api import sync_playwright

    server = web_process(cameras=[{"id": "cam1", "name": "Front door", "source": "pattern"},
                                  {"id": "cam2", "name": "Yard", "source": "pattern"}])
    ARTIFACTS.mkdir(exist_ok=True)
    with TimedCluster(redis_client, "cam1", fps=10), TimedCluster(redis_client, "cam2", fps=5), \
            sync_playwright() as pw:
        browser, page, js_errors, blocked = open_page(pw, 1100, 700)
        page.goto(server.url + "/")
        # Every stage group of both cameras gets a segment of non-zero width, the browser's (send)
        # once this web process has handed the MJPEG tiles some parts.
        page.wait_for_function("""() => [...document.querySelectorAll('.tile')].every((tile) => {
            const segs = [...tile.querySelectorAll('.stages .seg')];
            return segs.length === 10 && segs.every((s) => s.getBoundingClientRect().width > 0);
        })""", timeout=30000)
        time.sleep(0.5)
        page.screenshot(path=str(ARTIFACTS / "dashboard-stages.png"), full_page=True)
        widths = page.evaluate("""() => [...document.querySelectorAll('.tile')].map((tile) =>
            [...tile.querySelectorAll('.stages .seg')].map((s) => [s.dataset.stage, s.style.width]))""")
        legends = page.locator(".stage-legend").all_inner_texts()
        browser.close()
    assert js_errors == [] and blocked == []
    for bar in widths:
        assert [stage for stage, _ in bar] == ["motion", "encode", "queue", "transit", "decode", "detect", "annotate",
                                              "reencode", "publish", "send"]
        assert 99.0 <= sum(float(width.rstrip("%")) for _, width in bar) <= 101.0
    for legend in legends:
        assert all(group in legend for group in GROUPS) and "p50" in legend
