import numpy as np
import pytest

from common import assets
from common.envelope import Detection
from worker.detect.annotate import colour_for, draw_detections, draw_overlay, luminance, text_colour
from worker.detect.labels import load_labels


def test_boxes_are_drawn_where_the_detections_are():
    image = np.full((240, 320, 3), 128, np.uint8)
    original = image.copy()
    out = draw_detections(image, [Detection("person", 0.87, (100, 80, 200, 180), 0)])
    assert np.array_equal(image, original)  # the input is not modified
    changed = np.any(out != image, axis=2)
    assert changed[80, 150] and changed[180, 150] and changed[130, 100] and changed[130, 200]  # the edges
    assert not changed[130, 150]  # inside the box, away from the label
    assert not changed[230, 10] and not changed[230, 310]  # far away
    assert tuple(int(v) for v in out[180, 150]) == colour_for("person")  # the box is in the label's colour


def test_no_detections_gives_an_equal_copy():
    image = np.full((50, 60, 3), 7, np.uint8)
    out = draw_detections(image, [])
    assert np.array_equal(out, image) and out is not image


def test_label_stays_inside_the_frame_at_the_edges():
    image = np.zeros((100, 100, 3), np.uint8)
    out = draw_detections(image, [Detection("bicycle", 0.99, (90, 0, 99, 30), 1)])
    assert out.shape == image.shape
    assert np.any(out[:, :90] != 0)  # the tag was moved left to fit, not cut off
    colour = colour_for("bicycle")
    bottom = draw_detections(image, [Detection("bicycle", 0.99, (10, 97, 60, 99), 1)])
    fill = np.all(bottom == colour, axis=2)
    assert fill[80:97].sum() > 50  # a box on the bottom edge: its tag is drawn above, inside the frame


def test_colours_are_stable_per_label_and_distinct():
    labels = list(load_labels(assets.labels_path()).values())
    colours = [colour_for(label) for label in labels]
    assert colours == [colour_for(label) for label in labels]
    assert len(set(colours)) > 0.9 * len(labels)


@pytest.mark.parametrize("background", [250, 0])
def test_tags_are_readable_on_light_and_dark_pictures(background):
    for label in load_labels(assets.labels_path()).values():  # every label's tag has contrasting text
        assert abs(luminance(colour_for(label)) - luminance(text_colour(colour_for(label)))) >= 100
    image = np.full((120, 200, 3), background, np.uint8)
    out = draw_detections(image, [Detection("dog", 0.5, (20, 40, 150, 110), 17)])
    tag = out[:40, 20:150]
    fill, ink = colour_for("dog"), text_colour(colour_for("dog"))
    assert np.all(tag == fill, axis=2).sum() > 100  # a filled background, whatever the picture
    assert np.all(tag == ink, axis=2).sum() > 10  # and text on it


def test_overlay_draws_in_the_corner_only_and_reads_on_white():
    image = np.full((240, 320, 3), 255, np.uint8)
    out = draw_overlay(image, "cam1", ts_ns=1_700_000_000_000_000_000, fps=9.5)
    corner = out[:25, :150]
    assert np.any(corner < 150) and np.any(np.all(corner == 255, axis=2))  # dark band, white text
    assert np.array_equal(out[120:, :], image[120:, :])
    assert np.array_equal(image, np.full((240, 320, 3), 255, np.uint8))
    epoch = draw_overlay(image, "cam1", ts_ns=0)
    assert not np.array_equal(epoch[:25], out[:25])  # a different time, no fps: different text
