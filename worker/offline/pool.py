"""`framecast process` on this machine: a recorded video annotated by stages that overlap in threads.

    reader thread ──▶ main thread ──▶ detector threads × jobs ──▶ main thread
    (decode)          (orders)        (detect, annotate; one      (puts results in order,
                                       model instance each)        encodes H.264, writes)

OpenCV, LiteRT and PyAV release the GIL while they work, so the stages run on all cores at once with
no frame copied between processes (the old process pool pickled 1.3 MB per frame each way and was
slower with two processes than with one). At most `2 * jobs + 2` frames are between reading and
writing at any time, so memory stays flat whatever the length of the video.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator

import numpy as np

from common.config import CameraConfig, DetectionConfig
from common.threads import service_thread
from worker.offline.output import AnnotatedOutput, InOrderWriter

# Measured on a 2-core Xeon with the machine to itself (README, benchmark 5; load 0.4-1.1): 3 detector
# threads x 1 inference thread did 48.8 and 54.7 frames/s on the sample clip, 2 x 1 did 47.6 and 45.9,
# 1 x 2 36.4 and 39.7. One inference thread each: every thread has a whole frame of work and none waits
# on another's barrier; one thread more than cores: the cores stay busy while a detector thread waits
# for the reader or the encoder. `python -m bench --only offline` times the alternatives on every run.
DEFAULT_INFERENCE_THREADS = 1
_END = object()


def default_jobs() -> int:
    """Detector threads by default: one more than cores (at most 8; each holds its own copy of the model)."""
    return max(1, min(8, (os.cpu_count() or 1) + 1))


def _detectors(detection: dict, jobs: int) -> list:
    """One model instance per detector thread, loaded before any frame is read, so a model that does
    not load raises ModelError up front. Backends without a thread setting share one instance."""
    from common.detectors import backend
    from worker.detect.factory import load_detector

    cfg = DetectionConfig(**detection)
    if "threads" not in backend(cfg.backend).options.model_fields:  # e.g. TensorFlow: process-wide pools
        return [load_detector(cfg)] * jobs
    return [load_detector(cfg) for _ in range(jobs)]


def process_video(frames: Iterator[np.ndarray | None], writer_factory, fps: float, jobs: int,
                  detection: dict, overlay: bool, jsonl=None, total: int | None = None) -> dict:
    """Annotate `frames` (None: unreadable) in order with `jobs` detector threads; returns counts.

    Raises ModelError (a FramecastError) when the model cannot be loaded, before reading a frame."""
    from worker.detect.pipeline import FrameProcessor

    detectors = _detectors(detection, jobs)
    camera = CameraConfig(id="process", source="file", overlay=overlay, detection=DetectionConfig(**detection))
    processors = [FrameProcessor(camera, detector) for detector in detectors]
    window = 2 * jobs + 2
    slots = threading.Semaphore(window)  # taken by the reader per frame, given back when it is written
    stop = threading.Event()
    events: queue.Queue = queue.Queue()  # to the main thread: ("read" | "done" | "failed", ...)
    todo: queue.Queue = queue.Queue()  # to the detector threads: (index, image) or _END

    def read() -> None:
        """Reader thread: decode the file in order, at most `window` frames ahead of the writing."""
        try:
            for index, image in enumerate(frames):
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                events.put(("read", index, image))
            events.put(("read", None, None))
        except Exception as exc:  # noqa: BLE001 - reported by the main thread
            events.put(("failed", exc))

    def detect(processor: FrameProcessor) -> None:
        """Detector thread: detect and annotate with its own model instance until told to end."""
        while (item := todo.get()) is not _END:
            index, image = item
            try:
                detections = processor.detect(image)
                annotated = processor.annotate(image, detections, ts_ns=int(index * 1e9 / fps))
                events.put(("done", index, annotated, [d.to_dict() for d in detections], None))
            except Exception as exc:  # one bad frame must not end the job  # noqa: BLE001
                events.put(("done", index, image, [], f"{type(exc).__name__}: {exc}"))

    # Service threads: one that dies in spite of its per-frame handling ends the command with 70
    # instead of leaving the main thread waiting for its events for ever.
    threads = [service_thread(read, "process-reader")]
    threads += [service_thread(detect, f"process-detector-{i}", args=(p,)) for i, p in enumerate(processors)]
    writer = InOrderWriter(AnnotatedOutput(writer_factory, fps, jsonl, total))
    for thread in threads:
        thread.start()
    finished = False
    try:
        read_all = False
        while not read_all or writer.unwritten:
            event = events.get()
            if event[0] == "failed":
                raise event[1]
            if event[0] == "read":
                index, image = event[1], event[2]
                if index is None:
                    read_all = True
                elif writer.take(index, image):
                    todo.put((index, image))
            else:
                writer.done(*event[1:])
            for _ in range(writer.flush()):
                slots.release()
        finished = True
    finally:
        stop.set()
        for _ in processors:
            todo.put(_END)
        for thread in threads:
            thread.join(timeout=30)
        if not finished:
            writer.output.abort()
    return writer.output.close()
