import cv2
import numpy as np
import pytest
from skimage import data

from common.config import DetectionConfig
from common.envelope import Detection
from worker.detectors import ModelError, create_detector, filter_detections


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


def test_missing_or_wrong_models_name_the_problem(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        create_detector(DetectionConfig(model=str(tmp_path / "nope.tflite")))
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load tflite model"):
        create_detector(DetectionConfig(model=str(bad)))
    with pytest.raises(ModelError, match="SavedModel directory"):
        create_detector(DetectionConfig(backend="saved_model", model=str(bad)))
    with pytest.raises(ModelError, match="set detection.backend to tflite"):
        create_detector(DetectionConfig(backend="saved_model"))


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
