"""`framecast process --via-redis`: spread a recorded video over the cluster's workers.

The file's frames are published to a backlog-mode camera's stream without pacing (a bounded number
ahead of the results, so stream trimming never drops an unprocessed frame), and the annotated frames
that workers on any host publish are collected and written back in the original order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import redis

from common import envelope, jpeg
from common.config import Settings
from common.envelope import Frame
from common.errors import FramecastError
from common.keys import FRAME_FIELD, Keys
from common.registry import live_members
from worker.offline.output import AnnotatedOutput, InOrderWriter

STALL_TIMEOUT = 60.0


class ClusterError(FramecastError):
    """The cluster cannot take the job (wrong camera mode, no worker serving it, workers stopped)."""


def check_cluster(settings: Settings, client: redis.Redis, cam: str) -> None:
    """Refuse early, with what to do, when the job could never finish."""
    camera = settings.camera(cam)
    if camera.mode != "backlog":
        raise ClusterError(f"camera {cam!r} must have `mode: backlog` to process files through Redis "
                           "(live mode skips frames)")
    keys = Keys(settings.key_prefix)
    if not any(cam in w.get("cameras", []) for w in live_members(client, keys, "worker")):
        raise ClusterError(f"no live worker serves camera {cam!r}: start `framecast worker --camera {cam}`")


def process_via_redis(frames: Iterator[np.ndarray | None], writer_factory, fps: float, settings: Settings,
                      client: redis.Redis, cam: str, jsonl=None, total: int | None = None,
                      quality: int = 95) -> dict:
    """Publish `frames` (None: unreadable) to camera `cam`, collect the annotated results, write them
    in order. Returns counts."""
    keys = Keys(settings.key_prefix)
    frames_key, annotated_key = keys.frames(cam), keys.annotated(cam)
    streams = settings.streams
    window = max(1, min(64, streams.frames_maxlen // 2, streams.annotated_maxlen // 2))
    run = time.time_ns()
    newest = client.xrevrange(annotated_key, count=1)
    read_from = newest[0][0] if newest else b"0-0"
    writer = InOrderWriter(AnnotatedOutput(writer_factory, fps, jsonl, total))
    last_progress = time.monotonic()
    source = enumerate(frames)
    exhausted = False
    try:
        while not exhausted or writer.unwritten:
            while not exhausted and writer.unwritten < window:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                index, image = item
                if writer.take(index, image):
                    frame = Frame(cam, run, index, int(run + index * 1e9 / fps), image.shape[1], image.shape[0],
                                  jpeg.encode(image, quality))
                    client.xadd(frames_key, {FRAME_FIELD: envelope.encode(frame)},
                                maxlen=streams.frames_maxlen, approximate=True)
            reply = client.xread({annotated_key: read_from}, count=window, block=500)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    read_from = entry_id
                    done = envelope.decode(fields[FRAME_FIELD])
                    if done.run == run:
                        writer.done(done.seq, jpeg.decode(done.jpeg), [d.to_dict() for d in done.detections or []])
                        last_progress = time.monotonic()
            if writer.flush():
                last_progress = time.monotonic()
            if time.monotonic() - last_progress > STALL_TIMEOUT:
                raise ClusterError(f"no result for frame {writer.next_index} in {STALL_TIMEOUT:.0f} s: are the "
                                   f"workers serving {cam!r} still running? (see its dead-letter stream too)")
    except BaseException:
        writer.output.abort()  # a partial video is removed, never finished into place
        raise
    return writer.output.close()
