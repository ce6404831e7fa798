"""Heartbeat registries of live workers and producers, readable by the web tier and the CLI.

Each member refreshes a hash with a TTL plus its score in a sorted set; a member whose heartbeat is
older than its TTL is not live. Only writers write: each heartbeat also prunes the sorted set of members
long dead, so readers (the web tier) work against a replica or any read-only node.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import socket
import time
from typing import Any, Literal

import redis
import redis.cluster

from common.errors import ConfigError
from common.keys import Keys

Kind = Literal["worker", "producer"]
INSTANCE_ID_ENV = "FRAMECAST_INSTANCE_ID"
INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
# A member whose last heartbeat is this much older than the writer's TTL (or 5 min) is pruned.
PRUNE_TTLS, PRUNE_MIN_S = 10, 300.0


def member_id() -> str:
    """An id for a worker or producer in registries and consumer groups, unique across hosts:
    FRAMECAST_INSTANCE_ID when set, else host, pid and a random suffix (containers on different
    hosts often share a hostname and PID 1). A new id on each call; a service takes one at start."""
    configured = os.environ.get(INSTANCE_ID_ENV)
    if configured:
        if not INSTANCE_ID_RE.match(configured):
            raise ConfigError(f"{INSTANCE_ID_ENV}: use 1-128 characters from A-Z a-z 0-9 _ . : @ -")
        return configured
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def host_address(client) -> str | None:
    """This host's IP address on the interface that reaches Redis (best effort, no traffic sent:
    a UDP socket is only connected, never written), or the hostname's address for unix sockets."""
    if isinstance(client, redis.cluster.RedisCluster):
        node = client.get_default_node()
        target = (node.host, node.port) if node is not None else None
    else:
        kwargs = client.connection_pool.connection_kwargs
        target = (kwargs["host"], kwargs.get("port", 6379)) if "host" in kwargs else None
        sentinel = getattr(client.connection_pool, "sentinel_manager", None)
        if sentinel is not None and sentinel.sentinels:
            sentinel_kwargs = sentinel.sentinels[0].connection_pool.connection_kwargs
            target = (sentinel_kwargs["host"], sentinel_kwargs["port"])
    return _address_towards(target)


@functools.lru_cache(maxsize=16)
def _address_towards(target: tuple[str, int] | None) -> str | None:
    try:
        if target is not None:
            family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect(target)
                return sock.getsockname()[0]
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


def _keys_for(keys: Keys, kind: Kind, member: str) -> tuple[str, str]:
    if kind == "worker":
        return keys.workers, keys.worker(member)
    return keys.producers, keys.producer(member)


def member_key(keys: Keys, kind: Kind, member: str) -> str:
    """The heartbeat hash of `member` in the `kind` registry."""
    return _keys_for(keys, kind, member)[1]


def heartbeat(client: redis.Redis, keys: Keys, kind: Kind, member: str, info: dict[str, Any], ttl: float) -> None:
    """Record that `member` is alive with `info` (values JSON-encoded), adding this host's `ip`, and
    prune members that stopped long ago. Called periodically by the member's loop."""
    zset, hkey = _keys_for(keys, kind, member)
    now = time.time()
    fields = {k: json.dumps(v) for k, v in {"ip": host_address(client), **info}.items()}
    fields["heartbeat"] = json.dumps(now)
    fields["ttl"] = json.dumps(ttl)
    pipe = client.pipeline(transaction=False)
    pipe.hset(hkey, mapping=fields)
    pipe.expire(hkey, max(1, int(ttl + 0.999)))
    pipe.zadd(zset, {member: now})
    pipe.zremrangebyscore(zset, "-inf", now - max(PRUNE_MIN_S, PRUNE_TTLS * ttl))
    pipe.execute()


def deregister(client: redis.Redis, keys: Keys, kind: Kind, member: str) -> None:
    """Remove `member` at a clean shutdown."""
    zset, hkey = _keys_for(keys, kind, member)
    pipe = client.pipeline(transaction=False)
    pipe.delete(hkey)
    pipe.zrem(zset, member)
    pipe.execute()


def live_members(client: redis.Redis, keys: Keys, kind: Kind, max_age: float = 3600.0) -> list[dict[str, Any]]:
    """The live members with their info (`id`, `age_s` and what they registered), by id.

    Read-only (a replica can answer it): members whose hash expired are skipped, not removed.
    """
    zset = keys.workers if kind == "worker" else keys.producers
    now = time.time()
    members = [m.decode() if isinstance(m, bytes) else m
               for m in client.zrangebyscore(zset, now - max_age, "+inf")]
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hgetall(_keys_for(keys, kind, member)[1])
    infos = (member_info(member, raw, now) for member, raw in zip(members, pipe.execute(), strict=True))
    return sorted((info for info in infos if info is not None), key=lambda i: i["id"])


def member_info(member: str, raw: dict, now: float) -> dict[str, Any] | None:
    """A member's info from its heartbeat hash as HGETALL gave it (`id`, `age_s` and what it
    registered), or None when it is not live: its hash expired, or its heartbeat is older than its TTL."""
    if not raw:  # hash expired: the member stopped heart-beating (its writers prune it)
        return None
    info: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.decode() if isinstance(k, bytes) else k
        try:
            info[key] = json.loads(v)
        except (TypeError, ValueError):
            info[key] = v.decode(errors="replace") if isinstance(v, bytes) else v
    age = now - float(info.get("heartbeat", 0))
    if age > float(info.get("ttl", 10)):
        return None
    info["id"] = member
    info["age_s"] = round(age, 3)
    return info
