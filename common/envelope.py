"""The frame envelope: one versioned msgpack map per stream entry, shared by every service.

    {"v": 1, "cam": str, "run": int, "seq": int, "ts": int, "w": int, "h": int, "jpg": bytes,
     "dets": [[label, score, x1, y1, x2, y2, class_id], ...] | None, "meta": {str: scalar}}

Version 2 adds the producer's motion verdict, `"mo": [inspect, [[x1, y1, x2, y2], ...]]`: how the
frame is to be inspected (`full`, `regions`: only where the motion boxes are, `none`: no inference)
and the motion boxes in the frame's pixels. A frame without motion gating is written as version 1
(read as `full`), so a camera with motion off works with workers of the previous release; one with
motion on needs workers that read version 2 (upgrade workers before producers).

`run` identifies one producer run (its start time in epoch ns) and `seq` counts frames within it, so
(run, seq) orders a camera's frames even across producer restarts. `ts` is the capture time in epoch
ns. `dets` is None on raw frames and a list (possibly empty) on annotated ones. Decoding never raises
anything but EnvelopeError.

Stage timing rides in `meta["t"]`: {mark: microseconds after `ts`}, one mark per stage end (MARKS),
written by whoever finished the stage. Offsets from the capture time rather than epoch ns keep each
mark a 1-5 byte msgpack integer instead of 9 and make every duration a subtraction; microseconds are
finer than any stage. `meta` is a free-form map, so version 1 readers take frames with marks and
frames without marks alike (no version bump). Marks written on different hosts
differ by the hosts' clock offset: `transit` (producer to worker) carries it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgpack

from common.camera_id import CAMERA_ID_RE
from common.errors import EnvelopeError

VERSION = 2
VERSIONS = (1, 2)  # what this build reads; it writes 1 for a frame without a motion verdict
MAX_ENVELOPE_BYTES = 16 * 1024 * 1024  # a 4K JPEG at high quality is ~3 MB
MAX_DIMENSION = 16384
MAX_DETECTIONS = 1000
MAX_MOTION_BOXES = 64
INSPECT_FULL, INSPECT_REGIONS, INSPECT_NONE = "full", "regions", "none"
INSPECTIONS = (INSPECT_FULL, INSPECT_REGIONS, INSPECT_NONE)
_JPEG_SOI = b"\xff\xd8"
_REQUIRED = ("v", "cam", "run", "seq", "ts", "w", "h", "jpg")
TIMING = "t"  # the meta key of the stage marks
# The stage marks in pipeline order (each is the end of the stage of the same index in STAGES):
# producer: motion found, JPEG encoded, batch handed to Redis; worker: entry read, decoded, detected,
# annotated, JPEG re-encoded, annotated frame handed to Redis. The capture time (`ts`) is the start of
# the first. `moved` is written only by a camera with motion gating: without it, `encode` starts at
# the capture time.
MARKS = ("moved", "encoded", "sent", "read", "decoded", "detected", "annotated", "reencoded", "published")
STAGES = ("motion", "encode", "queue", "transit", "decode", "detect", "annotate", "reencode", "publish")
OPTIONAL_MARKS = frozenset({"moved"})
# A frame's own work on the worker: what remains of its latency beyond these is waiting ("added").
COMPUTE_STAGES = ("decode", "detect", "annotate", "reencode")


@dataclass(frozen=True)
class Detection:
    """One detected object; box in pixel coordinates (x1, y1, x2, y2) of the frame it belongs to."""

    label: str
    score: float
    box: tuple[int, int, int, int]
    class_id: int = -1

    def to_list(self) -> list:
        return [self.label, round(float(self.score), 4), *map(int, self.box), int(self.class_id)]

    def to_dict(self) -> dict:
        return {"label": self.label, "score": round(float(self.score), 4), "box": list(map(int, self.box)),
                "class_id": int(self.class_id)}

    @classmethod
    def from_list(cls, item: Any) -> Detection:
        if not isinstance(item, (list, tuple)) or len(item) != 7:
            raise EnvelopeError("detection must be [label, score, x1, y1, x2, y2, class_id]")
        label, score, x1, y1, x2, y2, class_id = item
        if not isinstance(label, str) or not isinstance(score, (int, float)):
            raise EnvelopeError("detection label must be a string and score a number")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (x1, y1, x2, y2, class_id)):
            raise EnvelopeError("detection box and class_id must be integers")
        return cls(label, float(score), (x1, y1, x2, y2), class_id)


@dataclass(frozen=True, slots=True)
class Motion:
    """The producer's motion verdict on a frame: how to inspect it, and where it moved (pixel boxes)."""

    inspect: str = INSPECT_FULL
    boxes: tuple[tuple[int, int, int, int], ...] = ()

    def to_wire(self) -> list:
        return [self.inspect, [list(box) for box in self.boxes]]

    @classmethod
    def from_wire(cls, item: Any, width: int, height: int) -> Motion:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or item[0] not in INSPECTIONS:
            raise EnvelopeError(f"field 'mo' must be [inspect, boxes] with inspect one of {', '.join(INSPECTIONS)}")
        inspect, raw_boxes = item
        if not isinstance(raw_boxes, (list, tuple)) or len(raw_boxes) > MAX_MOTION_BOXES:
            raise EnvelopeError(f"motion boxes must be a list of at most {MAX_MOTION_BOXES}")
        boxes = []
        for box in raw_boxes:
            if (not isinstance(box, (list, tuple)) or len(box) != 4
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)):
                raise EnvelopeError("a motion box must be [x1, y1, x2, y2] integers")
            x1, y1, x2, y2 = box
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                raise EnvelopeError("a motion box must lie inside the frame, x1 < x2 and y1 < y2")
            boxes.append((x1, y1, x2, y2))
        return cls(inspect, tuple(boxes))


