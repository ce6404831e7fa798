"""The Redis URL forms framecast accepts, one per topology, parsed without touching the network.

    redis://, rediss://, unix://                      one server (redis-py's own URL forms)
    redis+cluster://[user:pass@]host:port,host:port   Redis Cluster; the hosts are startup nodes
    redis+sentinel://[user:pass@]host:port,host:port/service[?sentinel_password=..&sentinel_username=..&db=N]
                                                      the primary of `service`, as the Sentinels name it
    rediss+cluster://, rediss+sentinel://             the same over TLS (Sentinels and data nodes alike)

The user and password in the URL are the data nodes' (AUTH); a Sentinel's own are query parameters.
TLS options (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`, `ssl_cert_reqs`, `ssl_check_hostname`) go
in the query of the TLS forms. Errors never quote the URL, because it may hold a password.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

SINGLE_SCHEMES = ("redis", "rediss", "unix")
TOPOLOGY_SCHEMES = ("redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")
SCHEMES_HELP = ("redis://, rediss://, unix://, redis+cluster://, rediss+cluster://, redis+sentinel:// "
                "or rediss+sentinel://")
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username", "db")
DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}


class RedisUrlError(ValueError):
    """A Redis URL framecast cannot use; the message says what to fix and never quotes the URL."""


@dataclass(frozen=True)
class RedisTarget:
    """What a Redis URL points at: one server (`url` as given), a cluster or a Sentinel-managed primary."""

    topology: Literal["single", "cluster", "sentinel"]
    url: str = field(default="", repr=False)
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    service: str | None = None
    db: int = 0
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    tls_options: dict[str, str] = field(default_factory=dict)


def _split_host(spec: str, default_port: int) -> tuple[str, int]:
    if spec.startswith("["):  # [IPv6]:port
        host, _, rest = spec[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if not host:
        raise RedisUrlError("a host in the list is empty: use host:port,host:port")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise RedisUrlError("a port in the host list is not a number") from None
    if not 0 < port < 65536:
        raise RedisUrlError("a port in the host list is out of range")
    return host, port


def parse_redis_url(url: str) -> RedisTarget:
    """Parse and check `url`; raise RedisUrlError naming the problem (not the URL)."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SINGLE_SCHEMES + TOPOLOGY_SCHEMES:
        raise RedisUrlError(f"must start with {SCHEMES_HELP}")
    if scheme in SINGLE_SCHEMES:
        return RedisTarget("single", url=url, tls=scheme == "rediss")
    tls = scheme.startswith("rediss")
    topology = "cluster" if scheme.endswith("cluster") else "sentinel"
    try:
        parts = urlsplit(url)
    except ValueError:
        raise RedisUrlError("the host list is malformed: use host:port,host:port ([addr]:port for IPv6)") from None
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = tuple(_split_host(h.strip(), DEFAULT_PORTS[topology]) for h in hostlist.split(","))
    allowed = (TLS_OPTIONS if tls else ()) + (SENTINEL_OPTIONS if topology == "sentinel" else ())
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            raise RedisUrlError(f"unknown {scheme}:// option {name[:40]!r}"
                                + (f": use {', '.join(allowed)}" if allowed else ": it takes none"))
        options[name] = unquote(value)
    path = parts.path.strip("/")
    service, db = None, 0
    if topology == "cluster":
        if path not in ("", "0"):
            raise RedisUrlError("Redis Cluster has only database 0: end the URL after the host list")
    else:
        if not path or "/" in path:
            raise RedisUrlError("name the Sentinel service after the hosts: redis+sentinel://host:port/mymaster")
        service = unquote(path)
        try:
            db = int(options.pop("db", "0"))
        except ValueError:
            raise RedisUrlError("db must be a number") from None
    return RedisTarget(
        topology, tls=tls, hosts=hosts, username=unquote(username) or None, password=unquote(password) or None,
        service=service, db=db, sentinel_username=options.pop("sentinel_username", None),
        sentinel_password=options.pop("sentinel_password", None), tls_options=options,
    )
