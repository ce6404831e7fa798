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


def _tag_as_read(out: np.ndarray, background: int, fill: tuple[int, int, int], ink: tuple[int, int, int],
                 above: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The tag's rectangle (the fill colour's extent above row `above`) and the mask of its text:
    pixels inside it that moved from the fill towards the ink colour. What a reader sees, whatever
    anti-aliasing or font a given OpenCV version draws the glyphs with."""
    region = out[:above].astype(int)
    filled = np.all(region == fill, axis=2)
    rows, cols = np.nonzero(filled)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    changed = np.any(region != background, axis=2)
    outside = changed.copy()
    outside[top:bottom + 1, left:right + 1] = False
    assert not outside.any(), "everything drawn above the box belongs to the tag"
    tag = region[top:bottom + 1, left:right + 1]
    towards_ink = np.abs(tag - np.array(fill)).sum(axis=2) > np.abs(tag - np.array(ink)).sum(axis=2)
    return (top, bottom, left, right), towards_ink


@pytest.mark.parametrize("background", [250, 0])
def test_tags_are_readable_on_light_and_dark_pictures(background):
    for label in load_labels(assets.labels_path()).values():  # every label's tag has contrasting text
        assert abs(luminance(colour_for(label)) - luminance(text_colour(colour_for(label)))) >= 100
    image = np.full((120, 200, 3), background, np.uint8)
    out = draw_detections(image, [Detection("dog", 0.5, (20, 40, 150, 110), 17)])
    fill, ink = colour_for("dog"), text_colour(colour_for("dog"))
    (top, bottom, left, right), text = _tag_as_read(out, background, fill, ink, above=38)
    area = (bottom - top + 1) * (right - left + 1)
    assert left == 20 and bottom < 40 and (bottom - top) >= 10 and (right - left) >= 40  # on the box's corner
    assert np.all(out[top:bottom + 1, left:right + 1] == fill, axis=2).sum() > 0.5 * area  # a filled tag
    assert 0.05 * area < text.sum() < 0.5 * area  # text on it: strokes, not a second fill
    rows, cols = np.nonzero(text)
    assert rows.min() > 0 and rows.max() < bottom - top and cols.min() > 0 and cols.max() < right - left  # inside
    assert len(np.unique(cols)) > 0.5 * (cols.max() - cols.min())  # spread along a line of glyphs, not one blot
    strongest = out[top:bottom + 1, left:right + 1][text]
    contrast = max(abs(luminance(tuple(int(v) for v in px)) - luminance(fill)) for px in strongest)
    assert contrast >= 0.8 * abs(luminance(ink) - luminance(fill))  # the strokes' cores reach the ink's contrast


def test_overlay_draws_in_the_corner_only_and_reads_on_white():
    image = np.full((240, 320, 3), 255, np.uint8)
    out = draw_overlay(image, "cam1", ts_ns=1_700_000_000_000_000_000, fps=9.5)
    corner = out[:25, :150]
    assert np.any(corner < 150) and np.any(np.all(corner == 255, axis=2))  # dark band, white text
    assert np.array_equal(out[120:, :], image[120:, :])
    assert np.array_equal(image, np.full((240, 320, 3), 255, np.uint8))
    epoch = draw_overlay(image, "cam1", ts_ns=0)
    assert not np.array_equal(epoch[:25], out[:25])  # a different time, no fps: different text
