"""Benchmark: the H.264 live view (#20) against MJPEG, for the sample clip's annotated frames.

Three results, one per target of issue #20:

1. bytes per viewer-second and quality: the sample clip's frames go through the producer's JPEG
   encoding (camera jpeg_quality) and the worker's FrameProcessor.process (decode, detect, annotate,
   JPEG at jpeg_quality) offline, as the MJPEG viewer would receive them (web.mjpeg.part framing);
   the annotated JPEGs are decoded as the encoder service does (encoder.i420.from_jpeg: straight to
   I420) and go into encoder.fmp4.Fragmenter.add_i420 with the default `video:` settings at the
   clip's fps. The fMP4 (init + fragments) is decoded back with PyAV (to BGR, as a player shows it)
   and compared with the annotated JPEGs decoded to BGR (what an MJPEG viewer sees): SSIM (Wang et
   al., Gaussian 11x11 sigma 1.5, on luma) and PSNR.
2. encoder CPU: process CPU of JPEG decode + Fragmenter.add_i420 per frame against the worker's detection
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
    """The annotated JPEGs decoded and fragmented as the encoder service does (encoder/camera.py:
    i420.from_jpeg, Fragmenter.add_i420); CPU of both per frame. The BGR pictures the quality is
    measured against are decoded apart, untimed."""
    from encoder import i420
    from encoder.fmp4 import Fragmenter

    fragmenter = Fragmenter(1, keyframe_interval=video.keyframe_interval, crf=video.crf, preset=video.preset,
                            threads=1)
    fragments, init = [], None
    decode_cpu = add_cpu = 0.0
    try:
        for i, frame in enumerate(frames):
            started = time.process_time()
            picture = i420.from_jpeg(frame.jpeg)
            decode_cpu += time.process_time() - started
            started = time.process_time()
            got_init, fragment = fragmenter.add_i420(picture, frame.ts, f"{frame.run}:{frame.seq}".encode())
            add_cpu += time.process_time() - started
            init = init or got_init
            if fragment is None:
                raise RuntimeError(f"frame {i} gave no fragment")
            fragments.append(fragment)
    finally:
        fragmenter.close()
    pictures = [jpeg.decode(frame.jpeg) for frame in frames]  # after: the service decodes no BGR
    n = len(frames)
    return {"init": init, "fragments": fragments, "pictures": pictures,
            "decode_cpu_ms": decode_cpu * 1000 / n, "add_cpu_ms": add_cpu * 1000 / n,
            "decode_path": "libturbojpeg to I420" if i420.FAST else "BGR, then I420 (no libturbojpeg)"}


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


def _cpu_result(clip: dict, enc: dict, idle: dict) -> dict:
    encoder_ms = enc["decode_cpu_ms"] + enc["add_cpu_ms"]
    ratio = encoder_ms / clip["detect_cpu_ms"]
    ratio_add = enc["add_cpu_ms"] / clip["detect_cpu_ms"]
    figures = {"frames": len(clip["frames"]), "detect_cpu_ms_per_frame": clip["detect_cpu_ms"],
               "worker_process_cpu_ms_per_frame": clip["worker_cpu_ms"],
               "encoder_decode_path": enc["decode_path"],
               "encoder_jpeg_decode_cpu_ms": enc["decode_cpu_ms"], "fragmenter_add_cpu_ms": enc["add_cpu_ms"],
               "encoder_cpu_ms_per_frame": encoder_ms, "fragmenter_add_vs_detect": ratio_add,
               "encoder_vs_detect": ratio, **idle}
    quiet = idle.get("idle_video_entries") == 0 and idle.get("idle_frames_encoded") == 0
    return {"name": "live video encoder CPU per frame vs detection, and no encoding while nobody watches "
                    "(real redis + producer + framecast worker + framecast web)",
            "unit": "CPU ms per frame, entries, s", "figures": figures,
            "target": f"encoder CPU (JPEG decode + Fragmenter.add_i420) per frame <= {CPU_TARGET} x detection CPU; "
                      "0 fragments and 0 frames encoded while unwatched; fragments while watched; stops after",
            "met": ratio <= CPU_TARGET and quiet and idle.get("watched_video_entries", 0) > 0
                   and bool(idle.get("stopped_after_leave"))
                   and idle.get("encoding_went_on_after_leave_s", float("inf")) <= idle.get("expected_bound_s", 0)}


# ---- processes ----------------------------------------------------------------------------------------
def _serve_web(cluster: Cluster, port: int, name: str) -> subprocess.Popen:
    log = open(cluster.workdir / f"web-{name}.log", "w")  # noqa: SIM115 - lives as long as the server
    cmd = [sys.executable, "-m", "framecast", "web", "--config", str(cluster.config), "--host", "127.0.0.1",
           "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log,
                            stderr=subprocess.STDOUT)
    cluster.procs.append(proc)  # ended by cluster.close (terminate, wait, kill) by its own handle

    def up() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return True
        except OSError:
            return False

    if not cluster.wait_for(up, 60):
        raise RuntimeError(f"framecast web did not start; see {cluster.workdir}")
    return proc


def _boxes(buffer: bytearray) -> tuple[list[bytes], int]:
    """The whole top-level MP4 boxes at the start of `buffer`: their types, and the bytes they span."""
    kinds, at = [], 0
    while len(buffer) - at >= 8:
        size = int.from_bytes(buffer[at:at + 4], "big")
        kind = bytes(buffer[at + 4:at + 8])
        if size == 1:
            if len(buffer) - at < 16:
                break
            size = int.from_bytes(buffer[at + 8:at + 16], "big")
        if size < 8:
            raise ValueError(f"bad MP4 box size {size} ({kind!r})")
        if len(buffer) - at < size:
            break
        kinds.append(kind)
        at += size
    return kinds, at


async def _view_mp4(port: int, path: str, stop: asyncio.Event, counts: list[int], index: int,
                    status: list) -> None:
    """One H.264 viewer: reads the chunked fMP4 body, counts the moof boxes it receives."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status[index] = int(head.split(b" ", 2)[1])
        chunked = b"chunked" in head.lower()
        buffer = bytearray()
        while not stop.is_set():
            if chunked:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    break
                buffer += await reader.readexactly(size)
                await reader.readexactly(2)
            else:
                data = await reader.read(65536)
                if not data:
                    break
                buffer += data
            kinds, used = _boxes(buffer)
            counts[index] += kinds.count(b"moof")
            del buffer[:used]
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def watch_mp4(port: int, path: str, viewers: int, seconds: float, settle: float = 3.0) -> tuple[list[int], list]:
    stop = asyncio.Event()
    counts, status = [0] * viewers, [None] * viewers
    tasks = [asyncio.create_task(_view_mp4(port, path, stop, counts, i, status)) for i in range(viewers)]
    await asyncio.sleep(settle)
    baseline = list(counts)
    await asyncio.sleep(seconds)
    result = [c - b for c, b in zip(counts, baseline, strict=True)]
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result, status


