import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import REPO
from worker.offline import iter_frames, process_video

FRAMECAST = [sys.executable, "-m", "framecast"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sample_images):
    path = tmp_path_factory.mktemp("clips") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    for image in sample_images[:30]:
        writer.write(image)
    writer.release()
    return path


def _run(*args):
    return subprocess.run([*FRAMECAST, "process", *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_process_writes_playable_video_and_jsonl_in_order(clip, tmp_path):
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    result = _run(str(clip), "-o", str(out), "--detections", str(jsonl), "--workers", "1")
    assert result.returncode == 0, result.stderr
    cap = cv2.VideoCapture(str(out))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 30
    records = _read_jsonl(jsonl)
    assert [r["frame"] for r in records] == list(range(30))
    assert any(d["label"] == "person" for r in records for d in r["detections"])
    assert "30 frames" in result.stderr and "0 corrupt" in result.stderr


def test_two_workers_give_the_same_detections_as_one(clip, tmp_path):
    runs = {}
    for workers in (1, 2):
        jsonl = tmp_path / f"w{workers}.jsonl"
        result = _run(str(clip), "-o", str(tmp_path / f"w{workers}.mp4"), "--detections", str(jsonl),
                      "--workers", str(workers))
        assert result.returncode == 0, result.stderr
        runs[workers] = _read_jsonl(jsonl)
    assert runs[1] == runs[2]


@pytest.mark.parametrize("make_input", ["missing", "not_video"])
def test_unreadable_input_exits_2_with_a_message(tmp_path, make_input):
    path = tmp_path / "input.mp4"
    if make_input == "not_video":
        path.write_text("this is not a video")
    result = _run(str(path), "-o", str(tmp_path / "out.mp4"))
    assert result.returncode == 2
    assert "cannot read video" in result.stderr and str(path) in result.stderr


def test_corrupt_frame_mid_video_is_counted_written_and_skipped(sample_images, tmp_path):
    frames = [sample_images[0], sample_images[1], None, sample_images[3]]  # None: undecodable
    written = []

    class Writer:
        def write(self, image):
            written.append(image.copy())

        def release(self):
            pass

    jsonl = tmp_path / "out.jsonl"
    with open(jsonl, "w") as fh:
        counts = process_video(iter(frames), lambda w, h: Writer(), 10.0, 1, {"min_score": 0.5}, True, fh)
    assert counts["frames"] == 4 and counts["corrupt"] == 1
    records = _read_jsonl(jsonl)
    assert records[2]["error"] == "undecodable frame" and records[2]["detections"] == []
    assert np.array_equal(written[2], sample_images[1])  # timing kept with the last good picture, un-annotated


def test_iter_frames_flags_failed_reads_mid_file():
    class FlakyCapture:
        def __init__(self):
            self.reads = [True, False, True, False]

        def read(self):
            ok = self.reads.pop(0) if self.reads else False
            return ok, (np.zeros((4, 4, 3), np.uint8) if ok else None)

    frames = list(iter_frames(FlakyCapture(), expected=4))
    assert [f is None for f in frames] == [False, True, False]
