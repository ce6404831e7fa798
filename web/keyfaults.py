"""Keys Redis refuses to read for us (a `fc:stats:{cam}` overwritten by `SET`, a registry of the wrong
type, a key the ACL user may not read): each is one camera's (or the registry's) problem, never the
whole web tier's.

The routes read a camera's keys inside `reading(key, cam)`: a refusal becomes a BrokenKeyError
naming the key and Redis's reply, which the route reports for that camera alone (an `error` in
/api/cameras, not ready in /readyz, 503 JSON for its snapshot and detections, NO SIGNAL on its feed).
Each broken key is logged at most once a minute per process, with its camera id.
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


class BrokenKeyError(Exception):
    """Redis refused a command on `key` (wrong type, no permission); `cam` is None for the registry."""

    def __init__(self, key: str, problem: str, cam: str | None = None):
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem
        self.cam = cam


def is_key_refusal(exc: BaseException) -> bool:
    """A reply about the key itself (WRONGTYPE, NOPERM, ...), not an outage or a missing key."""
    return (isinstance(exc, redis.exceptions.ResponseError) and not isinstance(exc, CONNECTION_ERRORS)
            and not str(exc).lower().startswith("no such key"))


def report(key: str, problem: str, cam: str | None) -> None:
    """Log a broken key, at most once a minute per process."""
    if not _logged.due(key):
        return
    message = "unreadable Redis key: fix or delete it"
    extra = {"key": key, "error": problem}
    if cam is None:
        log.error(message, extra=extra)
    else:
        camera_logger("framecast.web", cam).error(message, extra=extra)


@contextmanager
def reading(key: str, cam: str | None = None) -> Iterator[None]:
    """Run a read of `key`; a refusal of the key raises BrokenKeyError (logged, rate-limited)."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        if not is_key_refusal(exc):
            raise
        problem = describe_error(exc).removeprefix("ResponseError: ")
        report(key, problem, cam)
        raise BrokenKeyError(key, problem, cam) from exc
