"""Service threads: a long-running thread of a service whose death is never silent.

Every service loop handles its errors per item: it logs them with the camera id, counts them, backs
off and goes on. A thread that still dies (a bug, an error nobody foresaw) would leave a half-alive
process: supervisord, Docker and Kubernetes see it running, its other threads keep renewing its
heartbeats and leases, and the work that thread did (taking a camera's tracking lease, sending its
frames) stops for good. So `service_thread` wraps the target: an uncaught exception is logged with the
thread's name (and camera), counted in `framecast_thread_deaths_total{thread}`, recorded (`dead()`,
which heartbeats report), and the process exits with EXIT_THREAD_DIED:

- first its main loop is asked to stop (the `on_death` callbacks: `common.service.stop_event_on_signals`
  registers its stop event), so a worker acks the frames in hand, releases its leases and
  deregisters as on SIGTERM, and its `main` returns `exit_code()`, 70;
- whatever happens meanwhile, DEATH_GRACE seconds later (or at once when nothing asked to be told)
  the process ends with `os._exit(70)` after flushing its logs, since a clean stop may block on the
  very thing that broke; a `main` that returns 0 all the same is overruled at exit.

A non-zero exit is what every supervisor restarts: supervisord (`autorestart` restarts an exit code
not in `exitcodes`, 0 by default), Docker (`restart: unless-stopped` / `on-failure`) and Kubernetes
(`restartPolicy: Always`). A lease the process could not release runs out after its TTL and frames
it held pending are reclaimed by the other workers: the SIGKILL path the pipeline is built to survive.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("framecast.threads")

EXIT_THREAD_DIED = 70  # EX_SOFTWARE: an internal error; not a user's (2) nor a refused login (3)
DEATH_GRACE = 10.0  # seconds a clean stop may take after a death; supervisord and Docker wait 10 s too

_lock = threading.Lock()
_dead: list[dict[str, str | None]] = []
_callbacks: list[Callable[[], None]] = []
_metric = None


def _deaths_metric():
    # Created on first use, not at import: the web tier's gunicorn master must not import
    # prometheus_client before it has chosen multiprocess mode (web.serving).
    global _metric
    with _lock:
        if _metric is None:
            from prometheus_client import Counter

            _metric = Counter("framecast_thread_deaths_total",
                              "Service threads that died of an uncaught error (the process then exits 70)",
                              ["thread"])
        return _metric


def service_thread(target: Callable[..., object], name: str, *, cam: str | None = None, args: tuple = (),
                   daemon: bool = True) -> threading.Thread:
    """A long-running service thread named `name` (of camera `cam`, if any) running `target(*args)`,
    not started yet (a drop-in for `threading.Thread`); an uncaught exception in it ends the process
    (see the module docstring)."""
    _deaths_metric()

    def run() -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - a thread's last word: logged, then the process exits
            _died(name, cam, exc)

    return threading.Thread(target=run, name=name, daemon=daemon)


def start_thread(target: Callable[..., object], name: str, *, cam: str | None = None, args: tuple = (),
                 daemon: bool = True) -> threading.Thread:
    """`service_thread`, started."""
    thread = service_thread(target, name, cam=cam, args=args, daemon=daemon)
    thread.start()
    return thread


def on_death(callback: Callable[[], None]) -> None:
    """Call `callback` (from the dying thread) when a service thread dies: a main loop's stop."""
    with _lock:
        _callbacks.append(callback)


def dead() -> list[dict[str, str | None]]:
    """The service threads that died in this process ({"thread", "camera", "error"}), for heartbeats."""
    with _lock:
        return [dict(d) for d in _dead]


def healthy() -> bool:
    with _lock:
        return not _dead


def exit_code(default: int = 0) -> int:
    """What `main` returns: EXIT_THREAD_DIED once a service thread died, else `default`."""
    return EXIT_THREAD_DIED if not healthy() else default


def _died(name: str, cam: str | None, exc: BaseException) -> None:
    with _lock:
        first = not _dead
        _dead.append({"thread": name, "camera": cam, "error": f"{type(exc).__name__}: {exc}"})
        callbacks = list(_callbacks)
    # `thread` is a LogRecord attribute of its own (the thread id): the name goes as `service_thread`
    extra = {"service_thread": name, "error": f"{type(exc).__name__}: {exc}", "exit_code": EXIT_THREAD_DIED}
    if cam is not None:
        extra["camera"] = cam
    try:  # neither the log line nor the count may keep the process from exiting
        log.critical("service thread died; the process exits so that its supervisor restarts it", extra=extra,
                     exc_info=(type(exc), exc, exc.__traceback__))
        _deaths_metric().labels(name).inc()
    except Exception:  # noqa: BLE001
        pass
    if not first:
        return
    atexit.register(_exit_now)  # a main that returns 0 after the clean stop still exits 70
    for callback in callbacks:
        try:
            callback()
        except Exception:  # noqa: BLE001
            log.exception("stop callback failed after a thread died")
    watchdog = threading.Timer(DEATH_GRACE if callbacks else 0.2, _exit_now)
    watchdog.name, watchdog.daemon = "thread-death-exit", True
    watchdog.start()


def _exit_now() -> None:
    """End the process with EXIT_THREAD_DIED, its logs written out first."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:  # noqa: BLE001
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    os._exit(EXIT_THREAD_DIED)
