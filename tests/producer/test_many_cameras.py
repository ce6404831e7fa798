"""Many cameras, bounded threads (#23): a producer's threads do not grow with its paced cameras.

A real producer process with 200 test-pattern cameras at a low rate, plus a live camera that never
sends a byte and one whose address refuses connections, into a real redis-server: its thread count
stays within 16 + cameras/32, every pattern camera publishes, each camera's frames are in capture
order. In process: the pool never runs two steps of one camera at once, a camera whose reads block
does not stall the others, and the send loop carries many cameras' frames in one round trip, a key
Redis refuses failing only its own camera."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
from prometheus_client import REGISTRY

from common import envelope
from common.config import load_config
from common.connection import connect
from common.envelope import Frame
from common.keys import FRAME_FIELD, Keys
from common.logs import camera_logger
from common.stats import CameraAccount
from producer.publisher import CameraPublisher
from producer.scheduler import Scheduler
from producer.send_loop import SendLoop
from producer.sender import FrameSender
from producer.sources import Source
from tests.conftest import REPO
from tests.producer.test_hostile_cameras import _wait_for
from testsupport.redis_server import free_port

CAMERAS = 200


def thread_bound(cameras: int) -> float:
    """Target 2 of issue #23."""
    return 16 + cameras / 32


def seqs_in(client, cam: str) -> list[tuple[int, int]]:
    return [(f.run, f.seq) for f in (envelope.decode(fields[FRAME_FIELD])
                                     for _, fields in client.xrange(Keys().frames(cam)))]


