"""The Redis connection factory and the reconnect backoff shared by every service loop.

One URL selects the topology (`common.redis_url`): a single server, a Redis Cluster, or the primary of
a Sentinel-managed replica set, followed across failovers.
"""

from __future__ import annotations

import dataclasses
import random
import ssl
import threading
import time
from typing import TYPE_CHECKING

import redis
import redis.cluster
import redis.sentinel
from pydantic import SecretStr
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from common import cluster_keys
from common.redaction import redact_text
from common.redis_url import RedisTarget, parse_redis_url

if TYPE_CHECKING:
    from common.config import RedisTlsConfig, Settings

# Errors that mean "Redis is unreachable, restarting or failing over": loops back off and retry on
# these, and the web tier answers 503 instead of 500.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # also BusyLoadingError, MasterNotFoundError (Sentinel)
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,  # CLUSTERDOWN / MASTERDOWN while a cluster fails over
    redis.exceptions.TryAgainError,  # TRYAGAIN while a slot migrates
    redis.exceptions.SlotNotCoveredError,  # a slot whose master died and has no successor yet
    redis.exceptions.ReadOnlyError,  # a write reached a primary that was just demoted
    ConnectionResetError,
    BrokenPipeError,
)

# Retried inside the client (with backoff) before an error reaches a loop.
_RETRY_ON = [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError]
# A cluster client needs one reachable node to start; how long `connect` waits for one.
CLUSTER_STARTUP_WAIT = 30.0


def connect_to(settings: Settings, **kwargs):
    """A Redis client for the configured `redis_url`, with the `redis_tls` files."""
    return connect(settings.redis_url, tls=settings.redis_tls, **kwargs)


def connect(url: str | SecretStr, *, socket_timeout: float = 10.0, retries: int = 3,
            tls: RedisTlsConfig | None = None, **kwargs):
    """A Redis client for `url`: redis://, rediss://, unix:// (one server), redis+cluster:// or
    redis+sentinel:// (and their rediss+ TLS forms); password and ACL user in the URL; `tls` adds a
    CA file and a client certificate (options in the URL's query win over it).

    Commands are retried with exponential backoff on connection loss before an error reaches the
    caller; hiredis parses replies when it is installed. A single-server or Sentinel client connects
    lazily; a cluster client reads the slot map at once, waiting up to CLUSTER_STARTUP_WAIT seconds
    for a reachable node.
    """
    if isinstance(url, SecretStr):
        url = url.get_secret_value()
    target = parse_redis_url(url)
    files = _tls_files(tls) if target.tls else {}
    common = {"socket_timeout": socket_timeout, "socket_connect_timeout": 5.0, "socket_keepalive": True,
              "health_check_interval": 30, **kwargs}
    if target.topology != "single":  # the URL's own TLS options win over the settings
        target = dataclasses.replace(target, tls_options={**files, **target.tls_options})
    if target.topology == "cluster":
        return _connect_cluster(target, retries, common)
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries)
    if target.topology == "sentinel":
        return _connect_sentinel(target, retry, common)
    # redis-py reads a rediss:// URL's own query options itself, and they win over these
    return redis.Redis.from_url(target.url, retry=retry, retry_on_error=_RETRY_ON, **files, **common)


def _tls_files(tls: RedisTlsConfig | None) -> dict[str, str]:
    if tls is None:
        return {}
    files = {"ssl_ca_certs": tls.ca_file, "ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
    return {name: str(path) for name, path in files.items() if path is not None}


def _tls_kwargs(target: RedisTarget) -> dict:
    if not target.tls:
        return {}
    out: dict = {"ssl": True, **target.tls_options}
    if "ssl_check_hostname" in out:
        out["ssl_check_hostname"] = out["ssl_check_hostname"].lower() in ("1", "true", "yes")
    return out


def _connect_cluster(target: RedisTarget, retries: int, common: dict) -> redis.cluster.RedisCluster:
    """A cluster client over the startup nodes; MOVED and ASK are followed, and CLUSTERDOWN, TRYAGAIN
    and a dead master are retried (with a fresh slot map) before the error reaches the caller."""
    nodes = [redis.cluster.ClusterNode(host, port) for host, port in target.hosts]
    deadline = time.monotonic() + CLUSTER_STARTUP_WAIT
    backoff = Backoff(base=0.2, cap=2.0)
    while True:
        try:
            client = redis.cluster.RedisCluster(
                startup_nodes=nodes, username=target.username, password=target.password,
                retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), max(retries, 1)),
                **_tls_kwargs(target), **common)
            cluster_keys.install(client)  # stream reads without a COMMAND GETKEYS round trip each
            return client
        except (redis.exceptions.RedisClusterException, *CONNECTION_ERRORS) as exc:
            if permanent_reason(exc) is not None or time.monotonic() > deadline:
                hosts = ",".join(f"{h}:{p}" for h, p in target.hosts)
                raise redis.exceptions.ConnectionError(
                    f"no usable Redis Cluster at {hosts}: {describe_error(exc)}") from exc
            time.sleep(backoff.next_delay())


