"""The detection library: detector backends (plugins, `worker.detect.backends`), label maps,
annotation and the pure per-frame transform. No Redis; the worker service, `framecast process` and
the benchmarks build on it."""

from worker.detect.base import Detector, ModelInfo
from worker.detect.factory import ModelError, create_detector, filter_detections, label_offset

__all__ = ["Detector", "ModelInfo", "ModelError", "create_detector", "filter_detections", "label_offset"]
