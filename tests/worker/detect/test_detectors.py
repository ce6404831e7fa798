import cv2
import numpy as np
import pytest
from skimage import data

from common import assets
from common.config import DetectionConfig
from common.envelope import Detection
from worker.detect import ModelError, create_detector, filter_detections, label_offset


def _labels(detector, image_rgb, min_score=0.5):
    detections = detector.detect(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    return {d.label for d in detections if d.score >= min_score}


@pytest.mark.parametrize("image, label", [("chelsea", "cat"), ("astronaut", "person"), ("coffee", "cup")])
def test_bundled_model_finds_the_obvious_object(detector, image, label):
    assert label in _labels(detector, getattr(data, image)())


def test_boxes_are_pixels_clipped_to_the_image(detector):
    image = cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)
    height, width = image.shape[:2]
    detections = detector.detect(image)
    assert detections
    for det in detections:
        x1, y1, x2, y2 = det.box
        assert 0 <= x1 < x2 <= width - 1 and 0 <= y1 < y2 <= height - 1
    cat = max((d for d in detections if d.label == "cat"), key=lambda d: d.score)
    assert (cat.box[2] - cat.box[0]) * (cat.box[3] - cat.box[1]) > 0.3 * width * height


def test_model_metadata(detector):
    assert detector.info.backend == "tflite"
    assert detector.info.input_size == (300, 300)
    assert detector.info.labels[0] == "person" and len(detector.info.labels) == 80


def test_detector_is_loaded_once_per_process(detector):
    assert create_detector(DetectionConfig()) is detector
    assert create_detector(DetectionConfig(min_score=0.9)) is detector  # filters do not reload the model
    assert create_detector(DetectionConfig(labels_path=str(assets.labels_path()))) is detector  # same files
    assert create_detector(DetectionConfig(threads=1)) is not detector  # a different interpreter set-up


def test_the_bundled_model_sees_the_pedestrians_of_the_sample_clip(detector, sample_images):
    """Output class k is line k of coco_labels.txt: people walking are 'person', class 0."""
    per_frame = [[d for d in detector.detect(image) if d.score >= 0.5] for image in sample_images[::4]]
    assert all(sum(d.label == "person" and d.class_id == 0 for d in dets) >= 2 for dets in per_frame)
    labels = [d.label for dets in per_frame for d in dets]
    assert max(set(labels), key=labels.count) == "person"


def test_missing_or_wrong_models_name_the_problem(tmp_path):
    with pytest.raises(ModelError, match="does not exist: set it"):
        create_detector(DetectionConfig(model=str(tmp_path / "nope.tflite")))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load tflite model .*check detection.model"):
        create_detector(DetectionConfig(model=str(bad)))
    with pytest.raises(ModelError, match="SavedModel directory"):
        create_detector(DetectionConfig(backend="saved_model", model=str(bad)))
    with pytest.raises(ModelError, match="needs a .tflite file"):
        create_detector(DetectionConfig(model=str(tmp_path)))
    with pytest.raises(ModelError, match="set detection.backend to tflite"):
        create_detector(DetectionConfig(backend="saved_model"))
    with pytest.raises(ModelError, match="labels_path .* does not exist"):
        create_detector(DetectionConfig(model=str(assets.model_path()), labels_path=str(tmp_path / "l.txt")))
    broken = tmp_path / "broken.pbtxt"
    broken.write_text("item { name: 'x' }")
    with pytest.raises(ModelError, match="without an integer id.*labels_path"):
        create_detector(DetectionConfig(labels_path=str(broken)))


def test_label_offset_joins_model_and_label_map_bases():
    assert label_offset("tflite", {0: "person"}) == 0
    assert label_offset("tflite", {1: "person"}) == 1  # a TF OD API label map for a 0-based TFLite model
    assert label_offset("saved_model", {1: "person"}) == 0
    assert label_offset("saved_model", {0: "person"}) == -1  # coco_labels.txt for a 1-based SavedModel
    assert label_offset("saved_model", {}) == 0


def test_filters():
    dets = [Detection("person", 0.9, (0, 0, 50, 50), 0), Detection("car", 0.4, (0, 0, 50, 50), 2),
            Detection("person", 0.8, (0, 0, 5, 5), 0), Detection("dog", 0.95, (10, 10, 90, 90), 17)]
    shape = (100, 100, 3)
    assert len(filter_detections(dets, DetectionConfig(min_score=0.5), shape)) == 3
    kept = filter_detections(dets, DetectionConfig(min_score=0.5, labels=["person"]), shape)
    assert [d.label for d in kept] == ["person", "person"]
    kept = filter_detections(dets, DetectionConfig(min_score=0.0, min_area=0.01), shape)
    assert (0, 0, 5, 5) not in [d.box for d in kept] and len(kept) == 3


