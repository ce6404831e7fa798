"""`framecast process --via-redis`: spread a recorded video over the cluster's workers.

The file's frames are published to a backlog-mode camera's stream without pacing (a bounded number
ahead of the results, so stream trimming never drops an unprocessed frame), and the annotated frames
that workers on any host publish are collected and written back in the original order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import cv2
import numpy as np
import redis

from common import envelope
from common.config import Settings
from common.envelope import Frame
from common.errors import FramecastError
from common.keys import FRAME_FIELD, Keys
from common.registry import live_members
from worker.video_output import AnnotatedOutput

log = logging.getLogger("framecast.process")
STALL_TIMEOUT = 60.0


class ClusterError(FramecastError):
    """The cluster cannot take the job (wrong camera mode, no worker serving it, workers stopped)."""


def check_cluster(settings: Settings, client: redis.Redis, camera_id: str) -> None:
    """Refuse early, with what to do, when the job could never finish."""
    camera = settings.camera(camera_id)
    if camera.mode != "backlog":
        raise ClusterError(f"camera {camera_id!r} must have `mode: backlog` to process files through Redis "
                           "(live mode skips frames)")
    keys = Keys(settings.key_prefix)
    if not any(camera_id in w.get("cameras", []) for w in live_members(client, keys, "worker")):
        raise ClusterError(f"no live worker serves camera {camera_id!r}: start `framecast worker --camera {camera_id}`")


def process_via_redis(frames: Iterator[np.ndarray | None], writer_factory, fps: float, settings: Settings,
                      client: redis.Redis, camera_id: str, jsonl=None, total: int | None = None,
                      quality: int = 95) -> dict:
    """Publish `frames`, collect the annotated results in order, write them. Returns counts."""
    keys = Keys(settings.key_prefix)
    frames_key, annotated_key = keys.frames(camera_id), keys.annotated(camera_id)
    streams = settings.streams
    window = max(1, min(64, streams.frames_maxlen // 2, streams.annotated_maxlen // 2))
    run = time.time_ns()
    newest = client.xrevrange(annotated_key, count=1)
    read_from = newest[0][0] if newest else b"0-0"
    output = AnnotatedOutput(writer_factory, fps, jsonl, total)
    results: dict[int, Frame] = {}
    decided: dict[int, tuple[np.ndarray | None, str]] = {}  # undecodable in the file: not sent
    next_to_write = published = 0
    last_good: np.ndarray | None = None
    last_progress = time.monotonic()
    source = enumerate(frames)
    exhausted = False
    try:
        while not exhausted or next_to_write < published:
            while not exhausted and published - next_to_write < window:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                index, image = item
                if image is None:
                    decided[index] = (last_good, "undecodable frame")
                else:
                    last_good = image
                    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
                    frame = Frame(camera_id, run, index, int(run + index * 1e9 / fps), image.shape[1],
                                  image.shape[0], jpeg)
                    client.xadd(frames_key, {FRAME_FIELD: envelope.encode(frame)},
                                maxlen=streams.frames_maxlen, approximate=True)
                published = index + 1
            reply = client.xread({annotated_key: read_from}, count=window, block=500)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    read_from = entry_id
                    done = envelope.decode(fields[FRAME_FIELD])
                    if done.run == run:
                        results[done.seq] = done
                        last_progress = time.monotonic()
            while next_to_write in results or next_to_write in decided:
                if next_to_write in decided:
                    image, error = decided.pop(next_to_write)
                    if image is None:
                        output.lost(next_to_write)
                    else:
                        output.write(next_to_write, image, [], error)
                else:
                    done = results.pop(next_to_write)
                    image = cv2.imdecode(np.frombuffer(done.jpeg, np.uint8), cv2.IMREAD_COLOR)
                    output.write(next_to_write, image, [d.to_dict() for d in done.detections or []])
                next_to_write += 1
                last_progress = time.monotonic()
            if time.monotonic() - last_progress > STALL_TIMEOUT:
                raise ClusterError(f"no result for frame {next_to_write} in {STALL_TIMEOUT:.0f} s: are the workers "
                                   f"serving {camera_id!r} still running? (see its dead-letter stream too)")
    finally:
        counts = output.close()
    return counts
