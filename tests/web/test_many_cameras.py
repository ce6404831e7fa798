"""Many cameras in the web tier (#23): the camera figures are computed once per interval per web
process and shared by every caller, read from Redis pipelined; /api/cameras filters and pages; a
camera is stale relative to its own rate."""

import json
import time

import pytest

from common import envelope
from common.envelope import Frame
from common.keys import FRAME_FIELD
from common.registry import heartbeat
from common.stats import StatsWriter
from tests.web.conftest import KEYS, jpeg_of, publish


def _calls(redis_client) -> dict[str, int]:
    """Calls per Redis command so far (INFO commandstats), without the INFO calls themselves."""
    stats = redis_client.info("commandstats")
    return {name[len("cmdstat_"):]: v["calls"] for name, v in stats.items() if name != "cmdstat_info"}


def _diff(after: dict, before: dict) -> dict:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def _cameras(count: int, **extra) -> list[dict]:
    return [{"id": f"cam{i:03d}", "source": "pattern", **extra} for i in range(count)]


def _fill(redis_client, cams: list[str]) -> None:
    """A frame, counters and a detection record per camera, and a producer and a worker serving them."""
    for n, cam in enumerate(cams):
        publish(redis_client, cam, n)
        stats = StatsWriter(redis_client, KEYS, cam)
        stats.incr("published", 10 + n)
        stats.flush()
    for kind in ("producer", "worker"):
        heartbeat(redis_client, KEYS, kind, f"{kind}-1", {"cameras": cams, "fps": dict.fromkeys(cams, 2.5)}, ttl=30)


def test_every_caller_shares_one_computation_and_requests_cost_redis_nothing(app_for, redis_client):
    cams = [c["id"] for c in _cameras(50)]
    app = app_for(_cameras(50), figures_interval=30)
    _fill(redis_client, cams)
    clients = [app.test_client() for _ in range(5)]
    before = _calls(redis_client)
    first = clients[0].get("/api/cameras")
    refresh = _diff(_calls(redis_client), before)
    # One refresh: per camera its stats and counts (HGETALL), the newest annotated entry and the
    # detection records since the last one (XREVRANGE); both registries and their two members.
    assert refresh == {"zrangebyscore": 2, "hgetall": 2 * 50 + 2, "xrevrange": 2 * 50}
    body = first.get_data()
    assert json.loads(body)["total"] == 50 and json.loads(body)["cameras"][7]["published"] == 17
    before = _calls(redis_client)
    answers = [client.get(path).get_data() for _ in range(20) for client in clients
               for path in ("/api/cameras", "/api/cameras?status=live&limit=5", "/api/cameras/cam007", "/readyz")]
    assert _diff(_calls(redis_client), before) == {"ping": 100, "role": 100}  # /readyz's own Redis checks only
    assert all(a == body for a in answers[::4])  # every caller gets the same bytes
    assert all(json.loads(a) == json.loads(body)["cameras"][7] for a in answers[2::4])
    assert app.extensions["framecast"].figures.refreshes == 1


def test_the_refresher_keeps_the_figures_within_an_interval(app_for, redis_client):
    app = app_for(_cameras(3), figures_interval=0.2)
    client = app.test_client()
    figures = app.extensions["framecast"].figures
    first = client.get("/api/cameras").json
    assert first["cameras"][0]["status"] == "waiting"
    publish(redis_client, "cam000", 1)
    deadline = time.monotonic() + 10
    while client.get("/api/cameras").json["cameras"][0]["status"] != "live":
        assert time.monotonic() < deadline, "the figures were not refreshed"
        time.sleep(0.05)
    refreshes = figures.refreshes
    for _ in range(40):  # many callers within about 0.4 s: refreshes follow the clock, not the callers
        client.get("/api/cameras")
        time.sleep(0.01)
    assert figures.refreshes - refreshes <= 4


def test_two_web_processes_give_the_same_figures(web_process, redis_client):
    cameras = _cameras(40)
    _fill(redis_client, [c["id"] for c in cameras])
    first = web_process(cameras=cameras, web={"figures_interval": 1})
    second = web_process(cameras=cameras, web={"figures_interval": 1})
    bodies = [json.loads(proc.get("/api/cameras").read()) for proc in (first, second)]
    for body in bodies:  # what moves with the clock (the figures are a moment apart)
        for cam in body["cameras"]:
            assert cam.pop("last_frame_age_s") is not None
        body.pop("figures_at")
    assert bodies[0] == bodies[1]
    assert bodies[0]["total"] == 40 and {c["fps_in"] for c in bodies[0]["cameras"]} == {2.5}