def _build_saved_model(path):
    """A SavedModel with the TF Object Detection API's serving signature, built here: it 'detects'
    one object whose box covers the image's brightest quadrant, class 1, score from brightness."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def serve(self, input_tensor):
            image = tf.cast(input_tensor[0], tf.float32)
            h, w = tf.shape(image)[0] // 2, tf.shape(image)[1] // 2
            quads = tf.stack([tf.reduce_mean(image[:h, :w]), tf.reduce_mean(image[:h, w:]),
                              tf.reduce_mean(image[h:, :w]), tf.reduce_mean(image[h:, w:])])
            best = tf.argmax(quads)
            top = tf.cast(best // 2, tf.float32) * 0.5
            left = tf.cast(best % 2, tf.float32) * 0.5
            boxes = tf.reshape(tf.stack([top, left, top + 0.5, left + 0.5]), [1, 1, 4])
            return {"detection_boxes": boxes,
                    "detection_classes": tf.constant([[1.0]]),
                    "detection_scores": tf.reshape(tf.reduce_max(quads) / 255.0, [1, 1]),
                    "num_detections": tf.constant([1.0])}

    model = Model()
    tf.saved_model.save(model, str(path), signatures={"serving_default": model.serve})
    (path / "label_map.pbtxt").write_text("item {\n  id: 1\n  name: 'bright'\n  display_name: 'bright spot'\n}\n")


def test_saved_model_backend_loads_and_detects(tmp_path):
    model_dir = tmp_path / "od_model"
    _build_saved_model(model_dir)
    det = create_detector(DetectionConfig(backend="saved_model", model=str(model_dir), min_score=0.0))
    assert det.info.backend == "saved_model" and det.info.labels == {1: "bright spot"}
    image = np.zeros((200, 300, 3), np.uint8)
    image[100:, 150:] = 255  # bottom-right quadrant is white
    (found,) = det.detect(image)
    assert found.label == "bright spot" and found.class_id == 1
    assert found.box == (150, 100, 299, 199)
    assert found.score == pytest.approx(1.0)


def test_saved_model_with_zero_based_coco_labels(tmp_path):
    model_dir = tmp_path / "od_model_coco"
    _build_saved_model(model_dir)
    (model_dir / "label_map.pbtxt").unlink()
    labels = tmp_path / "labels.txt"
    labels.write_text("0  bright\n1  dark\n")
    det = create_detector(DetectionConfig(backend="saved_model", model=str(model_dir), labels_path=str(labels)))
    image = np.full((60, 80, 3), 255, np.uint8)
    assert [(d.label, d.class_id) for d in det.detect(image)] == [("bright", 0)]  # model class 1 is line 0


def _build_tflite(path, dtype, named: bool, classes_first: bool = False):
    """A TFLite SSD-style model built here: two detections, the first scoring the image's mean red
    (so BGR->RGB and input scaling show in the score), class 2; the second fixed, class 0. With
    `named`, outputs carry the TF OD API signature names; otherwise they are an unnamed tuple in the
    TF2 exporter's order (scores, boxes, count, classes), and only shapes and values tell them apart."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 64, 96, 3], dtype)])
        def serve(self, image):
            red = tf.reduce_mean(tf.cast(image[..., 0], tf.float32))
            red = {tf.float32: (red + 1.0) / 2.0, tf.uint8: red / 255.0, tf.int8: (red + 128.0) / 255.0}[dtype]
            boxes = tf.constant([[[0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.5, 0.25], [0.0, 0.0, 0.0, 0.0]]]) + 0 * red
            scores = tf.reshape(tf.stack([red, 0.3, 0.0]), [1, 3])
            classes = tf.constant([[2.0, 0.0, 0.0]]) + 0 * red
            count = tf.constant([2.0]) + 0 * red
            if named:
                return {"detection_boxes": boxes, "detection_classes": classes, "detection_scores": scores,
                        "num_detections": count}
            return (classes, boxes, count, scores) if classes_first else (scores, boxes, count, classes)

    model = Model()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([model.serve.get_concrete_function()], model)
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("dtype, named, classes_first", [
    ("float32", True, False), ("uint8", False, False), ("uint8", False, True), ("int8", False, False)])
def test_tflite_inputs_and_output_orders(tmp_path, dtype, named, classes_first):
    """Whichever way round the unnamed classes and scores come, one of the two orders defeats the
    shape-based guess, so the correction from values is exercised too."""
    import tensorflow as tf

    model = _build_tflite(tmp_path / "ssd.tflite", getattr(tf, dtype), named, classes_first)
    labels = tmp_path / "label_map.pbtxt"  # 1-based ids for a 0-based model: class k is id k + 1
    labels.write_text("item { id: 1 name: 'one' }\nitem { id: 2 name: 'two' }\nitem { id: 3 name: 'three' }\n")
    det = create_detector(DetectionConfig(model=str(model), labels_path=str(labels), threads=1))
    assert det.info.input_size == (64, 96) and det.info.backend == "tflite"
    red = np.zeros((120, 200, 3), np.uint8)
    red[..., 2] = 255  # BGR: pure red
    for image, score in ((red, 1.0), (red[..., ::-1].copy(), 0.0)):  # then pure blue
        first, second = det.detect(image)
        assert (first.label, first.class_id, first.box) == ("three", 3, (100, 30, 199, 90))
        assert first.score == pytest.approx(score, abs=0.01)
        assert (second.label, second.class_id, second.score) == ("one", 1, pytest.approx(0.3))
        assert second.box == (0, 0, 50, 60)
