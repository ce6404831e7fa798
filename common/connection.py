"""The Redis connection factory and the reconnect backoff shared by every service loop."""

from __future__ import annotations

import random
import threading

import redis
from pydantic import SecretStr
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common.redaction import redact_text

# Errors that mean "Redis is unreachable or restarting": loops back off and reconnect on these.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    ConnectionResetError,
    BrokenPipeError,
)


def connect(url: str | SecretStr, *, socket_timeout: float = 10.0, retries: int = 3, **kwargs) -> redis.Redis:
    """A Redis client for `url` (redis://, rediss://, unix://; password and ACL user in the URL).

    Commands are retried with exponential backoff on connection loss before an error reaches the
    caller; hiredis parses replies when it is installed. The connection is opened lazily.
    """
    if isinstance(url, SecretStr):
        url = url.get_secret_value()
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries)
    return redis.Redis.from_url(
        url,
        retry=retry,
        retry_on_error=[redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        redis.exceptions.BusyLoadingError],
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        socket_keepalive=True,
        health_check_interval=30,
        **kwargs,
    )


def describe_error(exc: BaseException) -> str:
    """A one-line description of a Redis error that is safe to log (no credentials)."""
    return redact_text(f"{type(exc).__name__}: {exc}")


class Backoff:
    """Exponential backoff with jitter for reconnect loops; `wait` returns early when stopped.

    Invoked from a service loop after a failure; `reset` after a success.
    """

    def __init__(self, base: float = 0.5, cap: float = 10.0):
        self.base = base
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.failures))
        self.failures += 1
        return delay * (0.5 + random.random() / 2)

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the next delay; True if `stop` was set meanwhile."""
        return stop.wait(self.next_delay())

    def reset(self) -> None:
        self.failures = 0
