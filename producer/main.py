"""`framecast producer [--camera ID ...]`: publish every configured camera (or the ones named)."""

from __future__ import annotations

import argparse
import logging
import os
import socket

import cv2
import redis

from common import threads
from common.connection import CONNECTION_ERRORS, ThrottledLog, describe_error, permanent_reason
from common.keys import Keys
from common.registry import deregister, heartbeat, member_id
from common.service import (
    add_common_args,
    load_settings,
    selected_cameras,
    start_metrics,
    stop_event_on_signals,
)
from common.startup import connect_checked
from producer.publisher import CameraPublisher, spread_phases
from producer.scheduler import Scheduler
from producer.send_loop import SendLoop

log = logging.getLogger("framecast.producer")
HEARTBEAT_INTERVAL = 2.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framecast producer", description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--once", action="store_true", help="play files once instead of looping")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The camera pool has its threads already: OpenCV's pool would only add idle spinning threads that
    # doubled the CPU of a camera's motion detection and resizing (measured: 1.5 vs 0.85 ms a frame).
    cv2.setNumThreads(1)
    settings = load_settings(args)
    cameras = selected_cameras(settings, args)
    if args.once:
        cameras = [camera.model_copy(update={"loop": False}) for camera in cameras]
    start_metrics(settings)
    stop = stop_event_on_signals()
    client = connect_checked(settings, stop, retries=1)  # exits 3 on a wrong password or certificate
    if client is None:  # stopped while waiting for Redis
        return 0
    keys = Keys(settings.key_prefix)
    # Threads: the camera pool's few, one sending thread for every camera, and a capture thread per
    # live camera (their sources are read by blocking); none per paced camera (producer/scheduler.py).
    send_loop = SendLoop(client, arrivals=keys.arrivals)
    phases = spread_phases(cameras)  # paced cameras of one rate at an even pace
    publishers = [CameraPublisher(camera, settings, client, stop, send_loop=send_loop, phase=phases[camera.id])
                  for camera in cameras]
    pool = Scheduler(stop)
    pool.add_all(publishers)
    pool.start()
    me = member_id()
    log.info("producer started", extra={"cameras": [c.id for c in cameras], "redis": settings.redis_url_display})
    info = {"host": socket.gethostname(), "pid": os.getpid(), "cameras": [c.id for c in cameras],
            "sources": {c.id: c.source_kind for c in cameras}}
    ttl = HEARTBEAT_INTERVAL * 3
    refused = ThrottledLog(60.0)  # a password changed under a running producer: say so once a minute
    while not stop.is_set() and pool.alive():
        try:
            fps = {p.camera.id: round(p.published_fps(), 2) for p in publishers}
            heartbeat(client, keys, "producer", me, {**info, "fps": fps, "dead_threads": threads.dead()}, ttl)
        except (*CONNECTION_ERRORS, redis.exceptions.RedisClusterException) as exc:  # no cluster node reachable
            reason = permanent_reason(exc)
            if reason is not None and refused.due(reason):
                log.error("Redis refuses this producer: " + reason, extra={"error": describe_error(exc)})
            else:
                log.debug("heartbeat failed", extra={"error": describe_error(exc)})
        stop.wait(HEARTBEAT_INTERVAL)
    stop.set()
    pool.join(timeout=10.0)
    send_loop.close()
    try:
        deregister(client, keys, "producer", me)
    except (*CONNECTION_ERRORS, redis.exceptions.RedisClusterException):
        pass
    log.info("producer stopped", extra={"published": {p.camera.id: p.published for p in publishers}})
    return threads.exit_code()  # 70 when a service thread died: its supervisor restarts the process
