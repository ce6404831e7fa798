"""The tracking owner's frame output on a real redis-server: frames and checkpoint written together,
in order, and nothing at all once the lease has moved to another owner."""

from __future__ import annotations

import time

import pytest

from common.keys import DETECTIONS_FIELD, FRAME_FIELD, Keys
from tracker.lease import Lease, LeaseLostError
from tracker.output import FrameOutput

CAM = "door"


def frames(first: int, n: int) -> list[tuple[bytes, bytes]]:
    return [(b"jpeg-%d" % i, b'{"seq":%d}' % i) for i in range(first, first + n)]


def test_frames_and_checkpoint_together_and_fenced(redis_client):
    keys = Keys()
    output = FrameOutput(redis_client, keys, CAM, annotated_maxlen=50, detections_maxlen=1000)
    a = Lease(redis_client, keys.tracker_lease(CAM), "a", ttl=0.5)
    b = Lease(redis_client, keys.tracker_lease(CAM), "b", ttl=5.0)
    assert a.acquire()

    assert output.publish(a.value, frames(0, 3), '{"released":[1,2]}') == 3
    assert output.publish(a.value, [], '{"released":[1,3]}') == 0  # a batch of skip markers only
    assert output.publish(a.value, frames(3, 2), None) == 2  # nothing settled: the checkpoint stays
    assert [f[FRAME_FIELD] for _, f in redis_client.xrange(keys.annotated(CAM))] == [b"jpeg-%d" % i for i in range(5)]
    assert [f[DETECTIONS_FIELD] for _, f in redis_client.xrange(keys.detections(CAM))] == \
        [b'{"seq":%d}' % i for i in range(5)]
    assert redis_client.get(keys.tracker_checkpoint(CAM)) == b'{"released":[1,3]}'

    time.sleep(0.7)  # `a` hung past its TTL; `b` owns the camera now
    assert b.acquire()
    with pytest.raises(LeaseLostError):
        output.publish(a.value, frames(5, 2), '{"released":[1,6]}')
    assert redis_client.xlen(keys.annotated(CAM)) == 5 and redis_client.xlen(keys.detections(CAM)) == 5
    assert redis_client.get(keys.tracker_checkpoint(CAM)) == b'{"released":[1,3]}'
    assert output.publish(b.value, frames(5, 1), '{"released":[1,5]}') == 1
    assert redis_client.xlen(keys.detections(CAM)) == 6
