"""`framecast worker [--camera ID ...] [--no-tracker]`: detect objects in every configured camera (or those named), and track the event cameras whose lease this process takes.

The worker role as compose, supervisord and Kubernetes run it: `worker.live`'s detection loop with
the tracker's EventService beside it in one process. The worker never imports the tracker, so the
CLI joins them. `--no-tracker` detects only, for a deployment that runs `framecast tracker`
processes apart (tracker/main.py): the leases are the same, so either kind of process can own a camera.
"""

from __future__ import annotations

import argparse

from tracker.service import EventService
from worker.live import main as detection


def build_parser() -> argparse.ArgumentParser:
    parser = detection.build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--no-tracker", action="store_true",
                        help="detect only: leave the event cameras' tracking to `framecast tracker` processes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_tracker:
        return detection.serve(args)
    return detection.serve(args, beside=lambda settings, cameras, client, name: EventService(
        settings, cameras, client, name).start())
