"""`framecast web` as deployed: gunicorn with gevent workers (and --dev), driven over real sockets."""

import http.client
import json
import re
import socket
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest

from tests.web.conftest import Publisher, WebProcess, read_parts


def _metric(server, name: str) -> float:
    text = server.get("/metrics").read().decode()
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_gunicorn_gevent_fans_out_with_one_reader_despite_a_stalled_viewer(web_process, redis_client):
    server = web_process(web={"write_timeout": 60})
    with Publisher(redis_client, "cam1", fps=25, noisy=True):
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /video_feed/cam1 HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
        time.sleep(1.0)  # its buffers fill with ~400 KB frames; gevent must not let that block the rest
        viewers = [server.get("/video_feed/cam1", timeout=30) for _ in range(20)]
        for response in viewers:
            assert response.status == 200 and response.getheader("X-Accel-Buffering") == "no"
        for response in viewers:
            parts = read_parts(response, 5, timeout=30)
            assert len(parts) == 5
            seqs = [int(h["x-frame-seq"]) for h, _ in parts]
            assert seqs == sorted(set(seqs))
            assert cv2.imdecode(np.frombuffer(parts[-1][1], np.uint8), cv2.IMREAD_COLOR) is not None
        assert _metric(server, "framecast_web_stream_readers") == 1
        assert _metric(server, 'framecast_web_viewers{camera="cam1"}') == 21
        for response in viewers:
            response.close()
        stalled.close()


def test_dev_server_streams_too(web_process, redis_client):
    server = web_process("--dev")
    with Publisher(redis_client, "cam1", fps=20):
        parts = read_parts(server.get("/video_feed/cam1"), 3)
    assert len(parts) == 3 and all(int(h["content-length"]) == len(body) for h, body in parts)


def test_token_never_reaches_the_logs(web_process, redis_client):
    token = "tok-9f8e7d6c5b4a"
    server = web_process(log_level="DEBUG", web={"token": token})
    assert server.get("/api/cameras").status == 401
    assert server.get(f"/api/cameras?token={token}").status == 200
    assert server.get("/", headers={"Authorization": f"Bearer {token}"}).status == 200
    assert server.get("/snapshot/cam1.jpg?token=wrong").status == 401
    output = server.stop()
    assert "web starting" in output and token not in output


def test_sigterm_ends_open_streams_instead_of_waiting_them_out(web_process, redis_client):
    server = web_process()
    with Publisher(redis_client, "cam1", fps=20):
        viewer = server.get("/video_feed/cam1", timeout=30)
        follower = server.get("/api/cameras/cam1/detections?follow=1", timeout=30)
        assert len(read_parts(viewer, 2)) == 2 and follower.status == 200
        output = server.stop()
        assert viewer.read() is not None  # the stream ends cleanly (terminating chunk), not by a kill
        follower.read()
    assert server.proc.returncode == 0, output
    assert "graceful timeout" not in output.lower(), output


def test_gunicorn_drops_a_viewer_that_stops_reading(web_process, redis_client):
    server = web_process(web={"write_timeout": 1.0})
    with Publisher(redis_client, "cam1", fps=30, noisy=True):
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", server.port))
        stalled.sendall(b"GET /video_feed/cam1 HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
        seen, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline:
            seen.append(_metric(server, 'framecast_web_viewers{camera="cam1"}'))
            if seen[-1] == 0 and 1 in seen:
                break
            time.sleep(0.2)
        stalled.close()
    assert 1 in seen and seen[-1] == 0, seen  # connected, then dropped once a write stalled
    output = server.stop()
    assert "dropped a client that stopped reading: GET /video_feed/cam1" in output, output
    assert "Traceback" not in output and "Socket error" not in output, output


def test_several_processes_report_metrics_summed_over_all_of_them(web_process, redis_client):
    before = set(Path(tempfile.gettempdir()).glob("framecast-web-metrics-*"))
    server = web_process("--workers", "2")
    gunicorn_workers = psutil.Process(server.proc.pid).children()
    assert len(gunicorn_workers) == 2
    with Publisher(redis_client, "cam1", fps=20):
        # One viewer on each process: the other one is paused while a viewer connects, so the
        # connection can only be accepted by this one.
        viewers = []
        for paused in gunicorn_workers:
            paused.suspend()
            try:
                viewers.append(server.get("/video_feed/cam1", timeout=30))
                assert len(read_parts(viewers[-1], 1)) == 1
            finally:
                paused.resume()
        for _ in range(10):  # whichever process answers, it counts the viewers and readers of both
            assert _metric(server, 'framecast_web_viewers{camera="cam1"}') == 2
            assert _metric(server, "framecast_web_stream_readers") == 2
            assert json.loads(server.get("/api/cameras").read())["cameras"][0]["viewers"] == 2
        assert _metric(server, 'framecast_web_frames_sent_total{camera="cam1"}') >= 2

        # A killed process stops counting: gunicorn starts a fresh one, and one viewer and reader remain.
        gunicorn_workers[0].kill()
        deadline = time.monotonic() + 30
        while _metric(server, "framecast_web_stream_readers") != 1:
            assert time.monotonic() < deadline, "the killed process's reader is still counted"
            time.sleep(0.2)
        assert _metric(server, 'framecast_web_viewers{camera="cam1"}') == 1
        for response in viewers:
            response.close()
    server.stop()
    assert set(Path(tempfile.gettempdir()).glob("framecast-web-metrics-*")) == before  # cleaned up


def _raw_request(port: int, data: bytes) -> bytes:
    """Send bytes as they are (a malformed request cannot be sent with http.client) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        return sock.recv(65536)


@pytest.mark.parametrize("server_args, failures_logged", [
    ((), ("Invalid request from ip=", "Error handling request GET")),  # gunicorn's own error log
    (("--dev",), ("Bad request syntax", "Error on request")),  # werkzeug's
], ids=["gunicorn", "dev"])
def test_token_never_reaches_the_logs_even_when_a_request_fails_in_the_server(
        own_redis, write_config, server_args, failures_logged):
    token = "tok-4c3b2a19f8e7"
    path = write_config([{"id": "cam1", "source": "pattern"}], redis_url=own_redis.url, log_level="DEBUG",
                        web={"token": token})
    server = WebProcess(path, *server_args)
    try:
        assert server.get(f"/api/cameras?token={token}").status == 200
        # the server answers a malformed request line itself, and logs it with the line it read
        reply = _raw_request(server.port, f"GET /api/cameras?token={token} junk HTTP/1.1\r\n\r\n".encode())
        assert b" 400 " in reply.split(b"\r\n", 1)[0]
        # a response generator that raises before its first chunk: the server logs the request
        assert server.get(f"/api/cameras/cam1/detections?since=99999999999999999999&token={token}").status >= 400
        own_redis.kill()
        # following from the end (nothing can come after the largest id, so no history is read
        # before the response starts): its first Redis read fails inside the response generator
        last = f"{2**64 - 1}-{2**64 - 1}"
        try:
            server.get(f"/api/cameras/cam1/detections?since={last}&follow=1&token={token}", timeout=60).read()
        except http.client.HTTPException:
            pass  # the server has sent the headers already and breaks the connection off
        time.sleep(1.0)  # werkzeug logs the failure after it has answered: let it, before SIGTERM
    finally:
        output = server.stop()
    assert all(failure in output for failure in failures_logged), output
    assert token not in output, output
