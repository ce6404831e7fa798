"""`framecast tracker [--camera ID ...]`: track every configured event camera (or those named) whose lease it takes.

Tracking apart from detection, so an operator can scale the two apart: the detect workers write
each event camera's untracked stream (common/untracked.py), and this process runs the EventService
that `framecast worker` runs beside its detection by default (framecast/worker_role.py), with the
same leases, so trackers and workers hand cameras over between them. Serves until SIGTERM, exits 0
(70 when one of its service threads died: common/threads.py).
"""

from __future__ import annotations

import argparse
import logging

from common import threads
from common.registry import member_id
from common.service import add_common_args, start_metrics
from common.startup import start_serving
from tracker.service import EventService

log = logging.getLogger("framecast.tracker")

WAKE_INTERVAL = 1.0  # seconds between looks at the stop event (a signal sets it)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framecast tracker", description=__doc__.splitlines()[0])
    add_common_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings, cameras, stop, client = start_serving(args)
    if client is None:  # stopped while waiting for Redis
        return 0
    name = member_id()
    events = EventService(settings, cameras, client, name)
    if not events.enabled:
        log.warning("none of the cameras has events (lines, zones or events.enabled): nothing to track")
    start_metrics(settings)
    log.info("tracker started", extra={"tracker": name, "cameras": [c.id for c in events.cameras],
                                       "redis": settings.redis_url_display})
    events.start()
    try:
        while not stop.wait(WAKE_INTERVAL):  # set on SIGTERM/SIGINT, or when a service thread died
            pass
    finally:
        events.stop()  # owned cameras end their open events and release their leases
        client.close()
    log.info("tracker stopped", extra={"tracker": name})
    return threads.exit_code()  # 70 when a service thread died: its supervisor restarts the process
