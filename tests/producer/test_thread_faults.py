"""A producer whose Redis Cluster goes away entirely: redis-py raises RedisClusterException ("cannot be
connected"), which is not a RedisError. The sender thread must wait it out as the outage it is
(counted, logged with the camera, backed off) and publish again once the cluster is back, instead of
dying and leaving a producer that heartbeats but never publishes again. A real producer process and a
real 3-master cluster of the test's own; each process is started here and ended by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from common.connection import connect
from common.keys import Keys
from tests.conftest import REPO
from testsupport.redis_topologies import ClusterServers

pytestmark = pytest.mark.slow
CAM = "door"


def published(client) -> int:
    return int(client.hget(Keys().stats(CAM), "published") or 0)


def wait(condition, timeout: float, what: str, proc: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if proc.poll() is not None:
            pytest.fail(f"the producer exited ({proc.returncode}) while waiting for {what}\n{log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")


def test_the_sender_waits_out_a_cluster_that_is_all_down_and_publishes_again(tmp_path):
    with ClusterServers(masters=3, replicas=0) as cluster:
        cluster.wait_ok()
        config = tmp_path / "cameras.yaml"
        config.write_text(yaml.safe_dump({"redis_url": cluster.url, "log_format": "text", "cameras": [
            {"id": CAM, "source": "pattern", "fps": 10, "max_width": 320, "mode": "live"}]}, sort_keys=False))
        log = tmp_path / "producer.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "framecast", "producer", "--config", str(config)],
                                    cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=out,
                                    stderr=subprocess.STDOUT)
        client = connect(cluster.url)
        try:
            wait(lambda: published(client) >= 10, 60, "10 frames published", proc, log)
            masters = cluster.masters()
            for port in masters:
                cluster.kill(port)
            time.sleep(3.0)  # a few batches meet the cluster down
            for port in masters:
                cluster.start_node(port)
            cluster.wait_ok()
            before = published(client)
            wait(lambda: published(client) >= before + 10, 60, "10 more frames after the cluster came back",
                 proc, log)
            text = log.read_text()
            assert "Exception in thread" not in text, text
            assert proc.poll() is None, text
        finally:
            client.close()
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        assert proc.returncode == 0, log.read_text()
