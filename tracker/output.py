"""The tracking owner's frame output: annotated frames, detection records and the checkpoint, written
together in one Lua script fenced by the camera's lease.

One step of the owner (tracker/owner.py) publishes the frames it released, in order, and moves
the checkpoint past them. Both go in one script, which first checks that the lease still holds this
owner's `<owner>:<token>`: Redis applies all of it or none of it, and a former owner that hung past
its TTL writes nothing. A new owner resumes from the checkpoint and skips every frame up to its
`released` (run, seq), which are exactly the frames published before it: across a hand-over each
frame's annotated envelope and detection record are written once. All keys carry the camera's hash
tag, so on a Redis Cluster the script runs on one node.
"""

from __future__ import annotations

import redis

from common.keys import DETECTIONS_FIELD, FRAME_FIELD, Keys
from tracker.lease import LeaseLostError

# KEYS: lease, annotated, detections, checkpoint. ARGV: lease value, annotated maxlen, detections
# maxlen, checkpoint JSON ('' keeps it), then one (envelope, record) pair per frame.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
for i = 5, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', '""" + FRAME_FIELD.decode() + """', ARGV[i])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', '""" + DETECTIONS_FIELD.decode() + """', ARGV[i + 1])
end
if ARGV[4] ~= '' then
  redis.call('SET', KEYS[4], ARGV[4])
end
return (#ARGV - 4) / 2
"""


class FrameOutput:
    """One camera's published frames. Called from that camera's owner thread only."""

    def __init__(self, client: redis.Redis, keys: Keys, cam: str, annotated_maxlen: int, detections_maxlen: int):
        self.keys = [keys.tracker_lease(cam), keys.annotated(cam), keys.detections(cam),
                     keys.tracker_checkpoint(cam)]
        self.maxlens = [annotated_maxlen, detections_maxlen]
        self._publish = client.register_script(_PUBLISH)

    def publish(self, lease_value: str | None, frames: list[tuple[bytes, bytes]], checkpoint: str | None) -> int:
        """XADD each (annotated envelope, detection record) pair in order and SET the checkpoint
        (when given), all or nothing. Returns the frames written; raises LeaseLostError when the
        lease is not held as `lease_value`."""
        if not frames and checkpoint is None:
            return 0
        args: list = [lease_value or "\x00not-held", *self.maxlens, checkpoint or ""]
        for envelope, record in frames:
            args += (envelope, record)
        written = int(self._publish(keys=self.keys, args=args))
        if written < 0:
            raise LeaseLostError("the tracking lease is held by another process")
        return written
