"""`framecast process INPUT -o OUTPUT.mp4`: annotate a recorded video into an H.264 MP4 with detector
threads in this process, or (`--via-redis`) with the cluster's workers serving a backlog-mode camera."""

from __future__ import annotations

import argparse
import signal
import sys
from contextlib import nullcontext
from pathlib import Path

import cv2

from common.config import DetectionConfig
from common.detectors import backend, backend_names
from common.errors import FramecastError
from common.logs import setup_logging
from common.service import EXIT_USAGE, add_common_args, load_settings
from worker.offline.interrupt import Interrupt, Interrupted
from worker.offline.pool import DEFAULT_INFERENCE_THREADS, default_jobs, process_video
from worker.offline.targets import Target, TargetError, check_targets, discard
from worker.offline.video import iter_frames, mp4_writer_factory, open_video


def build_parser() -> argparse.ArgumentParser:
    defaults = DetectionConfig()
    parser = argparse.ArgumentParser(prog="framecast process", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="video file to annotate")
    parser.add_argument("-o", "--output", required=True, help="annotated video to write (.mp4)")
    parser.add_argument("--detections", help="write one JSON line of detections per frame here")
    # Detector threads, each with its own model instance, beside a reader and an encoder thread; the
    # default (one more than cores, one inference thread each) is what measured fastest (README, benchmark 5).
    parser.add_argument("--jobs", "-j", type=int, default=default_jobs(),
                        help="detector threads, each with its own model (default: cores + 1, at most 8)")
    parser.add_argument("--workers", type=int, dest="jobs_deprecated", help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=backend_names(), default=defaults.backend)
    parser.add_argument("--model", default=defaults.model, help="'default', a .tflite file or a SavedModel dir")
    parser.add_argument("--labels", dest="labels_path", help="coco_labels.txt or label_map.pbtxt")
    parser.add_argument("--min-score", type=float, default=defaults.min_score)
    parser.add_argument("--label", action="append", dest="keep", metavar="NAME", help="keep only this label (repeatable)")
    parser.add_argument("--min-area", type=float, default=defaults.min_area)
    parser.add_argument("--threads", type=int,
                        help=f"inference threads per detector thread (backends that have the setting; "
                             f"default {DEFAULT_INFERENCE_THREADS})")
    parser.add_argument("--no-overlay", action="store_true", help="do not draw the time overlay")
    add_common_args(parser, cameras=False)
    cluster = parser.add_argument_group("through the cluster (--via-redis, with --config/--redis-url)")
    cluster.add_argument("--via-redis", action="store_true",
                         help="let the workers serving --camera (a backlog-mode camera) do the detection")
    cluster.add_argument("--camera", help="the backlog-mode camera whose workers process the file")
    return parser


def _detection(args: argparse.Namespace) -> dict:
    """The detection settings from the flags; `threads` where the backend has it (an error where not)."""
    own = {}
    if args.threads is not None:
        own = {"threads": args.threads}  # a backend without the setting says so
    elif "threads" in backend(args.backend).options.model_fields:
        own = {"threads": DEFAULT_INFERENCE_THREADS}
    return DetectionConfig(backend=args.backend, model=args.model, labels_path=args.labels_path,
                           min_score=args.min_score, labels=args.keep or [], min_area=args.min_area,
                           **own).model_dump()


def main(argv: list[str] | None = None) -> int:
    # From the first line on: a signal at any moment of the command is recorded, and ends the run
    # (worker/offline/interrupt.py)
    with Interrupt() as interrupt:
        try:
            return _process(build_parser().parse_args(argv), interrupt)
        except Interrupted as exc:
            print(f"framecast process: interrupted by {signal.Signals(exc.signum).name}; nothing written",
                  file=sys.stderr)
            return 128 + exc.signum


