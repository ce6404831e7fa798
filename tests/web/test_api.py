import json
import re
import time
import tracemalloc

import pytest

from common.keys import DETECTIONS_FIELD
from common.registry import heartbeat
from common.stats import StatsWriter
from tests.web.conftest import KEYS, Publisher, publish
from web.api import PAGE
from web.app import create_app


@pytest.fixture
def client_for(web_config, redis_client):
    def _make(**web):
        return create_app(web_config(**web), redis_client).test_client()

    return _make


def _calls(redis_client) -> dict[str, int]:
    """Calls per Redis command so far (INFO commandstats), without the INFO calls themselves."""
    stats = redis_client.info("commandstats")
    return {name[len("cmdstat_"):]: v["calls"] for name, v in stats.items() if name != "cmdstat_info"}


def _diff(after: dict, before: dict) -> dict:
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


def test_snapshot_fresh_then_stale_and_missing(client_for, redis_client):
    client = client_for(stale_after=1.0)
    response = client.get("/snapshot/cam1.jpg")
    assert response.status_code == 503 and response.json["error"] == "no frame"
    publish(redis_client, "cam1", 7)
    before = _calls(redis_client)
    response = client.get("/snapshot/cam1.jpg")
    assert _diff(_calls(redis_client), before) == {"xrevrange": 1}  # one Redis read per snapshot
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.data[:2] == b"\xff\xd8"
    assert response.headers["X-Frame-Seq"] == "7" and float(response.headers["X-Frame-Age-Ms"]) < 1000
    publish(redis_client, "cam1", 8, ts=time.time_ns() - 3_000_000_000)
    response = client.get("/snapshot/cam1.jpg")
    assert response.status_code == 503 and response.json["error"] == "stale"


