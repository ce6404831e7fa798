"""The region planner and detection in regions, on plain boxes and stand-in detector functions."""

import numpy as np
import pytest

from common.envelope import Detection
from worker.detect.regions import detect_in_regions, plan_regions

FRAME = (768, 576)


def inside(box, region):
    return region[0] <= box[0] and region[1] <= box[1] and box[2] <= region[2] and box[3] <= region[3]


def side(region):
    return region[2] - region[0]


def test_one_small_box_gives_one_model_sized_square_around_it():
    box = (400, 200, 430, 260)
    (region,) = plan_regions([box], FRAME, 300)
    assert region[2] - region[0] == region[3] - region[1] == 300
    assert inside(box, region) and inside(region, (0, 0, *FRAME))


def test_a_large_box_gets_a_larger_square_with_a_margin_around_it():
    person = (300, 150, 380, 400)  # 250 px tall
    (region,) = plan_regions([person], FRAME, 300)
    assert side(region) == region[3] - region[1] > 300
    margin = min(person[0] - region[0], person[1] - region[1], region[2] - person[2], region[3] - person[3])
    assert margin >= 0.15 * 250  # the object is not at the region's edge


def test_boxes_near_a_corner_give_a_square_shifted_inside_the_frame():
    (region,) = plan_regions([(750, 560, 768, 576)], FRAME, 300)
    assert region == (468, 276, 768, 576)
    (region,) = plan_regions([(0, 0, 10, 10)], FRAME, 300)
    assert region == (0, 0, 300, 300)


def test_far_boxes_give_two_squares_and_near_boxes_one():
    assert len(plan_regions([(10, 10, 40, 60), (700, 500, 740, 560)], FRAME, 300)) == 2
    assert len(plan_regions([(100, 100, 140, 160), (180, 120, 220, 190)], FRAME, 300)) == 1


def test_regions_are_not_merged_when_that_would_shrink_their_objects():
    a, b = (100, 200, 130, 260), (410, 200, 440, 260)  # one 340 px wide square would hold both
    regions = plan_regions([a, b], FRAME, 300)
    assert len(regions) == 2 and all(side(r) == 300 for r in regions)


def test_regions_that_overlap_mostly_are_merged_even_if_that_shrinks_their_objects():
    a, b = (100, 100, 400, 400), (180, 100, 480, 400)  # squares of 405 sharing 80%; both in one of 513
    (region,) = plan_regions([a, b], FRAME, 300, full_frame_fraction=0.7)
    assert inside(a, region) and inside(b, region) and side(region) > 1.2 * 405


def test_too_much_motion_is_a_full_frame():
    scattered = [(x, y, x + 20, y + 20) for x in (10, 370, 700) for y in (10, 500)]
    assert plan_regions(scattered, FRAME, 300) is None  # more squares than max_regions
    assert plan_regions([(0, 0, 600, 500)], FRAME, 300) is None  # larger than any square
    assert plan_regions([(100, 100, 520, 380)], FRAME, 300) is None  # a square over half the frame
    assert plan_regions([(10, 10, 40, 60), (700, 500, 740, 560)], FRAME, 300, full_frame_fraction=0.3) is None
    assert plan_regions([(10, 10, 40, 40)], (320, 240), 300) is None  # a frame the model's size
    assert plan_regions([(10, 10, 40, 40)], FRAME, 300, max_regions=0) is None
    storm = [(10 + 6 * i, 10, 12 + 6 * i, 12) for i in range(33)]  # rain: the full frame, at once
    assert plan_regions(storm, FRAME, 300) is None


def test_no_motion_is_no_region_and_boxes_are_clipped_to_the_frame():
    assert plan_regions([], FRAME, 300) == []
    assert plan_regions([(800, 600, 900, 700)], FRAME, 300) == []
    (region,) = plan_regions([(700.4, 500.2, 790.0, 590.0)], FRAME, 300)
    assert region == (468, 276, 768, 576)


def test_every_motion_box_lies_in_a_square_region_inside_the_frame():
    rng = np.random.default_rng(3)
    width, height = 1280, 720
    planned = 0
    for _ in range(300):
        boxes = []
        for _ in range(rng.integers(1, 6)):
            x, y = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
            boxes.append((x, y, x + int(rng.integers(4, min(200, width - x))),
                          y + int(rng.integers(4, min(200, height - y)))))
        regions = plan_regions(boxes, (width, height), 320, max_regions=3, full_frame_fraction=0.6)
        if regions is None:
            continue
        planned += 1
        assert 1 <= len(regions) <= 3
        for r in regions:
            assert side(r) == r[3] - r[1] and 320 <= side(r) <= height and inside(r, (0, 0, width, height))
        for box in boxes:
            assert any(inside(box, r) for r in regions)
    assert planned > 50


