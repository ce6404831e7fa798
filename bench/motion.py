"""Motion-gated detection (#21) in one process: targets 2, 3, 4 and 6 of the issue.

Each clip (`bench/motion_clips.py`: `passing`, `small`, and the busy sample clip as an MJPEG camera
sends it) goes through the CPU-relevant path of the pipeline twice, interleaved per repeat, with the
bundled model on one inference thread:

- always-detect: a camera with `motion.enabled: false` (today's path): the producer passes the
  camera's JPEGs through, the worker decodes, runs the model on the full frame, annotates and
  re-encodes every frame (`FrameProcessor.process`);
- motion-gated: the producer finds motion on the camera's JPEG at reduced scale
  (`MotionDetector.from_jpeg`) and its `InspectionGate` writes the verdict into the frame, and the
  same worker path honours it (full frame, regions, or nothing).

Redis, the envelope and the processes are left out (the same for both; targets 1 and 5, the whole
pipeline, are `bench/motion_pipeline.py`'s). CPU is `time.process_time` around each stage of each frame
(every thread of the process): `motion` (the producer's motion and verdict), `inference` (the model's
calls, regions' crops included) and `worker other` (decode, scene, annotate, re-encode). What each
design published for a frame, detections carried over to uninspected frames included, is compared:

- target 2 (`passing`): every event always-detect finds (a label seen in >= 3 frames, ended after
  2 s unseen: the tracker's defaults `events.min_frames` and `events.lost_after`) is found by the
  gated run (same label, overlapping frames), and gated CPU per frame <= 0.25 x always-detect;
- target 3 (busy): >= 0.98 of always-detect's detections matched on the same frame by the gated run
  (same label, IoU >= 0.5, one to one), and CPU per frame <= 1.1 x;
- target 4 (`small`): person recall against the ground truth (a person box of IoU >= 0.3 with the
  truth, whose box is ~13x32 pixels) with regions >= always-detect's;
- target 6: motion CPU per 768x576 frame <= 1 ms, on the reduced-decode path of an MJPEG camera:
  motion and verdict alone over each clip, as the producer's camera thread runs them with one OpenCV
  thread (producer/main.py), and with OpenCV's default pool beside it, and the decode paths.

    python -m bench.motion [--quick] [--repeats N]     (or python -m bench --only motion)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import motion_clips
from bench.harness import REPO, interleaved, machine, median_ratio, percentile
from bench.motion_clips import iou
from common import jpeg
from common.config import CameraConfig
from common.envelope import Detection, Frame
from worker.detect.base import Detector

T2_CPU, T3_MATCH, T3_CPU, T6_MS = 0.25, 0.98, 1.1, 1.0
MATCH_IOU, RECALL_IOU = 0.5, 0.3
MIN_FRAMES, LOST_AFTER_S = 3, 2.0
STAGES = ("motion", "inference", "worker other")
EPOCH_NS = 1_700_000_000 * 10**9  # capture times: frame i of a clip at EPOCH + i / fps


class TimedDetector(Detector):
    """The shared detector, its calls counted and their CPU summed (regions call it once a region)."""

    def __init__(self, inner: Detector):
        self.inner, self.info = inner, inner.info
        self.calls, self.cpu_s = 0, 0.0

    def detect(self, image):
        started = time.process_time()
        try:
            return self.inner.detect(image)
        finally:
            self.cpu_s += time.process_time() - started
            self.calls += 1


@dataclass
class Run:
    """One design over one clip: what it published for each frame and what each frame cost."""

    detections: list[list[Detection]] = field(default_factory=list)
    cpu_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    kinds: list[str] = field(default_factory=list)  # how each frame was inspected: full, regions, none
    regions: list[list] = field(default_factory=list)  # each frame's regions the model ran on
    passed_through: int = 0  # frames published as the camera's own JPEG (no decode, no re-encode)
    inference_calls: int = 0

    @property
    def inspected(self) -> Counter:
        return Counter(self.kinds)

    def kind_ms(self, kind: str) -> float:
        """Mean CPU ms of the frames inspected as `kind` (nan when none were)."""
        totals = [sum(self.cpu_ms[s][i] for s in STAGES) for i, k in enumerate(self.kinds) if k == kind]
        return statistics.fmean(totals) if totals else float("nan")

    def frame_ms(self) -> float:
        """CPU ms per frame, all stages."""
        return sum(sum(v) for v in self.cpu_ms.values()) / max(1, len(self.detections))

    def stage_ms(self, stage: str) -> float:
        return sum(self.cpu_ms[stage]) / max(1, len(self.detections))


def cameras() -> dict[str, CameraConfig]:
    """The two designs' cameras, each with its own defaults (the overlay is off with motion gating)."""
    common = {"source": "pattern", "detection": {"threads": 1}}
    return {"always": CameraConfig(id="always", motion={"enabled": False}, **common),
            "motion": CameraConfig(id="motion", motion={"enabled": True}, **common)}


