"""`framecast web`: the dashboard, MJPEG feeds and APIs, served by gunicorn with gevent processes
(no timeout, so long-lived streams live); `--dev` uses Flask's development server instead."""

from __future__ import annotations

import argparse
import logging
import sys

from common.errors import ConfigError
from common.service import add_common_args, fail, load_settings
from common.startup import connect_checked
from web.access import resolve_access, token_file

log = logging.getLogger("framecast.web")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framecast web", description=__doc__.splitlines()[0])
    add_common_args(parser, cameras=False)
    parser.add_argument("--host", help="address to listen on (default: web.host, 0.0.0.0)")
    parser.add_argument("--port", type=int, help="port (default: web.port, 8000)")
    parser.add_argument("--processes", "--workers", type=int, default=1, dest="processes",
                        help="gunicorn processes (each reads every watched camera once; default 1); "
                             "--workers is the older name")
    parser.add_argument("--dev", action="store_true", help="Flask's development server (threads), not gunicorn")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(args, extra={"web.host": args.host, "web.port": args.port})
    # Before gunicorn forks: a wrong password or an untrusted certificate exits 3 here, once; a Redis
    # that is down does not stop the web tier (it answers 503 until Redis is back).
    probe = connect_checked(settings, wait=False)
    probe.close()
    try:
        settings, generated = resolve_access(settings)
    except ConfigError as exc:  # a token file that holds no token
        fail(exc)
    except OSError as exc:
        fail(f"cannot keep a generated web token in {token_file(settings)} ({exc.strerror}): set web.token, "
             "or web.token_file to a writable place")
    if generated:
        _announce(settings, generated)
    log.info("web starting", extra={"host": settings.web.host, "port": settings.web.port,
                                    "server": "flask-dev" if args.dev else "gunicorn-gevent",
                                    "redis": settings.redis_url_display, "auth": settings.web.token is not None})
    if args.dev:
        from web.app import create_app

        create_app(settings).run(settings.web.host, settings.web.port, threaded=True)
    else:
        from web.serving import WebServer

        WebServer(settings, max(1, args.processes)).run()
    return 0


def _announce(settings, token: str) -> None:
    """The one place a secret is shown: the operator needs the generated token to open the dashboard.
    Printed on stderr, past the logging set-up (whose redaction would hide it), at its creation only."""
    host = settings.web.host if settings.web.host not in ("0.0.0.0", "::", "") else "localhost"
    print(f"framecast web: no web.token was set and {settings.web.host} is reachable from the network, so a "
          f"token was generated and kept in {token_file(settings)}; open the dashboard at "
          f"http://{host}:{settings.web.port}/?token={token} (set web.auth: none to serve without one)",
          file=sys.stderr, flush=True)
