"""The untracked stream's contract between the detect workers and the tracker: what the workers
write for an event camera (frames detected but not yet tracked), which its tracking owner reads.

For a camera with events, the drawn label must carry the tracked id (`person #12`), and tracking is
sequential while detection is spread over workers; so the workers detect only and publish
`keys.untracked(cam)` entries, and the camera's tracking owner orders, tracks, draws and encodes once:

- a detected frame: field `f`, the frame's envelope with the producer's JPEG unchanged (no
  re-encode), `dets` set and the worker's meta (`worker`, `infer_ms`, `published_ns`);
- a skipped frame (stale live frame, or dead-lettered with a readable envelope): field `s`,
  `b"<run>:<seq>"`, so the owner's reorderer releases the frames after it without waiting.

The writes are built on the worker loop; the owner reads the entries with
`tracker.owner.parse`. Importing this module loads no detection or tracking code.
"""

from __future__ import annotations

import msgpack

from common import envelope
from common.keys import FRAME_FIELD, SKIPPED_FIELD


def untracked_write(key: str, payload: bytes, maxlen: int) -> tuple[str, dict, int]:
    """The (key, fields, maxlen) write of a detected frame's envelope."""
    return key, {FRAME_FIELD: payload}, maxlen


def skip_writes(key: str, entries: list, maxlen: int) -> list[tuple[str, dict, int]]:
    """A skip-marker write for each stream entry (`(id, fields)`) or envelope bytes whose frame
    identity can be read. Garbage cannot say which frame it was: the owner's reorder window covers it."""
    writes = []
    for entry in entries:
        data = entry if isinstance(entry, (bytes, bytearray)) else (entry[1] or {}).get(FRAME_FIELD)
        ident = frame_id(data)
        if ident is not None:
            writes.append((key, {SKIPPED_FIELD: f"{ident[0]}:{ident[1]}"}, maxlen))
    return writes


def frame_id(data: bytes | None) -> tuple[int, int] | None:
    """(run, seq) of an envelope without validating its JPEG, or None when it is not one."""
    if not data:
        return None
    try:
        payload = msgpack.unpackb(bytes(data), raw=False, max_bin_len=envelope.MAX_ENVELOPE_BYTES,
                                  max_str_len=65536, max_array_len=envelope.MAX_DETECTIONS * 8, max_map_len=64,
                                  max_ext_len=0)
        run, seq = payload["run"], payload["seq"]
    except Exception:  # noqa: BLE001 - msgpack raises several unrelated types for bad input
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (run, seq)):
        return None
    return run, seq
