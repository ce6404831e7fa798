"""Reading and writing the video files of `framecast process`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from worker.detect.media import H264Writer

MAX_CORRUPT_RUN = 25  # consecutive unreadable frames before the rest of the file counts as gone
# libx264 settings of the output, measured at 768x576 (bench/offline.py, CPU ms per frame on one
# core, 2-core Xeon): ultrafast 4.2, superfast 7.1, veryfast 8.6, against ~30 for detection there.
# ultrafast keeps encoding a small share of a frame's cost on machines where detection takes ~9 ms;
# its files (~1.2 Mbit/s at 10 fps, CRF 23) are 1.6x superfast's. Its profile (no CABAC, no
# B-frames) is the one every browser and phone decodes.
PRESET, CRF = "ultrafast", 23


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


def mp4_writer_factory(output: Path, fps: float, preset: str = PRESET, crf: int = CRF):
    """A function (width, height) -> writer of H.264 MP4 to `output`, called once the first frame's
    size is known. Frame i starts at exactly i/fps (in a 1/90000 s time base), whatever the rate."""

    def factory(width: int, height: int) -> H264Writer:
        try:
            return H264Writer(output, fps=fps, preset=preset, crf=crf)  # frame i at i/fps
        except (OSError, av.FFmpegError) as exc:
            raise OSError(f"cannot write {output}: {exc}") from None

    return factory
