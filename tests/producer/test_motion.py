"""The motion detector on synthetic 768x576 frames: a textured static scene with sensor noise, through
both decode paths (a decoded BGR frame and a JPEG decoded at reduced scale)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from common.jpeg import JpegError
from producer.motion import MotionDetector, MotionResult, reduction

WIDTH, HEIGHT = 768, 576
SIGMA = 4.0  # sensor noise


@pytest.fixture
def rng():
    return np.random.default_rng(21)


@pytest.fixture(scope="module")
def noise():
    """Sensor noise fields (sigma 4) to draw from: drawing 1.3 M normals per frame is slow."""
    fields = np.random.default_rng(5).standard_normal((16, HEIGHT, WIDTH, 3), dtype=np.float32) * SIGMA
    return np.round(fields).astype(np.int16)


@pytest.fixture
def background(rng):
    """A textured static scene in 40..180, so +60 of light does not clip."""
    texture = cv2.GaussianBlur(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8), (0, 0), 2)
    return cv2.normalize(texture, None, 40, 180, cv2.NORM_MINMAX).astype(np.int16)


@pytest.fixture
def frame(background, noise, rng):
    """frame(light=, squares=): the scene with `light` added, the (x1, y1, x2, y2, value) squares
    painted on, and noise."""
    def make(*, light: int = 0, squares=()) -> np.ndarray:
        image = background + np.int16(light)
        for x1, y1, x2, y2, value in squares:
            image[y1:y2, x1:x2] = value
        image += noise[rng.integers(len(noise))]
        return np.clip(image, 0, 255, out=image).astype(np.uint8)
    return make


def feed(detector: MotionDetector, image: np.ndarray, path: str) -> MotionResult:
    if path == "jpeg":
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        assert ok
        return detector.from_jpeg(buf.tobytes())
    return detector.from_image(image)


def pixels(box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return x1 * WIDTH, y1 * HEIGHT, x2 * WIDTH, y2 * HEIGHT


def iou(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def best_iou(result: MotionResult, truth) -> float:
    return max((iou(pixels(b), truth) for b in result.boxes), default=0.0)


PATHS = pytest.mark.parametrize("path", ["image", "jpeg"])


@PATHS
def test_the_first_frame_recalibrates_and_noise_alone_is_no_motion(frame, path):
    detector = MotionDetector()
    results = [feed(detector, frame(), path) for _ in range(120)]
    assert results[0].recalibrated and results[0].boxes == ()
    assert not any(r.recalibrated for r in results[1:])
    assert all(r.boxes == () for r in results)
    assert max(r.changed for r in results) < 0.001


@PATHS
def test_slow_lighting_drift_is_no_motion(frame, path):
    detector = MotionDetector()
    results = [feed(detector, frame(light=i), path) for i in range(60)]
    assert all(r.boxes == () for r in results)
    assert [r.recalibrated for r in results].count(True) == 1  # the first frame only


@PATHS
def test_an_exposure_step_of_the_whole_scene_is_no_motion(frame, path):
    detector = MotionDetector()
    results = [feed(detector, frame(light=20 if i >= 10 else 0), path) for i in range(30)]
    assert all(r.boxes == () for r in results)
    assert not any(r.recalibrated for r in results[1:])


@PATHS
def test_a_square_moving_in_gets_a_box_where_it_is(frame, path):
    detector = MotionDetector()
    feed(detector, frame(), path)
    for i in range(40):
        x = 100 + 8 * i
        square = (x, 250, x + 64, 314)
        result = feed(detector, frame(squares=[(*square, 230)]), path)
        assert best_iou(result, square) >= 0.5, (i, result)
        assert len(result.boxes) == 1 and not result.recalibrated


@PATHS
def test_a_square_that_stood_still_and_moves_off_gets_a_box_where_it_is(frame, path):
    """Standing still it is background: moving off, it first shows as its leading and trailing edges
    (it covers its old place), then as itself once clear of that place, which fades out slowly."""
    detector = MotionDetector()
    start = (200, 250, 264, 314)
    for i in range(40):
        x = 200 + 8 * max(0, i - 10)  # still for 10 frames, then 8 px a frame
        square = (x, 250, x + 64, 314)
        result = feed(detector, frame(squares=[(*square, 230)]), path)
        if i <= 10:
            assert result.boxes == ()
            continue
        path_box = (start[0], 250, square[2], 314)
        assert result.boxes and all(iou(pixels(b), path_box) > 0 for b in result.boxes)
        if x >= start[2] + 16:  # clear of its old place by more than the dilation joins
            assert best_iou(result, square) >= 0.5, (i, result)
            assert len(result.boxes) <= 2


@PATHS
def test_a_lighting_jump_recalibrates_without_a_storm_of_boxes(frame, path):
    detector = MotionDetector()
    results = [feed(detector, frame(light=60 if i >= 20 else 0), path) for i in range(50)]
    jump = results[20]
    assert jump.recalibrated and jump.boxes == () and jump.changed > 0.35
    assert sum(1 for r in results[21:] if r.boxes) <= 1
    assert not any(r.recalibrated for r in results[21:])


@PATHS
def test_a_size_change_recalibrates(frame, path):
    detector = MotionDetector()
    for _ in range(3):
        feed(detector, frame(), path)
    smaller = cv2.resize(frame(), (640, 480), interpolation=cv2.INTER_AREA)
    assert feed(detector, smaller, path).recalibrated
    assert not feed(detector, cv2.resize(frame(), (640, 480), interpolation=cv2.INTER_AREA),
                    path).recalibrated


def test_motion_inside_a_mask_is_no_box_and_outside_is_one(frame):
    left_half = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    detector = MotionDetector(masks=[left_half])
    inside, outside = [], []
    for i in range(30):
        x = 40 + 8 * i  # its right edge at most 320: inside the left half (x < 384)
        inside.append(feed(detector, frame(squares=[(x, 100, x + 48, 148, 230)]), "image"))
    for i in range(30):
        x = 420 + 8 * i
        square = (x, 300, x + 48, 348)
        outside.append((feed(detector, frame(squares=[(*square, 230)]), "image"), square))
    assert all(r.boxes == () and r.changed == 0 for r in inside)
    for result, square in outside[2:]:
        assert best_iou(result, square) >= 0.5
        assert all(box[0] >= 0.5 for box in result.boxes)


def test_a_mask_edge_through_a_moving_square_cuts_its_box(frame):
    detector = MotionDetector(masks=[[(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]])
    for i in range(12):
        x = 300 + 8 * i  # straddles x = 384
        result = feed(detector, frame(squares=[(x, 200, x + 80, 280, 230)]), "image")
        if i > 1:
            assert result.boxes and all(box[0] >= 0.5 for box in result.boxes)


def test_both_decode_paths_agree_on_a_moving_square(frame):
    by_image, by_jpeg = MotionDetector(), MotionDetector()
    for i in range(30):
        x = 100 + 10 * i
        square = (x, 150, x + 56, 230)
        image = frame(squares=[(*square, 20)] if i else ())
        a, b = feed(by_image, image, "image"), feed(by_jpeg, image, "jpeg")
        assert a.recalibrated == b.recalibrated == (i == 0)
        assert len(a.boxes) == len(b.boxes) == (1 if i else 0)
        if i:
            assert iou(pixels(a.boxes[0]), pixels(b.boxes[0])) >= 0.7
            assert best_iou(a, square) >= 0.5 and best_iou(b, square) >= 0.5
        assert abs(a.changed - b.changed) < 0.002


@PATHS
def test_a_small_object_is_found_with_the_defaults(frame, path):
    detector = MotionDetector()
    feed(detector, frame(), path)
    found = 0
    for i in range(40):
        x = 300 + 6 * i
        person = (x, 400, x + 16, 432)  # 16x32 px: 0.12% of the frame
        result = feed(detector, frame(squares=[(*person, 230)]), path)
        if best_iou(result, person) > 0.2:
            found += 1
    assert found == 40


def test_boxes_at_the_frames_corner_are_fractions_within_it(frame):
    detector = MotionDetector()
    detector.from_image(frame())
    for i in range(5):
        result = detector.from_image(frame(squares=[(700 - 8 * i, 500, 768, 576, 240)]))
    assert result.boxes
    for box in result.boxes:
        assert 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1


def test_a_grey_frame_is_taken_as_it_is(frame):
    detector = MotionDetector()
    grey = cv2.cvtColor(frame(), cv2.COLOR_BGR2GRAY)
    assert detector.from_image(grey).recalibrated
    assert detector.from_image(grey).boxes == ()


@pytest.mark.parametrize(("size", "expected"), [
    ((768, 576), (4, (192, 144))),
    ((640, 480), (4, (160, 120))),
    ((1920, 1080), (8, (240, 135))),
    ((3840, 2160), (8, (192, 108))),
    ((770, 577), (4, (193, 145))),  # libjpeg rounds reduced sizes up
    ((320, 240), (2, (160, 120))),
    ((100, 80), (1, (100, 80))),
])
def test_reduction_factor_and_working_size(size, expected):
    assert reduction(*size, 192) == expected


def test_the_jpeg_path_decodes_at_the_working_size_of_the_header():
    """What libjpeg makes of the factor is what `reduction` expects, so no resize follows it."""
    for size in [(768, 576), (770, 577), (1920, 1080)]:
        factor, working = reduction(*size, 192)
        ok, buf = cv2.imencode(".jpg", np.zeros((size[1], size[0], 3), np.uint8))
        flag = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8}[factor]
        assert cv2.imdecode(buf, flag).shape[::-1] == working


def test_bytes_that_are_not_a_jpeg_raise_jpeg_error():
    detector = MotionDetector()
    with pytest.raises(JpegError):
        detector.from_jpeg(b"not a jpeg")
    with pytest.raises(JpegError):
        detector.from_jpeg(b"\xff\xd8\xff\xc0\x00\x11\x08\x02\x40\x03\x00" + b"\x00" * 20)


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"threshold": 255}, {"min_area": 1.0},
                                    {"lighting": 0.0}, {"width": 8}, {"alpha": 1.0}])
def test_settings_out_of_range_are_refused(kwargs):
    with pytest.raises(ValueError):
        MotionDetector(**kwargs)
