"""Benchmark: the H.264 live view (#20) against MJPEG, for the sample clip's annotated frames.

Three results, one per target of issue #20:

1. bytes per viewer-second and quality: the sample clip's frames go through the producer's JPEG
   encoding (camera jpeg_quality) and the worker's FrameProcessor.process (decode, detect, annotate,
   JPEG at jpeg_quality) offline, as the MJPEG viewer would receive them (web.mjpeg.part framing);
   the decoded annotated JPEGs go into encoder.fmp4.Fragmenter with the default `video:` settings at
   the clip's fps. The fMP4 (init + fragments) is decoded back with PyAV (to BGR, as a player shows
   it) and compared with the annotated JPEG-decoded frames: SSIM (Wang et al., Gaussian 11x11
   sigma 1.5, on luma) and PSNR.
2. encoder CPU: process CPU of JPEG decode + Fragmenter.add per frame against the worker's detection
   CPU per frame (the detector on the same frames); and, with real processes (redis, producer of the
   sample clip, `framecast worker`, `framecast web`), nothing written to the camera's video stream
   and nothing counted by the encoder's metric while nobody watches, fragments while one H.264
   viewer watches, and the time encoding takes to stop after it leaves.
3. fan-out: one `framecast web` process, fragments pre-encoded from the annotated clip written by
   the bench into the camera's video stream at 10 fps in common/video.py's record format (this
   isolates the web tier: no encoder runs), 1/10/100 H.264 viewers of /video/<cam>.mp4 counting the
   moof boxes they receive; the same web process design with 100 MJPEG viewers of /video_feed/<cam>
   fed the same annotated JPEGs at the same rate. Redis commands/s (INFO commandstats delta, the
   bench's own XADD/INFO left out) and web CPU (gunicorn master + its process) per case.
"""

from __future__ import annotations

import asyncio
import io
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import psutil

from bench.harness import REPO, Cluster, free_port, percentile, tree_cpu
from bench.viewers import watch as watch_mjpeg
from common import assets, envelope, jpeg
from common.envelope import Frame
from common.keys import FRAME_FIELD
from common.video_config import VideoConfig

CAM = "bench"
MJPEG_TARGET = 0.15
SSIM_TARGET = 0.95
CPU_TARGET = 0.25
SHARE_TARGET = 0.95


