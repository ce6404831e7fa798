"""Benchmark 5: `framecast process` against the machine's ceiling for the sample clip.

Each repeat, in fresh processes one right after the other:

- the per-stage CPU cost of a frame (`stage_costs`): decode of the input video, inference with one
  inference thread, annotate, H.264 encode (and the encoder presets, and inference with and without
  LiteRT's XNNPACK delegate). The ceiling is `cores / sum of the stages` frames/s: all cores busy,
  no time lost to waiting or coordination;
- `framecast process` in its default layout and in the other layouts worth trying (detector threads x
  inference threads), its frames/s as it reports them (model loaded to file closed);
- a plain single-process loop (read, detect, annotate, write, one frame at a time).

The target is the default layout at >= 0.75 of the ceiling, as the median of the per-repeat ratios.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

from bench.harness import FRAMECAST, REPO, interleaved, median_ratio
from common import assets

TARGET = 0.75
PRESETS = ("ultrafast", "superfast", "veryfast")


def single_process_loop(src: str, dst: str) -> int:
    """The baseline: one process, one frame at a time, no overlap. Returns the frame count."""
    from common.config import CameraConfig
    from worker.detect import create_detector
    from worker.detect.pipeline import FrameProcessor
    from worker.offline.video import mp4_writer_factory

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
            writer = mp4_writer_factory(Path(dst), fps)(out.shape[1], out.shape[0])
        writer.write(out)
        count += 1
    cap.release()
    if writer is not None:
        writer.release()
    return count


def _cpu_ms_per(count: int, fn) -> float:
    started = time.process_time()
    fn()
    return (time.process_time() - started) * 1000.0 / max(1, count)


def _invoke_ms(resolver, threads: int, runs: int = 30) -> dict:
    """Wall and CPU ms of one bare `invoke` of the bundled model (input tensor already set)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(assets.model_path()), num_threads=threads,
                              experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    tensor = interpreter.get_input_details()[0]
    interpreter.set_tensor(tensor["index"], np.full(tensor["shape"], 127, tensor["dtype"]))
    interpreter.invoke()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        interpreter.invoke()
    delegated = sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
    return {"wall_ms": (time.perf_counter() - wall) * 1000 / runs, "cpu_ms": (time.process_time() - cpu) * 1000 / runs,
            "delegate_nodes": delegated, "input_dtype": str(np.dtype(tensor["dtype"]))}


def stage_costs(src: str, workdir: str, frames: int) -> dict:
    """CPU ms per frame of each stage on one thread, over the first `frames` frames of `src`."""
    from ai_edge_litert.interpreter import OpResolverType

    from common.config import CameraConfig
    from worker.detect.factory import load_detector
    from worker.detect.media import H264Writer
    from worker.detect.pipeline import FrameProcessor
    from worker.offline.video import CRF, PRESET

    cap = cv2.VideoCapture(src)
    images = []
    decode = _cpu_ms_per(frames, lambda: images.extend(cap.read()[1] for _ in range(frames)))
    cap.release()
    camera = CameraConfig(id="offline", source=src, overlay=True, detection={"threads": 1})
    processor = FrameProcessor(camera, load_detector(camera.detection))
    found = []
    infer = _cpu_ms_per(len(images), lambda: found.extend(processor.detect(image) for image in images))
    annotated = []
    annotate = _cpu_ms_per(len(images), lambda: annotated.extend(
        processor.annotate(image, dets, ts_ns=i * 100_000_000) for i, (image, dets) in enumerate(zip(images, found, strict=True))))

    def encode(preset: str) -> float:
        writer = H264Writer(Path(workdir) / f"stage-{preset}.mp4", fps=10.0, preset=preset, crf=CRF)
        return _cpu_ms_per(len(annotated), lambda: ([writer.write(image) for image in annotated], writer.release()))

    presets = {preset: encode(preset) for preset in PRESETS}
    stages = {"decode": decode, "inference": infer, "annotate": annotate, "encode": presets[PRESET]}
    kernels = {name: {threads: _invoke_ms(resolver, threads) for threads in (1, 2)}
               for name, resolver in (("xnnpack", OpResolverType.AUTO),
                                      ("builtin", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))}
    return {"stages_ms": stages, "preset": PRESET, "presets_ms": presets, "kernels": kernels,
            "frame": list(images[0].shape)}


