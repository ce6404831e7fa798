"""Per-stage timing in the web tier: /api/cameras summarises the stages of a camera's newest frames
from Redis (the same in every web process), and the send stage is measured per viewer part."""

import json
import re
import time

from common import envelope
from common.envelope import MARKS, STAGES, Frame
from common.keys import DETECTIONS_FIELD, FRAME_FIELD
from tests.web.conftest import KEYS, jpeg_of, read_parts
from web.app import create_app
from web.stages import WINDOW


def marked_frame(cam: str, seq: int) -> Frame:
    """An annotated frame with every stage mark, as the producer and a worker write them."""
    step = 1_000_000 + 10_000 * (seq % 7)  # stages of a few different lengths
    ts = time.time_ns() - len(MARKS) * step  # published just now
    frame = Frame(cam, 1, seq, ts, 160, 120, jpeg_of(seq), [], {"worker": "w"})
    return frame.stamped(**{name: ts + (i + 1) * step for i, name in enumerate(MARKS)}).annotated(
        jpeg_of(seq), [], published_ns=ts + len(MARKS) * step)


def test_cameras_api_has_p50_and_p95_per_stage_the_same_in_every_process(web_config, redis_client):
    settings = web_config()
    first, second = (create_app(settings, redis_client).test_client() for _ in range(2))
    assert first.get("/api/cameras").json["cameras"][0]["stages"] == {"frames": 0, "p50": {}, "p95": {}}
    pipe = redis_client.pipeline(transaction=False)
    for seq in range(WINDOW + 30):
        pipe.xadd(KEYS.detections("cam1"), {DETECTIONS_FIELD: envelope.detections_record(marked_frame("cam1", seq))})
    pipe.xadd(KEYS.detections("cam1"), {DETECTIONS_FIELD: b"not json"})  # a foreign record is skipped
    pipe.execute()
    cam1 = {c["id"]: c for c in first.get("/api/cameras").json["cameras"]}["cam1"]
    stages = cam1["stages"]
    assert stages["frames"] == WINDOW - 1  # the newest WINDOW entries, one of them not a record
    assert set(stages["p50"]) == {*STAGES, "end_to_end"} == set(stages["p95"])
    assert all(stages["p50"][s] <= stages["p95"][s] for s in stages["p50"])
    assert sum(stages["p50"][s] for s in STAGES) <= stages["p95"]["end_to_end"]
    assert {c["id"]: c["stages"] for c in second.get("/api/cameras").json["cameras"]}["cam1"] == stages
    assert first.get("/api/cameras/cam1").json["stages"] == stages


def test_viewers_parts_are_timed_from_publish_to_send(live_server, redis_client):
    server = live_server()
    response = server.get("/video_feed/cam1")
    assert response.status == 200
    for seq in range(6):
        redis_client.xadd(KEYS.annotated("cam1"), {FRAME_FIELD: envelope.encode(marked_frame("cam1", seq))})
        time.sleep(0.05)
    assert len(read_parts(response, 3)) == 3
    response.close()
    send = json.loads(server.get("/api/cameras/cam1").read())["send_ms"]
    assert send["frames"] >= 2 and 0 <= send["p50"] <= send["p95"]
    metrics = server.get("/metrics").read().decode()
    count = re.search(r'^framecast_web_send_ms_count\{camera="cam1"\} ([0-9.e+]+)$', metrics, re.M)
    assert count and float(count.group(1)) >= send["frames"]
