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

__all__ = ["Detector", "ModelInfo", "ModelError", "create_detector", "filter_detections"]

log = logging.getLogger("framecast.worker")
_cache: dict[tuple, Detector] = {}
_lock = threading.Lock()


class ModelError(FramecastError):
    """A model could not be found or loaded; the message says which file and what to fix."""


def _resolve(cfg: DetectionConfig) -> tuple[Path, Path | None]:
    if cfg.model == "default":
        if cfg.backend != "tflite":
            raise ModelError("detection.model 'default' is a TFLite model: set detection.backend to tflite")
        try:
            return assets.model_path(), Path(cfg.labels_path) if cfg.labels_path else assets.labels_path()
        except AssetError as exc:
            raise ModelError(str(exc)) from None
    model = Path(cfg.model).expanduser()
    if not model.exists():
        raise ModelError(f"detection.model {str(model)!r} does not exist")
    labels = Path(cfg.labels_path).expanduser() if cfg.labels_path else None
    if labels is None and cfg.backend == "saved_model":
        for candidate in (model / "label_map.pbtxt", model.parent / "label_map.pbtxt"):
            if candidate.exists():
                labels = candidate
                break
    return model, labels


def _load(cfg: DetectionConfig) -> Detector:
    model, labels_file = _resolve(cfg)
    try:
        labels = load_labels(labels_file) if labels_file else {}
    except LabelMapError as exc:
        raise ModelError(str(exc)) from None
    try:
        if cfg.backend == "tflite":
            from worker.detectors.tflite import TFLiteDetector

            if model.is_dir():
                raise ModelError(f"detection.model {str(model)!r} is a directory; the tflite backend needs a .tflite file")
            # TF OD API label maps are 1-based while TFLite SSD outputs count from 0.
            offset = 1 if labels_file and labels_file.suffix == ".pbtxt" and min(labels, default=1) == 1 else 0
            return TFLiteDetector(str(model), labels, threads=cfg.threads, label_offset=offset)
        from worker.detectors.saved_model import SavedModelDetector

        if not model.is_dir():
            raise ModelError(f"detection.model {str(model)!r} must be a SavedModel directory for saved_model")
        return SavedModelDetector(str(model), labels)
    except ModelError:
        raise
    except Exception as exc:  # runtimes raise many types for a corrupt or incompatible model
        raise ModelError(f"cannot load {cfg.backend} model {str(model)!r}: {type(exc).__name__}: {exc}") from None


def create_detector(cfg: DetectionConfig) -> Detector:
    """The detector for `cfg`, loaded and warmed up on first use and shared within the process."""
    key = (cfg.backend, cfg.model, cfg.labels_path, cfg.threads)
    with _lock:
        detector = _cache.get(key)
        if detector is None:
            started = time.perf_counter()
            detector = _load(cfg)
            detector.detect(np.zeros((*[max(32, s) for s in detector.info.input_size], 3), np.uint8))  # warm-up
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
