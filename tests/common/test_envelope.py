import msgpack
import pytest

from common import envelope
from common.envelope import Detection, Frame
from common.errors import EnvelopeError

JPEG = b"\xff\xd8\xff\xe0" + b"x" * 100 + b"\xff\xd9"


def make_frame(**kw):
    base = dict(cam="cam1", run=123, seq=7, ts=1_700_000_000_000_000_000, width=64, height=48, jpeg=JPEG)
    base.update(kw)
    return Frame(**base)


def test_round_trip_raw_and_annotated():
    frame = make_frame()
    assert envelope.decode(envelope.encode(frame)) == frame
    annotated = frame.annotated(JPEG, [Detection("person", 0.9, (1, 2, 30, 40), 0)], worker="w1", infer_ms=12.5)
    back = envelope.decode(envelope.encode(annotated))
    assert back.detections == [Detection("person", 0.9, (1, 2, 30, 40), 0)]
    assert back.meta == {"worker": "w1", "infer_ms": 12.5}
    assert (back.run, back.seq, back.ts) == (frame.run, frame.seq, frame.ts)
    assert back.order == (123, 7)


def test_motion_verdict_round_trips_as_version_2():
    frame = make_frame(motion=envelope.Motion("regions", ((1, 2, 30, 40), (0, 0, 64, 48))))
    data = envelope.encode(frame)
    assert msgpack.unpackb(data, raw=False)["v"] == 2
    back = envelope.decode(data)
    assert back == frame and back.inspect == "regions"
    annotated = back.annotated(JPEG, []).stamped(decoded=frame.ts + 1000)
    assert annotated.motion == frame.motion
    assert envelope.detections_record(annotated).find(b'"inspect":"regions"') > 0


def test_frame_without_motion_is_version_1_and_inspected_in_full():
    data = envelope.encode(make_frame())
    assert msgpack.unpackb(data, raw=False)["v"] == 1 and "mo" not in msgpack.unpackb(data, raw=False)
    assert envelope.decode(data).inspect == "full"


def test_garbage_is_rejected():
    for junk in (b"", b"\x00\x01garbage", b"\xc1", "text", None, msgpack.packb([1, 2, 3])):
        with pytest.raises(EnvelopeError):
            envelope.decode(junk)


def test_truncation_is_rejected():
    data = envelope.encode(make_frame())
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(EnvelopeError):
            envelope.decode(data[:cut])


def test_oversize_is_rejected_before_parsing():
    data = envelope.encode(make_frame())
    with pytest.raises(EnvelopeError, match="exceeds"):
        envelope.decode(data, max_bytes=len(data) - 1)
    with pytest.raises(EnvelopeError, match="exceeds"):
        envelope.encode(make_frame(jpeg=b"\xff\xd8" + b"0" * (envelope.MAX_ENVELOPE_BYTES + 1)))


def _payload(**changes):
    payload = msgpack.unpackb(envelope.encode(make_frame()), raw=False)
    payload.update(changes)
    return msgpack.packb(payload, use_bin_type=True)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"v": 3}, "unsupported envelope version 3"),
        ({"v": 2, "mo": ["some", []]}, "inspect one of"),
        ({"v": 2, "mo": ["regions", [[1, 2, 3]]]}, "x1, y1, x2, y2"),
        ({"v": 2, "mo": ["regions", [[10, 2, 5, 9]]]}, "inside the frame"),
        ({"v": 2, "mo": ["regions", [[0, 0, 65, 9]]]}, "inside the frame"),
        ({"v": 2, "mo": ["regions", [[0, 0, 1, 1]] * 65]}, "at most 64"),
        ({"cam": "bad id"}, "cam"),
        ({"seq": -1}, "seq"),
        ({"w": 0}, "'w'"),
        ({"h": 10**6}, "'h'"),
        ({"jpg": b"PNG..."}, "JPEG"),
        ({"jpg": "text"}, "JPEG"),
        ({"dets": [["person", 0.5, 1, 2]]}, "detection"),
        ({"dets": [["person", 0.5, 1, 2, 3, "x", 0]]}, "integers"),
        ({"meta": [1]}, "meta"),
    ],
)
def test_wrong_fields_are_rejected(changes, message):
    with pytest.raises(EnvelopeError, match=message):
        envelope.decode(_payload(**changes))


def test_missing_fields_are_named():
    payload = msgpack.unpackb(envelope.encode(make_frame()), raw=False)
    del payload["ts"]
    with pytest.raises(EnvelopeError, match="missing fields: ts"):
        envelope.decode(msgpack.packb(payload, use_bin_type=True))


def test_detections_record_is_json():
    import json

    frame = make_frame().annotated(JPEG, [Detection("car", 0.75, (0, 0, 5, 5), 2)], worker="w")
    record = json.loads(envelope.detections_record(frame))
    assert record["seq"] == 7 and record["worker"] == "w"
    assert record["detections"] == [{"label": "car", "score": 0.75, "box": [0, 0, 5, 5], "class_id": 2}]
