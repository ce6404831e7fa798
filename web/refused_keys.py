"""Refused keys: keys Redis refuses to read for us (a `fc:stats:{cam}` overwritten by `SET`, a
registry of the wrong type, a key the ACL user may not read). Each is one camera's (or the
registry's) problem, never the whole web tier's.

The routes read a camera's keys inside `reading(key, cam)`: a refusal becomes a RefusedKeyError
naming the key and Redis's reply, which the route reports for that camera alone (status
`out_of_service` and an `error` in /api/cameras, not ready in /readyz, 503 JSON "refused key" for
its snapshot and detections, NO SIGNAL on its feed). Each refused key is logged at most once a
minute per process, with its camera id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from common.connection import CONNECTION_ERRORS, ThrottledLog, describe_error
from common.logs import camera_logger

LOG_INTERVAL = 60.0
_logged = ThrottledLog(LOG_INTERVAL)  # per process: feeds, requests and their threads share it
log = logging.getLogger("framecast.web")


class RefusedKeyError(Exception):
    """Redis refused a command on `key` (wrong type, no permission) with `reason`; `cam` is None for
    the registry."""

    def __init__(self, key: str, reason: str, cam: str | None = None):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
        self.cam = cam


def refuses_key(exc: BaseException) -> bool:
    """Whether `exc` is Redis refusing the key itself (WRONGTYPE, NOPERM, ...), not an outage or a
    missing key."""
    return (isinstance(exc, redis.exceptions.ResponseError) and not isinstance(exc, CONNECTION_ERRORS)
            and not str(exc).lower().startswith("no such key"))


def log_refused_key(key: str, reason: str, cam: str | None) -> None:
    """Log a refused key, at most once a minute per process."""
    if not _logged.due(key):
        return
    message = "refused Redis key: fix or delete it"
    extra = {"key": key, "error": reason}
    if cam is None:
        log.error(message, extra=extra)
    else:
        camera_logger("framecast.web", cam).error(message, extra=extra)


@contextmanager
def reading(key: str, cam: str | None = None) -> Iterator[None]:
    """Run a read of `key`; a refusal of the key raises RefusedKeyError (logged, rate-limited)."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        if not refuses_key(exc):
            raise
        reason = describe_error(exc).removeprefix("ResponseError: ")
        log_refused_key(key, reason, cam)
        raise RefusedKeyError(key, reason, cam) from exc
