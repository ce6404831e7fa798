import http.client
import re
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from werkzeug.serving import make_server

from common import envelope
from common.config import load_config
from common.connection import connect
from common.envelope import Detection, Frame
from common.keys import FRAME_FIELD, Keys
from tests.conftest import REPO
from testsupport.redis_server import free_port
from web.app import create_app

KEYS = Keys("fc")
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


_NOISE = np.random.default_rng(7).integers(0, 255, (480, 640, 3), dtype=np.uint8)


def jpeg_of(n: int, size=(160, 120), noisy: bool = False) -> bytes:
    """A numbered JPEG; `noisy` makes a large one (~400 KB) that fills socket buffers quickly."""
    if noisy:
        image = np.roll(_NOISE, n, axis=1)
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    image = np.full((size[1], size[0], 3), 40 + (n * 23) % 150, np.uint8)
    cv2.putText(image, str(n), (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
    return cv2.imencode(".jpg", image)[1].tobytes()


def publish(client, cam: str, seq: int, run: int = 1, ts: int | None = None, raw: bool = False,
            noisy: bool = False) -> None:
    """XADD a frame as a worker (annotated) or the producer (raw) would."""
    dets = None if raw else [Detection("person", 0.9, (1, 1, 20, 20), 0)]
    frame = Frame(cam, run, seq, ts or time.time_ns(), 160, 120, jpeg_of(seq, noisy=noisy), dets, {"worker": "test"})
    key = KEYS.frames(cam) if raw else KEYS.annotated(cam)
    client.xadd(key, {FRAME_FIELD: envelope.encode(frame)}, maxlen=50, approximate=True)


class Publisher:
    """Publishes frames of a camera at `fps` on a thread until stopped."""

    def __init__(self, client, cam="cam1", fps=20.0, raw=False, noisy=False):
        self.client, self.cam, self.fps, self.raw, self.noisy = client, cam, fps, raw, noisy
        self.seq = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def publish_one(self):
        publish(self.client, self.cam, self.seq, raw=self.raw, noisy=self.noisy)
        self.seq += 1

    def _run(self):
        while not self.stop.is_set():
            self.publish_one()
            self.stop.wait(1 / self.fps)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)


def read_parts(response, count: int, timeout: float = 20.0) -> list[tuple[dict, bytes]]:
    """Read `count` multipart parts (headers, body) from a streaming http.client response."""
    buffer, parts = b"", []
    deadline = time.monotonic() + timeout
    while len(parts) < count and time.monotonic() < deadline:
        chunk = response.read1(65536)
        if not chunk:
            break
        buffer += chunk
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end]
            match = _LENGTH.search(head)
            if not match:
                buffer = buffer[end + 4:]
                continue
            length = int(match.group(1))
            if len(buffer) < end + 4 + length:
                break
            headers = {}
            for line in head.split(b"\r\n"):
                if b":" in line:
                    k, v = line.split(b":", 1)
                    headers[k.strip().lower().decode()] = v.strip().decode()
            parts.append((headers, buffer[end + 4:end + 4 + length]))
            buffer = buffer[end + 4 + length:]
    return parts


@pytest.fixture
def app_for(write_config, redis_url, redis_client):
    """app_for(cameras, **web) -> a web app on the test's Redis; its figures' refresher stops after."""
    apps = []

    def _make(cameras, **web):
        settings = load_config(write_config(cameras, redis_url=redis_url, web=web), env={})
        app = create_app(settings, redis_client)
        apps.append(app)
        return app

    yield _make
    for app in apps:
        app.extensions["framecast"].shutdown()


@pytest.fixture
def web_config(write_config, redis_url):
    def _make(**web):
        cams = [{"id": "cam1", "source": "rtsp://admin:hunter2@10.0.0.9/live"}, {"id": "cam2", "source": "pattern"}]
        # figures_interval 0: each request computes the camera figures, so a test sees what it just
        # wrote (tests/web/test_many_cameras.py tests the shared, once-per-interval figures).
        defaults = {"no_signal_after": 1.5, "reader_linger": 1.0, "stale_after": 2.0, "figures_interval": 0}
        return load_config(write_config(cams, redis_url=redis_url, web={**defaults, **web}), env={})

    return _make


class LiveServer:
    """The app under werkzeug's threaded server on a free port, in this process (its state is inspectable)."""

    def __init__(self, settings):
        self.app = create_app(settings, connect(settings.redis_url))
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def state(self):
        return self.app.extensions["framecast"]

    def get(self, path, timeout=10.0, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("GET", path, headers=headers or {})
        return conn.getresponse()

    def close(self):
        self.state.shutdown()  # its feeds, followers and figures' refresher end with the test
        self.server.shutdown()


@pytest.fixture
def live_server(web_config):
    servers = []

    def _start(**web):
        server = LiveServer(web_config(**web))
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.close()


def get(port: int, path: str, timeout: float = 10.0, headers=None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path, headers=headers or {})
    return conn.getresponse()


class WebProcess:
    """`framecast web` as a subprocess on a free port: gunicorn + gevent as in production, or --dev."""

    def __init__(self, config_path, *args: str, port: int | None = None):
        self.config_path, self.args = config_path, args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "framecast", "web", "--config", str(config_path), "--host", "127.0.0.1",
             "--port", str(self.port), *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(self.port, "/healthz", timeout=2).status == 200:
                    break
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError("framecast web exited: " + self.proc.stdout.read().decode()) from None
                assert time.monotonic() < deadline, "framecast web did not start"
                time.sleep(0.2)

    def get(self, path, timeout=10.0, headers=None):
        return get(self.port, path, timeout, headers)

    def restart(self) -> None:
        """Stop the process and start a new one on the same port (what a deploy does)."""
        self.stop()
        self.__init__(self.config_path, *self.args, port=self.port)

    def stop(self) -> str:
        """Stop the process (SIGTERM) and return what it printed."""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out.decode(errors="replace")


@pytest.fixture
def web_process(write_config, redis_url):
    """web_process(*args, cameras=None, **settings) starts `framecast web` on the test's Redis."""
    procs = []

    def _start(*args, cameras=None, **settings):
        cams = cameras or [{"id": "cam1", "name": "Test camera", "source": "pattern"}]
        proc = WebProcess(write_config(cams, redis_url=redis_url, **settings), *args)
        procs.append(proc)
        return proc

    yield _start
    for proc in procs:
        proc.stop()
