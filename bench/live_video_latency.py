"""Benchmark (#20 target 2): capture -> frame shown in headless chromium, MJPEG beside H.264 (fMP4),
and the H.264 view's drift over a long watch.

A bench-side publisher writes 640x360 frames at 10 fps into the camera's frames stream (the
project's envelope and keys, as producer/publisher.py writes them): the sample clip, with a stamp in
a band along the bottom edge: the capture time in ms mod 2^24 as a row of 24 black/white blocks
(26x24 px each) and below it the same bits inverted (a block an annotation drew over, or a mangled
one, fails the check and the frame is not counted). A real `framecast worker` annotates and, while
someone watches, encodes H.264 (its encoder); a real `framecast web` serves both views.

In headless chromium a page per view: MJPEG is the dashboard's own tile (`/?view=mjpeg`, an <img>
on /video_feed/<cam>); H.264 is the dashboard's player (`/?view=h264`) when web/static/live-video.js
exists, else a minimal MSE page of this bench (fetch /video/<cam>.mp4, append to a SourceBuffer,
jump to the live edge when over LIVE_JUMP_S behind) served on the web's origin through Playwright's
request routing (no CSP on it). In the page, each newly shown picture's band is drawn to a canvas
(requestVideoFrameCallback for <video>, a requestAnimationFrame loop for <img>), decoded, and its
latency is Date.now() - stamped capture time (one machine, one clock).

Figures: p50/p95 per view and their difference (target: H.264 p50 <= MJPEG p50 + 150 ms); the
H.264 view's behind-live (p50 latency over a 10 s window) at 30 s and at the end of the watch
(10 min; --quick 2 min) and their difference (target: <= 0.5 s).
"""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from bench.harness import REPO, Cluster, free_port, machine, percentile
from common import assets, envelope
from common.envelope import Frame
from common.keys import FRAME_FIELD

CAM = "stamp"
FPS = 10.0
WIDTH, HEIGHT = 640, 360
BITS = 24
CELL_W, CELL_H = 26, 24
BAND_X = (WIDTH - BITS * CELL_W) // 2  # 8
ROW_Y = (HEIGHT - 2 * CELL_H - 8, HEIGHT - CELL_H - 4)  # value row, inverted row
BAND_TOP = ROW_Y[0] - 4
P50_MARGIN_MS = 150.0
DRIFT_LIMIT_MS = 500.0
WINDOW_S = 10.0  # behind-live is the p50 over a window this long
LIVE_JUMP_S = 1.0  # the bench's own MSE player jumps to the live edge past this


def stamp(image: np.ndarray, ms: int) -> None:
    """Draw `ms` mod 2^24 into the bottom band of `image` (in place), MSB first."""
    value = ms % (1 << BITS)
    image[BAND_TOP:, :] = 128
    for i in range(BITS):
        bit = (value >> (BITS - 1 - i)) & 1
        x = BAND_X + i * CELL_W
        for row, on in ((0, bit), (1, 1 - bit)):
            y = ROW_Y[row]
            image[y:y + CELL_H, x:x + CELL_W] = 255 if on else 0


