"""A worker's counts are written in the same transaction as the XACK of what they count, so a
worker SIGKILLed mid-backlog leaves stats that match the records exactly (no unflushed second)."""

import signal
import time

from common import envelope
from common.envelope import Frame
from common.keys import FRAME_FIELD
from common.registry import live_members
from common.stats import read_stats
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import KEYS, start_worker_process, wait_until

FRAMES = 200


def test_sigkilled_worker_leaves_exact_counts(write_config, redis_url, redis_client, sample_images):
    path = write_config([{"id": "cam1", "source": "pattern", "mode": "backlog"}], redis_url=redis_url)
    proc = start_worker_process(path)
    try:
        assert wait_until(lambda: len(live_members(redis_client, KEYS, "worker")) == 1, 120)
        pipe = redis_client.pipeline(transaction=False)
        for seq in range(FRAMES):
            frame = (Frame("cam1", 1, seq, time.time_ns(), 10, 10, b"\xff\xd8 not a jpeg") if seq % 10 == 5
                     else make_frame(sample_images[seq % 40], seq=seq))
            pipe.xadd(KEYS.frames("cam1"), {FRAME_FIELD: envelope.encode(frame)})
        pipe.execute()
        assert wait_until(lambda: redis_client.xlen(KEYS.detections("cam1")) >= 25, 120)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    records, dead = redis_client.xlen(KEYS.detections("cam1")), redis_client.xlen(KEYS.deadletter("cam1"))
    assert dead >= 2 and records + dead < FRAMES  # killed mid-backlog, after some bad frames
    stats = read_stats(redis_client, KEYS, "cam1")
    assert (stats["processed"], stats["failed"]) == (records, dead)
    assert "deadlettered" not in stats and "last_processed_ms" not in stats
