import pytest

from common import assets
from worker.detect.labels import LabelMapError, load_labels, parse_coco_labels, parse_label_map_pbtxt


def test_bundled_coco_labels():
    labels = load_labels(assets.labels_path())
    assert labels[0] == "person" and labels[2] == "car" and labels[16] == "cat" and len(labels) == 80


def test_coco_format_with_gaps_and_bare_names():
    assert parse_coco_labels("0  person\n\n2  car\n   \n") == {0: "person", 2: "car"}
    assert parse_coco_labels("0 traffic light\n1 fire hydrant\n") == {0: "traffic light", 1: "fire hydrant"}
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


def test_pbtxt_nested_blocks_and_separators_do_not_confuse_ids(tmp_path):
    text = """
    item {
      name: "/m/01g317"
      id: 1
      display_name: "person"
      keypoints { id: 0 label: "nose" }
      keypoints { id: 1 label: "left_eye" }
    }
    item: { id: 4, name: "bus" }
    """
    assert parse_label_map_pbtxt(text) == {1: "person", 4: "bus"}
    path = tmp_path / "labels.txt"  # detected by content, whatever the file is called
    path.write_text(text)
    assert load_labels(path) == {1: "person", 4: "bus"}


@pytest.mark.parametrize("text, message", [
    ("item { name: 'x' }", "without an integer id"),
    ("item { id: 1 name: 'x'", "unclosed"),
    ("item { id 1 }", "cannot parse"),
    ("# only a comment\n", "no `item"),
])
def test_bad_pbtxt_says_what_is_wrong(tmp_path, text, message):
    bad = tmp_path / "bad.pbtxt"
    bad.write_text(text)
    with pytest.raises(LabelMapError, match=message) as info:
        load_labels(bad)
    assert str(bad) in str(info.value)


def test_missing_or_empty_label_files(tmp_path):
    with pytest.raises(LabelMapError, match="cannot read"):
        load_labels(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(LabelMapError, match="empty label map"):
        load_labels(empty)