def _process(args: argparse.Namespace, interrupt: Interrupt) -> int:
    """The command, its signals handled by `interrupt`: an exit status, or Interrupted."""
    if args.jobs_deprecated is not None:
        print("framecast process: --workers is deprecated, use --jobs", file=sys.stderr)
        args.jobs = args.jobs_deprecated
    settings = None
    if args.via_redis:  # the cluster's config and Redis, resolved as every service does
        settings = load_settings(args, extra={"log_format": args.log_format or "text"})
    else:
        setup_logging(args.log_level or "INFO", args.log_format or "text")
    source = Path(args.input)
    if args.jobs < 1:
        print("framecast process: --jobs must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        detection = _detection(args)
    except ValueError as exc:
        message = exc.errors()[0]["msg"].removeprefix("Value error, ")
        print(f"framecast process: invalid detection option: {message}", file=sys.stderr)
        return EXIT_USAGE
    try:
        video, detections_target = check_targets(source, args.output, args.detections)
    except TargetError as exc:
        print(f"framecast process: {exc}", file=sys.stderr)
        return EXIT_USAGE
    cap = open_video(source)
    if cap is None:
        print(f"framecast process: cannot read video {source} (missing, not a video, or no frames)", file=sys.stderr)
        return EXIT_USAGE
    targets = [t for t in (video, detections_target) if t is not None]
    try:
        counts, where, fps = _run(args, settings, detection, cap, video, detections_target, interrupt)
        interrupt.check()  # the last moment a signal keeps the earlier outputs
        for target in targets:
            target.commit()
    except (FramecastError, OSError) as exc:
        print(f"framecast process: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        cap.release()
        discard(targets)  # what is left of a run that did not commit; nothing after one that did
    rate = counts["frames"] / counts["seconds"] if counts["seconds"] else 0.0
    cpu_ms = counts["cpu_seconds"] * 1000 / counts["frames"] if counts["frames"] else 0.0
    print(f"framecast process: {counts['frames']} frames at {fps:g} fps in {counts['seconds']:.1f} s "
          f"({rate:.1f} frames/s, {cpu_ms:.1f} CPU ms a frame, {where}), {counts['corrupt']} corrupt, "
          f"{counts['detections']} detections -> {args.output}", file=sys.stderr)
    return 0


def _run(args, settings, detection: dict, cap, video: Target, detections: Target | None,
         interrupt: Interrupt) -> tuple[dict, str, float]:
    """Annotate the opened capture into the targets' temporary files; (counts, how, fps). A signal
    ends it (Interrupted) before the next frame is written."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if 0 < fps < 1000 else 25.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    for target in (video, detections):
        if target is not None:
            target.prepare()
    writer_factory = interrupt.guarded(mp4_writer_factory(video.path, fps))
    frames = iter_frames(cap)
    # "x": a temporary name is never a file that was already there
    jsonl_file = open(detections.path, "w" if detections.direct else "x", encoding="utf-8") if detections else None  # noqa: SIM115
    with jsonl_file or nullcontext() as jsonl:
        if settings is not None:
            counts = _run_via_redis(args, settings, frames, writer_factory, fps, jsonl, total)
            where = f"via Redis camera {args.camera!r}"
        else:
            counts = process_video(frames, writer_factory, fps, args.jobs, detection, not args.no_overlay,
                                   jsonl, total)
            where = f"{args.jobs} detector thread(s) x {detection.get('threads', 1)} inference thread(s)"
    if not counts["frames"]:
        raise TargetError(f"no frame of {args.input} could be decoded: nothing written")
    return counts, where, fps


def _run_via_redis(args, settings, frames, writer_factory, fps: float, jsonl, total) -> dict:
    from common.connection import connect
    from worker.offline.via_redis import check_cluster, process_via_redis

    if not args.camera:
        raise FramecastError("--via-redis needs --camera (a backlog-mode camera the workers serve)")
    client = connect(settings.redis_url)
    try:
        check_cluster(settings, client, args.camera)
        return process_via_redis(frames, writer_factory, fps, settings, client, args.camera, jsonl, total)
    finally:
        client.close()
