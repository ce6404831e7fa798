"""Detection and tracking as separate processes: a real `framecast worker --no-tracker` detects an
event camera and a real `framecast tracker` tracks it, on a real redis-server, with a real producer
playing the sample clip once. Every process is started here and ended by its PID."""

from __future__ import annotations

import os
import time

import pytest

from common import envelope
from common.keys import FRAME_FIELD, Keys
from common.text import as_str
from tests.ledger import stream_entries
from tests.tracker.test_pipeline_events import CAM, Pipeline, assert_exactly_once, clip, settled

__all__ = ["clip"]  # the sample clip fixture, shared with the pipeline tests

pytestmark = pytest.mark.slow

LEASE_POLLS = 3.0  # seconds: three of the EventService's lease attempts (one a second)


def test_a_detect_only_worker_and_a_tracker_share_an_event_camera(tmp_path, redis_url, clip):
    pipeline = Pipeline(tmp_path, redis_url, clip, camera_events={"clips": False, "snapshots": False})
    client, keys = pipeline.client, Keys()
    try:
        pipeline.start("detector", "worker", "--no-tracker")
        pipeline.wait(lambda: client.zscore(keys.workers, f"detector-{os.getpid()}"), 60, "the detector's heartbeat")
        time.sleep(LEASE_POLLS)  # a worker running the tracker would have taken the lease by now
        assert client.get(keys.tracker_lease(CAM)) is None, pipeline.logs()

        pipeline.start("tracker", "tracker")
        pipeline.wait(lambda: pipeline.owner() == "tracker", 30, "the tracker to take the lease")
        pipeline.start("producer", "producer", "--once")
        pipeline.wait(settled(pipeline), 80, "every frame tracked and every event ended")

        # Every published frame has one detection record, its boxes carry track ids, and the annotated
        # frames were detected by the worker and tracked (drawn, encoded) by the tracker.
        recs = assert_exactly_once(pipeline)
        tracked = [d["track_id"] for r in recs for d in r["detections"]]
        assert tracked and sum(t is not None for t in tracked) > 0.8 * len(tracked)
        frames = [envelope.decode(f[FRAME_FIELD]) for _, f in stream_entries(client, keys.annotated(CAM))]
        assert frames
        assert {f.meta["worker"] for f in frames} == {f"detector-{os.getpid()}"}
        assert {f.meta["tracker"] for f in frames} == {f"tracker-{os.getpid()}"}
        assert pipeline.owner() == "tracker"
        assert as_str(client.get(keys.tracker_lease(CAM))).startswith(f"tracker-{os.getpid()}:")

        # SIGTERM: the tracker releases the lease on its way out and exits 0; the worker takes none.
        tracker = pipeline.procs["tracker"]
        pipeline.stop("tracker")
        assert tracker.returncode == 0, pipeline.logs()
        assert client.get(keys.tracker_lease(CAM)) is None
        time.sleep(LEASE_POLLS)
        assert client.get(keys.tracker_lease(CAM)) is None, pipeline.logs()
        detector = pipeline.procs["detector"]
        pipeline.stop("detector")
        assert detector.returncode == 0, pipeline.logs()
    finally:
        pipeline.stop_all()