def _metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return float("nan")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def idle_encoding(workdir: Path, quiet_s: float, watch_s: float) -> dict:
    """Real processes: nothing encoded while unwatched, fragments while one H.264 viewer watches, and
    how long encoding goes on after it leaves."""
    cluster = Cluster(workdir, [{"id": CAM, "source": "sample", "fps": 10}])
    metrics_port, port = free_port(), free_port()
    video_key, annotated_key = cluster.keys.video(CAM), cluster.keys.annotated(CAM)
    encoded = "framecast_video_frames_encoded_total"
    out: dict = {}
    try:
        cluster.start("producer")
        cluster.start("worker", "--metrics-port", str(metrics_port))
        _serve_web(cluster, port, "idle")
        if not cluster.wait_for(lambda: cluster.client.xlen(annotated_key) > 0, 120):
            raise RuntimeError(f"the worker annotated nothing; see {workdir}")
        a0 = cluster.client.xlen(annotated_key)
        time.sleep(quiet_s)
        out["idle_s"] = quiet_s
        out["idle_annotated_frames"] = cluster.client.xlen(annotated_key) - a0  # maxlen-capped: a floor
        out["idle_video_entries"] = cluster.client.xlen(video_key)
        out["idle_frames_encoded"] = _metric(metrics_port, encoded)
        # One H.264 viewer through the web process (it announces the camera's viewer).
        counts, status = asyncio.run(watch_mp4(port, f"/video/{CAM}.mp4", 1, watch_s, settle=0.0))
        left = time.time()
        out["watched_s"] = watch_s
        out["watched_http_status"] = status[0]
        out["watched_fragments_received"] = counts[0]
        out["watched_video_entries"] = cluster.client.xlen(video_key)
        # After it left: wait until no fragment has been written for 5 s (or 60 s pass).
        last_seen, last_len, deadline = time.time(), -1, time.time() + 60
        while time.time() < deadline:
            newest = cluster.client.xrevrange(video_key, count=1)
            if newest:
                entry_ms = int(newest[0][0].split(b"-")[0])
                if entry_ms != last_len:
                    last_len, last_seen = entry_ms, time.time()
            if time.time() - last_seen > 5:
                break
            time.sleep(0.2)
        stopped = time.time() - last_seen > 5
        out["stopped_after_leave"] = stopped
        out["encoding_went_on_after_leave_s"] = (last_len / 1000 - left) if last_len > 0 else float("nan")
        settings = VideoConfig()
        # The web's last announcement lapses up to viewer_ttl after the viewer left (the feed stops
        # renewing at once; its ZREM comes only after web.reader_linger), and the encoder stops
        # viewer_ttl after it last saw the camera watched, plus one poll and a second of slack.
        out["expected_bound_s"] = 2 * settings.viewer_ttl + 0.5 + 1.0
        c1 = _metric(metrics_port, encoded)
        time.sleep(2)
        out["frames_encoded_total"] = c1
        out["frames_encoded_after_stop"] = _metric(metrics_port, encoded) - c1
    finally:
        cluster.close()
    return out


# ---- fan-out ------------------------------------------------------------------------------------------
def _commandstats(client) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in client.info("commandstats").items()}


def _feed_video(cluster: Cluster, init, fragments, fps: float, stop: threading.Event, counter: list[int]) -> None:
    from common.video import Fragment

    key = cluster.keys.video(CAM)
    cluster.client.hset(cluster.keys.video_init(CAM), mapping=init.fields())
    start, index = time.monotonic(), 0
    while not stop.is_set():
        f = fragments[index % len(fragments)]
        fresh = Fragment(f.generation, f.keyframe, f.data, time.time_ns(), f.seq)
        cluster.client.xadd(key, fresh.fields(), maxlen=VideoConfig().fragments_maxlen, approximate=True)
        counter[0] += 1
        index += 1
        stop.wait(max(0.0, start + index / fps - time.monotonic()))


def _feed_mjpeg(cluster: Cluster, frames: list[Frame], fps: float, stop: threading.Event, counter: list[int]) -> None:
    key = cluster.keys.annotated(CAM)
    start, index = time.monotonic(), 0
    while not stop.is_set():
        f = frames[index % len(frames)]
        fresh = Frame(f.cam, f.run, index, time.time_ns(), f.width, f.height, f.jpeg, f.detections or [], {})
        cluster.client.xadd(key, {FRAME_FIELD: envelope.encode(fresh)}, maxlen=50, approximate=True)
        counter[0] += 1
        index += 1
        stop.wait(max(0.0, start + index / fps - time.monotonic()))


