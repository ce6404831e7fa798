"""Stage timing through the real pipeline: a producer publisher and a worker on a real redis-server.
Every annotated frame carries all its stage marks, in pipeline order, and its stage durations add up
to no more than its end-to-end latency (the order and the sums, never the values)."""

import json
import threading

from prometheus_client import REGISTRY

from common import envelope
from common.config import load_config
from common.connection import connect
from common.envelope import MARKS, STAGES
from common.keys import DETECTIONS_FIELD, FRAME_FIELD
from producer.publisher import CameraPublisher
from tests.worker.live.test_consumer import KEYS, InProcessWorker, wait_until


def stage_count(cam, stage):
    return REGISTRY.get_sample_value("framecast_worker_stage_ms_count", {"camera": cam, "stage": stage}) or 0.0


def test_frames_carry_ordered_consistent_stage_marks(write_config, redis_url, redis_client):
    cam = {"id": "timed", "source": "pattern", "fps": 10, "mode": "live", "max_width": 320}
    settings = load_config(write_config([cam], redis_url=redis_url), env={})
    before = {stage: stage_count("timed", stage) for stage in STAGES}
    stop = threading.Event()
    publisher = CameraPublisher(settings.cameras[0], settings, connect(redis_url), stop)
    with InProcessWorker(settings):
        assert wait_until(lambda: redis_client.exists(KEYS.frames("timed")), 30)
        thread = threading.Thread(target=publisher.run, daemon=True)
        thread.start()
        try:
            assert wait_until(lambda: redis_client.xlen(KEYS.annotated("timed")) >= 8, 60)
        finally:
            stop.set()
            thread.join(10)
    entries = redis_client.xrange(KEYS.annotated("timed"))
    records = {(r["run"], r["seq"]): r for r in
               (json.loads(f[DETECTIONS_FIELD]) for _, f in redis_client.xrange(KEYS.detections("timed")))}
    assert len(entries) >= 8
    for entry_id, fields in entries:
        frame = envelope.decode(fields[FRAME_FIELD])
        marks = frame.marks_us()
        assert list(marks) == list(MARKS), f"frame {frame.seq} lacks marks: {marks}"
        offsets = [0, *marks.values()]  # capture, then each mark
        assert offsets == sorted(offsets), f"frame {frame.seq} marks out of order: {marks}"
        stages = frame.stage_ms()
        assert list(stages) == list(STAGES) and all(ms >= 0 for ms in stages.values())
        in_redis_ms = int(entry_id.split(b"-")[0]) + 1  # the entry id is Redis's clock, floored to the ms
        end_to_end_ms = in_redis_ms - frame.ts / 1e6
        assert sum(stages.values()) <= end_to_end_ms
        assert frame.ts / 1e6 + marks["published"] / 1000 <= in_redis_ms  # published, then in Redis
        assert records[(frame.run, frame.seq)]["stages_ms"] == {k: round(v, 3) for k, v in stages.items()}
    assert all(stage_count("timed", stage) - before[stage] >= len(entries) for stage in STAGES)
