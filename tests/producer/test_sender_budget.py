"""A camera sending legal frames just under the envelope limit costs bounded memory.

Each FrameSender holds at most SEND_BUDGET_BYTES of frames in its queue and as much in one pipelined
batch (and never more than `send_queue` frames): a live camera loses its oldest queued frame
(`queue_full`), a backlog camera waits for room. In-process on a real Redis: the queue's bytes never
exceed the budget. A real producer process reading a real loopback camera that streams ~15 MiB frames
keeps its peak RSS within the bound the sender's docstring states (frames in flight of the camera's
size), publishes frames and counts the drops."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from prometheus_client import REGISTRY

from common import envelope, jpeg
from common.connection import connect
from common.envelope import Frame
from common.keys import FRAME_FIELD, Keys
from common.logs import camera_logger
from common.stats import CameraAccount
from producer import sender as sender_module
from producer.sender import SEND_BUDGET_BYTES, FrameSender
from tests.conftest import REPO
from tests.loopback_http import mjpeg_server
from tests.producer.test_hostile_cameras import _part, _scrape, _wait_for
from testsupport.redis_server import free_port

MB = 1024 * 1024
FRAME_BYTES = 15 * MB  # legal: under the 16 MiB envelope limit
# The producer's peak RSS over its baseline with a camera streaming FRAME_BYTES frames: at most this
# many frames of that size in flight (see producer/sender.py), plus allocator slack.
FRAMES_IN_FLIGHT = sender_module.FRAMES_IN_FLIGHT
SLACK = 24 * MB  # the interpreter, socket buffers, 256 KB reads and the metrics server meanwhile


def _padded_jpeg(seed: int, size: int) -> bytes:
    """A small valid JPEG padded after its end-of-image marker to `size` bytes: a legal frame whose
    header any reader accepts, as large as a hostile camera likes."""
    rng = np.random.default_rng(seed)
    small = jpeg.encode(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), 75)
    return small + bytes(size - len(small))


class StreamingCamera:
    """An MJPEG camera on loopback: small frames until `go` is set, then `size`-byte frames at `fps`
    until `stop` is set; `big_sent` counts the large ones."""

    def __init__(self, size: int, fps: float):
        self.small = _padded_jpeg(1, 64 * 1024)
        self.big = [_padded_jpeg(seed, size) for seed in (2, 3)]
        self.heads = {b[:64] for b in self.big}
        self.go, self.stop = threading.Event(), threading.Event()
        self.big_sent = 0
        self.server = mjpeg_server(lambda out: self.serve(out, fps))

    def serve(self, out, fps: float) -> None:
        while not self.go.is_set() and not self.stop.is_set():
            out.write(_part(self.small))
            time.sleep(0.05)
        period, due = 1.0 / fps, time.monotonic()
        while not self.stop.is_set():
            data = self.big[self.big_sent % 2]
            out.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(data))
            out.write(data)
            out.write(b"\r\n")
            self.big_sent += 1
            due += period
            time.sleep(max(0.0, due - time.monotonic()))


def _published(metrics_port: int) -> float:
    """Frames the producer process has published (0 until its metrics server answers)."""
    try:
        return _scrape(metrics_port, "framecast_producer_frames_published_total", 'camera="huge"')
    except OSError:
        return 0.0


def _peak_rss(pid: int) -> int:
    """The process's peak resident set since its last reset (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def _reset_peak_rss(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux 4.0+)


@pytest.mark.parametrize("fps", [10, 30])
def test_a_camera_streaming_frames_under_the_limit_costs_bounded_memory(write_config, redis_url, redis_client, fps):
    camera = StreamingCamera(FRAME_BYTES, fps)
    metrics_port = free_port()
    path = write_config([{"id": "huge", "source": camera.server.url("/video.mjpg"), "fps": 30}],
                        redis_url=redis_url, metrics_port=metrics_port, streams={"frames_maxlen": 4})
    proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(path)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    key = Keys().frames("huge")
    try:
        ps = psutil.Process(proc.pid)
        _wait_for(lambda: _published(metrics_port) >= 10, 60, "small frames before the large ones")
        time.sleep(1.0)  # settled: the metrics server, the sender and the reader have all run
        baseline = ps.memory_info().rss
        _reset_peak_rss(proc.pid)
        published_before = _published(metrics_port)
        camera.go.set()
        sampled = baseline
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            sampled = max(sampled, ps.memory_info().rss)
            time.sleep(0.01)
        peak = max(sampled, _peak_rss(proc.pid))
        published = _published(metrics_port)
        big_published = sum(len(fields[FRAME_FIELD]) > FRAME_BYTES for _, fields in redis_client.xrange(key))
        dropped = {reason: _scrape(metrics_port, "framecast_producer_frames_dropped_total",
                                   f'camera="huge",reason="{reason}"') for reason in ("late", "queue_full", "redis")}
        captured = _scrape(metrics_port, "framecast_producer_frames_captured_total", 'camera="huge"')
        bound = FRAMES_IN_FLIGHT * FRAME_BYTES + SLACK
        print(f"\n{fps} fps of {FRAME_BYTES // MB} MiB frames: camera sent {camera.big_sent}, producer captured "
              f"{captured:.0f} in all, published {published - published_before:.0f} large, dropped {dropped}; "
              f"RSS baseline {baseline / MB:.0f} MB, peak {peak / MB:.0f} MB (+{(peak - baseline) / MB:.0f} MB; "
              f"sampled +{(sampled - baseline) / MB:.0f} MB), bound +{bound / MB:.0f} MB")
        assert camera.big_sent >= 3 * fps
        assert big_published >= 1 and published - published_before >= 10, "large frames were not published"
        # Every frame read is published, counted as dropped, or among the few still on their way.
        decimated = _scrape(metrics_port, "framecast_producer_frames_decimated_total", 'camera="huge"')
        assert 0 <= captured - published - decimated - sum(dropped.values()) <= FRAMES_IN_FLIGHT
        assert peak - baseline <= bound, f"RSS {baseline / MB:.0f} MB -> peak {peak / MB:.0f} MB"
    finally:
        camera.stop.set()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        camera.server.close()
    assert proc.returncode == 0, err[-2000:]


