"""Property-based tests of the parsers that face untrusted input: whatever the bytes, they return a
value or raise framecast's own error, never anything else."""

import struct

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common import envelope, jpeg
from common.config import load_config
from common.envelope import Detection, Frame
from common.errors import ConfigError, EnvelopeError

# Timing is not what these tests are about: a loaded CI machine must not fail them on a deadline.
settings.register_profile("framecast", deadline=None, max_examples=100)
settings.load_profile("framecast")

SOI = b"\xff\xd8"
cams = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
u63 = st.integers(0, 2**63 - 1)
coord = st.integers(0, 8192)
detections = st.lists(st.builds(
    Detection, label=st.text(min_size=1, max_size=20), score=st.floats(0, 1),
    box=st.tuples(coord, coord, coord, coord), class_id=st.integers(0, 1000)), max_size=10)
frames = st.builds(Frame, cam=cams, run=u63, seq=u63, ts=u63, width=st.integers(1, 8192),
                   height=st.integers(1, 8192), jpeg=st.binary(max_size=64).map(lambda b: SOI + b),
                   detections=st.none() | detections)


@given(frames)
def test_envelope_round_trips(frame):
    back = envelope.decode(envelope.encode(frame))
    assert (back.cam, back.run, back.seq, back.ts, back.width, back.height, back.jpeg) == \
        (frame.cam, frame.run, frame.seq, frame.ts, frame.width, frame.height, frame.jpeg)
    assert (back.detections is None) == (frame.detections is None)


@given(st.binary(max_size=512))
def test_envelope_decoder_takes_any_bytes(data):
    try:
        assert isinstance(envelope.decode(data), Frame)
    except EnvelopeError:
        pass


@given(frames, st.data())
def test_damaged_envelopes_are_refused_or_read(frame, data):
    encoded = bytearray(envelope.encode(frame))
    cut = data.draw(st.integers(0, len(encoded)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(0, len(encoded) - 1)), st.integers(1, 255)),
                               max_size=4))
    for pos, mask in flips:
        if pos < len(encoded):
            encoded[pos] ^= mask
    try:
        envelope.decode(bytes(encoded[:cut] if data.draw(st.booleans()) else encoded))
    except EnvelopeError:
        pass


@given(st.binary(max_size=256), st.integers(1, 65535), st.integers(1, 65535))
def test_jpeg_header_reader_takes_any_bytes(tail, width, height):
    for data in (SOI + tail, SOI + b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + tail):
        try:
            w, h = jpeg.dimensions(data)
            assert w >= 0 and h >= 0
        except jpeg.JpegError:
            pass
    sof = SOI + b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", height, width) + tail
    assert jpeg.dimensions(sof) == (width, height)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20)
camera_like = st.fixed_dictionaries({"id": st.text(max_size=10) | cams},
                                    optional={"source": yaml_values, "fps": yaml_values, "mode": yaml_values,
                                              "detection": yaml_values, "zones": yaml_values})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    st.text(max_size=200),
    st.dictionaries(st.sampled_from(["cameras", "redis_url", "streams", "worker", "web", "defaults",
                                     "key_prefix"]), yaml_values, max_size=4).map(yaml.safe_dump),
    st.lists(camera_like, max_size=3).map(lambda cams_: yaml.safe_dump({"cameras": cams_})),
))
def test_config_loader_takes_any_text(tmp_path, text):
    path = tmp_path / "cameras.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_config(path, env={})
    except ConfigError:
        pass
