"""/metrics names the version and dependency lock of the install serving it."""

from __future__ import annotations

import hashlib

from tests.conftest import REPO


def test_metrics_carry_the_lock_hash(web_process):
    server = web_process("--processes", "2")  # the multiprocess registry, as in production
    body = server.get("/metrics").read().decode()
    digest = hashlib.sha256((REPO / "lock" / "requirements-test.txt").read_bytes()).hexdigest()
    lines = [line for line in body.splitlines() if line.startswith("framecast_build_info{")]
    assert len(lines) == 1, lines  # one series, whatever the number of processes
    assert f'lock_sha256="{digest}"' in lines[0] and 'lock="test"' in lines[0]
    assert 'lock_matches="true"' in lines[0] and lines[0].endswith(" 1.0")
