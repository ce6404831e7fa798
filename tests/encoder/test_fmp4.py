"""encoder/fmp4.py without Redis: what it writes decodes as the H.264 it announces, every frame, with
the capture times as monotonic timestamps and keyframes at the interval."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from common.video import MAX_FRAGMENT_BYTES, MAX_INIT_BYTES, Fragment, Init, decode_fragment, decode_init
from encoder.fmp4 import (
    TIMESCALE,
    Fragmenter,
    SizeChanged,
    codec_string,
    nal_units,
    to_length_prefixed,
)

T0 = 1_750_000_000_000_000_000  # a capture time, epoch ns


def scene(i: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A moving box on a gradient: frames that differ like a camera's, cheaply."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = np.linspace(0, 200, width, dtype=np.uint8)[None, :, None]
    x = (i * 7) % (width - 40)
    image[40:100, x:x + 40] = (0, 0, 255)
    return image


def encode(times_ns: list[int], *, width: int = 320, height: int = 240, interval: float = 1.0,
           generation: int = 1, preset: str = "ultrafast") -> tuple[Init, list[Fragment], Fragmenter]:
    fragmenter = Fragmenter(generation, keyframe_interval=interval, preset=preset, crf=28)
    init, fragments = None, []
    for i, ts in enumerate(times_ns):
        first, fragment = fragmenter.add(scene(i, width, height), ts, f"r:{i}".encode())
        init = init or first
        if fragment is not None:
            fragments.append(fragment)
    fragmenter.close()
    return init, fragments, fragmenter


def decoded(init: Init, fragments: list[Fragment]) -> list[av.VideoFrame]:
    container = av.open(io.BytesIO(init.data + b"".join(f.data for f in fragments)), format="mp4")
    try:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.time_base.denominator == TIMESCALE
        return list(container.decode(stream))
    finally:
        container.close()


def test_every_frame_decodes_in_order_with_its_capture_time_and_keyframes_at_the_interval():
    times = [T0 + i * 100_000_000 for i in range(35)]  # 10 fps, 3.5 s
    init, fragments, fragmenter = encode(times, interval=1.0)
    assert (init.width, init.height, init.generation) == (320, 240, 1)
    assert init.codec.startswith("avc1.") and len(init.codec) == 11
    assert init.data[4:8] == b"ftyp" and b"moov" in init.data and b"mvex" in init.data
    assert len(fragments) == 35 == fragmenter.frames
    assert [f.ts for f in fragments] == times
    assert fragments[3].seq == b"r:3"
    assert all(f.data[4:8] == b"moof" and b"mdat" in f.data for f in fragments)
    assert [i for i, f in enumerate(fragments) if f.keyframe] == [0, 10, 20, 30]

    frames = decoded(init, fragments)
    assert len(frames) == 35
    assert [f.pts for f in frames] == [i * 9000 for i in range(35)]  # capture times, 1/90000 s
    assert [i for i, f in enumerate(frames) if f.key_frame] == [0, 10, 20, 30]
    assert (frames[0].width, frames[0].height) == (320, 240)


def test_the_picture_survives_the_round_trip():
    init, fragments, _ = encode([T0 + i * 100_000_000 for i in range(5)])
    picture = decoded(init, fragments)[4].to_ndarray(format="bgr24").astype(int)
    error = np.abs(picture - scene(4).astype(int)).mean()
    assert error < 6, error


def test_variable_frame_times_are_kept_and_a_frame_not_after_the_previous_is_dropped():
    gaps_ms = [0, 100, 250, 250, 90, 400, 100]
    times, t = [], T0
    for gap in gaps_ms:
        t += gap * 1_000_000
        times.append(t)
    times.insert(3, times[2])  # a repeat
    times.insert(5, times[1])  # an older frame
    init, fragments, fragmenter = encode(times)
    assert fragmenter.dropped == 2
    assert len(fragments) == 7
    pts = [f.pts for f in decoded(init, fragments)]
    expected = [(ts - times[0]) * TIMESCALE // 1_000_000_000 for ts in sorted(set(times))]
    assert pts == expected


def test_a_new_size_is_a_new_generation_and_odd_sizes_lose_a_row_and_column():
    fragmenter = Fragmenter(3, preset="ultrafast")
    init, fragment = fragmenter.add(scene(0, 321, 241), T0)
    assert (init.width, init.height) == (320, 240) and fragment.keyframe and fragment.generation == 3
    assert fragmenter.add(scene(1, 321, 241), T0 + 10**8)[0] is None  # same generation, no new init
    with pytest.raises(SizeChanged):
        fragmenter.add(scene(2, 640, 480), T0 + 2 * 10**8)
    fragmenter.close()


def test_the_records_fit_the_contract_and_read_back():
    init, fragments, _ = encode([T0 + i * 100_000_000 for i in range(3)], width=768, height=576,
                                generation=9, preset="superfast")
    assert len(init.data) < MAX_INIT_BYTES and all(len(f.data) < MAX_FRAGMENT_BYTES for f in fragments)
    assert decode_init(init.fields()) == init
    assert decode_fragment(fragments[1].fields()) == fragments[1]
    assert init.codec == "avc1.64001f"  # High profile, level 3.1 for 768x576 (ultrafast: Baseline, 42c0..)
    assert init.mime == 'video/mp4; codecs="avc1.64001f"'


def test_each_fragment_is_one_sample_with_its_decode_time():
    init, fragments, _ = encode([T0 + i * 200_000_000 for i in range(3)])
    for i, fragment in enumerate(fragments):
        data = fragment.data
        sequence = struct.unpack(">I", data[data.find(b"mfhd") + 8:][:4])[0]
        decode_time = struct.unpack(">Q", data[data.find(b"tfdt") + 8:][:8])[0]
        count, offset, duration, size = struct.unpack(">IiII", data[data.find(b"trun") + 8:][:16])
        moof_size = struct.unpack(">I", data[:4])[0]
        assert (sequence, decode_time, count) == (i + 1, i * 18000, 1)
        assert offset == moof_size + 8 and size == len(data) - moof_size - 8
        assert duration == 18000 or i == 0  # the previous interval (the first: a default)


def test_annex_b_becomes_length_prefixed_and_the_codec_string_comes_from_the_sps():
    sps, pps, idr = b"\x67\x42\xc0\x1e\xaa", b"\x68\xce\x3c\x80", b"\x65\x88\x84\x00\x03\x01"
    annex_b = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr
    assert nal_units(annex_b) == [sps, pps, idr]
    assert to_length_prefixed(annex_b) == b"".join(struct.pack(">I", len(u)) + u for u in (sps, pps, idr))
    assert codec_string(annex_b) == "avc1.42c01e"
    assert codec_string(b"\x01\x64\x00\x28\xff") == "avc1.640028"  # an avcC record
