"""The feed through a Redis restart and bad entries; the APIs while Redis is down."""

import time

import redis
from prometheus_client import REGISTRY

from common.config import load_config
from common.keys import FRAME_FIELD
from tests.web.conftest import KEYS, LiveServer, Publisher, publish, read_parts


def _is_video(headers: dict) -> bool:
    return "x-frame-seq" in headers  # the no-signal frame carries no sequence number


def _read_errors() -> float:
    return REGISTRY.get_sample_value("framecast_web_stream_read_errors_total", {"camera": "cam1"}) or 0.0


def _watched_feed(own_redis, write_config):
    """A web app on `own_redis` and a viewer of cam1 who has seen three frames of its video."""
    path = write_config([{"id": "cam1", "source": "pattern"}], redis_url=own_redis.url,
                        web={"no_signal_after": 1.0, "reader_linger": 1.0})
    server = LiveServer(load_config(path, env={}))
    client = redis.Redis.from_url(own_redis.url)
    with Publisher(client, "cam1", fps=20):
        response = server.get("/video_feed/cam1", timeout=30)
        assert all(_is_video(h) for h, _ in read_parts(response, 3))
    return server, client, response


def test_feed_survives_a_redis_restart(own_redis, write_config):
    server, client, response = _watched_feed(own_redis, write_config)
    try:
        errors_before = _read_errors()
        own_redis.kill()
        # Redis is gone: the reader keeps trying, and the viewer gets "no signal" instead of a frozen picture.
        parts = read_parts(response, 2, timeout=20)
        assert len(parts) == 2 and not any(_is_video(h) for h, _ in parts)
        assert _read_errors() > errors_before  # the reader was failing to read, and kept trying
        own_redis.start()
        with Publisher(redis.Redis.from_url(own_redis.url), "cam1", fps=20) as pub:
            pub.seq = 500
            seqs = []
            deadline = time.monotonic() + 30
            while len(seqs) < 3 and time.monotonic() < deadline:
                seqs += [int(h["x-frame-seq"]) for h, _ in read_parts(response, 1, timeout=5) if _is_video(h)]
        assert len(seqs) == 3 and seqs == sorted(seqs) and seqs[0] >= 500
        assert server.state.broadcaster.readers_started == 1  # the same reader, reconnected
    finally:
        server.close()


def test_apis_answer_503_while_redis_is_down(own_redis, write_config):
    path = write_config([{"id": "cam1", "source": "pattern"}], redis_url=own_redis.url)
    server = LiveServer(load_config(path, env={}))
    try:
        own_redis.kill()
        for path in ("/snapshot/cam1.jpg", "/api/cameras", "/readyz"):
            response = server.get(path, timeout=30)
            assert response.status == 503, path
            assert b"redis" in response.read().lower()
        assert server.get("/healthz").status == 200
    finally:
        server.close()


def test_undecodable_entries_are_skipped(live_server, redis_client):
    server = live_server()
    publish(redis_client, "cam1", 1)
    response = server.get("/video_feed/cam1")
    assert [h["x-frame-seq"] for h, _ in read_parts(response, 1)] == ["1"]
    redis_client.xadd(KEYS.annotated("cam1"), {FRAME_FIELD: b"not an envelope"})
    redis_client.xadd(KEYS.annotated("cam1"), {b"other": b"field"})
    publish(redis_client, "cam1", 2)
    assert [h["x-frame-seq"] for h, _ in read_parts(response, 1)] == ["2"]


def test_a_refused_password_pauses_the_feed_with_its_reason_logged_once(own_redis, write_config, caplog):
    """A password changed under a running web tier: viewers get NO SIGNAL, and the log says why at
    the start of the gap (then once a minute), not on every retry."""
    caplog.set_level("WARNING", logger="framecast.web")
    server, client, response = _watched_feed(own_redis, write_config)
    try:
        client.config_set("requirepass", "rotated-pw-0815")
        admin = redis.Redis.from_url(f"redis://:rotated-pw-0815@127.0.0.1:{own_redis.port}/0")
        admin.client_kill_filter(_type="normal", skipme=True)  # the reader must log in again, and is refused
        errors_before = _read_errors()
        parts = read_parts(response, 3, timeout=20)
        assert len(parts) == 3 and not any(_is_video(h) for h, _ in parts)
        assert _read_errors() - errors_before >= 3  # it kept retrying
    finally:
        server.close()
    paused = [r for r in caplog.records if r.getMessage().startswith("feed paused")]
    assert len(paused) == 1 and "credentials" in paused[0].getMessage(), [r.getMessage() for r in paused]
