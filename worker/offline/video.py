"""Reading and writing the video files of `framecast process`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

MAX_CORRUPT_RUN = 25  # consecutive unreadable frames before the rest of the file counts as gone


def iter_frames(cap: cv2.VideoCapture, max_corrupt_run: int = MAX_CORRUPT_RUN) -> Iterator[np.ndarray | None]:
    """Frames of an opened capture; None for each frame that could not be decoded between readable ones.

    Failed reads are only reported once a readable frame follows them, so the end of a file (whose frame
    count containers often overstate) never shows up as corrupt frames; `max_corrupt_run` failed reads in
    a row end the file."""
    failed = 0
    while failed <= max_corrupt_run:
        ok, image = cap.read()
        if not ok or image is None:
            failed += 1
            continue
        for _ in range(failed):
            yield None
        failed = 0
        yield image


def open_video(source: Path) -> cv2.VideoCapture | None:
    """An opened capture positioned at the first frame, or None when `source` is missing, not a
    video, or has no readable frame."""
    cap = cv2.VideoCapture(str(source)) if source.is_file() else None
    if cap is None or not cap.isOpened() or not cap.grab():
        return None
    cap.release()
    return cv2.VideoCapture(str(source))


def mp4_writer_factory(output: Path, fps: float):
    """A function (width, height) -> VideoWriter for `output`, called once the first frame's size is known."""

    def factory(width: int, height: int) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise OSError(f"cannot write {output}")
        return writer

    return factory
