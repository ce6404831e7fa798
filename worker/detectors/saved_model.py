"""TensorFlow SavedModels exported by the TF Object Detection API (TF2 Detection Model Zoo):
signature `serving_default`, uint8 [1, H, W, 3] in, detection_boxes/classes/scores and
num_detections out; classes are 1-based ids of a label_map.pbtxt."""

from __future__ import annotations

import cv2
import numpy as np

from common.envelope import Detection
from worker.detectors.base import Detector, ModelInfo
from worker.detectors.boxes import to_detections

OUTPUTS = {"detection_boxes", "detection_classes", "detection_scores", "num_detections"}


class SavedModelDetector(Detector):
    """Loaded by `create_detector`; `detect` is called per frame by the worker loop or a process pool."""

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
