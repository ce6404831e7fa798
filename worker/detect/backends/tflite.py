"""The `tflite` backend: TFLite SSD models with post-processing in the graph, on LiteRT (the
maintained TensorFlow Lite runtime), or on `tf.lite` where LiteRT is not installed. Its own setting
is `threads`; its classes count from 0; `detection.model: default` is the bundled SSD MobileNet."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
from pydantic import Field

from common import assets
from common.detectors import BackendOptions, DetectorBackend
from common.envelope import Detection
from worker.detect.base import Detector, ModelInfo
from worker.detect.boxes import to_detections

OUTPUTS = ("boxes", "classes", "scores", "count")
# Output names seen in the wild: the TF1 post-processing op's outputs are numbered in this order; TF2
# exports keep the Object Detection API's names in their signature but not in the tensor names.
_POSTPROCESS = "TFLite_Detection_PostProcess"
_NAME_HINTS = {"boxes": ("box",), "classes": ("class",), "scores": ("score",), "count": ("num_detections", "count")}


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # LiteRT absent: TensorFlow's own interpreter runs the same models
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def _signature_outputs(interpreter) -> dict[str, int]:
    """Output name -> tensor index from the model's first signature; {} when it has none."""
    try:
        keys = list(interpreter.get_signature_list())
        if not keys:
            return {}
        runner = interpreter.get_signature_runner(keys[0])
        return {name: d["index"] for name, d in runner.get_output_details().items()}
    except (AttributeError, ValueError, KeyError):
        return {}


def _match_by_name(named: dict[str, int]) -> dict[str, int] | None:
    """Each of boxes/classes/scores/count found by exactly one name, else None."""
    if all(f"{_POSTPROCESS}{suffix}" in named for suffix in ("", ":1", ":2", ":3")):
        return {key: named[f"{_POSTPROCESS}{suffix}"] for key, suffix in zip(OUTPUTS, ("", ":1", ":2", ":3"),
                                                                             strict=True)}
    mapped = {}
    for key, hints in _NAME_HINTS.items():
        found = [index for name, index in named.items() if any(h in name.lower() for h in hints)]
        if len(found) != 1:
            return None
        mapped[key] = found[0]
    return mapped if len(set(mapped.values())) == 4 else None


def _match_by_shape(details: list[dict]) -> tuple[dict[str, int], bool]:
    """(mapping, certain): boxes are [1, N, 4] and count has one value; classes and scores are both
    [1, N], so their order is a guess until `detect` sees values (certain is then False)."""
    mapped: dict[str, int] = {}
    pairs = []
    for d in details:
        shape = tuple(int(s) for s in d["shape"])
        if len(shape) == 3 and shape[-1] == 4:
            mapped["boxes"] = d["index"]
        elif int(np.prod(shape)) == 1 and "count" not in mapped:
            mapped["count"] = d["index"]
        else:
            pairs.append(d["index"])
    if len(pairs) != 2 or set(mapped) != {"boxes", "count"}:
        raise ValueError("not an SSD model with post-processing in the graph: expected four outputs "
                         "(boxes [1,N,4], classes [1,N], scores [1,N], count [1])")
    mapped["classes"], mapped["scores"] = pairs
    return mapped, False


class TFLiteDetector(Detector):
    """Safe to share between threads: an interpreter is not thread-safe, so calls take turns."""

    def __init__(self, model_path: str, labels: dict[int, str], threads: int = 2, label_offset: int = 0):
        self._interpreter = _interpreter_class()(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][-1] != 3:
            raise ValueError("expected one image input of shape [1, height, width, 3]")
        self._input = inputs[0]
        _, height, width, _ = self._input["shape"]
        self._size = (int(height), int(width))
        details = self._interpreter.get_output_details()
        named = _match_by_name(_signature_outputs(self._interpreter)) or _match_by_name(
            {d["name"]: d["index"] for d in details})
        self._outputs, self._certain = (named, True) if named else _match_by_shape(details)
        self._label_offset = label_offset
        self._lock = threading.Lock()
        self.info = ModelInfo("tflite", str(model_path), labels, self._size)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        """The input tensor: resized, RGB, in the model's input type."""
        height, width = self._size
        rgb = cv2.cvtColor(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
        dtype = self._input["dtype"]
        if dtype == np.float32:  # float SSD MobileNets take [-1, 1]
            return ((rgb.astype(np.float32) - 127.5) / 127.5)[None]
        if dtype == np.int8:  # full-integer models: the uint8 pixel shifted by the usual zero point
            return (rgb.astype(np.int16) - 128).astype(np.int8)[None]
        return rgb[None].astype(dtype)

    def _resolve_classes_scores(self, classes: np.ndarray, scores: np.ndarray) -> bool:
        """Whether the shape-based guess had classes and scores the wrong way round (scores are in
        [0, 1], class ids are whole numbers). Settles the order once the values tell."""
        if np.any(scores > 1.0) or (np.all(np.mod(scores, 1) == 0) and np.any(np.mod(classes, 1) != 0)):
            self._outputs["classes"], self._outputs["scores"] = self._outputs["scores"], self._outputs["classes"]
            self._certain = True
            return True
        if np.any(classes > 1.0) or np.any((scores > 0) & (scores < 1)):
            self._certain = True
        return False

    def detect(self, image: np.ndarray) -> list[Detection]:
        tensor = self._prepare(image)
        with self._lock:
            self._interpreter.set_tensor(self._input["index"], tensor)
            self._interpreter.invoke()
            get = self._interpreter.get_tensor
            boxes, classes, scores = (get(self._outputs[k])[0].copy() for k in ("boxes", "classes", "scores"))
            count = min(int(np.ravel(get(self._outputs["count"]))[0]), len(scores))
            if not self._certain and self._resolve_classes_scores(classes, scores):
                classes, scores = scores, classes
        return to_detections(boxes[:count], classes[:count] + self._label_offset, scores[:count],
                             self.info.labels, image.shape)


class TFLiteOptions(BackendOptions):
    threads: int = Field(2, ge=1, le=64, description="inference threads per worker process")


def _check_model(model: Path) -> str | None:
    if model.is_dir():
        return "is a directory; the tflite backend needs a .tflite file (or set detection.backend to saved_model)"
    return None


def _load(model: Path, labels: dict[int, str], label_offset: int, options: TFLiteOptions) -> TFLiteDetector:
    return TFLiteDetector(str(model), labels, threads=options.threads, label_offset=label_offset)


PLUGIN = DetectorBackend(
    key="tflite",
    summary="TensorFlow Lite (LiteRT) SSD models",
    first_class_id=0,
    load=_load,
    check_model=_check_model,
    options=TFLiteOptions,
    default_files=lambda: (assets.model_path(), assets.labels_path()),
)
