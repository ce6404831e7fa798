import socket
import time

import cv2
import numpy as np

from tests.web.conftest import Publisher, publish, read_parts


def test_stream_parts_are_valid_jpegs_in_sequence(live_server, redis_client):
    server = live_server()
    with Publisher(redis_client, "cam1", fps=20):
        response = server.get("/video_feed/cam1")
        assert response.status == 200
        assert response.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=frame"
        assert response.getheader("X-Accel-Buffering") == "no"
        parts = read_parts(response, 10)
    assert len(parts) == 10
    seqs = [int(h["x-frame-seq"]) for h, _ in parts]
    assert seqs == sorted(set(seqs))
    for headers, body in parts:
        assert headers["content-type"] == "image/jpeg" and int(headers["content-length"]) == len(body)
        assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) is not None


def test_fifty_viewers_share_one_redis_reader(live_server, redis_client):
    server = live_server()
    with Publisher(redis_client, "cam1", fps=20):
        responses = [server.get("/video_feed/cam1") for _ in range(50)]
        for response in responses:
            assert len(read_parts(response, 3)) == 3
        feeds = server.state.broadcaster.feeds()
        assert list(feeds) == [("cam1", "annotated")]
        assert server.state.broadcaster.readers_started == 1
        assert feeds[("cam1", "annotated")].viewers() == 50
        before = redis_client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0)
        time.sleep(2.0)
        after = redis_client.info("commandstats").get("cmdstat_xread", {}).get("calls", 0)
    # One reader blocks on XREAD; 50 viewers polling would make hundreds of calls in 2 s.
    assert after - before <= 2 * 20 + 10
    for response in responses:
        response.close()


def test_a_stalled_viewer_does_not_stop_the_others(live_server, redis_client):
    server = live_server()
    with Publisher(redis_client, "cam1", fps=30):
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /video_feed/cam1 HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
        time.sleep(2.0)  # long enough for its socket buffers to fill
        healthy = server.get("/video_feed/cam1")
        parts = read_parts(healthy, 30, timeout=30)
        assert len(parts) == 30
        feed = server.state.broadcaster.feeds()[("cam1", "annotated")]
        assert feed.viewers() == 2
        stalled.close()


def test_older_frames_are_never_sent_after_newer_ones(live_server, redis_client):
    server = live_server()
    publish(redis_client, "cam1", 1)
    response = server.get("/video_feed/cam1")
    assert [h["x-frame-seq"] for h, _ in read_parts(response, 1)] == ["1"]
    for seq in (2, 5, 3, 4, 6):  # a slower worker finishes 3 and 4 after 5
        publish(redis_client, "cam1", seq)
        time.sleep(0.15)
    seqs = [int(h["x-frame-seq"]) for h, _ in read_parts(response, 3, timeout=10)]
    assert seqs == [2, 5, 6]
    assert server.state.broadcaster.feeds()[("cam1", "annotated")].out_of_order == 2


def test_no_signal_frame_then_video_resumes(live_server, redis_client):
    server = live_server(no_signal_after=1.0)
    with Publisher(redis_client, "cam1", fps=20):
        response = server.get("/video_feed/cam1")
        assert all("x-frame-seq" in h for h, _ in read_parts(response, 3))
    parts = read_parts(response, 2, timeout=10)  # the publisher stopped: no signal within ~1-2 s
    assert parts and all("x-frame-seq" not in h for h, _ in parts)
    assert cv2.imdecode(np.frombuffer(parts[0][1], np.uint8), cv2.IMREAD_COLOR) is not None
    with Publisher(redis_client, "cam1", fps=20) as pub:
        pub.seq = 1000
        deadline = time.monotonic() + 10
        resumed = False
        while not resumed and time.monotonic() < deadline:
            resumed = any("x-frame-seq" in h for h, _ in read_parts(response, 1, timeout=5))
    assert resumed


def test_raw_feed_streams_the_producers_frames(live_server, redis_client):
    server = live_server()
    with Publisher(redis_client, "cam2", fps=20, raw=True):
        parts = read_parts(server.get("/video_feed/cam2?raw=1"), 3)
    assert len(parts) == 3
    assert ("cam2", "raw") in server.state.broadcaster.feeds()


