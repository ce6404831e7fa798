"""`framecast worker [--camera ID ...]`: detect objects in every configured camera (or those named), and track the event cameras whose lease this process takes.

The worker role as compose, supervisord and Kubernetes run it: `worker.live`'s detection loop with
the tracker's EventService beside it in one process. The worker never imports the tracker, so the
CLI joins them.
"""

from __future__ import annotations

import argparse

from tracker.service import EventService
from worker.live import main as detection


def build_parser() -> argparse.ArgumentParser:
    parser = detection.build_parser()
    parser.description = __doc__.splitlines()[0]
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return detection.serve(args, beside=lambda settings, cameras, client, name: EventService(
        settings, cameras, client, name).start())
