"""JPEG encode and decode, in one place, with the size check that keeps a hostile header from
allocating gigabytes: the frame's dimensions are read from its header before anything is decoded."""

from __future__ import annotations

import functools
import struct
from typing import NamedTuple

import cv2
import numpy as np

from common.errors import FramecastError

# Start-of-frame markers carry the image size; these three share the SOFn range but are not SOFs.
_NOT_SOF = {0xC4, 0xC8, 0xCC}
# Markers without a length field (TEM, RSTn, SOI, EOI).
_STANDALONE = {0x01, *range(0xD0, 0xDA)}
_DHT = 0xC4


class JpegError(FramecastError):
    """JPEG bytes that cannot be encoded, decoded, or whose size is not what was announced."""


class JpegHeader(NamedTuple):
    """What a JPEG's markers before its first scan say."""

    width: int
    height: int
    huffman_tables: bool  # False for Motion-JPEG frames that rely on the standard tables (no DHT)
    sof_offset: int  # where the start-of-frame segment begins


def header(data: bytes) -> JpegHeader:
    """The JPEG's header, read from its markers without decoding the image.

    Raises JpegError when the bytes are not a JPEG or end before a start-of-frame segment.
    """
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise JpegError(f"not a JPEG ({len(data)} bytes, no start-of-image marker)")
    pos, huffman, size = 2, False, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            if size is not None:  # the size is known; what is past it is the decoder's to refuse
                break
            raise JpegError(f"corrupt JPEG header (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker == _DHT:
            huffman = True
        elif 0xC0 <= marker <= 0xCF and marker not in _NOT_SOF and size is None:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            size = (width, height, pos)
        elif marker == 0xDA:  # start of scan: the tables a decoder needs come before it
            break
        pos += 2 + length
    if size is None:
        raise JpegError(f"corrupt JPEG header (no start-of-frame segment in {len(data)} bytes)")
    return JpegHeader(size[0], size[1], huffman, size[2])


def dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from the JPEG's start-of-frame header, without decoding the image."""
    head = header(data)
    return head.width, head.height


@functools.cache
def _standard_huffman_segment() -> bytes:
    """The DHT segments of the JPEG standard's tables (ITU T.81 K.3), as libjpeg writes them when it
    does not optimise its coding: taken from a tiny image encoded here, not typed in."""
    data = encode(np.zeros((8, 8, 3), dtype=np.uint8), 75)
    segments, pos = [], 2
    while data[pos + 1] != 0xDA:
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if data[pos + 1] == _DHT:
            segments.append(data[pos:pos + 2 + length])
        pos += 2 + length
    return b"".join(segments)


def with_huffman_tables(data: bytes) -> bytes:
    """The JPEG with the standard Huffman tables inserted before its frame header when it has none of
    its own (Motion-JPEG from many cameras leaves them out; not every decoder supplies them)."""
    head = header(data)
    if head.huffman_tables:
        return data
    return data[:head.sof_offset] + _standard_huffman_segment() + data[head.sof_offset:]


def check_size(data: bytes, *, expect: tuple[int, int] | None = None, max_pixels: int | None = None) -> tuple[int, int]:
    """The JPEG's (width, height) after checking them against the announced size and a pixel cap."""
    width, height = dimensions(data)
    if width == 0 or height == 0:
        raise JpegError(f"JPEG header claims an empty image ({width}x{height})")
    if expect is not None and expect != (width, height):
        raise JpegError(f"JPEG header says {width}x{height}, the frame says {expect[0]}x{expect[1]}")
    if max_pixels is not None and width * height > max_pixels:
        raise JpegError(f"JPEG of {width}x{height} exceeds the limit of {max_pixels} pixels")
    return width, height


def decode(data: bytes, *, expect: tuple[int, int] | None = None, max_pixels: int | None = None) -> np.ndarray:
    """BGR image from JPEG bytes; the header is checked (see `check_size`) before decoding.

    Raises JpegError for anything that is not a decodable JPEG of an acceptable size.
    """
    if not data:
        raise JpegError("undecodable JPEG (0 bytes)")
    check_size(data, expect=expect, max_pixels=max_pixels)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise JpegError(f"undecodable JPEG ({len(data)} bytes)")
    return image


def encode(image: np.ndarray, quality: int = 80) -> bytes:
    """JPEG bytes of a BGR image at `quality` (1-100)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise JpegError("JPEG encoding failed")
    return buf.tobytes()
