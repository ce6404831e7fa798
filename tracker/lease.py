"""The lease that makes one process at a time the tracking owner of a camera.

A Redis string `key` holds `<owner>:<token>` with a TTL. `acquire` takes a free (or expired) lease
with SET NX PX and a new fencing token from INCR on `key:token`, so every ownership has a token
higher than all before it; `renew` extends it only while the value is still ours (a Lua
compare-and-PEXPIRE), and `release` deletes it only if it is ours. An owner that stops renewing (it
died, or it hung past the TTL) loses the camera to the next process that asks; a former owner finds
out on its next renew and must stop emitting. Writes an owner makes (checkpoints, open events) can be
guarded with `guarded_set`, which refuses them once the lease has moved on.

Owners renew every ttl/3 from their loop; the hand-over time after a crash is at most the TTL plus
the new owner's polling interval.
"""

from __future__ import annotations

import redis

from common.errors import FramecastError

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
# SET KEYS[2] to ARGV[2] only while the lease KEYS[1] is still held as ARGV[1].
_GUARDED_SET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class LeaseLostError(FramecastError):
    """The camera's lease is no longer this process's (another one holds it): what it tried to write
    was not written, and it must stop emitting for the camera."""


class Lease:
    """One process's claim on one camera. Called from that camera's tracking loop only."""

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl: float = 5.0):
        self.client, self.key, self.owner = client, key, owner
        self.ttl_ms = int(ttl * 1000)
        self.token: int | None = None
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._guarded_set = client.register_script(_GUARDED_SET)

    @property
    def value(self) -> str | None:
        return None if self.token is None else f"{self.owner}:{self.token}"

    @property
    def held(self) -> bool:
        return self.token is not None

    def acquire(self) -> bool:
        """Take the lease if it is free; True if this process holds it now (renewed if it already did)."""
        if self.token is not None:
            return self.renew()
        # The token is drawn before the SET, so a failed attempt burns a number: tokens only increase.
        token = int(self.client.incr(self.key + ":token"))
        if self.client.set(self.key, f"{self.owner}:{token}", nx=True, px=self.ttl_ms):
            self.token = token
            return True
        return False

    def renew(self) -> bool:
        """Extend the lease; False (and no longer held) when another process has it now."""
        if self.token is None:
            return False
        if int(self._renew(keys=[self.key], args=[self.value, self.ttl_ms])):
            return True
        self.token = None
        return False

    def release(self) -> None:
        """Give the camera up at once (clean shutdown), so the next owner need not wait for the TTL."""
        if self.token is not None:
            self._release(keys=[self.key], args=[self.value])
            self.token = None

    def guarded_set(self, key: str, value: bytes | str) -> bool:
        """SET `key` only while this lease is held; False (and not held) once it has moved on."""
        if self.token is None:
            return False
        if int(self._guarded_set(keys=[self.key, key], args=[self.value, value])):
            return True
        self.token = None
        return False