def _connect_sentinel(target: RedisTarget, retry: Retry, common: dict) -> redis.Redis:
    """A client of `service`'s primary: each new connection asks the Sentinels where it is, and a
    connection that finds its server demoted (READONLY) is dropped and re-resolved, so a failover is
    followed as soon as the Sentinels have promoted a replica."""
    tls = _tls_kwargs(target)
    sentinel_kwargs = {k: v for k, v in common.items() if k.startswith("socket_")}
    sentinel_kwargs.update(username=target.sentinel_username, password=target.sentinel_password, **tls)
    sentinel = redis.sentinel.Sentinel(target.hosts, sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(
        target.service, username=target.username, password=target.password, db=target.db,
        retry=retry, retry_on_error=_RETRY_ON, **tls, **common)


def is_cluster(client) -> bool:
    return isinstance(client, redis.cluster.RedisCluster)


def is_writable_primary(client) -> bool:
    """True if writes through `client` land on a primary: ROLE is master (one server, Sentinel), or
    every primary of a cluster says cluster_state:ok (all slots served). False on a replica, a
    read-only node, a cluster that is failing over, or when a node cannot be reached."""
    try:
        if is_cluster(client):
            replies = client.execute_command("CLUSTER INFO", target_nodes=client.get_primaries())
            if not isinstance(replies, dict) or not replies:
                return False
            if "cluster_state" in replies:  # one primary answered: redis-py returns its reply as is
                replies = {"": replies}
            return all(_field(info, "cluster_state") == "ok" for info in replies.values())
        role = client.execute_command("ROLE")
    except CONNECTION_ERRORS:
        return False
    first = role[0] if role else b""
    return (first.decode() if isinstance(first, bytes) else str(first)) == "master"


def _field(info, name: str) -> str:
    value = info.get(name, "") if isinstance(info, dict) else ""
    return value.decode() if isinstance(value, bytes) else str(value)


def describe_error(exc: BaseException) -> str:
    """A one-line description of a Redis error that is safe to log (no credentials)."""
    return redact_text(f"{type(exc).__name__}: {exc}")


# Replies that mean "these credentials will never work": waiting does not fix them.
_AUTH_REPLIES = ("WRONGPASS", "NOAUTH", "NOPERM", "invalid password", "invalid username-password")


def permanent_reason(exc: BaseException) -> str | None:
    """What is permanently wrong when `exc` (or an error it was raised from) is an authentication
    or TLS certificate failure, which retrying will not fix; None for everything else (an outage).

    Says what to fix; carries no secret."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error)
        if isinstance(error, redis.exceptions.AuthenticationError | redis.exceptions.AuthenticationWrongNumberOfArgsError):
            return "Redis refused the credentials: check the user and password in REDIS_URL"
        if isinstance(error, redis.exceptions.NoPermissionError) or (
                isinstance(error, redis.exceptions.ResponseError) and text.startswith(_AUTH_REPLIES)):
            return ("Redis refused the credentials or their permissions (" + text.split(" ", 1)[0]
                    + "): check the user and password in REDIS_URL and the user's ACL")
        if isinstance(error, ssl.SSLCertVerificationError) or "certificate verify failed" in text:
            return ("Redis's TLS certificate is not trusted (certificate verify failed): set redis_tls.ca_file "
                    "(FRAMECAST_REDIS_CA_FILE) to the CA that signed it")
        if isinstance(error, ssl.SSLError) and "CERTIFICATE" in text.upper():
            return ("Redis refused the TLS handshake over a certificate (the server may require a client "
                    "certificate): set redis_tls.cert_file and redis_tls.key_file")
        error = error.__cause__ or error.__context__
    return None


class ThrottledLog:
    """At most one log line per subject per `interval` seconds, for failures that repeat on every
    retry or frame (a wrong password, a refused key): the first occurrence is logged at once, then
    once an interval while it lasts. Thread-safe; one instance is shared by a process's loops."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._last: dict[object, float] = {}
        self._lock = threading.Lock()

    def due(self, subject: object) -> bool:
        """True when a line about `subject` may be logged now (and records that it was)."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(subject)
            if last is not None and now - last < self.interval:
                return False
            self._last[subject] = now
            return True


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
