"""The motion benchmark's clips (bench/motion_clips.py), built short: the sizes and frame counts they
announce, an idle clip that changes only by noise and drift, passes where the ground truth says and
nowhere else, a small person where the truth says, and a second build that reuses the first. Then the
motion benchmark (bench/motion.py): its event, match and recall measures on made-up detections, and a
quick run of it (slow) that prints its four targets and writes its JSON."""

import dataclasses
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from bench import motion as bench_motion
from bench import motion_clips
from bench.motion_clips import ClipParams
from common import jpeg
from common.envelope import Detection
from tests.conftest import REPO

SHORT = ClipParams(idle_s=4.0, passing_s=20.0, passes=2, pass_s=4.0, small_s=3.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion-clips")
    return root, motion_clips.build(SHORT, root=root)


@pytest.fixture(scope="module")
def plate(built):
    _, clips = built
    return cv2.imread(str(clips["idle"].path.parent / "plate.png"))


def largest_change(image: np.ndarray, reference: np.ndarray) -> int:
    """Pixels of the largest connected area where `image` differs from `reference` beyond noise."""
    mask = motion_clips.foreground(image, reference)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0


def test_each_clip_has_the_frames_and_size_it_announces(built):
    _, clips = built
    assert set(clips) == {"idle", "passing", "small"}
    for clip, seconds in ((clips["idle"], 4.0), (clips["passing"], 20.0), (clips["small"], 3.0)):
        assert clip.frames == round(seconds * 10) and clip.fps == 10.0
        assert (clip.truth["width"], clip.truth["height"]) == (768, 576)
        packets = list(motion_clips.read_jpegs(clip.path))
        assert len(packets) == clip.frames
        assert {jpeg.dimensions(p) for p in packets} == {(768, 576)}
        cap = cv2.VideoCapture(str(clip.path))
        assert int(cap.get(cv2.CAP_PROP_FOURCC)) == cv2.VideoWriter_fourcc(*"MJPG")
        assert cap.get(cv2.CAP_PROP_FPS) == 10.0
        cap.release()
    assert motion_clips.busy().name == "vtest.avi"


def test_idle_frames_differ_only_by_noise_and_drift(built):
    _, clips = built
    assert clips["idle"].truth["objects"] == []
    images = list(motion_clips.read_images(clips["idle"].path))
    first = images[0]
    for previous, image in zip(images, images[1:], strict=False):
        assert cv2.absdiff(previous, image).mean() < 4.0  # noise of sigma 3, through JPEG
    for image in images[1:]:
        assert largest_change(image, first) < 30
    assert images[0].std() > 20  # a scene, not a blank frame


def test_passes_are_where_the_truth_says_and_nowhere_else(built, plate):
    _, clips = built
    clip = clips["passing"]
    objects = clip.truth["objects"]
    assert [o["label"] for o in objects] == ["person", "person"]
    assert objects[0]["last_frame"] < objects[1]["first_frame"]
    inside = {f for o in objects for f in range(o["first_frame"], o["last_frame"] + 1)}
    for index, image in enumerate(motion_clips.read_images(clip.path)):
        changed = largest_change(image, plate)
        if index not in inside:
            assert changed < 30, f"frame {index}: {changed} changed pixels outside every pass"
    for obj in objects:
        assert 3.0 <= obj["end_s"] - obj["start_s"] <= 5.0
        middle = (obj["first_frame"] + obj["last_frame"]) // 2
        x1, y1, x2, y2 = obj["boxes"][str(middle)]
        assert 50 <= y2 - y1 <= 140 and x2 - x1 >= 15
        image = _frame(clip.path, middle)
        assert largest_change(image, plate) > 800  # a person, not a speck
        mask = motion_clips.foreground(image, plate)
        assert (mask[y1:y2, x1:x2] > 0).sum() > 0.9 * (mask > 0).sum()  # and it is inside its box


def test_the_small_person_walks_where_the_truth_says(built, plate):
    _, clips = built
    clip = clips["small"]
    [person] = clip.truth["objects"]
    assert (person["first_frame"], person["last_frame"]) == (0, clip.frames - 1)
    lefts = []
    for index, image in enumerate(motion_clips.read_images(clip.path)):
        x1, y1, x2, y2 = person["boxes"][str(index)]
        assert 25 <= y2 - y1 <= 40
        mask = motion_clips.foreground(image, plate)
        assert (mask[y1:y2, x1:x2] > 0).sum() >= 60
        assert (mask > 0).sum() - (mask[y1:y2, x1:x2] > 0).sum() < 30
        lefts.append(x1)
    assert lefts[-1] > lefts[0] and lefts == sorted(lefts)  # it walks slowly to the right


def test_a_second_build_reuses_the_first_and_changed_parameters_build_anew(built, monkeypatch):
    root, clips = built
    stamp = {name: clip.path.stat().st_mtime_ns for name, clip in clips.items()}

    def refuse(*_args):
        raise AssertionError("built again")

    monkeypatch.setattr(motion_clips, "_build_into", refuse)
    again = motion_clips.build(SHORT, root=root)
    assert {name: clip.path for name, clip in again.items()} == {name: clip.path for name, clip in clips.items()}
    assert {name: clip.path.stat().st_mtime_ns for name, clip in again.items()} == stamp
    changed = dataclasses.replace(SHORT, noise_sigma=2.0)
    assert changed.key() != SHORT.key()
    with pytest.raises(AssertionError, match="built again"):
        motion_clips.build(changed, root=root)
    assert not list(root.glob(f"{changed.key()}*")) and not list(root.glob(".*"))  # no half-built set left


def _frame(path, index: int) -> np.ndarray:
    for i, image in enumerate(motion_clips.read_images(path)):
        if i == index:
            return image
    raise IndexError(index)


# -- the motion benchmark's comparisons (bench/motion.py) -----------------------------------------

def person(x1, y1, x2, y2, label="person"):
    return Detection(label, 0.9, (x1, y1, x2, y2))


def test_events_group_a_label_s_frames_and_drop_glimpses():
    seen = [[person(0, 0, 10, 10)]] * 5 + [[]] * 30 + [[person(0, 0, 10, 10)]] * 2 + [[]] * 30 \
        + [[person(0, 0, 10, 10)], [], [person(0, 0, 10, 10), person(5, 5, 9, 9, "car")], [person(0, 0, 10, 10)]]
    # 2 s at 10 fps bridges a gap of 20 frames, not 30; two frames are a glimpse, not an event
    assert bench_motion.events(seen, 10.0) == [("person", 0, 4), ("person", 67, 70)]
    assert bench_motion.events_found([("person", 0, 4), ("car", 3, 9)], [("person", 4, 8), ("car", 10, 12)]) \
        == [True, False]


def test_matched_fraction_pairs_same_label_boxes_one_to_one_on_the_same_frame():
    reference = [[person(0, 0, 100, 100), person(0, 0, 100, 100, "car")], [person(200, 200, 300, 300)]]
    other = [[person(5, 5, 100, 100)], [person(0, 0, 100, 100), person(200, 200, 240, 300)]]
    share, total = bench_motion.matched_fraction(reference, other)
    assert total == 3 and share == pytest.approx(1 / 3)  # the person of frame 0 only: no car, IoU 0.4 on frame 1
    assert bench_motion.matched_fraction(reference, [*other[:1], [person(200, 200, 260, 300)]])[0] \
        == pytest.approx(2 / 3)  # IoU 0.6
    assert bench_motion.matched_fraction([[person(0, 0, 10, 10)] * 2], [[person(0, 0, 10, 10)]])[0] == 0.5


def test_recall_counts_truth_boxes_with_a_person_over_them():
    truth = {"objects": [{"boxes": {"0": [10, 10, 20, 40], "1": [12, 10, 22, 40], "2": [14, 10, 24, 40]}}]}
    found = [[person(9, 8, 21, 42)], [person(100, 10, 110, 40)], [person(14, 10, 24, 40, "car")]]
    assert bench_motion.recall(found, truth) == pytest.approx(1 / 3)


@pytest.mark.slow
def test_quick_motion_bench_prints_its_four_targets_and_writes_json(tmp_path):
    command = [sys.executable, "-m", "bench.motion", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "machine:" in done.stdout
    for number in (2, 3, 4, 6):
        assert f"== motion {number}:" in done.stdout
    assert done.stdout.count("target:") == 4
    [written] = list(tmp_path.glob("bench-motion-*.json"))
    info = json.loads(written.read_text())
    assert info["machine"]["cores"] >= 1
    passing, busy, small, cost = info["results"]
    assert passing["figures"]["frames_none"] > 0 and passing["figures"]["passes_always_found"] == 2
    assert busy["figures"]["detections_always"] > 0 and small["figures"]["frames_regions"] > 0
    assert all(isinstance(r["met"], bool) for r in info["results"]) and cost["figures"]["motion_cpu_ms"] > 0
