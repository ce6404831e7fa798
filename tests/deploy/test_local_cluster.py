"""`framecast up` (what `make run` calls), end to end: the sample clip through a private Redis, a
producer, two workers and the web tier under supervisord, then a clean stop with nothing left."""

import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from tests.conftest import REPO
from testsupport.redis_server import free_port

pytestmark = pytest.mark.slow


def _get(port, path, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def _read_mjpeg_parts(port, cam, parts=3, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", f"/video_feed/{cam}")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("multipart/x-mixed-replace")
    buffer, jpegs = b"", []
    deadline = time.monotonic() + timeout
    while len(jpegs) < parts and time.monotonic() < deadline:
        buffer += response.read1(65536)
        while True:
            start = buffer.find(b"\xff\xd8")
            end = buffer.find(b"\xff\xd9", start + 2) if start >= 0 else -1
            if start < 0 or end < 0:
                break
            jpegs.append(buffer[start:end + 2])
            buffer = buffer[end + 2:]
    conn.close()
    return jpegs


def _counter(metrics_text: str, name: str) -> float:
    found = re.search(rf'^{name}{{camera="sample"}} ([0-9.e+]+)$', metrics_text, re.M)
    return float(found.group(1)) if found else 0.0


def test_local_cluster_runs_the_sample_and_stops_cleanly(tmp_path):
    web_port, redis_port, metrics_port = free_port(), free_port(), free_port()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "framecast", "up", "--config", str(REPO / "cameras.yaml"), "--run-dir",
         str(run_dir), "--port", str(web_port), "--redis-port", str(redis_port), "--workers", "2",
         "--metrics-port", str(metrics_port)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    cluster: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        while not any("framecast: up" in line for line in output):
            assert proc.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "cluster not ready in 300 s:\n" + "".join(output)
            time.sleep(1)
        cluster = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in cluster)
        assert "redis-server" in names and "producer" in names and names.count(" worker") >= 2

        status, body = _get(web_port, "/api/cameras")
        assert status == 200
        assert "sample" in body.decode()

        jpegs = _read_mjpeg_parts(web_port, "sample", parts=3)
        assert len(jpegs) == 3

        labels: set[str] = set()
        deadline = time.monotonic() + 120
        while not labels & {"person", "car"} and time.monotonic() < deadline:
            status, body = _get(web_port, "/api/cameras/sample/detections?limit=500")
            assert status == 200
            for line in body.decode().splitlines():
                record = json.loads(line)
                labels.update(d["label"] for d in record.get("detections", []))
            time.sleep(1)
        assert labels & {"person", "car"}, f"no person/car detections; saw {labels}"

        # The clip plays at 10 fps; the rates come from the producer's and workers' heartbeats.
        camera, deadline = {}, time.monotonic() + 30
        while time.monotonic() < deadline:
            camera = json.loads(_get(web_port, "/api/cameras")[1])["cameras"][0]
            if camera["fps_in"] > 7 and camera["fps_out"] > 7:
                break
            time.sleep(1)
        assert 7 < camera["fps_in"] < 13 and 7 < camera["fps_out"] < 13, camera

        # Each producer and worker process serves its own Prometheus port (the ones `up` printed).
        first, last = map(int, re.search(r"metrics of the producers and workers on ports (\d+)-(\d+)",
                                         "".join(output)).groups())
        assert last - first == 2  # one camera, two workers
        producer = _get(first, "/metrics")[1].decode()
        assert _counter(producer, "framecast_producer_frames_published_total") > 0
        processed = [_counter(_get(port, "/metrics")[1].decode(), "framecast_worker_frames_processed_total")
                     for port in (first + 1, last)]
        assert all(n > 0 for n in processed), processed  # both workers share the camera
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    gone, alive = psutil.wait_procs(cluster, timeout=30)
    assert not alive, f"left behind: {[p.pid for p in alive]}"
    assert "framecast: stopped" in "".join(output)
