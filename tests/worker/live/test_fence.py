"""The publishing fence: a worker SIGSTOPped while it holds frames has them reclaimed by another
worker; when it resumes, its late publications find the entries no longer its own and write nothing,
so every frame has exactly one detection record and the counts match the records."""

import json
import signal
import time

from common.keys import DETECTIONS_FIELD, WORKER_GROUP
from common.registry import live_members
from common.stats import read_stats
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import KEYS, publish, start_worker_process, wait_until

FRAMES = 80


def _pending_of(client, consumer: str) -> list:
    return client.xpending_range(KEYS.frames("cam1"), WORKER_GROUP, "-", "+", 100, consumername=consumer)


def _stop_holding(proc, client, tries: int = 40) -> list:
    """SIGSTOP the worker at a moment it holds frames (delivered to it, not acknowledged); returns them."""
    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        held = _pending_of(client, proc.consumer_name)
        if held:
            return held
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.03)
    raise AssertionError("the worker never held a frame when stopped")


def _end(proc) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 - killed below
            proc.kill()
            proc.wait(timeout=10)
    return proc.stderr.read() if proc.stderr else ""


def test_resumed_worker_does_not_publish_reclaimed_frames(write_config, redis_url, redis_client, sample_images):
    path = write_config([{"id": "cam1", "source": "pattern", "mode": "backlog"}], redis_url=redis_url,
                        worker={"claim_idle_ms": 1000})
    first = start_worker_process(path)
    second = None
    try:
        assert wait_until(lambda: len(live_members(redis_client, KEYS, "worker")) == 1, 120)
        publish(redis_client, [make_frame(sample_images[i % 40], seq=i) for i in range(FRAMES)])
        assert wait_until(lambda: redis_client.xlen(KEYS.detections("cam1")) >= 5, 120)
        held = _stop_holding(first, redis_client)
        second = start_worker_process(path)
        # The second worker reclaims what the stopped one held and finishes the backlog.
        assert wait_until(lambda: not _pending_of(redis_client, first.consumer_name), 120)
        assert wait_until(lambda: redis_client.xlen(KEYS.detections("cam1")) >= FRAMES, 180)
        first.send_signal(signal.SIGCONT)  # its late publications of the held frames run now
        time.sleep(3.0)
        logs = _end(first) + _end(second)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(timeout=10)
    records = [json.loads(fields[DETECTIONS_FIELD]) for _, fields in redis_client.xrange(KEYS.detections("cam1"))]
    seqs = sorted(int(r["seq"]) for r in records)
    assert seqs == list(range(FRAMES)), f"held {[h['message_id'] for h in held]}; records per seq " \
        f"{ {s: seqs.count(s) for s in set(seqs) if seqs.count(s) != 1} }"
    assert int(read_stats(redis_client, KEYS, "cam1")["processed"]) == FRAMES
    assert not _pending_of(redis_client, first.consumer_name)
    assert "no longer this worker's" in logs, logs[-3000:]
