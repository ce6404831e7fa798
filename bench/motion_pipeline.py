"""Motion gating through the whole pipeline (issue #21, targets 1 and 5): real `framecast producer`,
`worker` and `web` processes and a private redis-server, playing the idle bench clip (a still scene
with sensor noise and lighting drift, `bench.motion_clips`) as live cameras.

1. Idle camera: CPU per frame of producer + worker + web (one MJPEG viewer) + Redis, motion on
   against motion off, for an MJPEG camera (passthrough: the producer decodes nothing) and for an
   H.264 camera (the producer decodes every frame: that decode is the floor).
2. Capacity: how many idle 768x576 10 fps MJPEG cameras one producer, one worker and one web process
   carry with every camera at >= 9.5 fps out and latency p99 <= 150 ms (a sweep that stops at the
   first count that fails), with motion on and off, and where the CPU goes at the largest count.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path

import av
import psutil

from bench import motion_clips
from bench.harness import Cluster, free_port, percentile, tree_cpu
from common.keys import DETECTIONS_FIELD

FPS = 10.0
MIN_FPS_OUT = 9.5
MAX_P99_MS = 150.0


def h264_copy(clip: Path, out: Path) -> Path:
    """The clip as H.264 in MP4 (libx264, yuv420p, a keyframe a second), made once."""
    if out.exists():
        return out
    with av.open(str(clip)) as src, av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=int(FPS), options={"preset": "veryfast", "g": str(int(FPS)),
                                                                      "bf": "0", "crf": "23"})
        first = True
        for frame in src.decode(video=0):
            if first:
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                first = False
            for packet in stream.encode(frame.reformat(format="yuv420p")):
                dst.mux(packet)
        for packet in stream.encode():
            dst.mux(packet)
    return out


class Viewer(threading.Thread):
    """One MJPEG viewer reading a camera's feed as fast as it comes."""

    def __init__(self, port: int, cam: str):
        super().__init__(daemon=True)
        self.port, self.cam, self.bytes = port, cam, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", f"/video_feed/{self.cam}")
                response = conn.getresponse()
                while not self.stop.is_set():
                    chunk = response.read1(65536)
                    if not chunk:
                        break
                    self.bytes += len(chunk)
            except OSError:
                self.stop.wait(0.5)


def _cameras(count: int, clip: Path, motion: bool) -> list[dict]:
    return [{"id": f"cam{i:03d}", "source": str(clip), "fps": FPS, "mode": "live", "loop": True,
             "max_width": 768, "motion": {"enabled": motion}} for i in range(count)]


def _records(cluster: Cluster, cam: str, since_ms: int) -> list[dict]:
    entries = cluster.client.xrange(cluster.keys.detections(cam), min=f"{since_ms}-0")
    return [json.loads(fields[DETECTIONS_FIELD]) for _, fields in entries]


