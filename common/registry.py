"""Heartbeat registries of live workers and producers, readable by the web tier and the CLI.

Each member refreshes a hash with a TTL plus its score in a sorted set; a member whose heartbeat is
older than its TTL is not live, and readers prune it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Literal

import redis

from common.keys import Keys

Kind = Literal["worker", "producer"]


def member_id() -> str:
    """This process's id in registries and consumer groups: host and pid."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _keys_for(keys: Keys, kind: Kind, member: str) -> tuple[str, str]:
    if kind == "worker":
        return keys.workers, keys.worker(member)
    return keys.producers, keys.producer(member)


def heartbeat(client: redis.Redis, keys: Keys, kind: Kind, member: str, info: dict[str, Any], ttl: float) -> None:
    """Record that `member` is alive with `info` (values JSON-encoded). Called periodically by its loop."""
    zset, hkey = _keys_for(keys, kind, member)
    now = time.time()
    fields = {k: json.dumps(v) for k, v in info.items()}
    fields["heartbeat"] = json.dumps(now)
    fields["ttl"] = json.dumps(ttl)
    pipe = client.pipeline(transaction=False)
    pipe.hset(hkey, mapping=fields)
    pipe.expire(hkey, max(1, int(ttl + 0.999)))
    pipe.zadd(zset, {member: now})
    pipe.execute()


def deregister(client: redis.Redis, keys: Keys, kind: Kind, member: str) -> None:
    """Remove `member` at a clean shutdown."""
    zset, hkey = _keys_for(keys, kind, member)
    pipe = client.pipeline(transaction=False)
    pipe.delete(hkey)
    pipe.zrem(zset, member)
    pipe.execute()


def live_members(client: redis.Redis, keys: Keys, kind: Kind, max_age: float = 3600.0) -> list[dict[str, Any]]:
    """The live members with their info (`id`, `age_s` and what they registered), oldest id first."""
    zset = keys.workers if kind == "worker" else keys.producers
    now = time.time()
    client.zremrangebyscore(zset, "-inf", now - max_age)
    members = [m.decode() if isinstance(m, bytes) else m for m in client.zrange(zset, 0, -1)]
    if not members:
        return []
    pipe = client.pipeline(transaction=False)
    for member in members:
        pipe.hgetall(_keys_for(keys, kind, member)[1])
    out = []
    for member, raw in zip(members, pipe.execute(), strict=True):
        if not raw:  # hash expired: the member stopped heart-beating
            client.zrem(zset, member)
            continue
        info: dict[str, Any] = {}
        for k, v in raw.items():
            key = k.decode() if isinstance(k, bytes) else k
            try:
                info[key] = json.loads(v)
            except (TypeError, ValueError):
                info[key] = v.decode(errors="replace") if isinstance(v, bytes) else v
        age = now - float(info.get("heartbeat", 0))
        if age > float(info.get("ttl", 10)):
            continue
        info["id"] = member
        info["age_s"] = round(age, 3)
        out.append(info)
    return sorted(out, key=lambda i: i["id"])