def test_reader_stops_after_the_last_viewer_leaves(live_server, redis_client):
    server = live_server(reader_linger=0.5)
    with Publisher(redis_client, "cam1", fps=20):
        response = server.get("/video_feed/cam1")
        read_parts(response, 2)
        response.close()
        deadline = time.monotonic() + 15
        while server.state.broadcaster.feeds() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert server.state.broadcaster.feeds() == {}


def test_a_viewer_that_stops_reading_is_dropped(live_server, redis_client):
    server = live_server(write_timeout=1.0)
    with Publisher(redis_client, "cam1", fps=30, noisy=True):
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /video_feed/cam1 HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
        deadline = time.monotonic() + 10
        while not server.state.broadcaster.feeds() and time.monotonic() < deadline:
            time.sleep(0.05)
        feed = server.state.broadcaster.feeds()[("cam1", "annotated")]
        assert feed.viewers() == 1
        deadline = time.monotonic() + 30  # buffers fill, a write stalls for write_timeout, then it is dropped
        while feed.viewers() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert feed.viewers() == 0
        stalled.close()


def test_streams_per_client_are_capped_and_released_when_they_end(live_server, redis_client):
    server = live_server(max_streams_per_client=2)
    with Publisher(redis_client, "cam1", fps=20):
        first, second = server.get("/video_feed/cam1"), server.get("/video_feed/cam1?raw=1")
        assert first.status == 200 and second.status == 200
        refused = server.get("/video_feed/cam2")
        assert refused.status == 429 and b"at most 2 video streams" in refused.read()
        assert len(read_parts(first, 2)) == 2
        assert server.get("/snapshot/cam1.jpg").status == 200  # only streams count
        assert first.getheader("X-Content-Type-Options") == "nosniff" and first.getheader("Content-Security-Policy")
        first.close()  # the server notices at its next write, ends the stream and frees its slot
        deadline = time.monotonic() + 15
        while (third := server.get("/video_feed/cam1")).status == 429:
            third.close()
            assert time.monotonic() < deadline, "the closed stream's slot was never released"
            time.sleep(0.2)
        assert len(read_parts(third, 2)) == 2
        third.close()
        second.close()


def test_no_cap_on_streams_when_set_to_zero(live_server, redis_client):
    server = live_server(max_streams_per_client=0)
    with Publisher(redis_client, "cam1", fps=20):
        responses = [server.get("/video_feed/cam1") for _ in range(20)]
        assert all(response.status == 200 for response in responses)
        for response in responses:
            response.close()


def test_a_slow_camera_shows_no_signal_only_after_three_of_its_frame_intervals(write_config, redis_url, redis_client):
    """web.no_signal_after is 1 s but the camera sends a frame every 2 s (fps 0.5): its threshold is
    max(1 s, 3 / 0.5 fps) = 6 s, so the gaps between its frames are not "no signal"; a silence of
    more than 6 s is."""
    from common.config import load_config
    from tests.web.conftest import LiveServer
    from web.broadcaster import no_signal_threshold

    assert no_signal_threshold(1.0, 0.5) == 6.0 and no_signal_threshold(3.0, 10.0) == 3.0
    path = write_config([{"id": "slow", "source": "pattern", "fps": 0.5}], redis_url=redis_url,
                        web={"no_signal_after": 1.0, "reader_linger": 1.0})
    server = LiveServer(load_config(path, env={}))
    try:
        with Publisher(redis_client, "slow", fps=0.5):
            response = server.get("/video_feed/slow", timeout=15)
            parts = read_parts(response, 3, timeout=15)  # three frames, 2 s apart
            assert all("x-frame-seq" in h for h, _ in parts)
        started = time.monotonic()
        parts = read_parts(response, 1, timeout=15)
        assert "x-frame-seq" not in parts[0][0] and time.monotonic() - started > 3.0
    finally:
        server.close()