def test_unknown_camera_404_and_invalid_id_400(client_for):
    client = client_for()
    for path in ("/video_feed/nope", "/snapshot/nope.jpg", "/api/cameras/nope/detections", "/api/cameras/nope"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json["camera"] == "nope"
    for path in ("/video_feed/bad%20id", "/snapshot/a%3Ab.jpg", "/api/cameras/x%7By%7D/detections"):
        assert client.get(path).status_code == 400, path


def test_cameras_api_reports_figures_and_hides_secrets(client_for, redis_client):
    client = client_for()
    heartbeat(redis_client, KEYS, "worker", "host-1", {"cameras": ["cam1"], "host": "host-1",
                                                       "fps": {"cam1": 4.25}}, ttl=30)
    heartbeat(redis_client, KEYS, "worker", "host-2", {"cameras": ["cam1", "cam2"], "host": "host-2",
                                                       "fps": {"cam1": 5.5, "cam2": 0.0}}, ttl=30)
    heartbeat(redis_client, KEYS, "producer", "host-3", {"cameras": ["cam1"], "fps": {"cam1": 9.75}}, ttl=30)
    stats = StatsWriter(redis_client, KEYS, "cam1")
    stats.incr("published", 100)
    stats.incr("processed", 90)
    stats.incr("dropped", 3)
    stats.gauge("latency_ms", 42.0)
    stats.gauge("last_processed_ms", time.time() * 1000)
    stats.flush()
    first = client.get("/api/cameras")
    assert first.status_code == 200
    assert "hunter2" not in first.get_data(as_text=True)
    publish(redis_client, "cam1", 1)  # status follows the newest annotated frame
    cams = {c["id"]: c for c in client.get("/api/cameras").json["cameras"]}
    cam1 = cams["cam1"]
    assert cam1["source"] == "rtsp://***@10.0.0.9/live" and cam1["source_kind"] == "url"
    assert cam1["workers"] == ["host-1", "host-2"] and cam1["dropped"] == 3 and cam1["latency_ms"] == 42.0
    # Rates come from the heartbeats, summed over the camera's producers and workers, on the first call.
    assert cam1["status"] == "live" and cam1["fps_in"] == 9.75 and cam1["fps_out"] == 9.75
    cam2 = cams["cam2"]
    assert cam2["status"] == "waiting" and cam2["workers"] == ["host-2"] and cam2["fps_in"] == cam2["fps_out"] == 0
    workers = client.get("/api/workers").json["workers"]
    assert [w["id"] for w in workers] == ["host-1", "host-2"]


def _fill_detections(redis_client, count, pad=1000):
    pipe = redis_client.pipeline(transaction=False)
    for i in range(count):
        record = {"cam": "cam1", "seq": i, "detections": [{"label": "person", "score": 0.9, "box": [1, 2, 3, 4]}],
                  "pad": "x" * pad}
        pipe.xadd(KEYS.detections("cam1"), {DETECTIONS_FIELD: json.dumps(record)}, id=f"{1000 + i}-0")
    pipe.execute()


def test_detection_history_streams_with_flat_memory(client_for, redis_client):
    _fill_detections(redis_client, 20_000)
    client = client_for()
    before = _calls(redis_client)
    tracemalloc.start()
    response = client.get("/api/cameras/cam1/detections", buffered=False)
    assert response.mimetype == "application/x-ndjson"
    lines, size = 0, 0
    for chunk in response.response:
        size += len(chunk)
        lines += chunk.count(b"\n")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    response.close()
    assert lines == 20_000 and size > 20_000_000
    assert peak < size / 4  # paged from Redis: far less than the ~21 MB response is ever held
    assert _diff(_calls(redis_client), before)["xrange"] == 20_000 // PAGE + 1  # pages, not one 21 MB reply


def test_detection_history_since_and_limit(client_for, redis_client):
    _fill_detections(redis_client, 50, pad=0)
    client = client_for()
    lines = client.get("/api/cameras/cam1/detections?since=1010-0&limit=5").get_data().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == [11, 12, 13, 14, 15]
    assert records[0]["id"] == "1011-0"
    assert len(client.get("/api/cameras/cam1/detections?since=1045").get_data().splitlines()) == 4
    assert client.get("/api/cameras/cam1/detections?since=yesterday").status_code == 400
    assert client.get("/api/cameras/cam1/detections?limit=0").status_code == 400


@pytest.mark.parametrize("since", ["99999999999999999999", "18446744073709551616", "1-18446744073709551616",
                                   "18446744073709551616-0", "-1", "1-2-3", "1e3"])
def test_detection_history_rejects_since_outside_a_stream_id(client_for, redis_client, since):
    _fill_detections(redis_client, 3, pad=0)
    response = client_for().get(f"/api/cameras/cam1/detections?since={since}")
    assert response.status_code == 400 and "since" in response.json["message"]


def test_detection_history_since_the_largest_stream_id_is_empty(client_for, redis_client):
    _fill_detections(redis_client, 3, pad=0)
    client = client_for()
    for since in ("18446744073709551615-18446744073709551615", "18446744073709551615"):
        response = client.get(f"/api/cameras/cam1/detections?since={since}")
        assert response.status_code == 200 and response.get_data() == b"", since


def test_live_detections_keep_coming(client_for, redis_client):
    client = client_for()
    response = client.get("/api/cameras/cam1/detections?follow=1", buffered=False)
    stream = iter(response.response)
    redis_client.xadd(KEYS.detections("cam1"), {DETECTIONS_FIELD: json.dumps({"seq": 1, "detections": []})})
    line = next(chunk for chunk in stream if chunk.strip())
    assert json.loads(line)["seq"] == 1
    redis_client.xadd(KEYS.detections("cam1"), {DETECTIONS_FIELD: json.dumps({"seq": 2, "detections": []})})
    line = next(chunk for chunk in stream if chunk.strip())
    assert json.loads(line)["seq"] == 2
    response.close()


def test_auth_on_and_off(client_for, redis_client):
    open_client = client_for()
    assert open_client.get("/api/cameras").status_code == 200
    client = client_for(token="s3cret-token")
    assert client.get("/healthz").status_code == 200
    for path in ("/", "/api/cameras", "/api/workers", "/readyz", "/metrics", "/snapshot/cam1.jpg"):
        assert client.get(path).status_code == 401, path
    assert client.get("/api/cameras", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/cameras", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert client.get("/api/cameras?token=s3cret-token").status_code == 200
    page = client.get("/?token=s3cret-token").get_data(as_text=True)
    assert 'data-token="s3cret-token"' in page  # the page passes it on to its feeds and API calls
    assets = re.findall(r'(?:href|src)="(/static/[^"]+)"', page)
    assert len(assets) == 4 and all("token=s3cret-token" in url for url in assets)  # css, live-video.js, dashboard.js, events.js
    for url in assets:
        assert client.get(url).status_code == 200, url
    page = client.get("/", headers={"Authorization": "Bearer s3cret-token"}).get_data(as_text=True)
    assert 'data-token="s3cret-token"' in page


def test_readyz_reflects_whether_frames_flow(client_for, redis_client):
    client = client_for(stale_after=2.0)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["cameras"]["cam1"]["ok"] is False and "cam1" in response.json["message"]
    with Publisher(redis_client, "cam1", fps=20), Publisher(redis_client, "cam2", fps=20):
        time.sleep(0.3)
        response = client.get("/readyz")
        assert response.status_code == 200, response.json
        assert response.json["ready"] is True
    assert client.get("/healthz").json == {"status": "ok"}


def test_every_response_carries_the_security_headers(client_for, redis_client):
    client = client_for(token="s3cret-token")
    publish(redis_client, "cam1", 1)
    responses = [client.get(path) for path in (
        "/?token=s3cret-token", "/static/dashboard.js?token=s3cret-token", "/api/cameras?token=s3cret-token",
        "/snapshot/cam1.jpg?token=s3cret-token", "/api/cameras/nope?token=s3cret-token", "/api/cameras",
        "/healthz", "/metrics?token=s3cret-token", "/api/cameras/cam1/detections?since=x&token=s3cret-token")]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 404, 401, 200, 200, 400]
    for response in responses:
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        csp = dict(part.strip().split(" ", 1) for part in response.headers["Content-Security-Policy"].split(";"))
        assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
        assert csp["img-src"] == "'self' blob:" and csp["connect-src"] == "'self'"
        assert csp["frame-ancestors"] == "'none'"


def test_metrics_and_dashboard(client_for):
    client = client_for()
    text = client.get("/metrics").get_data(as_text=True)
    assert "framecast_web_viewers" in text and "framecast_web_frames_sent_total" in text
    page = client.get("/").get_data(as_text=True)
    assert 'data-camera="cam1"' in page and 'data-camera="cam2"' in page and "hunter2" not in page
    assert client.get("/static/dashboard.js").status_code == 200