def clip_frames(jpegs, fps: float, cam: str = "bench") -> list[Frame]:
    """A camera's raw frames: its JPEGs as they come, captured at `fps`."""
    frames = []
    for seq, data in enumerate(jpegs):
        width, height = jpeg.dimensions(data)
        frames.append(Frame(cam, EPOCH_NS, seq, EPOCH_NS + round(seq * 1e9 / fps), width, height, data))
    return frames


def busy_jpegs(count: int | None, quality: int = 80):
    """The sample clip as an MJPEG camera sends it: each frame a libjpeg JPEG at `quality`."""
    for index, image in enumerate(motion_clips.read_images(motion_clips.busy())):
        if count is not None and index >= count:
            return
        yield jpeg.encode(image, quality)


def run_design(name: str, frames: list[Frame], camera: CameraConfig, detector: Detector) -> Run:
    """One pass of a design over a clip's frames, in capture order, on this thread."""
    from producer.inspection import InspectionGate
    from worker.detect.pipeline import FrameProcessor

    timed = TimedDetector(detector)
    processor = FrameProcessor(camera, timed)
    gate = InspectionGate(camera.motion, cam=camera.id) if name == "motion" else None
    run = Run()
    for frame in frames:
        started = time.process_time()
        if gate is not None:
            verdict = gate.verdict(gate.detector.from_jpeg(frame.jpeg), frame.ts / 1e9, frame.width, frame.height)
            frame = Frame(frame.cam, frame.run, frame.seq, frame.ts, frame.width, frame.height, frame.jpeg,
                          motion=verdict)
        moved = time.process_time()
        inference = timed.cpu_s
        out = processor.process(frame)
        done = time.process_time()
        inference = timed.cpu_s - inference
        run.cpu_ms["motion"].append((moved - started) * 1000)
        run.cpu_ms["inference"].append(inference * 1000)
        run.cpu_ms["worker other"].append((done - moved - inference) * 1000)
        run.detections.append(list(out.detections or []))
        run.kinds.append(out.inspect)
        run.regions.append(out.meta.get("regions") or [])
        run.passed_through += out.jpeg is frame.jpeg
    run.inference_calls = timed.calls
    return run


def matched_fraction(reference: list[list[Detection]], other: list[list[Detection]], threshold: float = MATCH_IOU
                     ) -> tuple[float, int]:
    """Share of `reference`'s detections that `other` has on the same frame (same label, IoU >=
    threshold, each of `other`'s used once, best overlaps first); and how many there were."""
    total = found = 0
    for mine, theirs in zip(reference, other, strict=True):
        total += len(mine)
        pairs = sorted(((iou(a.box, b.box), i, j) for i, a in enumerate(mine) for j, b in enumerate(theirs)
                        if a.label == b.label), reverse=True)
        used_a, used_b = set(), set()
        for overlap, i, j in pairs:
            if overlap >= threshold and i not in used_a and j not in used_b:
                used_a.add(i)
                used_b.add(j)
        found += len(used_a)
    return (found / total if total else 1.0), total


def unmatched(reference: list[list[Detection]], other: Run, threshold: float = MATCH_IOU) -> Counter:
    """Where `reference`'s detections that `other` lacks (same label, IoU >= threshold) were: on a
    full frame, inside one of a regions frame's regions, or outside them (left to what the scene knew)."""
    where = Counter()
    for mine, theirs, kind, regions in zip(reference, other.detections, other.kinds, other.regions, strict=True):
        for det in mine:
            if any(d.label == det.label and iou(det.box, d.box) >= threshold for d in theirs):
                continue
            inside = any(r[0] <= det.box[0] and r[1] <= det.box[1] and det.box[2] <= r[2] and det.box[3] <= r[3]
                         for r in regions)
            where[kind if kind != "regions" else ("regions_inside" if inside else "regions_outside")] += 1
    return where


