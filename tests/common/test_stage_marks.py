"""Stage marks in the envelope's meta: compact, ordered, backward compatible."""

import json

import msgpack
import pytest

from common import envelope
from common.envelope import COMPUTE_STAGES, MARKS, STAGES, Detection, Frame

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32
TS = 1_700_000_000_000_000_000


def frame(**meta):
    return Frame("cam1", 1, 7, TS, 64, 48, JPEG, None, meta)


def test_marks_are_microseconds_after_capture_and_survive_the_envelope():
    stamped = frame().stamped(encoded=TS + 2_500_000).stamped(sent=TS + 2_600_000)
    back = envelope.decode(envelope.encode(stamped))
    assert back.meta["t"] == {"encoded": 2500, "sent": 2600}
    assert back.marks_us() == {"encoded": 2500, "sent": 2600}
    assert back.stage_ms() == {"encode": 2.5, "queue": 0.1}


def test_every_stage_is_the_time_between_consecutive_marks():
    marks = {name: TS + (i + 1) * 1_000_000 * (i + 1) for i, name in enumerate(MARKS)}
    stamped = frame().stamped(**marks)
    stages = stamped.stage_ms()
    assert list(stages) == list(STAGES)
    assert sum(stages.values()) == stamped.marks_us()["published"] / 1000
    assert set(COMPUTE_STAGES) < set(STAGES)


def test_a_stage_without_its_start_mark_is_left_out():
    stamped = frame().stamped(read=TS + 5_000_000, decoded=TS + 6_000_000)  # an old producer: no encoded/sent
    assert stamped.stage_ms() == {"decode": 1.0}


def test_frames_without_marks_and_foreign_marks_decode_as_before():
    assert envelope.decode(envelope.encode(frame())).stage_ms() == {}
    odd = envelope.decode(envelope.encode(frame(t={"encoded": "soon", "sent": True, "x": 1, "read": 9})))
    assert odd.marks_us() == {"read": 9}
    assert envelope.decode(envelope.encode(frame(t=[1, 2]))).stage_ms() == {}


def test_marks_keep_the_envelope_at_version_1():
    data = envelope.encode(frame().stamped(**{name: TS + 1000 for name in MARKS}))
    payload = msgpack.unpackb(data, raw=False)
    assert payload["v"] == 1 and set(payload["meta"]) == {"t"}


def test_an_unknown_mark_is_refused():
    with pytest.raises(ValueError):
        frame().stamped(arrived=TS)


def test_annotating_keeps_the_marks_and_the_record_carries_the_stages():
    raw = frame().stamped(encoded=TS + 1_000_000, sent=TS + 1_500_000)
    done = raw.annotated(JPEG, [Detection("person", 0.9, (1, 2, 3, 4), 0)], worker="w").stamped(read=TS + 2_000_000)
    record = json.loads(envelope.detections_record(done))
    assert record["stages_ms"] == {"encode": 1.0, "queue": 0.5, "transit": 0.5}
    assert "stages_ms" not in json.loads(envelope.detections_record(frame()))