@dataclass(frozen=True)
class Frame:
    """A JPEG frame of one camera with its identity, timing and (on annotated frames) detections."""

    cam: str
    run: int
    seq: int
    ts: int
    width: int
    height: int
    jpeg: bytes
    detections: list[Detection] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    motion: Motion | None = None  # the producer's verdict; None: inspect the full frame

    @property
    def inspect(self) -> str:
        """How this frame is to be inspected: `full` unless the producer's motion verdict says otherwise."""
        return self.motion.inspect if self.motion is not None else INSPECT_FULL

    @property
    def order(self) -> tuple[int, int]:
        """Sort key of a camera's frames: later producer runs, then higher sequence numbers, come later."""
        return (self.run, self.seq)

    def annotated(self, jpeg: bytes, detections: list[Detection], **meta: Any) -> Frame:
        """A copy carrying the annotated JPEG and detections; identity and capture time are kept."""
        merged = dict(self.meta)
        merged.update(meta)
        return Frame(self.cam, self.run, self.seq, self.ts, self.width, self.height, jpeg,
                     list(detections), merged, self.motion)

    def stamped(self, **marks_ns: int) -> Frame:
        """A copy with stage marks (MARKS names, epoch ns) added to `meta["t"]` as microseconds after capture."""
        timing = dict(self.meta.get(TIMING) or {})
        for name, ns in marks_ns.items():
            if name not in MARKS:
                raise ValueError(f"unknown stage mark {name!r}")
            timing[name] = (int(ns) - self.ts) // 1000
        return Frame(self.cam, self.run, self.seq, self.ts, self.width, self.height, self.jpeg,
                     self.detections, {**self.meta, TIMING: timing}, self.motion)

    def marks_us(self) -> dict[str, int]:
        """The frame's stage marks (microseconds after capture) in pipeline order; a mark that is
        missing or not an integer (an older or foreign writer) is left out."""
        timing = self.meta.get(TIMING)
        if not isinstance(timing, dict):
            return {}
        return {name: timing[name] for name in MARKS
                if isinstance(timing.get(name), int) and not isinstance(timing.get(name), bool)}

    def stage_ms(self) -> dict[str, float]:
        """Duration of each stage whose start and end marks are both present (ms, pipeline order)."""
        marks = self.marks_us()
        out = {}
        previous: int | None = 0  # the capture time
        for mark, stage in zip(MARKS, STAGES, strict=True):
            value = marks.get(mark)
            if value is None and mark in OPTIONAL_MARKS:
                continue
            if value is not None and previous is not None:
                out[stage] = (value - previous) / 1000.0
            previous = value
        return out


