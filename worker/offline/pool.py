"""`framecast process` on this machine: a recorded video's frames annotated by a pool of processes.

Frames go out to the pool in order with a bounded number in flight and are written back in the
original order, so memory stays flat whatever the length of the video.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Iterator

import numpy as np

from common.config import CameraConfig, DetectionConfig
from common.errors import FramecastError
from worker.offline.output import AnnotatedOutput, InOrderWriter

_processor = None  # the FrameProcessor of this pool process, built once by _init
_init_error: FramecastError | None = None  # why _init could not build it


def _init(detection: dict, overlay: bool) -> None:
    """Pool initializer: load the model once per process. A failure is kept for `_annotate` to raise,
    because a pool whose initializer raises restarts the process forever instead of reporting it."""
    global _processor, _init_error
    from worker.detect import create_detector
    from worker.detect.pipeline import FrameProcessor

    _processor, _init_error = None, None
    camera = CameraConfig(id="process", source="file", overlay=overlay, detection=DetectionConfig(**detection))
    try:
        _processor = FrameProcessor(camera, create_detector(camera.detection))
    except FramecastError as exc:
        _init_error = exc


def _annotate(index: int, image: np.ndarray, ts_ns: int) -> tuple[int, np.ndarray, list[dict], str | None]:
    """Runs in a pool process: (index, annotated image, detections, error). Errors leave the frame as is;
    a model that did not load raises, which ends the job in the parent."""
    if _processor is None:
        raise _init_error or FramecastError("the detector was not loaded in this process")
    try:
        detections = _processor.detect(image)
        return index, _processor.annotate(image, detections, ts_ns=ts_ns), [d.to_dict() for d in detections], None
    except Exception as exc:  # one bad frame must not end the job
        return index, image, [], f"{type(exc).__name__}: {exc}"


class _Done:
    def __init__(self, result):
        self._result = result

    def get(self, timeout=None):
        return self._result


class _Inline:
    """The pool interface for one job: run in this process, no pickling."""

    def apply_async(self, fn, args):
        return _Done(fn(*args))

    def close(self):
        pass

    def terminate(self):
        pass

    def join(self):
        pass


def process_video(frames: Iterator[np.ndarray | None], writer_factory, fps: float, jobs: int,
                  detection: dict, overlay: bool, jsonl=None, total: int | None = None) -> dict:
    """Annotate `frames` (None: unreadable) in order with `jobs` processes; returns counts.

    At most 2 * jobs + 2 frames are between reading and writing at any time. Raises ModelError (a
    FramecastError) when the model cannot be loaded."""
    if jobs > 1:
        pool = mp.get_context("spawn").Pool(jobs, initializer=_init, initargs=(detection, overlay))
    else:
        _init(detection, overlay)
        if _init_error is not None:
            raise _init_error
        pool = _Inline()
    window = 2 * jobs + 2
    writer = InOrderWriter(AnnotatedOutput(writer_factory, fps, jsonl, total))
    in_flight: deque = deque()  # pool results, in input order
    finished = False

    def drain(limit: int) -> None:
        while writer.unwritten > limit and in_flight:
            writer.done(*in_flight.popleft().get())
            writer.flush()
        writer.flush()

    try:
        for index, image in enumerate(frames):
            if writer.take(index, image):
                in_flight.append(pool.apply_async(_annotate, (index, image, int(index * 1e9 / fps))))
            drain(window)
        drain(0)
        finished = True
    finally:
        if finished:
            pool.close()
        else:  # an error: outstanding frames are of no use
            pool.terminate()
        pool.join()
        counts = writer.output.close()
    return counts