def events(detections: list[list[Detection]], fps: float, min_frames: int = MIN_FRAMES,
           lost_after_s: float = LOST_AFTER_S) -> list[tuple[str, int, int]]:
    """(label, first frame, last frame) of each event: a label seen in at least `min_frames` frames,
    no gap longer than `lost_after_s` between them."""
    gap = round(lost_after_s * fps)
    found = []
    for label in sorted({d.label for dets in detections for d in dets}):
        seen = [i for i, dets in enumerate(detections) if any(d.label == label for d in dets)]
        start = 0
        for k in range(1, len(seen) + 1):
            if k == len(seen) or seen[k] - seen[k - 1] > gap:
                if k - start >= min_frames:
                    found.append((label, seen[start], seen[k - 1]))
                start = k
    return found


def events_found(reference: list[tuple], other: list[tuple]) -> list[bool]:
    """For each of `reference`'s events, whether `other` has one of the same label overlapping it."""
    return [any(label == lb and first <= ol and of <= last for lb, of, ol in other) for label, first, last in reference]


def recall(detections: list[list[Detection]], truth: dict, label: str = "person", threshold: float = RECALL_IOU
           ) -> float:
    """Share of the ground truth's boxes (every object, every frame) with a `label` detection over them."""
    hits = total = 0
    for obj in truth["objects"]:
        for index, box in obj["boxes"].items():
            total += 1
            hits += any(d.label == label and iou(d.box, box) >= threshold for d in detections[int(index)])
    return hits / total if total else float("nan")


def _compare(clip: str, frames: list[Frame], repeats: int, detector: Detector) -> dict:
    """Both designs over `frames`, interleaved per repeat: the first repeat's runs and every CPU figure."""
    designs = cameras()
    runs: dict[str, list[Run]] = {"always": [], "motion": []}
    interleaved(repeats, {name: (lambda name=name: runs[name].append(run_design(name, frames, designs[name],
                                                                                 detector)) or 0.0)
                          for name in designs})
    cpu = {name: [r.frame_ms() for r in rs] for name, rs in runs.items()}
    return {"clip": clip, "frames": len(frames), "always": runs["always"][0], "motion": runs["motion"][0],
            "cpu": cpu, "ratio": median_ratio(cpu["motion"], cpu["always"]), "runs": runs}


def _figures(cmp: dict) -> dict:
    always, motion = cmp["always"], cmp["motion"]
    inspected = motion.inspected
    return {
        "frames": cmp["frames"],
        "always_cpu_ms_per_frame": statistics.median(cmp["cpu"]["always"]),
        "motion_cpu_ms_per_frame": statistics.median(cmp["cpu"]["motion"]),
        "cpu_ratio": cmp["ratio"],
        **{f"always_{s.replace(' ', '_')}_ms": always.stage_ms(s) for s in STAGES if s != "motion"},
        **{f"motion_{s.replace(' ', '_')}_ms": motion.stage_ms(s) for s in STAGES},
        "frames_full": inspected["full"], "frames_regions": inspected["regions"], "frames_none": inspected["none"],
        "inspected_share": (inspected["full"] + inspected["regions"]) / max(1, cmp["frames"]),
        **{f"motion_{kind}_frame_ms": motion.kind_ms(kind) for kind in ("full", "regions", "none")},
        "frames_passed_through": motion.passed_through,  # the rest of the `none` frames were drawn on
        "inference_calls_always": always.inference_calls, "inference_calls_motion": motion.inference_calls,
    }


def _stages(cmp: dict) -> dict:
    rows = {}
    for design in ("always", "motion"):
        for stage in STAGES:
            values = cmp[design].cpu_ms[stage]
            if design == "always" and stage == "motion":
                continue
            rows[f"{design} {stage}"] = {"p50": percentile(values, 50), "p95": percentile(values, 95),
                                         "frames": len(values)}
    return rows


