"""Serving the app for production: gunicorn with gevent processes and no timeout.

gunicorn's default sync processes ("sync workers" in its terms) kill a streaming response after
`timeout` seconds (gunicorn #2537), so every process here runs gunicorn's gevent worker class with
`timeout = 0`. It monkey-patches the process before it loads the app, so the broadcaster's threads,
locks and Redis sockets all become cooperative greenlets. gunicorn's own log lines go through the
process's logging set-up (common.logs), so they are formatted and redacted like every other line.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import gevent
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import GeventWorker

from common.config import Settings


class GunicornLogs(Logger):
    """gunicorn's error and access logs without gunicorn's own handlers: their records go to the root
    logger, whose formatter redacts credentials. gunicorn writes request URIs as they are (a failed
    request is logged as "Error handling request GET /...?token=..."), so its own handlers would
    leak the token."""

    def setup(self, cfg):
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)  # not closed: gunicorn's handlers may wrap sys.stderr
            logger.propagate = True


class StreamingGeventProcess(GeventWorker):
    """A gevent process that ends its never-ending responses (MJPEG, followed NDJSON) on SIGTERM, so a
    restart does not wait out the graceful timeout on streams that would never finish."""

    def handle_exit(self, sig, frame):
        super().handle_exit(sig, frame)
        app = getattr(self, "wsgi", None)
        web_state = getattr(app, "extensions", {}).get("framecast")
        if web_state is not None:
            gevent.spawn(web_state.shutdown)  # out of the signal handler: shutdown joins greenlets

    def handle_request(self, listener_name, req, sock, addr):
        try:
            super().handle_request(listener_name, req, sock, addr)
        except TimeoutError:
            # web.write_timeout expired on a viewer that stopped reading (web.video sets it): an
            # expected way for a stream to end, so one line instead of gunicorn's "Socket error"
            # traceback. StopIteration makes gunicorn close the connection; the response iterator
            # was closed already, which unsubscribed the viewer.
            self.log.warning("dropped a client that stopped reading: %s %s", req.method, req.path)
            raise StopIteration from None
        if not self.alive:
            # Shutting down: close the connection now rather than wait `keepalive` seconds for a next
            # request (gunicorn decided on keep-alive before the stream began).
            raise StopIteration


def _metrics_dir_for(processes: int) -> str | None:
    """With several processes, a fresh directory for prometheus_client's multiprocess mode, so that
    /metrics (answered by any one process) sums all of them; None with one process.

    prometheus_client picks its value storage when it is first imported, from PROMETHEUS_MULTIPROC_DIR,
    so this must run before anything in this (master) process imports it; the processes import it
    after the fork. A directory the operator set is used as it is, and left in place."""
    if processes < 2 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before multiprocess mode was chosen")
    path = tempfile.mkdtemp(prefix="framecast-web-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _process_exited(_arbiter, process) -> None:
    """gunicorn's child_exit hook: a dead process's live gauges (viewers, readers) stop counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process.pid)


class WebServer(BaseApplication):
    """gunicorn, configured programmatically from Settings (no gunicorn config file is read)."""

    def __init__(self, settings: Settings, processes: int):
        self.settings = settings
        self.processes = processes
        self.metrics_dir = _metrics_dir_for(processes)
        super().__init__()

    def run(self):
        try:
            super().run()
        finally:
            if self.metrics_dir:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def load_config(self):
        options = {
            "bind": f"{self.settings.web.host}:{self.settings.web.port}",
            "workers": self.processes,
            "worker_class": f"{__name__}.StreamingGeventProcess",
            "worker_connections": 2000,
            "timeout": 0,            # never kill a process for a long-lived MJPEG response
            "graceful_timeout": 10,  # for ordinary requests; streams end at once on SIGTERM
            "keepalive": 5,
            "accesslog": None,       # off; were it on, its lines would be redacted too (GunicornLogs)
            "loglevel": "warning",
            "logger_class": f"{__name__}.GunicornLogs",
            "proc_name": "framecast-web",
            "child_exit": _process_exited,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self):
        """Runs in each process after gevent has patched it, so the app's locks and sockets cooperate."""
        from web.app import create_app

        return create_app(self.settings)
