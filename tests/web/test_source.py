"""The frame source on its own: a camera stream's frames in order, and 'no signal' when they stop."""

import threading
import time

from common.envelope import Frame
from tests.web.conftest import KEYS, publish
from web.main import build_parser
from web.source import FrameSource, NoSignal


def _take(events, count: int, timeout: float = 10.0) -> list:
    """The next `count` events that are not None (None: a read that brought nothing to show)."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        event = next(events)
        if event is not None:
            out.append(event)
    return out


def test_frames_come_in_order_and_late_ones_are_dropped(redis_client):
    publish(redis_client, "cam1", 1)
    source = FrameSource(redis_client, KEYS.annotated("cam1"), "cam1", False, 5.0, threading.Event())
    events = source.frames()
    assert [f.seq for f in _take(events, 1)] == [1]  # the newest stored frame first, when it is fresh
    for seq in (2, 5, 3, 4, 6):
        publish(redis_client, "cam1", seq)
    frames = _take(events, 3)
    assert all(isinstance(f, Frame) for f in frames) and [f.seq for f in frames] == [2, 5, 6]
    assert source.out_of_order == 2
    events.close()


def test_no_signal_once_frames_stop_then_every_second(redis_client):
    publish(redis_client, "cam1", 1)
    source = FrameSource(redis_client, KEYS.annotated("cam1"), "cam1", False, 0.5, threading.Event())
    events = source.frames()
    assert [f.seq for f in _take(events, 1)] == [1]
    gap = _take(events, 2)
    assert [type(e) for e in gap] == [NoSignal, NoSignal]
    assert gap[0].first and not gap[1].first and gap[0].last_frame_at <= time.time()
    publish(redis_client, "cam1", 2)
    assert [f.seq for f in _take(events, 1)] == [2]
    assert _take(events, 1)[0].first  # a new gap starts afresh
    events.close()


def test_the_source_ends_when_stopped(redis_client):
    stop = threading.Event()
    events = FrameSource(redis_client, KEYS.annotated("cam1"), "cam1", False, 5.0, stop).frames()
    next(events)
    stop.set()
    assert list(events) in ([], [None])


def test_processes_flag_and_its_older_name():
    assert build_parser().parse_args(["--processes", "3"]).processes == 3
    assert build_parser().parse_args(["--workers", "2"]).processes == 2
    assert build_parser().parse_args([]).processes == 1