def run(workdir: Path, repeats: int, quick: bool = False) -> list[dict]:
    from worker.detect import create_detector

    params = motion_clips.QUICK if quick else motion_clips.ClipParams()
    clips = motion_clips.build(params)
    detector = create_detector(cameras()["always"].detection)
    passing_frames = clip_frames(motion_clips.read_jpegs(clips["passing"].path), params.fps)
    busy_frames = clip_frames(busy_jpegs(200 if quick else None), 10.0)
    small_frames = clip_frames(motion_clips.read_jpegs(clips["small"].path), params.fps)
    passing = _compare("passing", passing_frames, repeats, detector)
    busy = _compare("busy", busy_frames, repeats, detector)
    small = _compare("small", small_frames, repeats, detector)
    settings = {name: {"motion_enabled": camera.motion_enabled, "overlay": camera.overlay_enabled,
                       **camera.motion.model_dump(exclude={"enabled", "masks"}), "detection_threads": 1}
                for name, camera in cameras().items()}
    results = []

    fps = params.fps
    reference, gated = events(passing["always"].detections, fps), events(passing["motion"].detections, fps)
    found = events_found(reference, gated)
    truth_windows = [("person", o["first_frame"], o["last_frame"]) for o in clips["passing"].truth["objects"]]
    t2_met = all(found) and passing["ratio"] <= T2_CPU
    results.append({
        "name": "motion 2: mostly idle camera with passing people (motion-gated vs always-detect)",
        "unit": "CPU ms per frame, events",
        "figures": {**_figures(passing), "events_always": len(reference), "events_motion": len(gated),
                    "events_always_found_by_motion": sum(found), "passes_in_truth": len(truth_windows),
                    "passes_always_found": sum(events_found(truth_windows, reference)),
                    "passes_motion_found": sum(events_found(truth_windows, gated))},
        "target": f"every always-detect event found and CPU ratio <= {T2_CPU}", "met": t2_met,
        "stages": _stages(passing), "events": {"always": reference, "motion": gated, "truth": truth_windows},
        "repeats": passing["cpu"]})

    share, total = matched_fraction(busy["always"].detections, busy["motion"].detections)
    missed = unmatched(busy["always"].detections, busy["motion"])
    results.append({
        "name": "motion 3: busy scene (the sample clip as MJPEG, motion-gated vs always-detect)",
        "unit": "CPU ms per frame, share of detections",
        "figures": {**_figures(busy), "detections_always": total, "matched_share": share,
                    **{f"unmatched_{where}": count for where, count in sorted(missed.items())}},
        "target": f"matched >= {T3_MATCH} (same label, IoU >= {MATCH_IOU}) and CPU ratio <= {T3_CPU}",
        "met": share >= T3_MATCH and busy["ratio"] <= T3_CPU, "stages": _stages(busy), "repeats": busy["cpu"]})

    truth = clips["small"].truth
    always_recall, motion_recall = recall(small["always"].detections, truth), recall(small["motion"].detections, truth)
    results.append({
        "name": f"motion 4: small distant person ({params.small_height} px tall in 768x576)",
        "unit": "person recall against the ground truth",
        "figures": {**_figures(small), "recall_always": always_recall, "recall_motion": motion_recall},
        "target": f"recall with regions >= always-detect's (IoU >= {RECALL_IOU} with the truth box)",
        "met": motion_recall >= always_recall, "stages": _stages(small), "repeats": small["cpu"]})

    for result in results:
        result["settings"] = settings
    results.append(_motion_cost({"passing": passing_frames, "busy": busy_frames, "small": small_frames},
                                [passing, busy, small], repeats))
    return results


def producer_motion_ms(frames: list[Frame], camera: CameraConfig, cv_threads: int | None = None
                       ) -> tuple[float, float]:
    """Motion and verdict alone over a camera's frames, as the producer's camera thread runs them:
    (process CPU, the thread's CPU) ms per frame; `cv_threads` sets OpenCV's pool for the loop."""
    import cv2

    from producer.inspection import InspectionGate

    previous = cv2.getNumThreads()
    if cv_threads is not None:
        cv2.setNumThreads(cv_threads)
    try:
        gate = InspectionGate(camera.motion, cam=camera.id)
        process, thread = time.process_time(), time.thread_time()
        for frame in frames:
            gate.verdict(gate.detector.from_jpeg(frame.jpeg), frame.ts / 1e9, frame.width, frame.height)
        return ((time.process_time() - process) * 1000 / len(frames),
                (time.thread_time() - thread) * 1000 / len(frames))
    finally:
        cv2.setNumThreads(previous)


