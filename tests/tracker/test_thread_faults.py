"""A fault in a worker's background thread never leaves a camera without a tracking owner: real
producer and worker processes, a real redis-server, real faults. Every process is started here and
ended by its PID.

- The events thread (which takes the tracking leases) survives an OSError in retention: the events
  directory holds a symlink loop, so retention's stat() of it fails with ELOOP. SIGKILL the owner and
  the other worker takes the camera, and every frame is still tracked exactly once.
- A service thread that dies all the same ends its worker with exit code 70 (after a clean stop that
  releases its lease, so the other worker takes the camera at once) instead of leaving it half alive.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from common.keys import Keys
from tests.tracker.test_pipeline_events import CAM, REPO, Pipeline, clip, events, hand_over, settled

__all__ = ["clip"]  # the sample clip fixture, shared with the pipeline tests

pytestmark = pytest.mark.slow


def loop_events_dir(pipeline: Pipeline) -> None:
    """A symlink to itself in the events directory: stat() of it raises OSError ELOOP."""
    root = pipeline.tmp / "events" / CAM
    root.mkdir(parents=True, exist_ok=True)
    (root / "loop.jpg").symlink_to(root / "loop.jpg")


def test_an_oserror_in_retention_leaves_lease_taking_alive_and_the_camera_gets_an_owner_back(
        tmp_path, redis_url, clip):
    pipeline = Pipeline(tmp_path, redis_url, clip, camera_events={"clips": False})
    loop_events_dir(pipeline)
    try:
        # Both workers' events threads have run retention (at their start) before the kill.
        hand_over(pipeline)
        logs = "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("worker*.log"))
        assert "Exception in thread events" not in logs, logs
        assert "service thread died" not in logs, logs
        if "retention failed" in logs:  # else retention itself skips what it cannot stat
            assert "Too many levels of symbolic links" in logs, logs
    finally:
        pipeline.stop_all()


# A real worker (framecast worker's own main) with one more service thread that hits a real fault:
# it reads a byte from a pipe every 50 ms, and once the file $DOOM_FILE exists the pipe's read end is
# closed under it, so os.read raises EBADF. The worker's own threads no longer die of such faults
# (each catches its errors per item): the fault is in a thread the test adds, and the death handling
# it meets is the worker's.
DOOMED_WORKER = textwrap.dedent("""
    import os, sys, threading
    from common import threads
    from framecast.worker_role import main
    r, w = os.pipe()
    os.write(w, b"x" * 60000)
    def read_frames():
        while True:
            os.read(r, 1)
            threading.Event().wait(0.05)
    def doom():
        while not os.path.exists(os.environ["DOOM_FILE"]):
            threading.Event().wait(0.05)
        os.close(r)
    threads.start_thread(read_frames, "reader-" + os.environ["DOOM_CAM"], cam=os.environ["DOOM_CAM"])
    threading.Thread(target=doom, daemon=True).start()
    sys.exit(main(sys.argv[1:]))
""")


def test_a_worker_whose_service_thread_dies_exits_70_and_the_camera_moves_to_the_other_worker(
        tmp_path, redis_url, clip):
    pipeline = Pipeline(tmp_path, redis_url, clip, camera_events={"clips": False})
    doom_file, doomed_log = tmp_path / "doom", tmp_path / "doomed.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FRAMECAST_INSTANCE_ID": f"doomed-{os.getpid()}",
           "DOOM_CAM": CAM, "DOOM_FILE": str(doom_file)}
    with open(doomed_log, "ab") as log:
        doomed = subprocess.Popen([sys.executable, "-c", DOOMED_WORKER, "--config", str(pipeline.config)],
                                  cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        pipeline.procs["doomed"] = doomed  # Pipeline.wait fails at once if it exits early
        pipeline.wait(lambda: pipeline.owner() == "doomed", 60, "the doomed worker to own the camera")
        pipeline.start("worker1", "worker")
        pipeline.start("producer", "producer", "--once")
        pipeline.wait(lambda: pipeline.client.xlen(Keys().detections(CAM)) >= 10, 60, "tracked frames")
        assert pipeline.owner() == "doomed"
        held = pipeline.client.get(Keys().tracker_lease(CAM))
        del pipeline.procs["doomed"]
        doom_file.touch()
        doomed_at = time.monotonic()
        try:
            code = doomed.wait(timeout=30)  # DEATH_GRACE (10 s) at most, with slack for a loaded machine
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker with a dead thread did not exit\n{doomed_log.read_text()}")
        text = doomed_log.read_text()
        assert code == 70, text
        assert "service thread died" in text and f"reader-{CAM}" in text and "Bad file descriptor" in text, text
        assert "worker stopped" in text, text  # the clean stop ran: frames in hand acked, deregistered
        # Its lease was released on the way out (not left to run out): gone, or worker1's already.
        assert pipeline.client.get(Keys().tracker_lease(CAM)) != held
        pipeline.wait(lambda: pipeline.owner() == "worker1", 10, "worker1 to take the camera")
        took = time.monotonic() - doomed_at
        tracked = pipeline.client.xlen(Keys().detections(CAM))
        pipeline.wait(settled(pipeline), 90, "every frame tracked after the hand-over")
        assert pipeline.client.xlen(Keys().detections(CAM)) > tracked
        assert events(pipeline.client)
        print(f"\nworker with a dead thread exited 70; worker1 owned the camera {took:.2f} s after the fault")
    finally:
        if doomed.poll() is None:
            os.kill(doomed.pid, 9)
            doomed.wait(5)
        pipeline.stop_all()
