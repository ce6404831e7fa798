"""What every service entry point does first: common flags, loading config, logging, metrics."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from common import threads
from common.config import Settings, load_config
from common.errors import ConfigError, FramecastError
from common.logs import setup_logging

log = logging.getLogger(__name__)

# Exit code for bad usage, bad config or unreadable input.
EXIT_USAGE = 2
# Comma-separated camera ids a producer or worker serves when no --camera is given (empty: all), so a
# container's cameras are set by its environment (docker-compose.yml's worker-busy).
CAMERAS_ENV = "FRAMECAST_CAMERAS"


def add_common_args(parser: argparse.ArgumentParser, *, cameras: bool = True) -> None:
    """Flags shared by every service; they win over env vars and the config file."""
    parser.add_argument("--config", "-c", help="YAML config (default: $FRAMECAST_CONFIG or ./cameras.yaml)")
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL or the config)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", choices=["json", "text"])
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: off)")
    if cameras:
        parser.add_argument("--camera", action="append", dest="cameras", metavar="ID",
                            help=f"only this camera (repeatable; default: ${CAMERAS_ENV}, comma-separated, "
                                 "or every camera in the config)")


def camera_ids(args: argparse.Namespace, env: dict[str, str] | None = None) -> list[str] | None:
    """The camera ids a service was asked for: --camera flags, else $FRAMECAST_CAMERAS; None means all.
    Services without --camera (the web tier) always get None."""
    if not hasattr(args, "cameras"):
        return None
    if args.cameras:
        return list(args.cameras)
    value = (os.environ if env is None else env).get(CAMERAS_ENV, "")
    return [cid.strip() for cid in value.split(",") if cid.strip()] or None


def load_settings(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Settings:
    """Load config with the common flags applied; on ConfigError print it and exit with code 2."""
    overrides = {
        "redis_url": getattr(args, "redis_url", None),
        "log_level": getattr(args, "log_level", None),
        "log_format": getattr(args, "log_format", None),
        "metrics_port": getattr(args, "metrics_port", None),
        **(extra or {}),
    }
    try:
        settings = load_config(getattr(args, "config", None), overrides=overrides)
        settings.select_cameras(camera_ids(args))
    except FramecastError as exc:
        fail(exc)
    setup_logging(settings.log_level, settings.log_format)
    return settings


def selected_cameras(settings: Settings, args: argparse.Namespace) -> list:
    """The cameras named with --camera or $FRAMECAST_CAMERAS (all by default); exits with code 2 when
    there are none."""
    cameras = settings.select_cameras(camera_ids(args))
    if not cameras:
        fail("no cameras configured: add a `cameras:` list to the config")
    return cameras


def fail(exc: BaseException | str, code: int = EXIT_USAGE) -> None:
    """Print a user error to stderr and exit; never prints a traceback for our own errors."""
    prefix = "config error: " if isinstance(exc, ConfigError) else "error: "
    print(f"framecast: {prefix}{exc}", file=sys.stderr)
    sys.exit(code)


def start_metrics(settings: Settings) -> None:
    # Imported here, not at the top: the web tier's gunicorn master must not import prometheus_client
    # before it has chosen multiprocess mode (web.serving).
    from common.metrics import serve_metrics

    serve_metrics(settings.metrics_port)


def stop_event_on_signals() -> threading.Event:
    """An Event set by SIGTERM or SIGINT, or when a service thread dies (common.threads: `main` then
    returns `threads.exit_code()`, 70); service loops poll it to stop cleanly."""
    stop = threading.Event()
    threads.on_death(stop.set)

    def _handler(signum, _frame):
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop
