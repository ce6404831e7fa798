"""Where event snapshots and clips live on disk, and the thread that encodes clips.

Layout: `<events.dir>/<cam>/<event_id>.jpg` (the best snapshot) and `<event_id>.mp4` (the clip), so
any web process with the same volume serves any event, and retention can delete an event's files
together. Files appear atomically (written aside, then renamed).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common.event_files import EventPaths
from common.threads import service_thread
from worker.events.clips import ClipInfo, enforce_retention, write_clip

log = logging.getLogger("framecast.events")


class EventFiles(EventPaths):
    """Atomic writes under one events directory (the paths come from common.event_files, which web
    processes share); safe to share between threads."""

    def write_snapshot(self, cam: str, event_id: str, jpeg: bytes) -> Path:
        path = self.snapshot_path(cam, event_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        part.write_bytes(jpeg)
        os.replace(part, path)
        return path

    def enforce_retention(self, *, max_age: float, max_bytes: int) -> list[Path]:
        if not self.root.exists():
            return []
        return enforce_retention(self.root, max_age=max_age, max_bytes=max_bytes)


class ClipWriter:
    """Encodes clips on its own thread, so the tracking loop never waits for x264.

    `submit` queues a clip (bounded; when full the clip is dropped and counted) and returns at once.
    `on_done(cam, event_id, info_or_None)` runs on the writer's thread after each clip.
    """

    def __init__(self, files: EventFiles, *, fps: float = 10.0, preset: str = "veryfast", crf: int = 26,
                 queue_size: int = 8, on_done: Callable[[str, str, ClipInfo | None], None] | None = None):
        self.files, self.fps, self.preset, self.crf = files, fps, preset, crf
        self.on_done = on_done
        self.stats = {"written": 0, "failed": 0, "dropped": 0, "encode_ms": 0.0, "frames": 0}
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None

    def submit(self, cam: str, event_id: str, frames: Sequence[tuple[float, bytes]]) -> bool:
        try:
            self._queue.put_nowait((cam, event_id, list(frames)))
            return True
        except queue.Full:
            self.stats["dropped"] += 1
            log.warning("clip queue full; clip dropped", extra={"camera": cam, "event": event_id})
            return False

    def start(self) -> ClipWriter:
        self._thread = service_thread(self._run, "clip-writer")
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the queued clips (up to `timeout`), then end the thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Whether every submitted clip was handled within `timeout` (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._write(*job)
            finally:
                self._queue.task_done()

    def _write(self, cam: str, event_id: str, frames: list[tuple[float, bytes]]) -> None:
        info = None
        try:
            path = self.files.clip_path(cam, event_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            info = write_clip(path, frames, fps=self.fps, preset=self.preset, crf=self.crf)
            self.stats["written"] += 1
            self.stats["frames"] += info.frames
            self.stats["encode_ms"] += info.encode_ms
        except Exception as exc:  # noqa: BLE001 - one bad clip must not end the writer
            self.stats["failed"] += 1
            log.warning("clip not written", extra={"camera": cam, "event": event_id, "error": str(exc)})
        if self.on_done is not None:
            self.on_done(cam, event_id, info)
