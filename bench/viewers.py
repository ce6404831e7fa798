"""Many concurrent MJPEG viewers in one asyncio process: each parses its multipart stream and
counts the JPEG parts it receives. Used by the fan-out benchmark."""

from __future__ import annotations

import asyncio
import re

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.I)


async def _view(host: str, port: int, path: str, stop: asyncio.Event, counts: list[int], index: int) -> None:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    chunked = b"chunked" in head.lower()
    buffer = b""
    try:
        while not stop.is_set():
            if chunked:
                size_line = await reader.readline()
                size = int(size_line.strip() or b"0", 16)
                if size == 0:
                    break
                buffer += await reader.readexactly(size)
                await reader.readexactly(2)
            else:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
            while True:  # consume whole parts: headers with Content-Length, then the JPEG
                header_end = buffer.find(b"\r\n\r\n")
                if header_end < 0:
                    break
                match = _LENGTH.search(buffer[:header_end])
                if not match:
                    buffer = buffer[header_end + 4:]
                    continue
                length = int(match.group(1))
                if len(buffer) < header_end + 4 + length:
                    break
                counts[index] += 1
                buffer = buffer[header_end + 4 + length:]
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def watch(host: str, port: int, path: str, viewers: int, seconds: float, settle: float = 2.0) -> list[int]:
    """Open `viewers` streams, let them settle, then count the parts each receives in `seconds`."""
    stop = asyncio.Event()
    counts = [0] * viewers
    tasks = [asyncio.create_task(_view(host, port, path, stop, counts, i)) for i in range(viewers)]
    await asyncio.sleep(settle)
    baseline = list(counts)
    await asyncio.sleep(seconds)
    result = [c - b for c, b in zip(counts, baseline, strict=True)]
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result