def fanout_case(workdir: Path, design: str, viewers: int, seconds: float, clip: dict, enc: dict) -> dict:
    cluster = Cluster(workdir / f"{design}-{viewers}", [{"id": CAM, "source": "pattern"}],
                      web={"max_streams_per_client": 0})
    port = free_port()
    stop, published = threading.Event(), [0]
    fps = clip["fps"]
    if design == "h264":
        target, args = _feed_video, (cluster, enc["init"], enc["fragments"], fps, stop, published)
    else:
        target, args = _feed_mjpeg, (cluster, clip["frames"], fps, stop, published)
    feeder = threading.Thread(target=target, args=args, daemon=True)
    result: dict = {}
    try:
        server = _serve_web(cluster, port, design)
        feeder.start()
        proc = psutil.Process(server.pid)
        settle = 3.0

        async def observe():
            if design == "h264":
                task = asyncio.create_task(watch_mp4(port, f"/video/{CAM}.mp4", viewers, seconds, settle=settle))
            else:
                task = asyncio.create_task(watch_mjpeg("127.0.0.1", port, f"/video_feed/{CAM}", viewers, seconds,
                                                       settle=settle))
            await asyncio.sleep(settle)
            cpu0, pub0, cmd0, t0 = tree_cpu(proc), published[0], _commandstats(cluster.client), time.monotonic()
            got = await task
            elapsed = time.monotonic() - t0
            cmd1 = _commandstats(cluster.client)
            result.update(got=got, elapsed=elapsed, cpu=tree_cpu(proc) - cpu0, published=published[0] - pub0,
                          commands={k: cmd1[k] - cmd0.get(k, 0) for k in cmd1 if cmd1[k] - cmd0.get(k, 0)})

        asyncio.run(observe())
    finally:
        stop.set()
        feeder.join(5)
        cluster.close()
    counts = result["got"][0] if design == "h264" else result["got"]
    statuses = result["got"][1] if design == "h264" else []
    published_n = max(1, result["published"])
    shares = [min(1.0, c / published_n) for c in counts]
    commands = result["commands"]
    web_commands = sum(v for k, v in commands.items() if k not in ("xadd", "info"))
    reads = sum(v for k, v in commands.items() if k in ("xread", "xreadgroup", "xrange", "xrevrange", "hgetall"))
    return {"viewers": viewers, "published": result["published"], "share_min": min(shares),
            "share_median": statistics.median(shares),
            "viewers_ok_http": sum(s == 200 for s in statuses) if statuses else viewers,
            "web_cpu_pct": 100.0 * result["cpu"] / result["elapsed"],
            "redis_cmds_per_s": web_commands / result["elapsed"], "redis_reads_per_s": reads / result["elapsed"]}


def _fanout_result(rows: dict) -> dict:
    h264, mjpeg_rows = rows["h264"], rows["mjpeg"]
    h100 = next(r for r in h264 if r["viewers"] == max(r["viewers"] for r in h264))
    m100 = next(r for r in mjpeg_rows if r["viewers"] == h100["viewers"])
    reads = [r["redis_cmds_per_s"] for r in h264]
    independent = max(reads) <= 1.5 * max(1.0, min(reads))
    cpu_ok = h100["web_cpu_pct"] <= m100["web_cpu_pct"]
    share_ok = h100["share_min"] >= SHARE_TARGET
    return {"name": f"H.264 fan-out on one web process ({h100['viewers']} viewers max, 10 fps, pre-encoded fragments "
                    "written by the bench: the web tier alone) vs MJPEG", "unit": "see columns",
            "figures": rows,
            "target": f"Redis commands/s independent of H.264 viewers (max <= 1.5 x min); web CPU at "
                      f"{h100['viewers']} H.264 viewers <= MJPEG's; every viewer >= {SHARE_TARGET:.0%} of fragments "
                      f"(h264 {h100['viewers']}: cpu {h100['web_cpu_pct']:.1f}% vs mjpeg {m100['web_cpu_pct']:.1f}%, "
                      f"cmds/s {min(reads):.1f}..{max(reads):.1f}, min share {h100['share_min']:.3f})",
            "met": independent and cpu_ok and share_ok}


def run(workdir: Path, quick: bool = False) -> list[dict]:
    workdir.mkdir(parents=True, exist_ok=True)
    video = VideoConfig()
    clip = annotated_clip(200 if quick else 795)
    enc = encode_clip(clip["frames"], clip["fps"], video)
    q = quality(enc["init"], enc["fragments"], enc["pictures"])
    results = [_bytes_result(clip, enc, q, video)]
    idle = idle_encoding(workdir / "idle", 6.0 if quick else 10.0, 6.0 if quick else 10.0)
    results.append(_cpu_result(clip, enc, idle))
    seconds = 6.0 if quick else 15.0
    counts = [1, 100] if quick else [1, 10, 100]
    rows = {"h264": [fanout_case(workdir / "fanout", "h264", n, seconds, clip, enc) for n in counts],
            "mjpeg": [fanout_case(workdir / "fanout", "mjpeg", 100, seconds, clip, enc)]}
    results.append(_fanout_result(rows))
    return results


if __name__ == "__main__":
    import json
    import tempfile

    from bench.__main__ import print_result
    from bench.harness import machine

    print(json.dumps(machine()))
    with tempfile.TemporaryDirectory(prefix="framecast-live-video-") as tmp:
        for res in run(Path(tmp), quick="--quick" in sys.argv):
            print_result(res)