# ---- the sender's queue, in process on a real Redis -----------------------------------------------------
def _frame(cam: str, seq: int, size: int) -> Frame:
    return Frame(cam, 1, seq, time.time_ns(), 160, 120, b"\xff\xd8" + bytes(size - 2))


def _sender(redis_url: str, cam: str, backlog: bool, capacity: int = 100):
    client = connect(redis_url)
    account = CameraAccount(client, Keys(), cam)
    stop = threading.Event()
    sender = FrameSender(client, Keys().frames(cam), 1000, account, camera_logger("test", cam),
                         capacity=capacity, backlog=backlog, stop=stop)
    return sender, stop


def _queued_bytes(sender: FrameSender) -> int:
    with sender._cond:
        return sum(len(f.jpeg) for f in sender._queue)


def _dropped(cam: str, reason: str) -> float:
    return REGISTRY.get_sample_value("framecast_producer_frames_dropped_total",
                                     {"camera": cam, "reason": reason}) or 0.0


def _hold_writes(client) -> None:
    """Redis holds every write (CLIENT PAUSE WRITE) for a few seconds, well within the sender's
    socket timeout: the sender's batch waits in `execute` and its next frames queue up."""
    client.client_pause(4000, all=False)


def test_live_sender_queue_stays_within_its_byte_budget_dropping_the_oldest(redis_url, redis_client):
    sender, stop = _sender(redis_url, "livebudget", backlog=False)
    size = SEND_BUDGET_BYTES // 4 + 1  # three fit in the budget, four do not
    key = Keys().frames("livebudget")
    try:
        _hold_writes(redis_client)
        assert sender.submit(_frame("livebudget", 0, 1000), wait=False)
        _wait_for(lambda: sender._in_flight == 1, 10, "the first frame in flight")
        before = _dropped("livebudget", "queue_full")
        most = 0
        for seq in range(1, 21):
            assert sender.submit(_frame("livebudget", seq, size), wait=False)
            most = max(most, _queued_bytes(sender))
        with sender._cond:
            queued = [f.seq for f in sender._queue]
        assert most <= SEND_BUDGET_BYTES
        assert queued == [18, 19, 20]  # the newest kept, the oldest dropped
        assert _dropped("livebudget", "queue_full") - before == 17
        redis_client.client_unpause()
        assert sender.flush(10)
        assert [envelope.decode(fields[FRAME_FIELD]).seq for _, fields in redis_client.xrange(key)] == [0, 18, 19, 20]
    finally:
        redis_client.client_unpause()
        stop.set()
        sender.close()


def test_backlog_sender_waits_for_room_within_its_byte_budget(redis_url, redis_client):
    sender, stop = _sender(redis_url, "backbudget", backlog=True)
    size = SEND_BUDGET_BYTES // 4 + 1
    key = Keys().frames("backbudget")
    submitted: list[int] = []

    def submit_all():
        for seq in range(1, 13):
            if sender.submit(_frame("backbudget", seq, size), wait=True):
                submitted.append(seq)

    try:
        _hold_writes(redis_client)
        assert sender.submit(_frame("backbudget", 0, 1000), wait=True)
        _wait_for(lambda: sender._in_flight == 1, 10, "the first frame in flight")
        thread = threading.Thread(target=submit_all, daemon=True)
        thread.start()
        _wait_for(lambda: len(submitted) >= 3, 10, "three frames queued")
        time.sleep(0.5)
        assert len(submitted) == 3, "a backlog submit did not wait for room"  # the fourth waits
        assert _queued_bytes(sender) <= SEND_BUDGET_BYTES
        redis_client.client_unpause()
        most, batch = 0, 0
        while thread.is_alive():
            most, batch = max(most, _queued_bytes(sender)), max(batch, sender._in_flight)
            time.sleep(0.001)
        thread.join(timeout=30)
        assert submitted == list(range(1, 13))
        assert sender.flush(30)
        assert most <= SEND_BUDGET_BYTES and batch * size <= SEND_BUDGET_BYTES
        seqs = [envelope.decode(fields[FRAME_FIELD]).seq for _, fields in redis_client.xrange(key)]
        assert seqs == list(range(13))  # none lost, in order
        assert _dropped("backbudget", "backpressure") == _dropped("backbudget", "shutdown") == 0
    finally:
        redis_client.client_unpause()
        stop.set()
        sender.close()
