"""The vision library: detector backends (plugins, `worker.detect.backends`), label maps,
annotation, the pure per-frame transform and H.264 writing (`media.py`). No Redis; the worker
service, the tracker, `framecast process` and the benchmarks build on it."""

from worker.detect.base import Detector, ModelInfo
from worker.detect.factory import ModelError, create_detector, filter_detections, label_offset

__all__ = ["Detector", "ModelInfo", "ModelError", "create_detector", "filter_detections", "label_offset"]
