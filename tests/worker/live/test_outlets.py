"""A camera's outlet: an annotating camera writes its annotated frame and detection record and no skip
markers; an event camera's detect-only outlet keeps the producer's JPEG and writes the `untracked`
entry, with a skip marker for each frame whose identity can be read. No Redis."""

from __future__ import annotations

import json

from common import envelope
from common.config import CameraConfig, DetectionConfig, Settings
from common.keys import DETECTIONS_FIELD, FRAME_FIELD, SKIPPED_FIELD, Keys
from tests.worker.conftest import make_frame
from worker.detect.pipeline import FrameProcessor
from worker.live.outlets import Annotating, DetectOnly, outlet_for

LINE = {"name": "door", "points": [[0.5, 0.0], [0.5, 1.0]]}


def _outlet(detector, settings: Settings, **camera):
    cam = CameraConfig(id="cam1", source="pattern", detection=DetectionConfig(min_score=0.3), **camera)
    return outlet_for(cam, settings, FrameProcessor(cam, detector))


def test_an_annotating_camera_writes_its_annotated_frame_and_record_and_no_markers(detector, sample_images):
    settings, keys = Settings(), Keys()
    outlet = _outlet(detector, settings)
    assert isinstance(outlet, Annotating)
    frame = make_frame(sample_images[0])
    result = outlet.process(frame, fps=10.0, max_pixels=None)
    assert result.jpeg != frame.jpeg and result.detections  # drawn and re-encoded
    payload = envelope.encode(result)
    (annotated, fields, maxlen), (detections, record, record_maxlen) = outlet.writes(result, payload)
    assert (annotated, fields, maxlen) == (keys.annotated("cam1"), {FRAME_FIELD: payload},
                                           settings.streams.annotated_maxlen)
    assert (detections, record_maxlen) == (keys.detections("cam1"), settings.streams.detections_maxlen)
    assert json.loads(record[DETECTIONS_FIELD])["seq"] == frame.seq
    assert outlet.skip_markers([payload, (b"1-0", {FRAME_FIELD: payload})]) == []


def test_an_event_camera_detects_only_and_marks_the_frames_it_skips(detector, sample_images):
    settings, keys = Settings(), Keys()
    outlet = _outlet(detector, settings, lines=[LINE])
    assert isinstance(outlet, DetectOnly)
    frame = make_frame(sample_images[0], seq=7, run=3)
    result = outlet.process(frame, fps=10.0, max_pixels=None)
    assert result.jpeg == frame.jpeg and result.detections  # the tracking owner draws and encodes
    payload = envelope.encode(result)
    assert outlet.writes(result, payload) == [(keys.untracked("cam1"), {FRAME_FIELD: payload},
                                                settings.events.untracked_maxlen)]
    other = envelope.encode(make_frame(sample_images[1], seq=8, run=3))
    markers = outlet.skip_markers([payload, (b"1-0", {FRAME_FIELD: other}), b"garbage", (b"1-1", {})])
    assert markers == [(keys.untracked("cam1"), {SKIPPED_FIELD: marker}, settings.events.untracked_maxlen)
                       for marker in ("3:7", "3:8")]
