"""Prometheus set-up shared by the services. Each service declares its own metrics at module level
(prometheus-client keeps one registry per process) and calls `serve_metrics` once at start-up."""

from __future__ import annotations

import logging

from prometheus_client import Gauge, start_http_server

from common.build import build_info

log = logging.getLogger(__name__)

# Every service's /metrics carries its version and dependency lock: 1, with the install's labels.
BUILD_INFO = Gauge("framecast_build_info", "framecast's version and the dependency lock it was installed from "
                   "(lock_matches: whether the installed packages are exactly the lock's)",
                   list(build_info()), multiprocess_mode="max")
BUILD_INFO.labels(**build_info()).set(1)

# Buckets for per-frame durations in milliseconds (encode, inference, end-to-end).
MS_BUCKETS = (1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 400, 600, 1000, 2000, 5000)


def serve_metrics(port: int, host: str = "0.0.0.0") -> bool:
    """Expose /metrics on `port` in a background thread; port 0 disables it. Returns True if serving."""
    if not port:
        return False
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.error("cannot serve metrics", extra={"port": port, "error": str(exc)})
        return False
    log.info("serving metrics", extra={"port": port})
    return True