def read_stamp(image: np.ndarray) -> int | None:
    """The Python twin of the page's decoder (used to check the layout survives JPEG)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    value = 0
    for i in range(BITS):
        x = BAND_X + i * CELL_W + CELL_W // 2
        a = gray[ROW_Y[0] + CELL_H // 2 - 4:ROW_Y[0] + CELL_H // 2 + 4, x - 4:x + 4].mean() > 128
        b = gray[ROW_Y[1] + CELL_H // 2 - 4:ROW_Y[1] + CELL_H // 2 + 4, x - 4:x + 4].mean() > 128
        if a == b:
            return None
        value = (value << 1) | int(a)
    return value


def _background(count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(assets.sample_path()))
    images = []
    while len(images) < count:
        ok, image = cap.read()
        if not ok:
            if not images:
                raise RuntimeError("cannot read the sample clip")
            break
        images.append(cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
    cap.release()
    return images


def _publish(cluster: Cluster, images: list[np.ndarray], stop: threading.Event, counter: list[int]) -> None:
    """A camera at FPS: capture time now, stamp drawn, JPEG-encoded, XADD to the frames stream."""
    key, run = cluster.keys.frames(CAM), time.time_ns()
    start, seq = time.monotonic(), 0
    while not stop.is_set():
        ts = time.time_ns()
        image = images[seq % len(images)].copy()
        stamp(image, ts // 1_000_000)
        jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
        frame = Frame(CAM, run, seq, ts, WIDTH, HEIGHT, jpeg)
        cluster.client.xadd(key, {FRAME_FIELD: envelope.encode(frame)}, maxlen=100, approximate=True)
        counter[0] += 1
        seq += 1
        stop.wait(max(0.0, start + seq / FPS - time.monotonic()))


# The page side: decode the band of each newly shown picture, keep (shown at, latency ms, stamp).
READBACK_JS = """
([selector, kind, bits, cellW, cellH, bandX, rowY, width, height]) => {
  if (window.__lat) return "already";
  window.__lat = { samples: [], bad: 0, shown: 0, last: -1, error: "" };
  const st = window.__lat;
  const canvas = document.createElement("canvas");
  const top = rowY[0], bandH = rowY[1] + cellH - rowY[0];
  canvas.width = width; canvas.height = bandH;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  function lum(data, x, y) {
    let s = 0, n = 0;
    for (let dy = -4; dy < 4; dy++) for (let dx = -4; dx < 4; dx++) {
      const i = ((y + dy) * width + (x + dx)) * 4;
      s += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2]; n++;
    }
    return s / n;
  }
  function decode(el, now) {
    const w = kind === "video" ? el.videoWidth : el.naturalWidth;
    const h = kind === "video" ? el.videoHeight : el.naturalHeight;
    if (!w || !h) return;
    try {
      // The band, scaled to the stamp's own pixel grid whatever size the picture comes in.
      ctx.drawImage(el, 0, top * h / height, w, bandH * h / height, 0, 0, width, bandH);
      const data = ctx.getImageData(0, 0, width, bandH).data;
      let value = 0;
      for (let i = 0; i < bits; i++) {
        const x = bandX + i * cellW + (cellW >> 1);
        const a = lum(data, x, cellH >> 1) > 128, b = lum(data, x, rowY[1] - top + (cellH >> 1)) > 128;
        if (a === b) { st.bad++; return; }
        value = value * 2 + (a ? 1 : 0);
      }
      if (value === st.last) return;
      st.last = value; st.shown++;
      const mod = 1 << bits;
      const lat = (((now % mod) - value) % mod + mod) % mod;
      st.samples.push([now, lat, value]);
    } catch (e) { st.error = String(e); }
  }
  function find() { return document.querySelector(selector); }
  if (kind === "video" && "requestVideoFrameCallback" in HTMLVideoElement.prototype) {
    let hooked = null;
    const hook = () => {
      const el = find();
      if (el && el !== hooked) {
        hooked = el;
        const cb = () => { decode(el, Date.now()); if (hooked === el) el.requestVideoFrameCallback(cb); };
        el.requestVideoFrameCallback(cb);
      }
      setTimeout(hook, 250);
    };
    hook();
  } else {
    const loop = () => { const el = find(); if (el) decode(el, Date.now()); requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  }
  return "ok";
}
"""

TAKE_JS = """() => { const st = window.__lat; if (!st) return null;
  const out = { samples: st.samples, bad: st.bad, shown: st.shown, error: st.error };
  st.samples = []; return out; }"""

STATE_JS = """() => { const v = document.querySelector("video.live-video") || document.querySelector("video"); if (!v) return null;
  const b = v.buffered; return { t: v.currentTime, end: b.length ? b.end(b.length - 1) : null,
  ranges: b.length, paused: v.paused, rs: v.readyState,
  jumps: (v.framecastStats && v.framecastStats.jumps) || window.__jumps || 0,
  reconnects: v.framecastStats ? v.framecastStats.reconnects : null, state: v.dataset.state || null,
  q: v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().droppedVideoFrames : null }; }"""

MSE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>bench MSE</title></head>
<body style="margin:0;background:#000"><video muted playsinline autoplay style="width:640px"></video>
<script>
"use strict";
const video = document.querySelector("video");
window.__jumps = 0;
function start() {
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  ms.addEventListener("sourceopen", async () => {
    let response;
    try { response = await fetch("/video/%(cam)s.mp4", { cache: "no-store" }); } catch (e) { setTimeout(start, 1000); return; }
    if (!response.ok) { setTimeout(start, 1000); return; }
    const sb = ms.addSourceBuffer(response.headers.get("X-Video-Mime"));
    const queue = []; let started = false;
    function pump() {
      if (sb.updating || !queue.length) return;
      try { sb.appendBuffer(queue.shift()); } catch (e) { queue.length = 0; }
    }
    sb.addEventListener("updateend", () => {
      const b = video.buffered;
      if (b.length) {
        const end = b.end(b.length - 1);
        if (!started) { started = true; video.currentTime = b.start(b.length - 1); video.play().catch(() => {}); }
        else if (end - video.currentTime > %(jump)s) { video.currentTime = end - 0.1; window.__jumps++; }
        if (video.currentTime - b.start(0) > 30 && !sb.updating) { sb.remove(b.start(0), video.currentTime - 10); return; }
      }
      pump();
    });
    const reader = response.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      queue.push(value); pump();
    }
    setTimeout(start, 200);  // the generation ended: a new init segment
  });
}
start();
</script></body></html>"""