def _motion_cost(clips: dict[str, list[Frame]], comparisons: list[dict], repeats: int) -> dict:
    """Target 6: the producer's motion and verdict on each clip alone, with a pool of one OpenCV thread
    (what producer/main.py sets) and with OpenCV's default pool (whose idle threads cost as much again
    on 2 cores), beside what the same stage cost inside the in-process pipeline runs (which share the
    worker's default pool), and the decode paths for comparison."""
    import cv2

    from producer.motion import MotionDetector, reduction

    camera = cameras()["motion"]
    pool = cv2.getNumThreads()
    measured: dict[str, list[tuple[float, float]]] = {}
    interleaved(repeats, {
        f"{name}_{kind}": (lambda frames=frames, threads=threads, key=f"{name}_{kind}":
                           measured.setdefault(key, []).append(producer_motion_ms(frames, camera, threads)) or 0.0)
        for name, frames in clips.items() for kind, threads in (("one_cv", 1), ("default", None))})
    per_clip = {}
    for name in clips:
        per_clip[f"{name}_one_cv_thread"] = statistics.median(p for p, _ in measured[f"{name}_one_cv"])
        per_clip[f"{name}_default_pool"] = statistics.median(p for p, _ in measured[f"{name}_default"])
        per_clip[f"{name}_default_pool_thread"] = statistics.median(t for _, t in measured[f"{name}_default"])
    mean = {kind: statistics.fmean(per_clip[f"{name}_{kind}"] for name in clips)
            for kind in ("one_cv_thread", "default_pool", "default_pool_thread")}
    in_pipeline = [ms for cmp in comparisons for r in cmp["runs"]["motion"] for ms in r.cpu_ms["motion"]]
    factor, size = reduction(768, 576, MotionDetector().width)
    sample = [f.jpeg for f in clips["busy"][:100]]
    started = time.process_time()
    images = [jpeg.decode(data) for data in sample]
    full_decode = (time.process_time() - started) * 1000 / len(sample)
    started = time.process_time()
    reduced = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_4) for data in sample]
    reduced_decode = (time.process_time() - started) * 1000 / len(reduced)
    detector = MotionDetector()
    started = time.process_time()
    for image in images:
        detector.from_image(image)
    from_image = (time.process_time() - started) * 1000 / len(images)
    return {
        "name": "motion 6: the producer's motion detection per 768x576 frame (MJPEG camera)",
        "unit": "CPU ms per frame",
        "figures": {"motion_cpu_ms": mean["one_cv_thread"], "default_pool_cpu_ms": mean["default_pool"],
                    "default_pool_thread_cpu_ms": mean["default_pool_thread"], "opencv_default_threads": pool,
                    **{f"{key}_ms": value for key, value in per_clip.items()},
                    "in_pipeline_p50_ms": percentile(in_pipeline, 50), "in_pipeline_p95_ms": percentile(in_pipeline, 95),
                    "decode_path": f"libjpeg DCT-scaled grey decode at 1/{factor} ({size[0]}x{size[1]})",
                    "reduced_decode_cpu_ms": reduced_decode, "full_decode_cpu_ms": full_decode,
                    "decoded_camera_from_image_cpu_ms": from_image},
        "target": f"motion_cpu_ms <= {T6_MS} (process CPU, one OpenCV thread as the producer runs, gate included)",
        "met": mean["one_cv_thread"] <= T6_MS}


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import print_result

    parser = argparse.ArgumentParser(prog="python -m bench.motion", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short clips, 200 busy frames, one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "bench" / "results"))
    args = parser.parse_args(argv)
    info = {"machine": machine(), "command": "python -m bench.motion " + " ".join(argv or sys.argv[1:]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": []}
    box = info["machine"]
    print(f"machine: {box['cores']} cores, {box['cpu']}, load average {box['load']} at the start")
    info["results"] = run(Path(args.out), 1 if args.quick else args.repeats, args.quick)
    for result in info["results"]:
        print_result(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"bench-motion-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(info, indent=2, default=str))
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