def _run(workdir: Path, cameras: list[dict], seconds: float, viewers: int) -> dict:
    """Start the pipeline, wait for every camera to flow, measure a window: CPU per process and per
    processed frame, fps out and latency per camera."""
    cluster = Cluster(workdir, cameras, web={"max_streams_per_client": 0},
                      worker={"max_frame_age": 2.0})
    port = free_port()
    watchers: list[Viewer] = []
    try:
        procs = {"web": cluster.start("web", "--host", "127.0.0.1", "--port", str(port)),
                 "worker": cluster.start("worker"), "producer": cluster.start("producer")}
        ids = [c["id"] for c in cameras]
        flowing = cluster.wait_for(lambda: all(cluster.client.xlen(cluster.keys.detections(c)) >= 10 for c in ids),
                                   120, step=0.5)
        if not flowing:
            raise RuntimeError(f"not every camera flowed; see {workdir}")
        watchers = [Viewer(port, ids[i % len(ids)]) for i in range(viewers)]
        for watcher in watchers:
            watcher.start()
        time.sleep(3.0)
        ps = {name: psutil.Process(p.pid) for name, p in procs.items()}
        ps["redis"] = psutil.Process(cluster.redis.proc.pid)
        cpu0 = {name: tree_cpu(p) for name, p in ps.items()}
        start_ms = int(time.time() * 1000)
        time.sleep(seconds)
        cpu1 = {name: tree_cpu(p) for name, p in ps.items()}
        end_ms = int(time.time() * 1000)
        per_cam, latencies, inspected, frames = {}, [], {"full": 0, "regions": 0, "none": 0}, 0
        for cam in ids:
            recs = [r for r in _records(cluster, cam, start_ms) if r.get("published_ns", 0) / 1e6 <= end_ms]
            per_cam[cam] = len(recs) / ((end_ms - start_ms) / 1000)
            latencies += [(r["published_ns"] - r["ts"]) / 1e6 for r in recs if "published_ns" in r]
            for r in recs:
                inspected[r.get("inspect", "full")] += 1
            frames += len(recs)
        cpu = {name: cpu1[name] - cpu0[name] for name in ps}
        return {"frames": frames, "cpu_s": cpu, "cpu_ms_per_frame": {n: 1000 * v / max(1, frames) for n, v in cpu.items()},
                "total_cpu_ms_per_frame": 1000 * sum(cpu.values()) / max(1, frames),
                "cores_used": sum(cpu.values()) / seconds, "fps_out_min": min(per_cam.values()),
                "fps_out_median": sorted(per_cam.values())[len(per_cam) // 2],
                "latency_p50_ms": percentile(latencies, 50), "latency_p99_ms": percentile(latencies, 99),
                "inspected": inspected, "viewer_bytes": sum(w.bytes for w in watchers)}
    finally:
        for watcher in watchers:
            watcher.stop.set()
        cluster.close()


def idle_camera(workdir: Path, clips: dict, seconds: float) -> list[dict]:
    mjpeg = clips["idle"].path
    h264 = h264_copy(mjpeg, workdir / "idle-h264.mp4")
    results = []
    for kind, clip, target in (("MJPEG (passthrough)", mjpeg, 0.05), ("H.264 (producer decodes)", h264, 0.2)):
        runs = {motion: _run(workdir / f"idle-{clip.suffix[1:]}-{motion}", _cameras(1, clip, motion), seconds, 1)
                for motion in (True, False)}
        on, off = runs[True], runs[False]
        ratio = on["total_cpu_ms_per_frame"] / off["total_cpu_ms_per_frame"]
        figures = {"ratio (on / off)": ratio}
        for label, run in (("motion on", on), ("motion off", off)):
            figures[f"{label}: CPU ms/frame"] = run["total_cpu_ms_per_frame"]
            for name, ms in run["cpu_ms_per_frame"].items():
                figures[f"{label}: {name} ms/frame"] = ms
            figures[f"{label}: frames"] = run["frames"]
        figures["motion on: inspected (full/regions/none)"] = "/".join(str(on["inspected"][k])
                                                                      for k in ("full", "regions", "none"))
        results.append({"name": f"Motion gating, idle {kind} camera: whole-pipeline CPU per frame "
                                "(producer + worker + web with one viewer + Redis)",
                        "unit": "ratio; ms of CPU per frame", "figures": figures,
                        "target": f"on / off <= {target}", "met": ratio <= target})
    return results


def _carries(run: dict) -> bool:
    return run["fps_out_min"] >= MIN_FPS_OUT and run["latency_p99_ms"] <= MAX_P99_MS


def capacity(workdir: Path, clips: dict, seconds: float, counts_on: list[int], counts_off: list[int]) -> list[dict]:
    clip = clips["idle"].path
    figures: dict = {}
    best: dict[bool, tuple[int, dict] | None] = {True: None, False: None}
    for motion, counts in ((True, counts_on), (False, counts_off)):
        for count in counts:
            run = _run(workdir / f"capacity-{motion}-{count}", _cameras(count, clip, motion), seconds, 1)
            label = f"motion {'on' if motion else 'off'}, {count} cameras"
            figures[f"{label}: fps out min / p99 ms"] = f"{run['fps_out_min']:.2f} / {run['latency_p99_ms']:.0f}"
            figures[f"{label}: cores used"] = run["cores_used"]
            if not _carries(run):
                break
            best[motion] = (count, run)
    for motion in (True, False):
        label = "motion on" if motion else "motion off"
        if best[motion] is None:
            figures[f"{label}: cameras carried"] = 0
            continue
        count, run = best[motion]
        figures[f"{label}: cameras carried"] = count
        for name, ms in run["cpu_ms_per_frame"].items():
            figures[f"{label}, {count} cameras: {name} CPU ms/frame"] = ms
    carried = best[True][0] if best[True] else 0
    return [{"name": "Motion gating, capacity: idle 768x576 10 fps MJPEG cameras on this machine (one producer, "
                     f"one worker, one web process; every camera >= {MIN_FPS_OUT} fps out, latency p99 <= "
                     f"{MAX_P99_MS:.0f} ms)", "unit": "cameras; ms of CPU per frame", "figures": figures,
             "target": "motion on >= 24 cameras", "met": carried >= 24}]


def run(workdir: Path, quick: bool = False) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    clips = motion_clips.build(motion_clips.QUICK if quick else motion_clips.ClipParams())
    seconds = 10.0 if quick else 30.0
    results = idle_camera(workdir, clips, seconds)
    # motion off from one camera up: one worker process runs the model on one core, about 2 cameras
    on, off = ([24], [1]) if quick else ([16, 24, 32, 48], [1, 2, 3])
    return results + capacity(workdir, clips, seconds, on, off)
