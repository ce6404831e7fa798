"""The design framecast is measured against for latency under overload: a camera loop feeding an
unbounded multiprocessing queue that one detector process drains in order, never dropping a frame
(the classic multiprocessing webcam detector)."""

from __future__ import annotations

import multiprocessing as mp
import queue
import time

import cv2

from common.config import CameraConfig
from common.envelope import Frame
from producer.pattern import render_pattern


def _consume(frames: mp.Queue, results: mp.Queue, ready, size: tuple[int, int], threads: int) -> None:
    """Runs in the detector process: process every queued frame in order."""
    from worker.detect import create_detector
    from worker.detect.pipeline import FrameProcessor

    camera = CameraConfig(id="naive", source="pattern", detection={"threads": threads})
    processor = FrameProcessor(camera, create_detector(camera.detection))
    warm = cv2.imencode(".jpg", render_pattern(0, *size))[1].tobytes()
    processor.process(Frame("naive", 0, 0, time.time_ns(), *size, warm))
    ready.set()
    while True:
        item = frames.get()
        if item is None:
            return
        seq, ts, jpeg = item
        processor.process(Frame("naive", 0, seq, ts, *size, jpeg))
        results.put((seq, ts, time.time_ns()))


def run_naive(duration: float, fps: float, size: tuple[int, int], threads: int) -> list[tuple[float, float]]:
    """(seconds since start, latency ms) of each frame the naive pipeline finished within `duration`."""
    ctx = mp.get_context("spawn")
    frames, results, ready = ctx.Queue(), ctx.Queue(), ctx.Event()
    consumer = ctx.Process(target=_consume, args=(frames, results, ready, size, threads), daemon=True)
    consumer.start()
    ready.wait(180)
    start = time.monotonic()
    start_ns = time.time_ns()
    index = 0
    while time.monotonic() - start < duration:
        due = start + index / fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        jpeg = cv2.imencode(".jpg", render_pattern(index, *size, fps), [cv2.IMWRITE_JPEG_QUALITY, 80])[1]
        frames.put((index, time.time_ns(), jpeg.tobytes()))
        index += 1
    series = []
    while True:
        try:
            _seq, ts, done = results.get_nowait()
        except queue.Empty:
            break
        series.append(((done - start_ns) / 1e9, (done - ts) / 1e6))
    consumer.terminate()
    consumer.join(5)
    # The frames still queued would keep each queue's feeder thread writing into a pipe nobody reads,
    # and the interpreter would wait for it at exit for ever: drop them.
    for q in (frames, results):
        q.cancel_join_thread()
        q.close()
    return series
