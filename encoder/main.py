"""`framecast encoder [--camera ID ...]`: encode the H.264 live view of every configured camera (or
those named) that someone watches and whose encoder lease this process takes.

By default the encoder runs beside detection in `framecast worker` (framecast/worker_role.py):
every deployment runs workers (trackers only exist for event cameras), they are already scaled out
and provisioned with CPU per camera, an encoded frame costs a small fraction of a detected one, and
the leases spread the watched cameras over the workers. This role is for deployments that want the
encoding CPU apart from detection (a `worker --no-encoder` pool sized for the model, and encoders
sized for the watched cameras), or that encode on other hosts than they detect on. It runs the same EncoderService with the same leases, so
workers and encoders hand cameras over between them. Serves until SIGTERM, exits 0 (70 when one of
its service threads died: common/threads.py).
"""

from __future__ import annotations

import argparse
import logging

from common import threads
from common.registry import member_id
from common.service import add_common_args, start_metrics
from common.startup import start_serving
from encoder.service import EncoderService

log = logging.getLogger("framecast.encoder")

WAKE_INTERVAL = 1.0  # seconds between looks at the stop event (a signal sets it)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framecast encoder", description=__doc__.splitlines()[0])
    add_common_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings, cameras, stop, client = start_serving(args)
    if client is None:  # stopped while waiting for Redis
        return 0
    name = member_id()
    service = EncoderService(settings, cameras, client, name)
    if not service.enabled:
        log.warning("video is disabled (video.enabled: false) or no camera is configured: nothing to encode")
    start_metrics(settings)
    log.info("encoder started", extra={"encoder": name, "cameras": service.cameras,
                                       "redis": settings.redis_url_display})
    service.start()
    try:
        while not stop.wait(WAKE_INTERVAL):  # set on SIGTERM/SIGINT, or when a service thread died
            pass
    finally:
        service.stop()  # encoded cameras release their leases: another process takes over at once
        client.close()
    log.info("encoder stopped", extra={"encoder": name})
    return threads.exit_code()  # 70 when a service thread died: its supervisor restarts the process