def cut_clip(workdir: Path, frames: int, fps: float | None = None) -> Path:
    """The first `frames` frames of the sample clip as an MJPEG AVI, at its own rate or `fps`."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"sample-{frames}{f'-{fps:g}fps' if fps else ''}.avi"
    cap = cv2.VideoCapture(str(assets.sample_path()))
    writer = None
    for _ in range(frames):
        ok, image = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps or cap.get(cv2.CAP_PROP_FPS),
                                     (image.shape[1], image.shape[0]))
        writer.write(image)
    writer.release()
    cap.release()
    return path


def _run(cmd: list[str]) -> dict:
    """Run a fresh process; its wall seconds and output."""
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    return {"wall_s": time.perf_counter() - started, "stdout": done.stdout, "stderr": done.stderr}


def layouts(cores: int) -> list[tuple[int, int]]:
    """(detector threads, inference threads each): the default first, then the alternatives."""
    from worker.offline.pool import DEFAULT_INFERENCE_THREADS, default_jobs

    chosen = [(default_jobs(), DEFAULT_INFERENCE_THREADS), (cores, 1), (1, 1), (1, 2), (max(1, cores // 2), 2),
              (cores + 2, 1)]
    return list(dict.fromkeys(chosen))


def run(workdir: Path, repeats: int, frames: int) -> list[dict]:
    clip = str(cut_clip(workdir, frames))
    out = str(workdir / "out.mp4")
    cores = os.cpu_count() or 1
    stage_frames = min(frames, 200)
    stage_cmd = [sys.executable, "-c", "import json; from bench.offline import stage_costs; "
                 f"print(json.dumps(stage_costs({clip!r}, {str(workdir)!r}, {stage_frames})))"]
    loop_cmd = [sys.executable, "-c", f"from bench.offline import single_process_loop; "
                                      f"single_process_loop({clip!r}, {out!r})"]
    costs: list[dict] = []
    runs: dict = {"stage_costs": lambda: costs.append(_run(stage_cmd)) or 0.0}
    results: dict[str, list[dict]] = {}
    for jobs, threads in layouts(cores):
        name = f"{jobs}x{threads}"
        results[name] = []
        runs[name] = (lambda name=name, cmd=[*FRAMECAST, "process", clip, "-o", out, "--jobs", str(jobs),
                                             "--threads", str(threads)]: results[name].append(_run(cmd)) or 0.0)
    loop: list[dict] = []
    runs["loop"] = lambda: loop.append(_run(loop_cmd)) or 0.0
    interleaved(repeats, runs)

    parsed = [json.loads(c["stdout"]) for c in costs]
    xnnpack = ["XNNPACK delegate" in c["stderr"] for c in costs]
    ceilings = [cores * 1000.0 / sum(p["stages_ms"].values()) for p in parsed]
    fps = {name: [_reported(r["stderr"])[0] for r in rs] for name, rs in results.items()}
    cpu = {name: [_reported(r["stderr"])[1] for r in rs] for name, rs in results.items()}
    default = next(iter(results))
    ratio = median_ratio(fps[default], ceilings)
    best = max(fps, key=lambda name: statistics.median(fps[name]))
    stage_ms = {stage: statistics.median(p["stages_ms"][stage] for p in parsed) for stage in parsed[0]["stages_ms"]}
    total_ms = sum(stage_ms.values())
    kernels = {f"{name}_{threads}t_{kind}": statistics.median(p["kernels"][name][str(threads)][kind] for p in parsed)
               for name in ("xnnpack", "builtin") for threads in (1, 2) for kind in ("wall_ms", "cpu_ms")}
    figures = {
        "ceiling_fps": statistics.median(ceilings),
        **{f"stage_{k}_cpu_ms": v for k, v in stage_ms.items()},
        "inference_share_of_ceiling": stage_ms["inference"] / total_ms,
        **{f"encode_{p}_cpu_ms": statistics.median(c["presets_ms"][p] for c in parsed) for p in PRESETS},
        **{f"process_{name}_fps": statistics.median(v) for name, v in fps.items()},
        "default_layout": default, "best_layout": best,
        "default_vs_ceiling": ratio,
        # achieved / ceiling = (cores kept busy / cores) x (stage CPU / process CPU per frame): the first
        # factor is lost to waiting (or to other work on the machine), the second to overhead.
        "default_cpu_ms_per_frame": statistics.median(cpu[default]),
        "default_cores_busy": statistics.median(f * c / 1000 for f, c in zip(fps[default], cpu[default], strict=True)),
        "stage_cpu_vs_default_cpu": total_ms / statistics.median(cpu[default]),
        "single_process_loop_fps": statistics.median(frames / r["wall_s"] for r in loop),
        "xnnpack_delegate": all(xnnpack), "xnnpack_delegate_nodes": parsed[0]["kernels"]["xnnpack"]["1"]["delegate_nodes"],
        "model_input": parsed[0]["kernels"]["xnnpack"]["1"]["input_dtype"],
        **{f"invoke_{k}": v for k, v in kernels.items()},
    }
    return [{
        "name": f"offline: framecast process vs the machine's ceiling ({frames} frames of the sample clip, "
                f"{'x'.join(map(str, parsed[0]['frame'][1::-1]))}; layouts are detector threads x inference threads)",
        "unit": "frames/s, CPU ms per frame",
        "figures": figures, "target": f"default layout >= {TARGET} x ceiling", "met": ratio >= TARGET,
        "repeats": {"ceiling_fps": ceilings, **fps, **{f"{name}_cpu_ms": v for name, v in cpu.items()},
                    "single_process_loop_s": [r["wall_s"] for r in loop]},
        "stage_costs": parsed, "frames": frames,
    }]


def _reported(stderr: str) -> tuple[float, float]:
    """(frames/s, CPU ms a frame) as `framecast process` reports them: from its models loaded to its
    file closed, CPU of the whole process (every thread)."""
    match = re.search(r"\(([\d.]+) frames/s, ([\d.]+) CPU ms a frame", stderr)
    if match is None:
        raise RuntimeError(f"framecast process did not report its rate: {stderr[-500:]}")
    return float(match.group(1)), float(match.group(2))