def encode(frame: Frame) -> bytes:
    """Serialise a frame to envelope bytes. Called by producers and workers before XADD."""
    payload = {
        "v": 1 if frame.motion is None else VERSION,
        "cam": frame.cam,
        "run": int(frame.run),
        "seq": int(frame.seq),
        "ts": int(frame.ts),
        "w": int(frame.width),
        "h": int(frame.height),
        "jpg": bytes(frame.jpeg),
        "dets": None if frame.detections is None else [d.to_list() for d in frame.detections],
        "meta": dict(frame.meta),
    }
    if frame.motion is not None:
        payload["mo"] = frame.motion.to_wire()
    data = msgpack.packb(payload, use_bin_type=True)
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"frame of {len(data)} bytes exceeds the {MAX_ENVELOPE_BYTES}-byte limit; "
                            "lower max_width or jpeg_quality")
    return data


def _int(payload: dict, key: str, low: int, high: int) -> int:
    value = payload[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise EnvelopeError(f"field {key!r} must be an integer in [{low}, {high}]")
    return value


def decode(data: bytes, *, max_bytes: int = MAX_ENVELOPE_BYTES) -> Frame:
    """Parse envelope bytes into a Frame; raise EnvelopeError on anything malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EnvelopeError(f"envelope must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise EnvelopeError(f"envelope of {len(data)} bytes exceeds the {max_bytes}-byte limit")
    if len(data) == 0:
        raise EnvelopeError("empty envelope")
    try:
        payload = msgpack.unpackb(
            bytes(data), raw=False, strict_map_key=True, max_bin_len=max_bytes, max_str_len=65536,
            max_array_len=MAX_DETECTIONS * 8, max_map_len=64, max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise EnvelopeError(f"not a msgpack envelope ({type(exc).__name__})") from None
    if not isinstance(payload, dict):
        raise EnvelopeError("envelope must be a msgpack map")
    missing = [k for k in _REQUIRED if k not in payload]
    if "v" in payload and payload["v"] not in VERSIONS:
        raise EnvelopeError(f"unsupported envelope version {payload['v']!r}; this build reads versions "
                            f"{', '.join(map(str, VERSIONS))}")
    if missing:
        raise EnvelopeError(f"envelope is missing fields: {', '.join(missing)}")
    cam = payload["cam"]
    if not isinstance(cam, str) or not CAMERA_ID_RE.match(cam):
        raise EnvelopeError("field 'cam' is not a valid camera id")
    run = _int(payload, "run", 0, 2**63 - 1)
    seq = _int(payload, "seq", 0, 2**63 - 1)
    ts = _int(payload, "ts", 0, 2**63 - 1)
    width = _int(payload, "w", 1, MAX_DIMENSION)
    height = _int(payload, "h", 1, MAX_DIMENSION)
    jpeg = payload["jpg"]
    if not isinstance(jpeg, bytes) or not jpeg.startswith(_JPEG_SOI):
        raise EnvelopeError("field 'jpg' is not JPEG data")
    raw_dets = payload.get("dets")
    detections = None
    if raw_dets is not None:
        if not isinstance(raw_dets, list) or len(raw_dets) > MAX_DETECTIONS:
            raise EnvelopeError(f"field 'dets' must be a list of at most {MAX_DETECTIONS} detections")
        detections = [Detection.from_list(item) for item in raw_dets]
    meta = payload.get("meta") or {}
    if not isinstance(meta, dict):
        raise EnvelopeError("field 'meta' must be a map")
    motion = Motion.from_wire(payload["mo"], width, height) if payload["v"] >= 2 and "mo" in payload else None
    return Frame(cam, run, seq, ts, width, height, jpeg, detections, meta, motion)


def detections_record(frame: Frame) -> bytes:
    """The JSON record a worker appends to a camera's detections stream for one processed frame."""
    record = {
        "cam": frame.cam,
        "run": frame.run,
        "seq": frame.seq,
        "ts": frame.ts,
        "width": frame.width,
        "height": frame.height,
        "detections": [d.to_dict() for d in (frame.detections or [])],
    }
    if frame.motion is not None:
        record["inspect"] = frame.motion.inspect
    for key in ("worker", "infer_ms", "work_cpu_ms", "published_ns", "regions"):
        if key in frame.meta:
            record[key] = frame.meta[key]
    stages = frame.stage_ms()
    if stages:
        record["stages_ms"] = {stage: round(ms, 3) for stage, ms in stages.items()}
    return json.dumps(record, separators=(",", ":")).encode()
