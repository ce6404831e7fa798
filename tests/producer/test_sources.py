import numpy as np
import pytest

from common.errors import SourceError
from producer.encoding import encode_frame, fit_width
from producer.pattern import render_pattern
from producer.sources import FileSource, PatternSource, UrlSource
from testsupport.redis_server import free_port


def test_pattern_moves_and_needs_no_assets():
    src = PatternSource(320, 180, fps=10)
    src.open()
    a, b = src.read(), src.read()
    assert a.shape == (180, 320, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 0
    assert render_pattern(5, 320, 180).shape == (180, 320, 3)


def test_file_source_loops_and_plays_once(short_clip):
    looping = FileSource(short_clip, loop=True)
    looping.open()
    frames = [looping.read() for _ in range(30)]
    assert all(f is not None for f in frames) and looping.rewound >= 2
    once = FileSource(short_clip, loop=False)
    once.open()
    assert once.fps == pytest.approx(10.0)
    count = 0
    while once.read() is not None:
        count += 1
    assert count == 12


def test_unreadable_files_raise_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        FileSource(tmp_path / "missing.mp4").open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(SourceError):
        FileSource(junk).open()


def test_unreachable_stream_error_hides_credentials():
    src = UrlSource(f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/live")
    with pytest.raises(SourceError) as err:
        src.open()
    assert "hunter2" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_encode_resizes_to_max_width_never_up():
    image = np.zeros((576, 768, 3), np.uint8)
    jpeg, w, h = encode_frame(image, 384, 80)
    assert (w, h) == (384, 288) and jpeg[:2] == b"\xff\xd8"
    assert fit_width(image, 2000) is image
