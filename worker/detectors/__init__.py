"""Detector backends behind `Detector.detect`, chosen by config; loaded once per process."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from common import assets
from common.config import DetectionConfig
from common.envelope import Detection
from common.errors import AssetError, FramecastError
from worker.detectors.base import Detector, ModelInfo
from worker.labels import LabelMapError, load_labels

__all__ = ["Detector", "ModelInfo", "ModelError", "create_detector", "filter_detections", "label_offset"]

log = logging.getLogger("framecast.worker")
_cache: dict[tuple, Detector] = {}
_lock = threading.Lock()


class ModelError(FramecastError):
    """A model could not be found or loaded; the message says which file and what to fix."""


def _resolve(cfg: DetectionConfig) -> tuple[Path, Path | None]:
    """(model, label map) files for `cfg`; 'default' is the bundled SSD MobileNet and its COCO labels."""
    labels = Path(cfg.labels_path).expanduser() if cfg.labels_path else None
    if cfg.model == "default":
        if cfg.backend != "tflite":
            raise ModelError("detection.model 'default' is a TFLite model: set detection.backend to tflite, "
                             "or detection.model to your SavedModel directory")
        try:
            return assets.model_path(), labels or assets.labels_path()
        except AssetError as exc:
            raise ModelError(str(exc)) from None
    model = Path(cfg.model).expanduser()
    if not model.exists():
        raise ModelError(f"detection.model {str(model)!r} does not exist: set it (--model) to a .tflite file, "
                         "a SavedModel directory, or 'default' for the bundled model")
    if labels is None and cfg.backend == "saved_model":
        for candidate in (model / "label_map.pbtxt", model.parent / "label_map.pbtxt"):
            if candidate.exists():
                labels = candidate
                break
    if labels is not None and not labels.is_file():
        raise ModelError(f"detection.labels_path {str(labels)!r} does not exist: point it (--labels) at a "
                         "coco_labels.txt or label_map.pbtxt")
    return model, labels


# The first class id each runtime reports: TFLite SSD exports count from 0, TF Object Detection API
# SavedModels from 1 (label_map.pbtxt ids). Label maps may start at either; detections carry the map's ids.
_FIRST_CLASS = {"tflite": 0, "saved_model": 1}


def label_offset(backend: str, labels: dict[int, str]) -> int:
    """What to add to a model's class output to get the key of its label map (0 when unsure)."""
    first = min(labels, default=_FIRST_CLASS[backend])
    return first - _FIRST_CLASS[backend] if first in (0, 1) else 0


def _load(cfg: DetectionConfig, model: Path, labels_file: Path | None) -> Detector:
    try:
        labels = load_labels(labels_file) if labels_file else {}
    except LabelMapError as exc:
        raise ModelError(f"{exc}: fix detection.labels_path (--labels)") from None
    offset = label_offset(cfg.backend, labels)
    if cfg.backend == "tflite" and model.is_dir():
        raise ModelError(f"detection.model {str(model)!r} is a directory; the tflite backend needs a .tflite file "
                         "(or set detection.backend to saved_model)")
    if cfg.backend == "saved_model" and not model.is_dir():
        raise ModelError(f"detection.model {str(model)!r} must be a SavedModel directory for the saved_model "
                         "backend (or set detection.backend to tflite for a .tflite file)")
    try:
        if cfg.backend == "tflite":
            from worker.detectors.tflite import TFLiteDetector

            return TFLiteDetector(str(model), labels, threads=cfg.threads, label_offset=offset)
        from worker.detectors.saved_model import SavedModelDetector

        return SavedModelDetector(str(model), labels, label_offset=offset)
    except Exception as exc:  # runtimes raise many types for a corrupt or incompatible model
        raise ModelError(f"cannot load {cfg.backend} model {str(model)!r}: {type(exc).__name__}: {exc}; "
                         "check detection.model and detection.backend") from None


def create_detector(cfg: DetectionConfig) -> Detector:
    """The detector for `cfg`, loaded and warmed up on first use and shared within the process.

    Called at start-up by the worker loop, by each `framecast process` pool process, and by benchmarks.
    """
    model, labels_file = _resolve(cfg)
    key = (cfg.backend, str(model.resolve()), str(labels_file.resolve()) if labels_file else None, cfg.threads)
    with _lock:
        detector = _cache.get(key)
        if detector is None:
            started = time.perf_counter()
            detector = _load(cfg, model, labels_file)
            # One inference at load: the runtime allocates and picks kernels on the first call, so frames
            # after this one all take the steady-state time.
            height, width = (max(32, s) for s in detector.info.input_size)
            detector.detect(np.full((height, width, 3), 127, np.uint8))
            log.info("model loaded", extra={"backend": cfg.backend, "model": Path(detector.info.path).name,
                                            "load_ms": round((time.perf_counter() - started) * 1000)})
            _cache[key] = detector
        return detector


def filter_detections(detections: list[Detection], cfg: DetectionConfig, image_shape: tuple) -> list[Detection]:
    """A camera's detections: score at least min_score, label kept, box at least min_area of the image."""
    height, width = image_shape[:2]
    min_pixels = cfg.min_area * width * height
    keep = set(cfg.labels)
    out = []
    for det in detections:
        if det.score < cfg.min_score or (keep and det.label not in keep):
            continue
        x1, y1, x2, y2 = det.box
        if (x2 - x1) * (y2 - y1) < min_pixels:
            continue
        out.append(det)
    return out
