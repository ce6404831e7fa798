"""The detection side of `framecast worker [--camera ID ...]`: detect objects in every configured
camera (or those named).

A thin layer over `worker.live.consumer.Worker`: load config, load models, serve until SIGTERM, exit 0
(70 when one of its service threads died: common/threads.py). The CLI (framecast/worker_role.py) adds
the tracker beside it, which the worker does not import.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Protocol

import redis

from common import threads
from common.config import CameraConfig, Settings
from common.service import add_common_args, camera_ids, fail, start_metrics
from common.startup import start_serving
from worker.detect import ModelError
from worker.live.consumer import Worker

log = logging.getLogger("framecast.worker")


class Stoppable(Protocol):
    def stop(self) -> None: ...


# Starts what runs beside the worker loop in the same process (settings, cameras, client, worker name).
Beside = Callable[[Settings, list[CameraConfig], redis.Redis, str], Stoppable]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framecast worker", description=__doc__.splitlines()[0])
    add_common_args(parser)
    return parser


def serve(args: argparse.Namespace, *, beside: Beside | None = None) -> int:
    """Run the worker on the main thread until SIGTERM; `beside` (the tracker) starts once the worker is
    built and is stopped after its loop returns. The process's exit code."""
    settings, cameras, stop, client = start_serving(args)
    if client is None:  # stopped while waiting for Redis
        return 0
    try:
        # started for named cameras (--camera, $FRAMECAST_CAMERAS): reads exactly those, else the pool's share
        worker = Worker(settings, cameras, client, stop, dedicated=camera_ids(args) is not None)
    except ModelError as exc:
        fail(exc)
    start_metrics(settings)
    log.info("worker started", extra={"worker": worker.name, "cameras": {c.id: c.mode for c in cameras},
                                      "redis": settings.redis_url_display})
    companion = beside(settings, cameras, client, worker.name) if beside else None
    try:
        worker.run()  # returns on SIGTERM/SIGINT (or a service thread's death) after acking the frames
    finally:          # in hand and deregistering
        if companion is not None:
            companion.stop()  # the tracker: owned cameras end their open events and release their leases
        client.close()
    return threads.exit_code()  # 70 when a service thread died: its supervisor restarts the process
