"""The live video's records in Redis, shared by the encoder (writes) and the web tier (reads).

A camera's video is a sequence of *generations*: one encoding owner's continuous output, numbered by
its lease's fencing token. Each generation has one init segment (ftyp + moov, in the camera's
`video_init` hash) and a run of fragments (moof + mdat, one per encoded frame, in its `video`
stream). A player needs the init segment of a fragment's generation, then fragments from a keyframe
on, in stream order; a new generation (another owner, a new size) needs its own init segment.

    video_init hash: {"g": generation, "init": bytes, "codec": "avc1.64001f", "w": int, "h": int}
    video entry:     {"g": generation, "k": b"1" keyframe | b"0", "m": moof+mdat bytes,
                      "ts": capture time of the frame (epoch ns), "seq": b"<run>:<seq>" of the frame}

`decode_fragment` / `decode_init` never raise anything but VideoRecordError.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import FramecastError

MAX_FRAGMENT_BYTES = 8 * 1024 * 1024
MAX_INIT_BYTES = 64 * 1024
MIME = "video/mp4"


class VideoRecordError(FramecastError):
    """A video record in Redis that is not what common/video.py writes."""


@dataclass(frozen=True)
class Init:
    generation: int
    data: bytes  # ftyp + moov
    codec: str  # RFC 6381 codec string, e.g. avc1.64001f
    width: int
    height: int

    @property
    def mime(self) -> str:
        return f'{MIME}; codecs="{self.codec}"'

    def fields(self) -> dict[bytes, bytes]:
        return {b"g": str(self.generation).encode(), b"init": self.data, b"codec": self.codec.encode(),
                b"w": str(self.width).encode(), b"h": str(self.height).encode()}


@dataclass(frozen=True)
class Fragment:
    generation: int
    keyframe: bool
    data: bytes  # moof + mdat
    ts: int  # capture time of the frame, epoch ns
    seq: bytes = b""  # b"<run>:<seq>" of the frame it encodes

    def fields(self) -> dict[bytes, bytes]:
        return {b"g": str(self.generation).encode(), b"k": b"1" if self.keyframe else b"0",
                b"m": self.data, b"ts": str(self.ts).encode(), b"seq": self.seq}


def _int(fields: dict, key: bytes, what: str) -> int:
    raw = fields.get(key)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise VideoRecordError(f"{what}: field {key.decode()!r} is not an integer") from None


def decode_init(fields: dict[bytes, bytes]) -> Init:
    """The init record from its hash fields (HGETALL); VideoRecordError when it is not one."""
    data, codec = fields.get(b"init"), fields.get(b"codec")
    if not isinstance(data, bytes) or not data or len(data) > MAX_INIT_BYTES:
        raise VideoRecordError("video init: no init segment, or one over 64 KiB")
    if not isinstance(codec, bytes) or not codec or len(codec) > 64:
        raise VideoRecordError("video init: no codec string")
    try:
        codec_text = codec.decode("ascii")
    except UnicodeDecodeError:
        raise VideoRecordError("video init: codec string is not ASCII") from None
    return Init(_int(fields, b"g", "video init"), data, codec_text,
                _int(fields, b"w", "video init"), _int(fields, b"h", "video init"))


def decode_fragment(fields: dict[bytes, bytes]) -> Fragment:
    """A fragment from its stream entry's fields; VideoRecordError when it is not one."""
    data = fields.get(b"m")
    if not isinstance(data, bytes) or not data or len(data) > MAX_FRAGMENT_BYTES:
        raise VideoRecordError("video fragment: no data, or over 8 MiB")
    key = fields.get(b"k")
    if key not in (b"0", b"1"):
        raise VideoRecordError("video fragment: field 'k' is not 0 or 1")
    seq = fields.get(b"seq", b"")
    return Fragment(_int(fields, b"g", "video fragment"), key == b"1", data,
                    _int(fields, b"ts", "video fragment"), seq if isinstance(seq, bytes) else b"")
