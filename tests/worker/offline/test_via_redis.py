"""`framecast process --via-redis`: a file spread over the cluster's workers, collected in order."""

import json
import subprocess
import sys

import cv2
import pytest

from common.config import load_config
from common.connection import connect
from tests.conftest import REPO
from tests.worker.live.test_consumer import InProcessWorker
from worker.offline.via_redis import ClusterError, check_cluster

FRAMECAST = [sys.executable, "-m", "framecast"]


@pytest.fixture
def clip(tmp_path, sample_images):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    for image in sample_images[:25]:
        writer.write(image)
    writer.release()
    return path


def test_file_processed_by_cluster_workers_in_order(write_config, redis_url, clip, tmp_path):
    path = write_config([{"id": "offline", "source": "pattern", "mode": "backlog", "overlay": False}],
                        redis_url=redis_url, streams={"frames_maxlen": 20, "annotated_maxlen": 20})
    settings = load_config(path, env={})
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    with InProcessWorker(settings):
        result = subprocess.run([*FRAMECAST, "process", str(clip), "-o", str(out), "--detections", str(jsonl),
                                 "--via-redis", "--camera", "offline", "--config", str(path)],
                                capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "25 frames" in result.stderr and "via Redis camera 'offline'" in result.stderr
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(25))
    assert sum(d["label"] == "person" for r in records for d in r["detections"]) >= 25
    cap = cv2.VideoCapture(str(out))
    count = 0
    while cap.read()[0]:
        count += 1
    assert count == 25 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)


def test_cluster_checks_refuse_jobs_that_cannot_finish(write_config, redis_url):
    path = write_config([{"id": "live1", "source": "pattern"}, {"id": "back1", "source": "pattern", "mode": "backlog"}],
                        redis_url=redis_url)
    settings = load_config(path, env={})
    client = connect(redis_url)
    with pytest.raises(ClusterError, match="mode: backlog"):
        check_cluster(settings, client, "live1")
    with pytest.raises(ClusterError, match="no live worker serves camera 'back1'"):
        check_cluster(settings, client, "back1")