# ---- quality ------------------------------------------------------------------------------------------
def _luma(bgr: np.ndarray) -> np.ndarray:
    """BT.601 luma (full range, as a display sees the picture) in float64."""
    b, g, r = (bgr[..., i].astype(np.float64) for i in range(3))
    return 0.299 * r + 0.587 * g + 0.114 * b


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two luma images (Wang et al. 2004: Gaussian 11x11, sigma 1.5, K1 .01, K2 .03, L 255),
    over the window positions wholly inside the image (5 px border cropped, as 'valid' filtering)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    aa, bb, ab = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (aa + bb + c2))
    return float(ssim_map[5:-5, 5:-5].mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _clip_images(count: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(assets.sample_path()))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    images = []
    while len(images) < count:
        ok, image = cap.read()
        if not ok:
            break
        images.append(image)
    cap.release()
    return images, fps


def annotated_clip(count: int) -> dict:
    """The clip's frames as the pipeline serves them: producer JPEG, worker process(), with the
    detection CPU per frame measured on the same frames."""
    from common.config import CameraConfig
    from producer.encoding import encode_frame
    from worker.detect import create_detector
    from worker.detect.pipeline import FrameProcessor

    images, fps = _clip_images(count)
    camera = CameraConfig(id=CAM, source="sample")
    processor = FrameProcessor(camera, create_detector(camera.detection))
    run, t0 = time.time_ns(), time.time_ns()
    raw = []
    for i, image in enumerate(images):
        data, width, height = encode_frame(image, camera.max_width, camera.jpeg_quality)
        raw.append(Frame(CAM, run, i, t0 + int(i * 1e9 / fps), width, height, data))
    decoded = [jpeg.decode(f.jpeg) for f in raw]
    started = time.process_time()
    for image in decoded:
        processor.detect(image)
    detect_cpu = time.process_time() - started
    started = time.process_time()
    annotated = [processor.process(f, fps=fps) for f in raw]
    worker_cpu = time.process_time() - started
    return {"fps": fps, "frames": annotated, "detect_cpu_ms": detect_cpu * 1000 / len(raw),
            "worker_cpu_ms": worker_cpu * 1000 / len(raw), "overlay": camera.overlay_enabled,
            "jpeg_quality": camera.jpeg_quality, "size": f"{raw[0].width}x{raw[0].height}"}


def encode_clip(frames: list[Frame], fps: float, video: VideoConfig) -> dict:
    """The annotated JPEGs decoded (as the encoder does) and fragmented; CPU of both per frame."""
    from encoder.fmp4 import Fragmenter

    fragmenter = Fragmenter(1, keyframe_interval=video.keyframe_interval, crf=video.crf, preset=video.preset,
                            threads=1)
    pictures, fragments, init = [], [], None
    decode_cpu = add_cpu = 0.0
    try:
        for i, frame in enumerate(frames):
            started = time.process_time()
            image = jpeg.decode(frame.jpeg)
            decode_cpu += time.process_time() - started
            started = time.process_time()
            got_init, fragment = fragmenter.add(image, frame.ts, f"{frame.run}:{frame.seq}".encode())
            add_cpu += time.process_time() - started
            pictures.append(image)
            init = init or got_init
            if fragment is None:
                raise RuntimeError(f"frame {i} gave no fragment")
            fragments.append(fragment)
    finally:
        fragmenter.close()
    n = len(frames)
    return {"init": init, "fragments": fragments, "pictures": pictures,
            "decode_cpu_ms": decode_cpu * 1000 / n, "add_cpu_ms": add_cpu * 1000 / n}


def quality(init, fragments, pictures) -> dict:
    import av

    data = init.data + b"".join(f.data for f in fragments)
    scores, psnrs, psnr_luma = [], [], []
    with av.open(io.BytesIO(data), format="mp4") as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= len(pictures):
                break
            shown = frame.to_ndarray(format="bgr24")
            ref = pictures[i][:shown.shape[0], :shown.shape[1]]
            la, lb = _luma(ref), _luma(shown)
            scores.append(ssim(la, lb))
            psnrs.append(psnr(ref, shown))
            psnr_luma.append(psnr(la, lb))
    return {"decoded": len(scores), "ssim_mean": statistics.fmean(scores), "ssim_min": min(scores),
            "ssim_p5": percentile(scores, 5), "psnr_db_mean": statistics.fmean(psnrs),
            "psnr_luma_db_mean": statistics.fmean(psnr_luma), "psnr_db_min": min(psnrs)}


def _bytes_result(clip: dict, enc: dict, q: dict, video: VideoConfig) -> dict:
    from web import mjpeg

    frames = clip["frames"]
    seconds = len(frames) / clip["fps"]
    mjpeg_bytes = len(mjpeg.OPENING) + sum(len(mjpeg.part(f.jpeg, f.seq, f.ts)) for f in frames)
    h264_bytes = len(enc["init"].data) + sum(len(f.data) for f in enc["fragments"])
    ratio = h264_bytes / mjpeg_bytes
    keyframes = [len(f.data) for f in enc["fragments"] if f.keyframe]
    deltas = [len(f.data) for f in enc["fragments"] if not f.keyframe]
    figures = {"frames": len(frames), "clip_s": seconds, "size": clip["size"], "fps": clip["fps"],
               "jpeg_quality": clip["jpeg_quality"], "overlay": clip["overlay"], "crf": video.crf,
               "preset": video.preset, "keyframe_interval_s": video.keyframe_interval,
               "codec": enc["init"].codec,
               "mjpeg_bytes_per_s": mjpeg_bytes / seconds, "h264_bytes_per_s": h264_bytes / seconds,
               "mjpeg_kbit_s": mjpeg_bytes * 8 / seconds / 1000, "h264_kbit_s": h264_bytes * 8 / seconds / 1000,
               "h264_vs_mjpeg": ratio, "init_bytes": len(enc["init"].data),
               "keyframe_bytes_mean": statistics.fmean(keyframes) if keyframes else 0.0,
               "delta_bytes_mean": statistics.fmean(deltas) if deltas else 0.0, **q}
    return {"name": f"live video bytes: H.264 fMP4 vs MJPEG per viewer-second ({len(frames)} annotated frames "
                    f"of the sample clip, {clip['size']})",
            "unit": "bytes/s, SSIM, dB", "figures": figures,
            "target": f"H.264 bytes/s <= {MJPEG_TARGET} x MJPEG's at SSIM >= {SSIM_TARGET} (mean over frames, "
                      "luma, vs the annotated JPEGs)",
            "met": ratio <= MJPEG_TARGET and q["ssim_mean"] >= SSIM_TARGET and q["decoded"] == len(frames)}
