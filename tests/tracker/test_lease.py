"""The camera lease on a real redis-server: one holder at a time, fencing tokens, hand-over when the
holder dies, and a former holder's writes refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import REPO
from tracker.lease import Lease

KEY = "fc:tracker:{door}"


def test_one_holder_renewal_release_and_fencing(redis_client):
    a = Lease(redis_client, KEY, "a", ttl=1.0)
    b = Lease(redis_client, KEY, "b", ttl=1.0)
    assert a.acquire() and not b.acquire()
    first = a.token
    for _ in range(4):  # renewing keeps it past several TTLs
        time.sleep(0.2)
        assert a.renew() and not b.acquire()
    assert a.guarded_set("fc:checkpoint:{door}", "1-10")
    time.sleep(1.2)  # a stops renewing (it hung): the lease expires and b takes it
    assert b.acquire() and b.token > first
    assert not a.renew() and not a.held
    assert not a.guarded_set("fc:checkpoint:{door}", "1-11")  # a's late write is refused
    assert b.guarded_set("fc:checkpoint:{door}", "1-12")
    assert redis_client.get("fc:checkpoint:{door}") == b"1-12"
    assert redis_client.get(b.key) == f"b:{b.token}".encode()
    b_token = b.token
    b.release()
    assert a.acquire() and a.token > b_token  # free at once, no TTL wait
    assert redis_client.get(KEY) == f"a:{a.token}".encode()


def test_release_only_removes_our_own_lease(redis_client):
    a = Lease(redis_client, KEY, "a", ttl=0.3)
    b = Lease(redis_client, KEY, "b", ttl=5)
    assert a.acquire()
    time.sleep(0.4)
    assert b.acquire()
    assert a.held  # a has not renewed since, so it still believes it holds the lease
    a.release()
    assert redis_client.get(KEY) == f"b:{b.token}".encode()


def test_killed_holder_hands_over_within_the_ttl(redis_server, redis_client):
    script = (
        "import sys, time, redis\n"
        "from tracker.lease import Lease\n"
        "lease = Lease(redis.Redis.from_url(sys.argv[1]), sys.argv[2], 'doomed', ttl=1.0)\n"
        "assert lease.acquire()\n"
        "print('held', flush=True)\n"
        "while lease.renew(): time.sleep(0.3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", script, redis_server.url, KEY], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        heir = Lease(redis_client, KEY, "heir", ttl=1.0)
        time.sleep(1.2)
        assert not heir.acquire()  # still renewed by the live holder
        proc.kill()
        proc.wait(timeout=10)
        killed = time.monotonic()
        while not heir.acquire():
            assert time.monotonic() - killed < 3.0, "the lease was not handed over"
            time.sleep(0.1)
        assert time.monotonic() - killed <= 2.0  # the TTL (1 s) plus polling, with room for a busy machine
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