def patch_detector(label="person", *, cut_score=0.95, whole_score=0.6):
    """Stands for the model: one detection around the bright pixels of the crop, in the crop's
    pixels (x2, y2 inclusive, as backends give them), scored higher when the crop cuts it."""
    def detect(crop):
        ys, xs = np.nonzero(crop[:, :, 0] > 200)
        if not len(xs):
            return []
        box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
        cut = box[0] == 0 or box[1] == 0 or box[2] == crop.shape[1] - 1 or box[3] == crop.shape[0] - 1
        return [Detection(label, cut_score if cut else whole_score, box, 0)]
    return detect


def test_detections_are_mapped_back_to_the_frame():
    image = np.zeros((576, 768, 3), np.uint8)
    image[100:200, 450:490] = 255
    found = detect_in_regions(patch_detector(), image, [(300, 50, 600, 350)])
    assert found == [Detection("person", 0.6, (450, 100, 489, 199), 0)]


def test_an_object_seen_by_two_overlapping_regions_is_one_detection():
    image = np.zeros((576, 768, 3), np.uint8)
    image[100:200, 250:290] = 255  # inside both squares
    found = detect_in_regions(patch_detector(), image, [(0, 0, 300, 300), (200, 50, 500, 350)])
    assert found == [Detection("person", 0.6, (250, 100, 289, 199), 0)]


def test_the_box_a_region_cuts_gives_way_to_the_whole_one():
    image = np.zeros((576, 768, 3), np.uint8)
    image[100:200, 270:330] = 255  # cut by the first square's right edge, whole in the second
    found = detect_in_regions(patch_detector(), image, [(0, 0, 300, 300), (200, 0, 500, 300)])
    assert found == [Detection("person", 0.6, (270, 100, 329, 199), 0)]  # despite the cut one's 0.95


def test_a_box_cut_only_by_the_frame_edge_is_not_cut():
    image = np.zeros((576, 768, 3), np.uint8)
    image[476:576, 700:768] = 255
    found = detect_in_regions(patch_detector(), image, [(468, 276, 768, 576)])
    assert found == [Detection("person", 0.95, (700, 476, 767, 575), 0)]


def fixed_detector(per_region):
    """Stands for the model: the crop-relative detections given for each call, in order."""
    calls = iter(per_region)
    return lambda crop: next(calls)


@pytest.mark.parametrize(("first", "second", "kept"), [
    # same place, different labels: two objects
    (Detection("person", 0.9, (50, 50, 100, 150), 0), Detection("dog", 0.8, (50, 50, 100, 150), 17), 2),
    # same label, far apart: two objects
    (Detection("car", 0.9, (0, 0, 60, 40), 2), Detection("car", 0.8, (200, 200, 260, 240), 2), 2),
    # same label, one mostly inside the other: one object, the higher score
    (Detection("car", 0.9, (40, 40, 140, 140), 2), Detection("car", 0.8, (50, 50, 110, 110), 2), 1),
    # same label, IoU over 0.5: one object, the higher score
    (Detection("car", 0.7, (40, 40, 140, 140), 2), Detection("car", 0.8, (50, 45, 150, 140), 2), 1),
    # a small car far behind a large one it overlaps: two objects
    (Detection("car", 0.9, (0, 0, 290, 290), 2), Detection("car", 0.8, (100, 100, 130, 115), 2), 2),
])
def test_duplicates_across_regions_are_told_from_distinct_objects(first, second, kept):
    image = np.zeros((576, 768, 3), np.uint8)
    regions = [(0, 0, 300, 300), (0, 0, 300, 300)]  # the same square twice: same frame coordinates
    found = detect_in_regions(fixed_detector([[first], [second]]), image, regions)
    assert len(found) == kept
    assert found[0] == max(first, second, key=lambda d: d.score)


def test_overlapping_detections_of_one_region_are_the_models_call():
    image = np.zeros((576, 768, 3), np.uint8)
    a = Detection("person", 0.9, (10, 10, 60, 110), 0)
    b = Detection("person", 0.5, (20, 10, 70, 110), 0)
    found = detect_in_regions(fixed_detector([[b, a]]), image, [(100, 100, 400, 400)])
    assert found == [Detection("person", 0.9, (110, 110, 160, 210), 0),
                     Detection("person", 0.5, (120, 110, 170, 210), 0)]


def test_no_regions_is_no_detection():
    assert detect_in_regions(fixed_detector([]), np.zeros((10, 10, 3), np.uint8), []) == []
