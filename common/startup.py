"""The Redis check each service makes before it starts work: fail fast on what waiting cannot fix.

A wrong password or ACL user, or a TLS certificate the client does not trust, will fail on every
retry for ever; the services' loops would treat it as an outage and wait. So at start-up each service
asks Redis once (PING): such a failure exits with EXIT_PERMANENT and one line saying what to fix
(supervisord and Docker then show the fault), while a Redis that is simply down is waited for as
before.
"""

from __future__ import annotations

import argparse
import logging
import ssl
import threading

import redis

from common.config import CameraConfig, Settings
from common.connection import (
    CONNECTION_ERRORS,
    Backoff,
    ThrottledLog,
    connect_to,
    describe_error,
    permanent_reason,
)
from common.service import fail, load_settings, selected_cameras, stop_event_on_signals

log = logging.getLogger("framecast.startup")

# Exit code for a Redis that refuses this process for good (credentials, TLS certificate).
EXIT_PERMANENT = 3
WAITING_LOG_INTERVAL = 60.0  # "still waiting for Redis" at most this often
TLS_REFUSALS = 3  # TLS connections closed right after the handshake before we call it a refusal
CLIENT_CERTIFICATE_NEEDED = ("Redis closed the TLS connection after the handshake, every time, and no client "
                             "certificate is configured: the server requires one; set redis_tls.cert_file "
                             "and redis_tls.key_file")


def _closed_after_handshake(exc: BaseException, settings: Settings) -> bool:
    """A TLS connection the server closed once the handshake was done, from a client without a
    certificate. A server that requires client certificates refuses after the TLS 1.3 handshake;
    a client that writes first (PING) may see only the EOF, not the server's alert, so this is
    counted over a few attempts rather than trusted once."""
    if settings.redis_tls.cert_file:
        return False
    error: BaseException | None = exc
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ssl.SSLEOFError) or "EOF occurred in violation of protocol" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def connect_checked(settings: Settings, stop: threading.Event | None = None, *, wait: bool = True, **kwargs):
    """A client for the configured Redis once it has answered a PING; exits with EXIT_PERMANENT on an
    authentication or certificate failure.

    Redis unreachable: with `wait`, retry with backoff (logging at most once a minute) until it
    answers or `stop` is set (then None); without (the web tier, which answers 503 meanwhile), return
    the client at once, unless no client can be built yet (a cluster with no reachable node: waited
    for in either case). Runs on the service's main thread before its loops start."""
    backoff = Backoff(base=0.5, cap=5.0)
    throttle = ThrottledLog(WAITING_LOG_INTERVAL)
    stop = stop or threading.Event()
    tls_refusals = 0
    while True:
        client = None
        try:
            client = connect_to(settings, **kwargs)
            client.ping()
            return client
        except (*CONNECTION_ERRORS, redis.exceptions.RedisError) as exc:
            reason = permanent_reason(exc)
            tls_refusals = tls_refusals + 1 if _closed_after_handshake(exc, settings) else 0
            if reason is None and tls_refusals >= TLS_REFUSALS:
                reason = CLIENT_CERTIFICATE_NEEDED
            if reason is not None:
                fail(f"{reason} ({describe_error(exc)})", EXIT_PERMANENT)
            if not isinstance(exc, CONNECTION_ERRORS):
                raise
            if client is not None and not wait:
                log.warning("Redis is not reachable yet; carrying on without it",
                            extra={"redis": settings.redis_url_display, "error": describe_error(exc)})
                return client
            if throttle.due("waiting"):
                log.warning("waiting for Redis", extra={"redis": settings.redis_url_display,
                                                        "error": describe_error(exc)})
        if client is not None:
            client.close()
        if backoff.wait(stop):
            return None


def start_serving(args: argparse.Namespace) -> tuple[Settings, list[CameraConfig], threading.Event, redis.Redis | None]:
    """The start of a service that serves its cameras until SIGTERM (the worker, the tracker): the
    settings and cameras its command line names (exits 2 on a bad config or an unknown camera), the
    stop event (SIGTERM/SIGINT, or a service thread's death), and a client once Redis answers (None
    when stopped while waiting; exits 3 on a wrong password or certificate)."""
    settings = load_settings(args)
    cameras = selected_cameras(settings, args)
    stop = stop_event_on_signals()
    return settings, cameras, stop, connect_checked(settings, stop)
