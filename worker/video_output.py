"""Where `framecast process` puts its results: the annotated video, the JSONL detections, counts."""

from __future__ import annotations

import json
import logging
import sys
import time

import numpy as np
from tqdm import tqdm

log = logging.getLogger("framecast.process")


class AnnotatedOutput:
    """Writes frames in the order given; called by the local pool and the --via-redis collector."""

    def __init__(self, writer_factory, fps: float, jsonl=None, total: int | None = None):
        self._writer_factory = writer_factory
        self._writer = None
        self.fps = fps
        self._jsonl = jsonl
        self.counts = {"frames": 0, "corrupt": 0, "detections": 0}
        self._progress = tqdm(total=total, unit="frame", disable=not sys.stderr.isatty(), dynamic_ncols=True)
        self._started = time.perf_counter()

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

    def close(self) -> dict:
        self._progress.close()
        if self._writer is not None:
            self._writer.release()
        self.counts["seconds"] = time.perf_counter() - self._started
        return self.counts
