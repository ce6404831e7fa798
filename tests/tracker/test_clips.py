"""Clips: MP4s decoded back with PyAV (H.264, yuv420p, every frame at its capture time), the frame
buffer and clip window (retention: test_storage_ownership.py)."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from tracker.clips import (
    TIME_BASE,
    ClipError,
    FrameBuffer,
    H264Writer,
    clip_window,
    write_clip,
)

T0 = 1_700_000_000.0


def jpeg(i: int, width: int = 320, height: int = 240) -> bytes:
    image = np.full((height, width, 3), 40, np.uint8)
    cv2.rectangle(image, (10 + 5 * i, 60), (50 + 5 * i, 140), (0, 200, 255), -1)  # moves, so frames differ
    return cv2.imencode(".jpg", image)[1].tobytes()


def decode(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.pts, f.width, f.height) for f in container.decode(stream)]
        return (stream.codec_context.name, stream.codec_context.pix_fmt, frames,
                float(stream.duration * stream.time_base), container.format.name)


@pytest.mark.parametrize("preset", ["ultrafast", "veryfast"])
def test_clip_is_h264_with_every_frame_at_its_capture_time(tmp_path, preset):
    # 10 fps with one late frame (+40 ms) and one dropped frame (a 200 ms hole): a variable frame rate.
    times = [T0 + i * 0.1 for i in range(40) if i != 25]
    times[10] += 0.04
    info = write_clip(tmp_path / "e.mp4", [(t, jpeg(i)) for i, t in enumerate(times)], preset=preset)
    codec, pix_fmt, frames, duration, fmt = decode(info.path)
    assert (codec, pix_fmt) == ("h264", "yuv420p") and "mp4" in fmt
    assert len(frames) == info.frames == 39
    first = frames[0][0]
    assert [pts - first for pts, _, _ in frames] == [round((t - times[0]) / TIME_BASE) for t in times]
    assert info.duration == pytest.approx(4.0, abs=1e-6)  # 3.9 s span + the last frame's 0.1 s
    assert duration == pytest.approx(4.0, abs=0.05)
    assert {(w, h) for _, w, h in frames} == {(320, 240)}
    assert not (tmp_path / "e.mp4.part").exists()


def test_faststart_puts_the_index_first(tmp_path):
    info = write_clip(tmp_path / "e.mp4", [(T0 + i / 10, jpeg(i)) for i in range(10)])
    head = info.path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))


def test_regular_duration_is_exact(tmp_path):
    info = write_clip(tmp_path / "e.mp4", [(T0 + i / 10, jpeg(i)) for i in range(30)])
    _, _, frames, duration, _ = decode(info.path)
    assert len(frames) == 30 and duration == pytest.approx(3.0, abs=1e-3)


def test_generic_writer_without_times_odd_size_and_size_change(tmp_path):
    writer = H264Writer(tmp_path / "out.mp4", fps=25)
    writer.write(np.zeros((101, 161, 3), np.uint8))
    writer.write(np.zeros((240, 320, 3), np.uint8))  # another size: scaled to the first
    writer.write(np.zeros((101, 161, 3), np.uint8))
    path = writer.release()
    _, _, frames, duration, _ = decode(path)
    assert [(w, h) for _, w, h in frames] == [(160, 100)] * 3
    assert [pts - frames[0][0] for pts, _, _ in frames] == [0, 3600, 7200]  # 1/25 s apart
    assert duration == pytest.approx(0.12, abs=1e-3)


def test_empty_clip_is_refused_and_leaves_nothing(tmp_path):
    with pytest.raises(ClipError):
        write_clip(tmp_path / "e.mp4", [(T0, b"not a jpeg")])
    assert list(tmp_path.iterdir()) == []


def test_frame_buffer_and_clip_window():
    buf = FrameBuffer(max_seconds=5.0)
    for i in range(100):
        buf.add(T0 + i / 10, b"x" * 10)
    buf.add(T0, b"late")  # out of order: ignored
    assert len(buf) == 51 and buf.newest == pytest.approx(T0 + 9.9)
    start, end = clip_window(T0 + 6.0, T0 + 7.0, pre_roll=2.0, post_roll=2.0, max_seconds=60)
    assert (start, end) == (T0 + 4.0, T0 + 9.0)
    frames = buf.between(start, end)
    assert frames[0][0] == pytest.approx(T0 + 4.9) and frames[-1][0] == pytest.approx(T0 + 9.0)  # 4.0-4.8 aged out
    assert clip_window(T0, T0 + 500, 2, 2, max_seconds=60) == (T0 - 2, T0 + 58)
    small = FrameBuffer(max_seconds=100, max_bytes=25)
    for i in range(5):
        small.add(T0 + i, b"x" * 10)
    assert len(small) == 2 and small.bytes == 20