def _dashboard_player() -> bool:
    return (REPO / "web" / "static" / "live-video.js").exists()


def _up(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        return True
    except OSError:
        return False


def _stats(values: list[float]) -> dict:
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values)}


def run(workdir: Path, quick: bool = False, watch_s: float | None = None) -> list[dict]:
    from playwright.sync_api import sync_playwright

    watch = watch_s if watch_s is not None else (120.0 if quick else 600.0)
    camera = {"id": CAM, "source": "pattern", "fps": FPS, "max_width": WIDTH}
    cluster = Cluster(workdir, [camera], web={"max_streams_per_client": 0})
    port = free_port()
    stop, published = threading.Event(), [0]
    feeder = threading.Thread(target=_publish, args=(cluster, _background(100), stop, published), daemon=True)
    pw = browser = None
    player = "dashboard (web/static/live-video.js, /?view=h264)" if _dashboard_player() else \
        "bench's minimal MSE page (dashboard player not landed)"
    samples = {"mjpeg": [], "h264": []}
    bad = {"mjpeg": 0, "h264": 0}
    errors: dict[str, str] = {}
    states: list[dict] = []
    try:
        cluster.start("worker")
        cluster.start("web", "--host", "127.0.0.1", "--port", str(port))
        if not cluster.wait_for(lambda: _up(port), 90):
            raise RuntimeError("web did not start")
        feeder.start()
        if not cluster.wait_for(lambda: cluster.client.xlen(cluster.keys.annotated(CAM)) > 0, 180):
            raise RuntimeError("no annotated frames")
        base = f"http://127.0.0.1:{port}"
        pw = sync_playwright().start()
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                     args=["--autoplay-policy=no-user-gesture-required"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        pages = {"mjpeg": context.new_page(), "h264": context.new_page()}
        for page_name, page in pages.items():
            page.on("console", lambda m, n=page_name: m.type == "error" and errors.setdefault(n + "_console", m.text))
        args = [BITS, CELL_W, CELL_H, BAND_X, list(ROW_Y), WIDTH, HEIGHT]
        pages["mjpeg"].goto(f"{base}/?view=mjpeg")
        pages["mjpeg"].evaluate(READBACK_JS, [f'.tile[data-camera="{CAM}"] img', "img", *args])
        if _dashboard_player():
            pages["h264"].goto(f"{base}/?view=h264")
            selector = f'.tile[data-camera="{CAM}"] video'
        else:
            page_url = f"{base}/__bench/live.html"
            pages["h264"].route(page_url, lambda route: route.fulfill(
                status=200, content_type="text/html", body=MSE_PAGE % {"cam": CAM, "jump": LIVE_JUMP_S}))
            pages["h264"].goto(page_url)
            selector = "video"
        pages["h264"].evaluate(READBACK_JS, [selector, "video", *args])

        def take(name: str, since: float | None) -> None:
            got = pages[name].evaluate(TAKE_JS)
            if not got:
                return
            bad[name] += got["bad"]
            if got["error"]:
                errors[name] = got["error"]
            samples[name].extend((t / 1000.0, lat) for t, lat, _ in got["samples"]
                                 if since is None or t / 1000.0 >= since)

        # Settle: both views showing decodable pictures, then 5 s more.
        settle_deadline = time.monotonic() + 90
        while time.monotonic() < settle_deadline:
            time.sleep(1.0)
            for name in pages:
                take(name, None)
            if all(samples.values()):
                break
        else:
            raise RuntimeError(f"views did not show stamped frames (samples {[len(v) for v in samples.values()]}, "
                               f"bad {bad}, errors {errors}); see {workdir}")
        time.sleep(5.0)
        for name in pages:
            take(name, None)
            samples[name].clear()
            bad[name] = 0
        t0 = time.time()
        published0 = published[0]
        while time.time() - t0 < watch:
            time.sleep(min(5.0, max(0.1, watch - (time.time() - t0))))
            for name in pages:
                take(name, t0)
            state = pages["h264"].evaluate(STATE_JS)
            if state:
                states.append({"t": round(time.time() - t0, 1), **state})
            for proc in cluster.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a benchmark process exited with {proc.returncode}; see {workdir}")
        elapsed = time.time() - t0
        sent = published[0] - published0
    finally:
        stop.set()
        if browser is not None:
            browser.close()
        if pw is not None:
            pw.stop()
        cluster.close()  # terminates worker and web by their Popen handles, then redis
        feeder.join(timeout=5)

    lat = {name: [ms for _, ms in values] for name, values in samples.items()}
    rel = [(t - t0, ms) for t, ms in samples["h264"]]
    at30 = [ms for t, ms in rel if 30 - WINDOW_S / 2 <= t < 30 + WINDOW_S / 2]
    at_end = [ms for t, ms in rel if t >= elapsed - WINDOW_S]
    behind30, behind_end = percentile(at30, 50), percentile(at_end, 50)
    drift = behind_end - behind30
    mj, h2 = _stats(lat["mjpeg"]), _stats(lat["h264"])
    diff = h2["p50"] - mj["p50"]
    series = []
    for begin in range(0, int(elapsed), 30):
        chunk = [ms for t, ms in rel if begin <= t < begin + 30]
        series.append({"t_s": begin, "frames": len(chunk), "p50_ms": percentile(chunk, 50),
                       "max_ms": max(chunk) if chunk else float("nan")})
    box = machine()
    figures = {
        "mjpeg_p50_ms": mj["p50"], "mjpeg_p95_ms": mj["p95"], "mjpeg_frames_shown": mj["n"],
        "h264_p50_ms": h2["p50"], "h264_p95_ms": h2["p95"], "h264_frames_shown": h2["n"],
        "h264_minus_mjpeg_p50_ms": diff,
        "h264_behind_live_30s_ms": behind30, "h264_behind_live_end_ms": behind_end, "h264_drift_ms": drift,
        "frames_published": sent, "watch_s": round(elapsed, 1),
        "undecodable_mjpeg": bad["mjpeg"], "undecodable_h264": bad["h264"],
        "h264_live_jumps": states[-1]["jumps"] if states else 0,
    }
    met = (mj["n"] > 0 and h2["n"] > 0 and diff <= P50_MARGIN_MS and bool(at30) and bool(at_end)
           and abs(drift) <= DRIFT_LIMIT_MS)
    result = {
        "name": f"live video latency, capture to shown in headless chromium ({WIDTH}x{HEIGHT}, {FPS:g} fps, "
                f"1 worker + encoder, 1 web; H.264 player: {player})", "unit": "ms",
        "figures": figures,
        "h264_series_30s": series,  # not "series": print_result labels those 5 s buckets
        "target": f"H.264 p50 <= MJPEG p50 + {P50_MARGIN_MS:g} ms; H.264 behind-live (p50 over {WINDOW_S:g} s) "
                  f"at the end of a {watch:g} s watch within {DRIFT_LIMIT_MS / 1000:g} s of at 30 s; "
                  f"machine: {box['cores']} cores, {box['cpu']}, load average {box['load']}",
        "met": met, "player": player,
    }
    if errors:
        result["errors"] = errors
    result["h264_player_states"] = states[-5:]
    return [result]


if __name__ == "__main__":  # python -m bench.live_video_latency [--quick] [--seconds N]
    import argparse
    import json
    import tempfile

    from bench.__main__ import print_result

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--out")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="framecast-bench-") as tmp:
        out = run(Path(tmp) / "live_video_latency", quick=ns.quick, watch_s=ns.seconds)
    for r in out:
        print_result(r)
    if ns.out:
        Path(ns.out).write_text(json.dumps(out, indent=2, default=str))
