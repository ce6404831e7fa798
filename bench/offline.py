"""Benchmark 5: `framecast process` with --jobs 1 and 2 vs a plain single-process loop over the
same clip (read, detect, annotate, write). All three run as fresh processes, timed end to end."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

from bench.harness import FRAMECAST, REPO, interleaved, median_ratio
from common import assets


def single_process_loop(src: str, dst: str) -> int:
    """The baseline: one process, one frame at a time, no pool. Returns the frame count."""
    from common.config import CameraConfig
    from worker.detect import create_detector
    from worker.detect.pipeline import FrameProcessor

    camera = CameraConfig(id="offline", source=src, overlay=False)
    processor = FrameProcessor(camera, create_detector(camera.detection))
    cap = cv2.VideoCapture(src)
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    writer, count = None, 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        out = processor.annotate(image, processor.detect(image))
        if writer is None:
            writer = cv2.VideoWriter(dst, cv2.VideoWriter_fourcc(*"mp4v"), fps, (out.shape[1], out.shape[0]))
        writer.write(out)
        count += 1
    cap.release()
    if writer is not None:
        writer.release()
    return count


def cut_clip(workdir: Path, frames: int) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"sample-{frames}.avi"
    cap = cv2.VideoCapture(str(assets.sample_path()))
    writer = None
    for _ in range(frames):
        ok, image = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), cap.get(cv2.CAP_PROP_FPS),
                                     (image.shape[1], image.shape[0]))
        writer.write(image)
    writer.release()
    cap.release()
    return path


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run(workdir: Path, repeats: int, frames: int) -> list[dict]:
    clip = str(cut_clip(workdir, frames))
    out = str(workdir / "out.mp4")
    loop_cmd = [sys.executable, "-c", f"from bench.offline import single_process_loop; "
                                      f"single_process_loop({clip!r}, {out!r})"]
    secs = interleaved(repeats, {
        "loop": lambda: _timed(loop_cmd),
        "workers_1": lambda: _timed([*FRAMECAST, "process", clip, "-o", out, "--jobs", "1"]),
        "workers_2": lambda: _timed([*FRAMECAST, "process", clip, "-o", out, "--jobs", "2"]),
    })
    loop_s, one_s, two_s = (statistics.median(secs[k]) for k in ("loop", "workers_1", "workers_2"))
    return [{
        "name": "offline processing (sample clip cut, end to end incl. model load)", "unit": "frames/s",
        "figures": {"single_process_loop": frames / loop_s, "process_workers_1": frames / one_s,
                    "process_workers_2": frames / two_s, "workers_2_vs_loop": median_ratio(secs["loop"], secs["workers_2"]),
                    "workers_1_vs_loop": median_ratio(secs["loop"], secs["workers_1"])},
        "repeats_s": secs, "frames": frames,
    }]
