"""The `saved_model` backend: TensorFlow SavedModels exported by the TF Object Detection API (TF2
Detection Model Zoo): signature `serving_default`, uint8 [1, H, W, 3] in, detection_boxes/classes/
scores and num_detections out; classes are 1-based ids of a label_map.pbtxt, found next to the model
when detection.labels_path is not set.

It has no settings of its own. In particular not `threads`: TensorFlow's thread pools are
process-wide and fixed once its runtime starts (`tf.config.threading` raises after that), so a
per-camera value could not be honoured when a worker serves several cameras; setting it is an error
rather than a silently ignored value.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from common.detectors import BackendOptions, DetectorBackend
from common.envelope import Detection
from worker.detect.base import Detector, ModelInfo
from worker.detect.boxes import to_detections

OUTPUTS = {"detection_boxes", "detection_classes", "detection_scores", "num_detections"}


class SavedModelDetector(Detector):
    """A loaded SavedModel's serving signature; `detect` runs it on one frame."""

    def __init__(self, model_dir: str, labels: dict[int, str], label_offset: int = 0):
        import tensorflow as tf

        self._tf = tf
        loaded = tf.saved_model.load(str(model_dir))
        try:
            self._fn = loaded.signatures["serving_default"]
        except KeyError:
            raise ValueError("the SavedModel has no 'serving_default' signature") from None
        self._loaded = loaded  # keep the variables alive with the signature
        inputs = self._fn.structured_input_signature[1]
        missing = sorted(OUTPUTS - set(self._fn.structured_outputs))
        if len(inputs) != 1 or missing:
            raise ValueError(f"serving_default must take one image tensor and return {', '.join(sorted(OUTPUTS))} "
                             f"(inputs: {sorted(inputs)}, missing outputs: {missing}); export the model with "
                             "the TF Object Detection API's exporter_main_v2.py")
        ((self._input_name, spec),) = inputs.items()
        self._dtype = spec.dtype
        shape = spec.shape.as_list()
        size = (shape[1] or 0, shape[2] or 0) if len(shape) == 4 else (0, 0)
        self._label_offset = label_offset
        self.info = ModelInfo("saved_model", str(model_dir), labels, size)

    def detect(self, image: np.ndarray) -> list[Detection]:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if self.info.input_size[0] and self.info.input_size[1]:
            height, width = self.info.input_size
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        tensor = self._tf.convert_to_tensor(rgb[None], dtype=self._dtype)
        outputs = self._fn(**{self._input_name: tensor})
        count = int(np.ravel(outputs["num_detections"].numpy())[0])
        boxes = outputs["detection_boxes"].numpy()[0][:count]
        classes = outputs["detection_classes"].numpy()[0][:count]
        scores = outputs["detection_scores"].numpy()[0][:count]
        return to_detections(boxes, classes + self._label_offset, scores, self.info.labels, image.shape)


def _check_model(model: Path) -> str | None:
    if not model.is_dir():
        return ("must be a SavedModel directory for the saved_model backend (or set detection.backend to "
                "tflite for a .tflite file)")
    return None


def _find_labels(model: Path) -> Path | None:
    """A label_map.pbtxt exported with the model, in its directory or beside it."""
    for candidate in (model / "label_map.pbtxt", model.parent / "label_map.pbtxt"):
        if candidate.exists():
            return candidate
    return None


def _load(model: Path, labels: dict[int, str], label_offset: int, options: BackendOptions) -> SavedModelDetector:
    return SavedModelDetector(str(model), labels, label_offset=label_offset)


PLUGIN = DetectorBackend(
    key="saved_model",
    summary="TensorFlow Object Detection API SavedModels",
    first_class_id=1,
    load=_load,
    check_model=_check_model,
    find_labels=_find_labels,
)
