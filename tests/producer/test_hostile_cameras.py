"""Hostile HTTP MJPEG cameras cost the producer bounded memory and a bounded connection rate.

A real loopback camera sends a part far over the envelope limit (with and without Content-Length)
between normal frames: a real producer process discards it while reading, counts it, publishes the
frames after it, and its RSS stays within 64 MB of its baseline. A camera that serves one frame per
connection is reconnected to on the capped exponential backoff, every reconnect counted."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler

import numpy as np
import psutil
import pytest
from prometheus_client import REGISTRY

from common import jpeg
from common.keys import Keys
from common.stats import read_stats
from producer import publisher
from tests.conftest import REPO
from tests.loopback_http import LoopbackServer, mjpeg_server
from tests.producer.test_publisher import frames_in, make_publisher
from testsupport.redis_server import free_port

MB = 1024 * 1024
RSS_HEADROOM = 64 * MB
CHUNK = b"\xff\xd8" + bytes(range(256)) * (MB // 256)  # what a hostile part is made of, 1 MB at a time


def _jpegs(seed: int, n: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [jpeg.encode(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), 75) for _ in range(n)]


def _part(data: bytes) -> bytes:
    return b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data) + data + b"\r\n"


class HostileCamera:
    """An MJPEG camera on loopback: `before` frames until `go` is set, then one part of `size` bytes
    (announced in Content-Length or not), then `after` frames until the client leaves."""

    def __init__(self, size: int, with_length: bool):
        self.before, self.after = _jpegs(1, 4), _jpegs(2, 4)
        self.go, self.sent_big = threading.Event(), threading.Event()
        self.server = mjpeg_server(lambda out: self.serve(out, size, with_length))

    def serve(self, out, size: int, with_length: bool) -> None:
        i = 0
        while not self.go.is_set():
            out.write(_part(self.before[i % len(self.before)]))
            i += 1
            time.sleep(0.05)
        if not self.sent_big.is_set():
            self.sent_big.set()
            length = b"Content-Length: %d\r\n" % size if with_length else b""
            out.write(b"--frame\r\nContent-Type: image/jpeg\r\n" + length + b"\r\n")
            left = size
            while left > 0:
                out.write(CHUNK[:left])
                left -= len(CHUNK)
            out.write(b"\r\n")
        for i in range(100_000):
            out.write(_part(self.after[i % len(self.after)]))
            time.sleep(0.05)


def _scrape(port: int, name: str, labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(part in line for part in labels.split(",")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("size, with_length", [(200 * MB, True), (300 * MB, False)],
                         ids=["200MB-with-length", "300MB-without-length"])
def test_an_oversized_part_is_discarded_counted_and_costs_bounded_memory(write_config, redis_url, redis_client,
                                                                          size, with_length):
    camera = HostileCamera(size, with_length)
    metrics_port = free_port()
    path = write_config([{"id": "big", "source": camera.server.url("/video.mjpg"), "fps": 30}],
                        redis_url=redis_url, metrics_port=metrics_port)
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ps = psutil.Process(proc.pid)

        def published() -> list[bytes]:
            return [f.jpeg for f in frames_in(redis_client, "big")]

        _wait_for(lambda: len(published()) >= 10, 60, "frames before the oversized part")
        baseline = ps.memory_info().rss
        camera.go.set()
        peak = baseline
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(f in camera.after for f in published()[-3:]):
            peak = max(peak, ps.memory_info().rss)
            time.sleep(0.01)
        for _ in range(50):  # and while the frames after it flow
            peak = max(peak, ps.memory_info().rss)
            time.sleep(0.02)
        frames = published()
        print(f"\n{size // MB} MB part, length={with_length}: RSS baseline {baseline / MB:.0f} MB, "
              f"peak {peak / MB:.0f} MB (+{(peak - baseline) / MB:.0f} MB)")
        assert camera.sent_big.is_set()
        assert sum(f in camera.after for f in frames) >= 3, "no frames published after the oversized part"
        assert all(f in camera.before or f in camera.after for f in frames)  # nothing of the big part
        assert peak - baseline <= RSS_HEADROOM, f"RSS {baseline / MB:.0f} MB -> peak {peak / MB:.0f} MB"
        assert _scrape(metrics_port, "framecast_producer_frames_dropped_total", 'camera="big",reason="encode"') == 1
        assert read_stats(redis_client, Keys(), "big").get("reconnects", 0) == 0  # resynced, not reconnected
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        camera.go.set()
        camera.server.close()
    assert proc.returncode == 0, err[-2000:]


class OneShotCamera:
    """A camera that serves one frame per connection and closes it; counts the connections."""

    def __init__(self):
        self.connections = 0
        self.lock = threading.Lock()
        frame = _jpegs(3, 1)[0]
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with camera.lock:
                    camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(_part(frame))
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = LoopbackServer(Handler)


def _most_opens_within(seconds: float) -> int:
    """The most connections the reconnect schedule allows in `seconds`: every delay at its shortest
    (the jitter takes off at most half)."""
    opens, elapsed, failures = 1, 0.0, 0
    while True:
        elapsed += 0.5 * min(publisher.RECONNECT_CAP_S, publisher.RECONNECT_BASE_S * 2 ** failures)
        failures += 1
        if elapsed > seconds:
            return opens
        opens += 1


def test_a_camera_that_closes_after_each_frame_is_reconnected_on_backoff(write_config, redis_url, redis_client):
    camera = OneShotCamera()
    try:
        pub = make_publisher(write_config, redis_url, {"id": "oneshot", "source": camera.server.url("/v.mjpg")})
        thread = threading.Thread(target=pub.run, daemon=True)
        started = time.monotonic()
        thread.start()
        _wait_for(lambda: camera.connections >= 3, 30, "three connections")
        time.sleep(max(0.0, 6.0 - (time.monotonic() - started)))
        pub.stop.set()
        thread.join(timeout=10)
        elapsed = time.monotonic() - started
        assert not thread.is_alive()
        settled = -1
        while settled != camera.connections:  # the last connection may still be in the accept queue
            settled = camera.connections
            time.sleep(0.3)
    finally:
        camera.server.close()
    connections = camera.connections
    assert 3 <= connections <= _most_opens_within(elapsed), (connections, elapsed)
    reconnects = REGISTRY.get_sample_value("framecast_producer_source_reconnects_total", {"camera": "oneshot"})
    assert reconnects == connections - 1
    assert read_stats(redis_client, Keys(), "oneshot")["reconnects"] == connections - 1
    assert redis_client.xlen(Keys().frames("oneshot")) >= 1  # each connection's frame still flows
    print(f"\n{connections} connections in {elapsed:.1f} s, {reconnects:.0f} reconnects counted")