class SilentCamera:
    """A TCP endpoint that accepts connections and never sends a byte (a camera that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def test_a_producer_with_200_cameras_keeps_its_threads_bounded(write_config, redis_url, redis_client):
    silent = SilentCamera()
    cams = [{"id": f"c{i:03d}", "source": "pattern", "fps": 0.5, "max_width": 96} for i in range(CAMERAS)]
    live = [{"id": "hung", "source": f"http://127.0.0.1:{silent.port}/video.mjpg"},
            {"id": "refused", "source": f"rtsp://127.0.0.1:{free_port()}/live"}]
    path = write_config(cams + live, redis_url=redis_url, metrics_port=free_port(), log_format="text")
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ps = psutil.Process(proc.pid)
        most_threads = 0

        def every_camera_published(frames: int) -> bool:
            nonlocal most_threads
            most_threads = max(most_threads, ps.num_threads())
            assert proc.poll() is None, "the producer exited"
            pipe = redis_client.pipeline(transaction=False)
            for cam in cams:
                pipe.xlen(Keys().frames(cam["id"]))
            return min(pipe.execute()) >= frames

        _wait_for(lambda: every_camera_published(3), 90, "three frames from every pattern camera")
        for _ in range(10):
            most_threads = max(most_threads, ps.num_threads())
            time.sleep(0.1)
        cameras = len(cams) + len(live)
        print(f"\n{cameras} cameras: at most {most_threads} threads (bound {thread_bound(cameras):.1f}), "
              f"RSS {ps.memory_info().rss / 2**20:.0f} MB")
        assert most_threads <= thread_bound(cameras)
        for cam in cams:
            frames = seqs_in(redis_client, cam["id"])
            assert frames == sorted(set(frames)), f"{cam['id']}'s frames out of order"
        assert redis_client.xlen(Keys().frames("hung")) == 0
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        silent.close()
    assert proc.returncode == 0, err[-3000:]
    assert "producer stopped" in err


class WatchedSource(Source):
    """A paced source that records whether two reads ever overlapped; reads take `delay` seconds."""

    fps = 50.0

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.inside = 0
        self.overlapped = False
        self.reads = 0
        self.lock = threading.Lock()

    def open(self):
        pass

    def read(self):
        with self.lock:
            self.inside += 1
            self.overlapped |= self.inside > 1
        time.sleep(self.delay)
        with self.lock:
            self.inside -= 1
            self.reads += 1
        return np.full((36, 64, 3), self.reads % 255, np.uint8)


def test_the_pool_runs_one_step_of_a_camera_at_a_time_and_a_blocking_camera_stalls_no_other(
        write_config, redis_url, redis_client):
    cams = [{"id": f"w{i}", "source": "pattern", "fps": 20, "max_width": 64} for i in range(6)]
    cams.append({"id": "stuck", "source": "pattern", "fps": 20, "max_width": 64})
    cfg = load_config(write_config(cams, redis_url=redis_url), env={})
    client = connect(redis_url)
    stop = threading.Event()
    loop = SendLoop(client)
    sources = {cam.id: WatchedSource(delay=0.002) for cam in cfg.cameras}
    sources["stuck"].delay = 3.0  # a read that blocks, as a file on a hung network share would
    publishers = [CameraPublisher(cam, cfg, client, stop, source=sources[cam.id], send_loop=loop)
                  for cam in cfg.cameras]
    pool = Scheduler(stop, threads=3)
    pool.add_all(publishers)
    pool.start()
    try:
        time.sleep(2.5)
    finally:
        stop.set()
        pool.join(timeout=15)
        loop.close()
    assert not pool.alive()
    assert not any(source.overlapped for source in sources.values()), "two steps of one camera at once"
    for pub in publishers:
        frames = seqs_in(redis_client, pub.camera.id)
        assert frames == sorted(set(frames))
        if pub.camera.id != "stuck":  # 20 fps for 2.5 s beside a camera blocked all that time
            assert len(frames) >= 20, (pub.camera.id, len(frames))
    assert sources["stuck"].reads == 1


def _frame(cam: str, seq: int) -> Frame:
    return Frame(cam, 1, seq, time.time_ns(), 160, 120, b"\xff\xd8" + bytes(998))


def test_one_round_carries_every_cameras_frames_and_a_refused_key_fails_only_its_camera(redis_url, redis_client):
    client = connect(redis_url)
    loop = SendLoop(client)
    stop = threading.Event()
    names = [f"r{i}" for i in range(40)]
    redis_client.set(Keys().frames("r7"), "not a stream")  # Redis refuses r7's XADD (WRONGTYPE)
    senders = {cam: FrameSender(client, Keys().frames(cam), 100, CameraAccount(client, Keys(), cam),
                                camera_logger("test", cam), capacity=8, backlog=False, stop=stop, loop=loop)
               for cam in names}
    try:
        redis_client.client_pause(1500, all=False)  # the first round waits on the wire...
        senders["r0"].submit(_frame("r0", 0), wait=False)
        _wait_for(lambda: senders["r0"]._in_flight == 1, 10, "the first round on the wire")
        rounds = loop.frame_rounds
        for cam in names:  # ...while every camera queues two frames
            for seq in (1, 2):
                assert senders[cam].submit(_frame(cam, seq), wait=False)
        for cam in names:
            assert senders[cam].flush(10)
        assert loop.frame_rounds - rounds == 1, "the queued frames of 40 cameras took more than one round trip"
        for cam in names:
            if cam != "r7":
                assert [s for _, s in seqs_in(redis_client, cam)] == ([0, 1, 2] if cam == "r0" else [1, 2])
        assert REGISTRY.get_sample_value("framecast_producer_frames_dropped_total",
                                         {"camera": "r7", "reason": "redis"}) == 2
        assert senders["r1"].sent == 2 and senders["r7"].sent == 0
    finally:
        redis_client.client_unpause()
        for sender in senders.values():
            sender.close()
        loop.close()


def test_idle_cameras_cost_the_send_loop_a_few_passes_a_second_not_one_per_camera(redis_url):
    client = connect(redis_url)
    loop = SendLoop(client)
    stop = threading.Event()
    senders = [FrameSender(client, Keys().frames(f"i{i}"), 100, CameraAccount(client, Keys(), f"i{i}"),
                           camera_logger("test", f"i{i}"), capacity=8, backlog=False, stop=stop, loop=loop)
               for i in range(100)]
    try:
        time.sleep(0.5)
        passes = loop.passes
        time.sleep(3.0)
        # every 0.5 s idle, plus the shared stats tick once a second (one pass per camera would be 300)
        assert loop.passes - passes <= 15, loop.passes - passes
    finally:
        for sender in senders:
            sender.close()
        loop.close()
