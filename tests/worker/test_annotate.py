import numpy as np

from common.envelope import Detection
from worker.annotate import colour_for, draw_detections, draw_overlay


def test_boxes_are_drawn_where_the_detections_are():
    image = np.full((240, 320, 3), 128, np.uint8)
    original = image.copy()
    out = draw_detections(image, [Detection("person", 0.87, (100, 80, 200, 180), 0)])
    assert np.array_equal(image, original)  # the input is not modified
    changed = np.any(out != image, axis=2)
    assert changed[80, 150] and changed[180, 150] and changed[130, 100] and changed[130, 200]  # the edges
    assert not changed[130, 150]  # inside the box, away from the label
    assert not changed[230, 10] and not changed[230, 310]  # far away


def test_label_stays_inside_the_frame_at_the_edges():
    image = np.zeros((100, 100, 3), np.uint8)
    out = draw_detections(image, [Detection("bicycle", 0.99, (90, 0, 99, 30), 1)])
    assert out.shape == image.shape
    assert np.any(out[:, :90] != 0)  # the tag was moved left to fit, not cut off


def test_colours_are_stable_per_label_and_text_readable():
    assert colour_for("person") == colour_for("person")
    assert colour_for("person") != colour_for("car")
    light = np.full((120, 200, 3), 250, np.uint8)
    dark = np.zeros((120, 200, 3), np.uint8)
    for image in (light, dark):
        out = draw_detections(image, [Detection("dog", 0.5, (20, 40, 150, 110), 17)])
        assert np.any(out != image)


def test_overlay_draws_in_the_corner_only():
    image = np.full((240, 320, 3), 200, np.uint8)
    out = draw_overlay(image, "cam1", ts_ns=1_700_000_000_000_000_000, fps=9.5)
    assert np.any(out[:25, :150] != 200)
    assert np.array_equal(out[120:, :], image[120:, :])