def test_cameras_filter_by_id_and_status_and_page(app_for, redis_client):
    app = app_for(_cameras(12), figures_interval=0)
    client = app.test_client()
    for cam in ("cam001", "cam004", "cam005", "cam009"):
        publish(redis_client, cam, 1)
    redis_client.set(KEYS.stats("cam010"), "oops")  # out of service
    body = client.get("/api/cameras").json
    assert body["total"] == 12 and len(body["cameras"]) == 12 and "next_offset" not in body
    ids = lambda b: [c["id"] for c in b["cameras"]]  # noqa: E731
    assert ids(client.get("/api/cameras?status=live").json) == ["cam001", "cam004", "cam005", "cam009"]
    assert ids(client.get("/api/cameras?status=out_of_service").json) == ["cam010"]
    waiting = client.get("/api/cameras?status=waiting,out_of_service").json
    assert waiting["total"] == 8 and "cam010" in ids(waiting)
    assert ids(client.get("/api/cameras?camera=cam009&camera=cam001,cam002").json) == ["cam001", "cam002", "cam009"]
    assert ids(client.get("/api/cameras?camera=cam009,cam002&status=live").json) == ["cam009"]
    pages, offset = [], 0
    while offset is not None:
        page = client.get(f"/api/cameras?limit=5&offset={offset}").json
        assert page["total"] == 12
        pages.append(ids(page))
        offset = page["next_offset"]
    assert [len(p) for p in pages] == [5, 5, 2] and sum(pages, []) == [f"cam{i:03d}" for i in range(12)]
    live_page = client.get("/api/cameras?status=live&limit=3&offset=2").json
    assert ids(live_page) == ["cam005", "cam009"] and live_page["total"] == 4 and live_page["next_offset"] is None
    response = client.get("/api/cameras?status=broken")
    assert response.status_code == 400 and "live, stale, waiting, out_of_service" in response.json["message"]
    for bad in ("limit=0", "limit=x", "offset=-1"):
        assert client.get(f"/api/cameras?{bad}").status_code == 400, bad
    assert client.get("/api/cameras?camera=nope").status_code == 404
    assert client.get("/api/cameras?camera=a%7Bb").status_code == 400


def _old_frame(redis_client, cam: str, age_s: float) -> None:
    """An annotated frame captured and published `age_s` seconds ago."""
    ms = int(time.time() * 1000 - age_s * 1000)
    frame = Frame(cam, 1, 1, ms * 1_000_000, 160, 120, jpeg_of(1), [], {"worker": "test"})
    redis_client.xadd(KEYS.annotated(cam), {FRAME_FIELD: envelope.encode(frame)}, id=f"{ms}-0")


def test_a_slow_camera_is_ready_and_not_stale_between_its_frames(app_for, redis_client):
    # 0.2 fps configured: a frame 8 s old is on time (stale after 3 frame intervals, 15 s).
    app = app_for([{"id": "slow", "source": "pattern", "fps": 0.2}], figures_interval=0, stale_after=5)
    client = app.test_client()
    _old_frame(redis_client, "slow", 8)
    response = client.get("/readyz")
    assert response.status_code == 200, response.json
    assert response.json["cameras"]["slow"]["stale_after_s"] == 15
    cam = client.get("/api/cameras/slow").json
    assert cam["status"] == "live" and cam["stale_after_s"] == 15
    assert client.get("/snapshot/slow.jpg").status_code == 200
    redis_client.delete(KEYS.annotated("slow"))  # a process that has seen none but one 16 s old
    _old_frame(redis_client, "slow", 16)
    app = app_for([{"id": "slow", "source": "pattern", "fps": 0.2}], figures_interval=0, stale_after=5)
    assert app.test_client().get("/readyz").status_code == 503


def test_a_camera_slower_than_configured_is_judged_by_its_measured_rate(app_for, redis_client):
    # 10 fps configured (the default), but its producer measures 0.2 fps: its own rate counts.
    cameras = [{"id": "rtsp", "source": "pattern"}, {"id": "fast", "source": "pattern"}]
    app = app_for(cameras, figures_interval=0, stale_after=5)
    client = app.test_client()
    _old_frame(redis_client, "rtsp", 8)
    _old_frame(redis_client, "fast", 8)
    heartbeat(redis_client, KEYS, "producer", "p-1", {"cameras": ["rtsp", "fast"], "fps": {"rtsp": 0.2, "fast": 0.0}},
              ttl=30)
    body = client.get("/readyz").json
    assert body["cameras"]["rtsp"] == {"ok": True, "last_frame_age_s": pytest.approx(8, abs=1), "stale_after_s": 15}
    assert body["cameras"]["fast"]["ok"] is False and body["cameras"]["fast"]["stale_after_s"] == 5
    assert "fast" in body["message"] and "rtsp" not in body["message"]
    cams = {c["id"]: c for c in client.get("/api/cameras").json["cameras"]}
    assert cams["rtsp"]["status"] == "live" and cams["rtsp"]["fps_in"] == 0.2 and cams["fast"]["status"] == "stale"
