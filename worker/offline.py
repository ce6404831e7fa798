"""`framecast process INPUT -o OUTPUT.mp4`: annotate a recorded video with a pool of processes.

Frames go out to the pool in order with a bounded number in flight; results are written back in
the original order (the in-flight window doubles as the reorder buffer), so memory stays flat
whatever the length of the video.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing as mp
import sys
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from common.config import CameraConfig, DetectionConfig
from common.errors import FramecastError
from common.logs import setup_logging
from common.service import EXIT_USAGE
from worker.video_output import AnnotatedOutput

log = logging.getLogger("framecast.process")
MAX_CORRUPT_RUN = 25  # consecutive unreadable frames before the rest of the file counts as gone

_processor = None  # the FrameProcessor of this pool process, built once by _init
_init_error: FramecastError | None = None  # why _init could not build it


def _init(detection: dict, overlay: bool) -> None:
    """Pool initializer: load the model once per process. A failure is kept for `_annotate` to raise,
    because a pool whose initializer raises restarts the process forever instead of reporting it."""
    global _processor, _init_error
    from worker.detectors import create_detector
    from worker.pipeline import FrameProcessor

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


def iter_frames(cap: cv2.VideoCapture, max_corrupt_run: int = MAX_CORRUPT_RUN) -> Iterator[np.ndarray | None]:
    """Frames of an opened capture; None for each frame that could not be decoded between readable ones.

    Failed reads are only reported once a readable frame follows them, so the end of a file (whose frame
    count containers often overstate) never shows up as corrupt frames; `max_corrupt_run` failed reads in
    a row end the file."""
    failed = 0
    while failed <= max_corrupt_run:
        ok, image = cap.read()
        if not ok or image is None:
            failed += 1
            continue
        for _ in range(failed):
            yield None
        failed = 0
        yield image


class _Done:
    def __init__(self, result):
        self._result = result

    def get(self, timeout=None):
        return self._result


class _Inline:
    """The pool interface for --workers 1: run in this process, no pickling."""

    def apply_async(self, fn, args):
        return _Done(fn(*args))

    def close(self):
        pass

    def terminate(self):
        pass

    def join(self):
        pass


def process_video(frames: Iterator[np.ndarray | None], writer_factory, fps: float, workers: int,
                  detection: dict, overlay: bool, jsonl=None, total: int | None = None) -> dict:
    """Annotate `frames` in order with a local pool; returns counts. Called by `main` and the tests.

    At most 2 * workers + 2 frames are between reading and writing at any time (the in-flight window is
    also the reorder buffer). Raises ModelError (a FramecastError) when the model cannot be loaded."""
    if workers > 1:
        pool = mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(detection, overlay))
    else:
        _init(detection, overlay)
        if _init_error is not None:
            raise _init_error
        pool = _Inline()
    window = 2 * workers + 2
    pending: deque = deque()  # in input order: pool jobs, or frames already decided
    output = AnnotatedOutput(writer_factory, fps, jsonl, total)
    last_good: np.ndarray | None = None
    finished = False

    def drain(limit: int) -> None:
        while len(pending) > limit:
            kind, payload = pending.popleft()
            output.write(*(payload.get() if kind == "job" else payload))

    try:
        for index, image in enumerate(frames):
            if image is None:  # undecodable: keep timing with the last good picture, un-annotated
                if last_good is None:
                    output.lost(index)
                    continue
                pending.append(("done", (index, last_good, [], "undecodable frame")))
            else:
                last_good = image
                pending.append(("job", pool.apply_async(_annotate, (index, image, int(index * 1e9 / fps)))))
            drain(window)
        drain(0)
        finished = True
    finally:
        if finished:
            pool.close()
        else:  # an error: outstanding frames are of no use
            pool.terminate()
        pool.join()
        counts = output.close()
    return counts


def build_parser() -> argparse.ArgumentParser:
    defaults = DetectionConfig()
    parser = argparse.ArgumentParser(prog="framecast process", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="video file to annotate")
    parser.add_argument("-o", "--output", required=True, help="annotated video to write (.mp4)")
    parser.add_argument("--detections", help="write one JSON line of detections per frame here")
    # Each process already runs --threads inference threads (2 by default), and the parent decodes and
    # encodes the video: on 2 cores one process is fastest (measured: 73.7 vs 56.0 frames/s with 2).
    parser.add_argument("--workers", type=int, default=max(1, min(4, mp.cpu_count() // 2)),
                        help="detector processes (default: half the cores, at most 4)")
    parser.add_argument("--backend", choices=["tflite", "saved_model"], default=defaults.backend)
    parser.add_argument("--model", default=defaults.model, help="'default', a .tflite file or a SavedModel dir")
    parser.add_argument("--labels", dest="labels_path", help="coco_labels.txt or label_map.pbtxt")
    parser.add_argument("--min-score", type=float, default=defaults.min_score)
    parser.add_argument("--label", action="append", dest="keep", metavar="NAME", help="keep only this label (repeatable)")
    parser.add_argument("--min-area", type=float, default=defaults.min_area)
    parser.add_argument("--threads", type=int, default=defaults.threads, help="inference threads per process")
    parser.add_argument("--no-overlay", action="store_true", help="do not draw the time overlay")
    parser.add_argument("--log-format", choices=["json", "text"], default="text")
    cluster = parser.add_argument_group("through the cluster (--via-redis)")
    cluster.add_argument("--via-redis", action="store_true",
                         help="let the workers serving --camera (a backlog-mode camera) do the detection")
    cluster.add_argument("--camera", help="the backlog-mode camera whose workers process the file")
    cluster.add_argument("--config", "-c", help="YAML config (default: $FRAMECAST_CONFIG or ./cameras.yaml)")
    cluster.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL or the config)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging("INFO", args.log_format)
    source = Path(args.input)
    if args.workers < 1:
        print("framecast process: --workers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        detection = DetectionConfig(backend=args.backend, model=args.model, labels_path=args.labels_path,
                                    min_score=args.min_score, labels=args.keep or [], min_area=args.min_area,
                                    threads=args.threads).model_dump()
    except ValueError as exc:
        print(f"framecast process: invalid detection option: {exc.errors()[0]['msg']}", file=sys.stderr)
        return EXIT_USAGE
    cap = cv2.VideoCapture(str(source)) if source.is_file() else None
    if cap is None or not cap.isOpened() or not cap.grab():
        print(f"framecast process: cannot read video {source} (missing, not a video, or no frames)", file=sys.stderr)
        return EXIT_USAGE
    cap.release()
    cap = cv2.VideoCapture(str(source))
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)

    def writer_factory(width: int, height: int) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"cannot write {output}")
        return writer

    jsonl = open(args.detections, "w", encoding="utf-8") if args.detections else None  # noqa: SIM115
    frames = iter_frames(cap)
    try:
        if args.via_redis:
            counts = _run_via_redis(args, frames, writer_factory, fps, jsonl, total)
            where = f"via Redis camera {args.camera!r}"
        else:
            counts = process_video(frames, writer_factory, fps, args.workers, detection, not args.no_overlay,
                                   jsonl, total)
            where = f"{args.workers} worker(s)"
    except (FramecastError, OSError) as exc:
        print(f"framecast process: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        cap.release()
        if jsonl is not None:
            jsonl.close()
    rate = counts["frames"] / counts["seconds"] if counts["seconds"] else 0.0
    print(f"framecast process: {counts['frames']} frames at {fps:g} fps in {counts['seconds']:.1f} s "
          f"({rate:.1f} frames/s, {where}), {counts['corrupt']} corrupt, "
          f"{counts['detections']} detections -> {output}", file=sys.stderr)
    return 0


def _run_via_redis(args, frames, writer_factory, fps: float, jsonl, total) -> dict:
    from common.config import load_config
    from common.connection import connect
    from worker.offline_redis import check_cluster, process_via_redis

    if not args.camera:
        raise FramecastError("--via-redis needs --camera (a backlog-mode camera the workers serve)")
    settings = load_config(args.config, overrides={"redis_url": args.redis_url})
    client = connect(settings.redis_url)
    check_cluster(settings, client, args.camera)
    return process_via_redis(frames, writer_factory, fps, settings, client, args.camera, jsonl, total)
