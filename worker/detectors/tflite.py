"""TFLite SSD models with post-processing in the graph, on LiteRT (the maintained TensorFlow Lite
runtime), or on `tf.lite` where LiteRT is not installed."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from common.envelope import Detection
from worker.detectors.base import Detector, ModelInfo
from worker.detectors.boxes import to_detections


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT absent: TensorFlow's own interpreter runs the same models
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteDetector(Detector):
    """Safe to share between threads: an interpreter is not thread-safe, so calls take turns."""

    def __init__(self, model_path: str, labels: dict[int, str], threads: int = 2, label_offset: int = 0):
        interpreter_class = _interpreter_class()
        self._interpreter = interpreter_class(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        (self._input,) = self._interpreter.get_input_details()
        _, height, width, _ = self._input["shape"]
        self._size = (int(height), int(width))
        self._outputs = self._map_outputs(self._interpreter.get_output_details())
        self._label_offset = label_offset
        self._lock = threading.Lock()
        self.info = ModelInfo("tflite", str(model_path), labels, self._size)

    @staticmethod
    def _map_outputs(details: list[dict]) -> dict[str, int]:
        """Find boxes, classes, scores and count among the outputs, whose order differs by model."""
        by_name = {d["name"]: d["index"] for d in details}
        base = "TFLite_Detection_PostProcess"
        if all(name in by_name for name in (base, f"{base}:1", f"{base}:2", f"{base}:3")):
            return {"boxes": by_name[base], "classes": by_name[f"{base}:1"], "scores": by_name[f"{base}:2"],
                    "count": by_name[f"{base}:3"]}
        mapped: dict[str, int] = {}
        pairs = []
        for d in details:
            shape = tuple(d["shape"])
            if len(shape) == 3 and shape[-1] == 4:
                mapped["boxes"] = d["index"]
            elif len(shape) == 1 or (len(shape) == 2 and shape[-1] == 1):
                mapped["count"] = d["index"]
            else:
                pairs.append(d["index"])
        if len(pairs) != 2 or set(mapped) != {"boxes", "count"}:
            raise ValueError("not an SSD model with post-processing (boxes, classes, scores, count)")
        mapped["classes"], mapped["scores"] = pairs  # resolved by values on the first run
        return mapped

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        height, width = self._size
        rgb = cv2.cvtColor(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        if self._input["dtype"] == np.float32:
            return ((rgb.astype(np.float32) - 127.5) / 127.5)[None]
        return rgb[None].astype(self._input["dtype"])

    def detect(self, image: np.ndarray) -> list[Detection]:
        tensor = self._prepare(image)
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], tensor)
            self._interpreter.invoke()
            get = self._interpreter.get_tensor
            boxes, classes, scores = (get(self._outputs[k])[0].copy() for k in ("boxes", "classes", "scores"))
            count = int(np.ravel(get(self._outputs["count"]))[0])
        if np.any(scores > 1.0) or (np.all(np.mod(scores, 1) == 0) and np.any(np.mod(classes, 1) != 0)):
            classes, scores = scores, classes  # the heuristic order was the other way round
            self._outputs["classes"], self._outputs["scores"] = self._outputs["scores"], self._outputs["classes"]
        return to_detections(boxes[:count], classes[:count] + self._label_offset, scores[:count],
                             self.info.labels, image.shape)
