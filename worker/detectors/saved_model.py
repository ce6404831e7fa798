"""TensorFlow SavedModels exported by the TF Object Detection API (TF2 Detection Model Zoo):
signature `serving_default`, uint8 [1, H, W, 3] in, detection_boxes/classes/scores and
num_detections out; classes are 1-based ids of a label_map.pbtxt."""

from __future__ import annotations

import cv2
import numpy as np

from common.envelope import Detection
from worker.detectors.base import Detector, ModelInfo
from worker.detectors.boxes import to_detections


class SavedModelDetector(Detector):
    """Invoked from one worker thread at a time."""

    def __init__(self, model_dir: str, labels: dict[int, str]):
        import tensorflow as tf

        self._tf = tf
        loaded = tf.saved_model.load(str(model_dir))
        try:
            self._fn = loaded.signatures["serving_default"]
        except KeyError:
            raise ValueError("the SavedModel has no 'serving_default' signature") from None
        self._loaded = loaded  # keep the variables alive with the signature
        spec = next(iter(self._fn.structured_input_signature[1].values()))
        self._input_name = next(iter(self._fn.structured_input_signature[1]))
        self._dtype = spec.dtype
        shape = spec.shape.as_list()
        size = (shape[1] or 0, shape[2] or 0) if len(shape) == 4 else (0, 0)
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
        return to_detections(boxes, classes, scores, self.info.labels, image.shape)
