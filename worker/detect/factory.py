"""Building a camera's detector from its DetectionConfig through the backend plugins, once per
process, and the per-camera filters applied to what any detector reports."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from common.config import DetectionConfig
from common.detectors import DetectorBackend, backend, backend_names
from common.envelope import Detection
from common.errors import AssetError, FramecastError
from worker.detect.base import Detector
from worker.detect.labels import LabelMapError, load_labels

log = logging.getLogger("framecast.worker")
_cache: dict[tuple, Detector] = {}
_lock = threading.Lock()


class ModelError(FramecastError):
    """A model could not be found or loaded; the message says which file and what to fix."""


def _resolve(cfg: DetectionConfig, plugin: DetectorBackend) -> tuple[Path, Path | None]:
    """(model, label map) files for `cfg`; 'default' is the backend's bundled model and labels."""
    labels = Path(cfg.labels_path).expanduser() if cfg.labels_path else None
    if cfg.model == "default":
        if plugin.default_files is None:
            bundled = " or ".join(n for n in backend_names() if backend(n).default_files) or "another backend"
            raise ModelError(f"detection.model 'default' is not a {cfg.backend} model: set detection.backend to "
                             f"{bundled}, or detection.model to your model")
        try:
            model, default_labels = plugin.default_files()
        except AssetError as exc:
            raise ModelError(str(exc)) from None
        return model, labels or default_labels
    model = Path(cfg.model).expanduser()
    if not model.exists():
        raise ModelError(f"detection.model {str(model)!r} does not exist: set it (--model) to a .tflite file, "
                         "a SavedModel directory, or 'default' for the bundled model")
    labels = labels or plugin.find_labels(model)
    if labels is not None and not labels.is_file():
        raise ModelError(f"detection.labels_path {str(labels)!r} does not exist: point it (--labels) at a "
                         "coco_labels.txt or label_map.pbtxt")
    return model, labels


def label_offset(backend_key: str, labels: dict[int, str]) -> int:
    """What to add to a model's class output to get the key of its label map (0 when unsure).

    Runtimes differ in the id of the first class (the backend declares it); label maps start at 0
    or 1 whatever the model, and detections carry the map's ids.
    """
    first_class = backend(backend_key).first_class_id
    first = min(labels, default=first_class)
    return first - first_class if first in (0, 1) else 0


def _load(cfg: DetectionConfig, plugin: DetectorBackend, model: Path, labels_file: Path | None) -> Detector:
    try:
        labels = load_labels(labels_file) if labels_file else {}
    except LabelMapError as exc:
        raise ModelError(f"{exc}: fix detection.labels_path (--labels)") from None
    problem = plugin.check_model(model)
    if problem:
        raise ModelError(f"detection.model {str(model)!r} {problem}")
    try:
        return plugin.load(model, labels, label_offset(cfg.backend, labels), plugin.options(**cfg.options))
    except Exception as exc:  # runtimes raise many types for a corrupt or incompatible model
        raise ModelError(f"cannot load {cfg.backend} model {str(model)!r}: {type(exc).__name__}: {exc}; "
                         "check detection.model and detection.backend") from None


def load_detector(cfg: DetectionConfig) -> Detector:
    """A new detector for `cfg`, loaded and warmed up, shared with nobody: for callers that run one
    model instance per thread (`framecast process`). Most callers want `create_detector`."""
    plugin = backend(cfg.backend)
    model, labels_file = _resolve(cfg, plugin)
    return _load_warm(cfg, plugin, model, labels_file)


def _load_warm(cfg: DetectionConfig, plugin: DetectorBackend, model: Path, labels_file: Path | None) -> Detector:
    started = time.perf_counter()
    detector = _load(cfg, plugin, model, labels_file)
    # One inference at load: the runtime allocates and picks kernels on the first call, so frames
    # after this one all take the steady-state time.
    height, width = (max(32, s) for s in detector.info.input_size)
    detector.detect(np.full((height, width, 3), 127, np.uint8))
    log.info("model loaded", extra={"backend": cfg.backend, "model": Path(detector.info.path).name,
                                    "load_ms": round((time.perf_counter() - started) * 1000)})
    return detector


def create_detector(cfg: DetectionConfig) -> Detector:
    """The detector for `cfg`, loaded and warmed up on first use and shared within the process:
    cameras that differ only in their filters share one model."""
    plugin = backend(cfg.backend)
    model, labels_file = _resolve(cfg, plugin)
    key = (cfg.backend, str(model.resolve()), str(labels_file.resolve()) if labels_file else None,
           tuple(sorted(cfg.options.items())))
    with _lock:
        detector = _cache.get(key)
        if detector is None:
            detector = _cache[key] = _load_warm(cfg, plugin, model, labels_file)
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
