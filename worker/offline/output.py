"""Where `framecast process` puts its results, in the video's order whatever order they come back
in: the annotated video, the JSONL detections, the counts."""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
from tqdm import tqdm

log = logging.getLogger("framecast.process")
UNDECODABLE = "undecodable frame"


class AnnotatedOutput:
    """Appends frames to the video and the JSONL file in the order given, and counts them."""

    def __init__(self, writer_factory, fps: float, jsonl=None, total: int | None = None):
        self._writer_factory = writer_factory
        self._writer = None
        self.fps = fps
        self._jsonl = jsonl
        self.counts = {"frames": 0, "corrupt": 0, "detections": 0}
        self._progress = tqdm(total=total, unit="frame", disable=not sys.stderr.isatty(), dynamic_ncols=True)
        self._started = time.perf_counter()
        self._cpu_started = time.process_time()  # the whole process: every stage's thread

    def write(self, index: int, image: np.ndarray, detections: list[dict], error: str | None = None) -> None:
        """Append frame `index` (annotated, or left as it was when `error` says why)."""
        if self._writer is None:
            self._writer = self._writer_factory(image.shape[1], image.shape[0])
        self._writer.write(image)
        self.counts["frames"] += 1
        self.counts["detections"] += len(detections)
        if error:
            self.counts["corrupt"] += 1
            log.warning("frame left un-annotated", extra={"frame": index, "error": error})
        if self._jsonl is not None:
            record = {"frame": index, "pts_ms": round(index * 1000.0 / self.fps, 3), "detections": detections}
            if error:
                record["error"] = error
            self._jsonl.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._progress.update(1)

    def lost(self, index: int) -> None:
        """An unreadable frame before any readable one: nothing to write in its place."""
        self.counts["corrupt"] += 1
        log.warning("unreadable frame before any readable one", extra={"frame": index})

    def abort(self) -> None:
        """Give up on the video half-way (an error or an interrupt): its partial file is removed, never
        finished into place."""
        self._progress.close()
        if self._writer is not None:
            getattr(self._writer, "abort", self._writer.release)()
            self._writer = None

    def close(self) -> dict:
        """Finish the video (the run succeeded) and return the counts."""
        self._progress.close()
        if self._writer is not None:
            self._writer.release()
        self.counts["seconds"] = time.perf_counter() - self._started
        self.counts["cpu_seconds"] = time.process_time() - self._cpu_started
        return self.counts


class InOrderWriter:
    """Puts a video's frames back in order as their results arrive, and stands in for unreadable ones.

    Every frame read is `take`n in file order; a readable one is then processed somewhere and its
    result given to `done`, in any order; `flush` writes what is ready from the next frame on. An
    unreadable frame keeps the video's timing with the last readable picture, un-annotated (or is
    only counted before any readable one). `unwritten` (frames read, not yet written) is what a
    caller bounds to keep memory flat.
    """

    def __init__(self, output: AnnotatedOutput):
        self.output = output
        self.next_index = 0
        self.taken = 0
        self._ready: dict[int, tuple[np.ndarray | None, list[dict], str | None]] = {}
        self._last_good: np.ndarray | None = None

    @property
    def unwritten(self) -> int:
        return self.taken - self.next_index

    def take(self, index: int, image: np.ndarray | None) -> bool:
        """Note frame `index` (None: unreadable) as read; True when it is to be processed."""
        self.taken = index + 1
        if image is None:
            self._ready[index] = (self._last_good, [], UNDECODABLE)
            return False
        self._last_good = image
        return True

    def done(self, index: int, image: np.ndarray, detections: list[dict], error: str | None = None) -> None:
        """The result for frame `index`: its annotated picture (or the original, with `error`). A
        second result for a frame already written (a redelivered one) is dropped."""
        if index >= self.next_index:
            self._ready[index] = (image, detections, error)

    def flush(self) -> int:
        """Write the frames that are ready from the next one on; returns how many were written."""
        written = 0
        while self.next_index in self._ready:
            image, detections, error = self._ready.pop(self.next_index)
            if image is None:
                self.output.lost(self.next_index)
            else:
                self.output.write(self.next_index, image, detections, error)
            self.next_index += 1
            written += 1
        return written
