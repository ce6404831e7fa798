"""A JPEG decompression bomb (a tiny envelope whose JPEG header claims a huge picture) is
dead-lettered from its header, before decoding, by a real worker process whose memory stays flat."""

import signal
import time

import cv2
import numpy as np
import psutil

from common import envelope
from common.envelope import Frame
from common.keys import FRAME_FIELD
from common.registry import live_members
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import KEYS, annotated, pending, start_worker_process, wait_until


def bomb(claim_w: int, claim_h: int) -> bytes:
    """A valid 64x48 JPEG whose start-of-frame header is patched to claim claim_w x claim_h."""
    data = bytearray(cv2.imencode(".jpg", np.full((48, 64, 3), 100, np.uint8))[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = claim_h.to_bytes(2, "big") + claim_w.to_bytes(2, "big")
    return bytes(data)


def peak_rss_mb(pid: int) -> float:
    """The process's high-water resident set (VmHWM), which a short-lived allocation still raises."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_jpeg_bombs_are_dead_lettered_before_decoding(write_config, redis_url, redis_client, sample_images):
    path = write_config([{"id": "cam1", "source": "pattern", "mode": "backlog"}], redis_url=redis_url)
    proc = start_worker_process(path)
    try:
        assert wait_until(lambda: len(live_members(redis_client, KEYS, "worker")) == 1, 120)
        key = KEYS.frames("cam1")
        redis_client.xadd(key, {FRAME_FIELD: envelope.encode(make_frame(sample_images[0], seq=0))})
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) == 1, 60)
        baseline = peak_rss_mb(proc.pid)
        # 20000x20000 behind a 64x48 envelope (decoded, 1.2 GB), and 16000x16000 announced by both (768 MB).
        lying = Frame("cam1", 1, 1, time.time_ns(), 64, 48, bomb(20000, 20000))
        honest = Frame("cam1", 1, 2, time.time_ns(), 16000, 16000, bomb(16000, 16000))
        assert len(lying.jpeg) < 1000 and len(honest.jpeg) < 1000
        for frame in (lying, honest):
            redis_client.xadd(key, {FRAME_FIELD: envelope.encode(frame)})
        redis_client.xadd(key, {FRAME_FIELD: envelope.encode(make_frame(sample_images[1], seq=3))})
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) == 2, 60)  # and it went on
        assert wait_until(lambda: pending(redis_client, "cam1") == 0, 30)
        dead = [f for _, f in redis_client.xrange(KEYS.deadletter("cam1"))]
        assert [f[b"reason"] for f in dead] == [b"jpeg", b"jpeg"]
        assert b"JPEG header says 20000x20000, the frame says 64x48" in dead[0][b"error"]
        assert b"exceeds the limit of 33177600 pixels" in dead[1][b"error"]
        assert [f.seq for f in annotated(redis_client, "cam1")] == [0, 3]
        assert peak_rss_mb(proc.pid) - baseline < 300, "the worker decoded a bomb"
        assert psutil.Process(proc.pid).memory_info().rss / 2**20 < baseline + 300
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
