"""`framecast worker [--camera ID ...] [--no-tracker] [--no-encoder]`: detect objects in every configured camera (or those named), track the event cameras and encode the watched cameras' live video whose leases this process takes.

The worker role as compose, supervisord and Kubernetes run it: `worker.live`'s detection loop with
the tracker's EventService and the encoder's EncoderService beside it in one process. The worker
imports neither, so the CLI joins them. `--no-tracker` leaves tracking to `framecast tracker`
processes (tracker/main.py), `--no-encoder` the H.264 live view to `framecast encoder` ones
(encoder/main.py): the leases are the same, so either kind of process can own a camera.

The encoder runs here by default because every deployment runs workers, already scaled out and
given CPU per camera: encoding a watched camera costs a small fraction of detecting it, and
nothing at all while nobody watches (docs/video.md).
"""

from __future__ import annotations

import argparse

from encoder.service import EncoderService
from tracker.service import EventService
from worker.live import main as detection


class Companions:
    """The services that run beside the worker loop, stopped in reverse order."""

    def __init__(self, services: list):
        self.services = services

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = detection.build_parser()
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--no-tracker", action="store_true",
                        help="detect only: leave the event cameras' tracking to `framecast tracker` processes")
    parser.add_argument("--no-encoder", action="store_true",
                        help="encode no live video: leave it to `framecast encoder` processes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.no_tracker and args.no_encoder:
        return detection.serve(args)

    def beside(settings, cameras, client, name) -> Companions:
        services = []
        try:
            if not args.no_tracker:
                services.append(EventService(settings, cameras, client, name).start())
            if not args.no_encoder:
                services.append(EncoderService(settings, cameras, client, name).start())
        except BaseException:
            Companions(services).stop()
            raise
        return Companions(services)

    return detection.serve(args, beside=beside)
