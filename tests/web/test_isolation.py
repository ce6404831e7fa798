"""Keys Redis refuses (of the wrong type): a camera out of service (or a refused registry) is reported
for itself and never takes the other cameras, or the whole API, down."""

import json
import logging
import time

import pytest

from common.connection import ThrottledLog
from common.registry import heartbeat
from common.stats import StatsField
from tests.web.conftest import KEYS, publish, read_parts
from web import refused_keys
from web.metrics import READ_ERRORS


@pytest.fixture(autouse=True)
def _fresh_key_log(monkeypatch):
    """Each test starts with no key logged yet in this process (the log is per process)."""
    monkeypatch.setattr(refused_keys, "_logged", ThrottledLog(refused_keys.LOG_INTERVAL))


def _json(response):
    return response.status, json.loads(response.read())


def _refused_key_lines(caplog, key: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("refused Redis key") and r.key == key]


def test_a_stats_hash_of_the_wrong_type_is_one_cameras_error(live_server, redis_client, caplog):
    server = live_server()
    publish(redis_client, "cam1", 1)
    publish(redis_client, "cam2", 1)
    redis_client.hset(KEYS.stats("cam2"), mapping={"published": 7, "lost": 3})
    redis_client.set(KEYS.stats("cam1"), "oops")
    status, body = _json(server.get("/api/cameras"))
    assert status == 200
    cams = {c["id"]: c for c in body["cameras"]}
    assert cams["cam1"]["status"] == "out_of_service"
    assert KEYS.stats("cam1") in cams["cam1"]["error"] and "WRONGTYPE" in cams["cam1"]["error"]
    assert cams["cam2"]["status"] == "live" and "error" not in cams["cam2"]
    assert cams["cam2"]["published"] == 7 and cams["cam2"]["lost"] == 3
    status, body = _json(server.get("/api/cameras/cam2"))
    assert status == 200 and body["lost"] == 3
    status, body = _json(server.get("/readyz"))
    assert status == 503 and body["ready"] is False
    assert "WRONGTYPE" in body["cameras"]["cam1"]["error"] and body["cameras"]["cam2"]["ok"] is True
    assert "out of service" in body["message"] and "cam1" in body["message"]
    assert server.get("/snapshot/cam2.jpg").status == 200
    for _ in range(3):
        server.get("/api/cameras").read()
    lines = _refused_key_lines(caplog, KEYS.stats("cam1"))
    assert len(lines) == 1 and lines[0].camera == "cam1"  # once per process, with the camera


def test_lost_is_counted_per_camera_from_the_stats_field(live_server, redis_client):
    server = live_server()
    redis_client.hincrby(KEYS.stats("cam1"), StatsField.LOST, 5)
    cams = {c["id"]: c for c in _json(server.get("/api/cameras"))[1]["cameras"]}
    assert cams["cam1"]["lost"] == 5 and cams["cam2"]["lost"] == 0


def test_refused_frame_and_detection_streams_answer_503_for_their_camera_only(live_server, redis_client):
    server = live_server()
    publish(redis_client, "cam2", 1)
    redis_client.xadd(KEYS.detections("cam2"), {b"d": b'{"n": 1}'})
    redis_client.set(KEYS.annotated("cam1"), "oops")
    redis_client.set(KEYS.detections("cam1"), "oops")
    for path in ("/snapshot/cam1.jpg", "/api/cameras/cam1/detections", "/api/cameras/cam1/detections?follow=1"):
        status, body = _json(server.get(path))
        assert status == 503, path
        assert body["error"] == "refused key" and body["camera"] == "cam1" and "WRONGTYPE" in body["reason"]
        assert "out of service" in body["message"] and "WRONGTYPE" in body["message"]
    assert _json(server.get("/snapshot/cam1.jpg"))[1]["key"] == KEYS.annotated("cam1")
    assert server.get("/snapshot/cam2.jpg").status == 200
    response = server.get("/api/cameras/cam2/detections")
    assert response.status == 200 and b'"n": 1' in response.read()
    cams = {c["id"]: c for c in _json(server.get("/api/cameras"))[1]["cameras"]}
    assert KEYS.annotated("cam1") in cams["cam1"]["error"] and cams["cam2"]["status"] == "live"


def test_a_registry_of_the_wrong_type_degrades_the_apis(live_server, redis_client):
    server = live_server()
    heartbeat(redis_client, KEYS, "producer", "p-1", {"cameras": ["cam1"], "fps": {"cam1": 9.5}}, ttl=30)
    publish(redis_client, "cam1", 1)
    redis_client.set(KEYS.workers, "oops")
    status, body = _json(server.get("/api/workers"))
    assert status == 503 and body["error"] == "refused key" and body["key"] == KEYS.workers and body["workers"] == []
    assert "WRONGTYPE" in body["reason"] and "WRONGTYPE" in body["message"]
    status, body = _json(server.get("/api/cameras"))
    assert status == 200 and "WRONGTYPE" in body["registry_errors"]["workers"]
    cam1 = next(c for c in body["cameras"] if c["id"] == "cam1")
    assert cam1["fps_out"] is None and cam1["fps_in"] == 9.5 and cam1["status"] == "live"


def test_the_feed_of_a_camera_out_of_service_shows_no_signal_and_logs_once(live_server, redis_client, caplog):
    caplog.set_level(logging.INFO)
    server = live_server()
    redis_client.set(KEYS.annotated("cam1"), "oops")
    for n in range(3):
        publish(redis_client, "cam2", n)
    errors_before = READ_ERRORS.labels(camera="cam1")._value.get()
    refused = server.get("/video_feed/cam1", timeout=30)
    healthy = server.get("/video_feed/cam2", timeout=30)
    assert len(read_parts(healthy, 1)) == 1  # the other camera's feed is unaffected
    parts = read_parts(refused, 1, timeout=10)  # the NO SIGNAL picture, after web.no_signal_after
    assert parts and parts[0][1][:2] == b"\xff\xd8"
    time.sleep(3)  # the reader retries with backoff meanwhile (0.2, 0.4, 0.8 ... s)
    assert READ_ERRORS.labels(camera="cam1")._value.get() - errors_before >= 3  # it did retry
    refused.close()
    healthy.close()
    lines = _refused_key_lines(caplog, KEYS.annotated("cam1"))
    assert len(lines) == 1 and lines[0].camera == "cam1"
    assert not [r for r in caplog.records if r.exc_info and "cam1" in str(getattr(r, "camera", ""))]
