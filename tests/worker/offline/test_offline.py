import json
import subprocess
import sys

import av
import cv2
import numpy as np
import pytest

from tests.conftest import REPO
from worker.detect import ModelError
from worker.offline.pool import process_video
from worker.offline.video import iter_frames

FRAMECAST = [sys.executable, "-m", "framecast"]


def _write_clip(path, images, fps=10.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (images[0].shape[1], images[0].shape[0]))
    for image in images:
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_images):
    """The first 40 frames of the sample clip, as a 10 fps MJPEG AVI."""
    return _write_clip(tmp_path_factory.mktemp("clips") / "clip.avi", sample_images)


@pytest.fixture(scope="module")
def corrupt_clip(tmp_path_factory, sample_images):
    """20 frames of which frame 10's JPEG data is overwritten with noise, as a damaged file would be."""
    path = _write_clip(tmp_path_factory.mktemp("clips") / "corrupt.avi", sample_images[:20])
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 20
    data[starts[10]:starts[10] + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def _run(*args):
    return subprocess.run([*FRAMECAST, "process", *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _read_video(path):
    cap = cv2.VideoCapture(str(path))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return fps, frames


def test_process_writes_playable_video_and_jsonl_in_order(clip, tmp_path):
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = _run(str(clip), "-o", str(out), "--detections", str(jsonl), "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[4:8] == b"ftyp"  # an MP4 container
    fps, frames = _read_video(out)
    assert fps == pytest.approx(10.0) and len(frames) == 40 and frames[0].shape == (576, 768, 3)
    records = _read_jsonl(jsonl)
    assert [r["frame"] for r in records] == list(range(40))
    assert [r["pts_ms"] for r in records[:3]] == [0.0, 100.0, 200.0]
    people = [r for r in records if any(d["label"] == "person" for d in r["detections"])]
    assert len(people) > 30
    det = people[0]["detections"][0]
    assert set(det) == {"label", "score", "box", "class_id"} and 0.5 <= det["score"] <= 1.0
    assert "40 frames" in result.stderr and "0 corrupt" in result.stderr


def _h264_summary(path):
    """(codec, pixel format, frame times in seconds, container duration in seconds) read with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.pts * frame.time_base) for frame in container.decode(stream)]
        return (stream.codec_context.name, stream.codec_context.pix_fmt, times,
                float(stream.duration * stream.time_base))


@pytest.mark.parametrize("fps", [10.0, 25.0])
def test_process_writes_h264_with_the_inputs_frames_and_times(sample_images, tmp_path, fps):
    clip = _write_clip(tmp_path / "in.avi", sample_images[:15], fps=fps)
    out = tmp_path / "out.mp4"
    result = _run(str(clip), "-o", str(out), "--jobs", "2")
    assert result.returncode == 0, result.stderr
    codec, pix_fmt, times, duration = _h264_summary(out)
    assert (codec, pix_fmt) == ("h264", "yuv420p")  # what browsers and phones play
    assert times == pytest.approx([i / fps for i in range(15)], abs=1e-4)  # input frame i at i/fps
    assert duration == pytest.approx(15 / fps, abs=1e-4)
    data = out.read_bytes()
    assert 0 < data.index(b"moov") < data.index(b"mdat")  # +faststart: playable while it downloads
    assert not out.with_name(out.name + ".part").exists()


def test_two_workers_give_the_same_detections_as_one(clip, tmp_path):
    runs = {}
    for workers in (1, 2):
        jsonl = tmp_path / f"w{workers}.jsonl"
        result = _run(str(clip), "-o", str(tmp_path / f"w{workers}.mp4"), "--detections", str(jsonl),
                      "--workers", str(workers))
        assert result.returncode == 0, result.stderr
        runs[workers] = _read_jsonl(jsonl)
    assert len(runs[1]) == 40 and runs[1] == runs[2]


def test_detection_options_reach_the_detector(clip, tmp_path):
    jsonl = tmp_path / "cars.jsonl"
    result = _run(str(clip), "-o", str(tmp_path / "cars.mp4"), "--detections", str(jsonl), "--workers", "1",
                  "--label", "car", "--min-score", "0.3")
    assert result.returncode == 0, result.stderr
    records = _read_jsonl(jsonl)
    assert len(records) == 40 and all(d["label"] == "car" for r in records for d in r["detections"])


def test_longer_clip_with_two_workers(sample_path, tmp_path):
    cap = cv2.VideoCapture(str(sample_path))
    images = [cap.read()[1] for _ in range(150)]
    cap.release()
    clip = _write_clip(tmp_path / "long.avi", images)
    out, jsonl = tmp_path / "long.mp4", tmp_path / "long.jsonl"
    result = _run(str(clip), "-o", str(out), "--detections", str(jsonl), "--workers", "2", "--no-overlay")
    assert result.returncode == 0, result.stderr
    fps, frames = _read_video(out)
    assert fps == pytest.approx(10.0) and len(frames) == 150
    assert [r["frame"] for r in _read_jsonl(jsonl)] == list(range(150))
    # Frames come back in the original order: each output frame is closest to its own input frame.
    for i in (0, 49, 100, 149):
        errors = [np.abs(frames[i].astype(int) - images[j].astype(int)).mean() for j in range(i - 3, i + 4)
                  if 0 <= j < 150]
        assert int(np.argmin(errors)) == min(i, 3)


@pytest.mark.parametrize("make_input", ["missing", "not_video"])
def test_unreadable_input_exits_2_with_a_message(tmp_path, make_input):
    path = tmp_path / "input.mp4"
    if make_input == "not_video":
        path.write_text("this is not a video")
    result = _run(str(path), "-o", str(tmp_path / "out.mp4"))
    assert result.returncode == 2
    assert "cannot read video" in result.stderr and str(path) in result.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_unloadable_model_with_a_pool_exits_2_instead_of_hanging(clip, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    result = _run(str(clip), "-o", str(tmp_path / "out.mp4"), "--workers", "2", "--model", str(bad))
    assert result.returncode == 2
    assert "cannot load tflite model" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_frame_in_a_real_file_is_counted_and_processing_continues(corrupt_clip, tmp_path):
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = _run(str(corrupt_clip), "-o", str(out), "--detections", str(jsonl), "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "20 frames" in result.stderr and "1 corrupt" in result.stderr
    records = _read_jsonl(jsonl)
    assert [r["frame"] for r in records] == list(range(20))
    assert records[10]["error"] == "undecodable frame" and records[10]["detections"] == []
    assert all("error" not in r and r["detections"] for i, r in enumerate(records) if i != 10)
    assert len(_read_video(out)[1]) == 20


class _Writer:
    def __init__(self, written):
        self.written = written

    def write(self, image):
        self.written.append(image.copy())

    def release(self):
        pass


def test_corrupt_frame_mid_video_is_counted_written_and_skipped(sample_images, tmp_path):
    frames = [None, sample_images[0], sample_images[1], None, sample_images[3]]  # None: undecodable
    written = []
    jsonl = tmp_path / "out.jsonl"
    with open(jsonl, "w") as fh:
        counts = process_video(iter(frames), lambda w, h: _Writer(written), 10.0, 1, {"min_score": 0.5}, True, fh)
    assert counts["frames"] == 4 and counts["corrupt"] == 2  # the leading one has no picture to stand in
    records = _read_jsonl(jsonl)
    assert [r["frame"] for r in records] == [1, 2, 3, 4]
    assert records[2]["error"] == "undecodable frame" and records[2]["detections"] == []
    assert np.array_equal(written[2], sample_images[1])  # timing kept with the last good picture, un-annotated
    assert not np.array_equal(written[1], sample_images[1])  # the good ones are annotated


def test_frames_in_flight_are_bounded(sample_images):
    """Memory stays flat: never more than 2 * workers + 2 frames read but not yet written."""
    workers, events = 2, []

    def frames():
        for i in range(60):
            events.append("read")
            yield sample_images[i % len(sample_images)]

    written = []

    class CountingWriter(_Writer):
        def write(self, image):
            events.append("write")
            super().write(image)

    counts = process_video(frames(), lambda w, h: CountingWriter(written), 10.0, workers, {}, False)
    assert counts["frames"] == 60 and len(written) == 60
    in_flight, most = 0, 0
    for event in events:
        in_flight += 1 if event == "read" else -1
        most = max(most, in_flight)
    assert most <= 2 * workers + 3  # the window, plus the frame just read


def test_a_model_that_does_not_load_raises_our_error(sample_images, tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        process_video(iter(sample_images[:2]), lambda w, h: _Writer([]), 10.0, 1,
                      {"model": str(tmp_path / "none.tflite")}, False)


class _Capture:
    def __init__(self, reads):
        self.reads = list(reads)

    def read(self):
        ok = self.reads.pop(0) if self.reads else False
        return ok, (np.zeros((4, 4, 3), np.uint8) if ok else None)


def test_iter_frames_flags_failed_reads_between_good_ones_only():
    frames = list(iter_frames(_Capture([True, False, False, True, False, False])))
    assert [f is None for f in frames] == [False, True, True, False]  # failures at the end are the end


def test_iter_frames_stops_after_a_long_run_of_failures():
    frames = list(iter_frames(_Capture([True] + [False] * 5 + [True]), max_corrupt_run=3))
    assert len(frames) == 1
