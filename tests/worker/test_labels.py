import pytest

from common import assets
from worker.labels import LabelMapError, load_labels, parse_coco_labels, parse_label_map_pbtxt


def test_bundled_coco_labels():
    labels = load_labels(assets.labels_path())
    assert labels[0] == "person" and labels[2] == "car" and labels[16] == "cat" and len(labels) == 80


def test_coco_format_with_gaps_and_bare_names():
    assert parse_coco_labels("0  person\n\n2  car\n") == {0: "person", 2: "car"}
    assert parse_coco_labels("cat\ndog\n") == {0: "cat", 1: "dog"}


def test_pbtxt_format(tmp_path):
    text = """
    # TF Object Detection API label map
    item {
      id: 1
      name: "/m/01g317"
      display_name: "person"
    }
    item { name: 'car' id: 3 }
    """
    assert parse_label_map_pbtxt(text) == {1: "person", 3: "car"}
    path = tmp_path / "label_map.pbtxt"
    path.write_text(text)
    assert load_labels(path) == {1: "person", 3: "car"}


def test_bad_label_maps(tmp_path):
    with pytest.raises(LabelMapError, match="cannot read"):
        load_labels(tmp_path / "missing.txt")
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("item { name: 'x' }")
    with pytest.raises(LabelMapError, match="without an id"):
        load_labels(bad)
