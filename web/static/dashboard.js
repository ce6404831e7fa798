// framecast dashboard: live tiles, live stats, click to enlarge, self-healing feeds.
"use strict";
(function () {
  const token = document.body.dataset.token || "";
  const MJPEG_TILES = 4;            // live tiles (MJPEG or H.264): browsers allow ~6 connections per host, the rest use snapshots
  const SNAPSHOT_MS = 1000;
  const WATCHDOG_MS = 2000;         // a live feed whose picture has not changed for 3 checks is reloaded
  const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const tiles = Array.from(document.querySelectorAll(".tile"));
  const live = {};                  // camera id -> status from /api/cameras

  const motionView = new Set();     // cameras shown with their motion boxes (the "motion" toggle)

  // The live view: MJPEG (<img>) or H.264 (<video> through Media Source Extensions, live-video.js).
  // The user's choice is remembered; `?view=h264` / `?view=mjpeg` in the URL overrides it (links, tests).
  // A camera the browser or the server cannot play as H.264 falls back to MJPEG, with a hint on its tile;
  // so does one in the motion view (the motion boxes are drawn on the MJPEG feed only).
  const VIEWS = ["mjpeg", "h264"];
  const VIEW_KEY = "framecast.view";
  const fallenBack = new Map();     // camera id -> why its H.264 view fell back to MJPEG
  function storedView() { try { return localStorage.getItem(VIEW_KEY); } catch (e) { return null; } }
  let view = [new URLSearchParams(location.search).get("view"), storedView()].find((v) => VIEWS.includes(v)) || "mjpeg";
  const mseMissing = typeof FramecastLiveVideo === "undefined" || !FramecastLiveVideo.supported();
  function usesVideo(cam) { return view === "h264" && !mseMissing && !fallenBack.has(cam) && !motionView.has(cam); }
  function videoUrl(cam) { return "/video/" + encodeURIComponent(cam) + ".mp4"; }
  function feedUrl(cam) {
    const view = motionView.has(cam) ? "&motion=1" : "";
    return withToken("/video_feed/" + encodeURIComponent(cam) + "?t=" + Date.now() + view);
  }
  function snapshotUrl(cam) { return withToken("/snapshot/" + encodeURIComponent(cam) + ".jpg?t=" + Date.now()); }

  function startFeed(img, cam) {
    clearTimeout(img.retry);          // one pending reconnect per image, whoever asked for it
    img.onerror = () => { img.retry = setTimeout(() => startFeed(img, cam), 2000); };
    img.src = feedUrl(cam);
    img.dataset.sig = "";
    img.dataset.still = "0";
  }

  // Snapshot tiles fetch the next picture before showing it, so a missing frame (503) leaves the last
  // picture under a "no signal" veil instead of a broken image. Each start or stop begins a new
  // generation: a fetch still under way when its tile was hidden schedules nothing.
  function startSnapshots(img, cam) {
    const tile = img.closest(".tile");
    const generation = (img.snapshots = (img.snapshots || 0) + 1);
    async function next() {
      let ok = false;
      try {
        const response = await fetch(snapshotUrl(cam), { headers, cache: "no-store" });
        if (response.ok) {
          const blob = await response.blob();
          if (generation !== img.snapshots) return;
          const old = img.src;
          img.src = URL.createObjectURL(blob);
          if (old.startsWith("blob:")) URL.revokeObjectURL(old);
          ok = true;
        }
      } catch (e) { ok = false; }
      if (generation !== img.snapshots) return;
      tile.classList.toggle("offline", !ok);
      img.snapshotTimer = setTimeout(next, ok ? SNAPSHOT_MS : SNAPSHOT_MS * 2);
    }
    next();
  }
  // A live picture is an <img> (MJPEG) and a <video> (H.264) side by side; one of them plays.
  function startVideo(video, cam) {
    stopVideo(video);
    video.dataset.camera = cam;
    const player = new FramecastLiveVideo(video, videoUrl(cam), { headers, onFallback: (reason) => {
      if (video.player === player) video.player = null;  // it stopped itself, in state "fallback"
      fallBack(cam, reason);
    } });
    video.player = player;
    player.start();
  }
  function stopVideo(video) {
    if (video && video.player) { video.player.stop(); video.player = null; }
  }
  function startLive(img, video, cam) {
    if (video && usesVideo(cam)) {
      stopFeed(img);
      img.hidden = true;
      video.hidden = false;
      startVideo(video, cam);
    } else {
      stopVideo(video);
      if (video) video.hidden = true;
      img.hidden = false;
      startFeed(img, cam);
    }
  }
  function stopLive(img, video) { stopFeed(img); stopVideo(video); }
  function startTile(tile) { startLive(tile.querySelector(".frame img"), tile.querySelector("video.live-video"), tile.dataset.camera); }
  function stopTile(tile) { stopLive(tile.querySelector(".frame img"), tile.querySelector("video.live-video")); }

  function showHint(tile, cam) {
    const hint = tile.querySelector(".view-hint");
    if (!hint) return;
    const reason = fallenBack.get(cam);
    hint.hidden = !(view === "h264" && (reason || mseMissing));
    hint.textContent = "MJPEG";
    hint.title = "H.264 view unavailable, showing MJPEG: " + (reason || "this browser has no Media Source Extensions");
  }
  // Invoked by a player that cannot play its camera: that camera's tile (and enlarged view) switch to MJPEG.
  function fallBack(cam, reason) {
    fallenBack.set(cam, reason);
    tiles.filter((tile) => tile.dataset.camera === cam).forEach((tile) => {
      showHint(tile, cam);
      if (tile.querySelector("img").dataset.mode === "mjpeg" && tile.dataset.visible === "1" && paused !== tile) startTile(tile);
    });
    if (!zoom.hidden && zoomImg.dataset.camera === cam) startLive(zoomImg, zoomVideo, cam);
  }

  function stopSnapshots(img) { img.snapshots = (img.snapshots || 0) + 1; clearTimeout(img.snapshotTimer); }

  // A tiny signature of the picture: if it stops changing while the camera is live, the stream stalled.
  const canvas = document.createElement("canvas");
  canvas.width = 16; canvas.height = 12;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  function signature(img) {
    try {
      ctx.drawImage(img, 0, 0, 16, 12);
      const data = ctx.getImageData(0, 0, 16, 12).data;
      let h = 0;
      for (let i = 0; i < data.length; i += 3) h = (h * 31 + data[i]) | 0;
      return String(h);
    } catch (e) { return ""; }
  }

  function watchdog() {
    const feeds = tiles.map((tile) => [tile.querySelector("img"), tile.dataset.camera]);
    if (!zoom.hidden) feeds.push([zoomImg, zoomImg.dataset.camera]);
    feeds.forEach(([img, cam]) => {
      if (img.dataset.mode !== "mjpeg" || !img.getAttribute("src")) return;
      // A stream that breaks after its first frame leaves a broken image and fires no error event
      // (Chrome): reload it, and the error handler takes over while the server is away.
      if (img.complete && img.naturalWidth === 0) { startFeed(img, cam); return; }
      if (!img.naturalWidth) return;  // still connecting
      const sig = signature(img);
      if (sig && sig === img.dataset.sig && live[cam] === "live") {
        img.dataset.still = String(Number(img.dataset.still || 0) + 1);
        if (Number(img.dataset.still) >= 3) startFeed(img, cam);
      } else {
        img.dataset.still = "0";
      }
      img.dataset.sig = sig;
    });
  }

  // Where a camera's time goes: one bar per camera, a segment per stage sized by its p50 over the
  // newest frames (/api/cameras `stages`, plus `send_ms` to this web process's viewers), coloured by
  // what it depends on. Widths are set through the CSSOM, which the style-src 'self' policy allows.
  const STAGES = [
    // The producer's send queue fills while the link to Redis is slow (network); transit grows while
    // the workers are busy (the frames queue in the stream) or the link is slow.
    ["motion", "producer"], ["encode", "producer"], ["queue", "network"], ["transit", "queue"], ["decode", "worker"],
    ["detect", "model"], ["annotate", "worker"], ["reencode", "worker"], ["publish", "worker"], ["send", "browser"]];
  const GROUPS = ["producer", "network", "queue", "model", "worker", "browser"];
  function renderStages(tile, cam) {
    const bar = tile.querySelector(".stages");
    const legend = tile.querySelector(".stage-legend");
    if (!bar || !legend) return;
    const stages = cam.stages || { p50: {}, p95: {}, frames: 0 };
    const p50 = Object.assign({}, stages.p50), p95 = Object.assign({}, stages.p95);
    if (cam.send_ms) { p50.send = cam.send_ms.p50; p95.send = cam.send_ms.p95; }
    const total = STAGES.reduce((sum, [stage]) => sum + Math.max(0, p50[stage] || 0), 0);
    const byGroup = {};
    STAGES.forEach(([stage, group]) => {
      if (stage === "motion" && p50.motion == null) return;  // a camera without motion gating
      let seg = bar.querySelector('[data-stage="' + stage + '"]');
      if (!seg) {
        seg = document.createElement("span");
        seg.className = "seg stage-" + group;
        seg.dataset.stage = stage;
        bar.appendChild(seg);
      }
      const ms = Math.max(0, p50[stage] || 0);
      seg.style.width = (total > 0 ? (100 * ms / total).toFixed(2) : "0") + "%";
      seg.title = stage + ": p50 " + fmt(p50[stage], 1, " ms") + ", p95 " + fmt(p95[stage], 1, " ms");
      if (p50[stage] !== undefined) byGroup[group] = (byGroup[group] || 0) + ms;
    });
    bar.classList.toggle("empty", total <= 0);
    legend.replaceChildren(...GROUPS.filter((g) => byGroup[g] !== undefined).map((group) => {
      const item = document.createElement("span");
      item.className = "key stage-" + group;
      item.textContent = group + " " + byGroup[group].toFixed(1);
      return item;
    }));
    if (total > 0) legend.append(" ms p50 over " + stages.frames + " frames");
  }

  function fmt(value, digits, unit) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits) + unit; }

  // Motion gating: the share of frames the model saw, and model runs per frame.
  function motionText(m) {
    if (!m || !m.enabled) return "";
    const frames = m.inspected_full + m.inspected_regions + m.not_inspected;
    if (!frames) return " · motion on";
    return " · inspected " + (100 * (m.inspected_full + m.inspected_regions) / frames).toFixed(0) + "% (regions " +
      m.inspected_regions + ", none " + m.not_inspected + ") · model runs " + m.inference_calls;
  }

  async function refreshStats() {
    try {
      // Only the cameras in view: with hundreds of cameras the page asks for the figures it shows.
      const inView = tiles.filter((tile) => tile.dataset.visible === "1").map((tile) => tile.dataset.camera);
      const query = inView.length ? "?camera=" + inView.map(encodeURIComponent).join(",") : "?limit=1";
      const response = await fetch(withToken("/api/cameras" + query), { headers, cache: "no-store" });
      if (!response.ok) throw new Error(response.status);
      const body = await response.json();
      body.cameras.forEach((cam) => {
        live[cam.id] = cam.status;
        const tile = document.querySelector('.tile[data-camera="' + CSS.escape(cam.id) + '"]');
        if (!tile) return;
        const status = tile.querySelector(".status");
        status.textContent = cam.status.replaceAll("_", " ");  // out_of_service: "out of service"
        status.className = "status " + cam.status;
        // `lost`: backlog frames gone with a reset stream (a Redis restart without persistence)
        tile.querySelector(".stats").textContent =
          "in " + fmt(cam.fps_in, 1, " fps") + " · out " + fmt(cam.fps_out, 1, " fps") +
          " · latency " + fmt(cam.latency_ms, 0, " ms") + " · inference " + fmt(cam.infer_ms, 0, " ms") +
          " · dropped " + cam.dropped + " · lost " + cam.lost + " · stale skipped " + cam.skipped_stale +
          " · failed " + cam.failed + " · workers " + cam.workers.length + motionText(cam.motion) +
          (cam.error ? " · error: " + cam.error : "");
        renderStages(tile, cam);
      });
      document.dispatchEvent(new CustomEvent("framecast:cameras", { detail: body }));  // events.js: overlays, counts
      document.getElementById("summary").textContent =
        tiles.length + " camera(s) · " + body.workers_live + " worker(s) · updated " + new Date().toLocaleTimeString();
    } catch (e) {
      document.getElementById("summary").textContent = "stats unavailable (" + e.message + "), retrying…";
    }
  }

  const zoom = document.getElementById("zoom");
  const zoomImg = zoom.querySelector("img");
  let paused = null;                // the tile whose feed the enlarged view replaces (one connection, not two)
  const zoomVideo = zoom.querySelector("video.live-video");
  function stopFeed(img) { clearTimeout(img.retry); img.onerror = null; img.removeAttribute("src"); }
  function openZoom(tile) {
    const img = tile.querySelector("img");
    if (img.dataset.mode === "mjpeg") { stopTile(tile); paused = tile; }
    zoom.hidden = false;
    zoomImg.dataset.mode = "mjpeg";
    zoomImg.dataset.camera = tile.dataset.camera;
    zoomImg.alt = img.alt;
    startLive(zoomImg, zoomVideo, tile.dataset.camera);
  }
  function closeZoom() {
    if (zoom.hidden) return;
    zoom.hidden = true;
    stopLive(zoomImg, zoomVideo);
    if (paused && paused.dataset.visible === "1") startTile(paused);
    paused = null;
  }
  zoom.addEventListener("click", closeZoom);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeZoom(); });

  // Only tiles in view are fed: a tile scrolled out of view closes its MJPEG connection or stops its
  // snapshots, and one scrolled into view starts them (with 100+ cameras, a page of tiles costs what
  // it shows). `data-visible` tells events.js which tiles to fetch events for.
  let statsSoon = null;
  function show(tile) {
    const img = tile.querySelector("img");
    tile.dataset.visible = "1";
    if (img.dataset.mode === "mjpeg") { if (paused !== tile) startTile(tile); }
    else startSnapshots(img, tile.dataset.camera);
    document.dispatchEvent(new CustomEvent("framecast:tile-visible", { detail: tile }));
    clearTimeout(statsSoon);
    statsSoon = setTimeout(refreshStats, 200);  // its figures now, not at the next poll
  }
  function hide(tile) {
    const img = tile.querySelector("img");
    tile.dataset.visible = "0";
    if (img.dataset.mode === "mjpeg") stopTile(tile); else stopSnapshots(img);
  }
  const observer = new IntersectionObserver((entries) => entries.forEach((entry) => {
    const visible = entry.isIntersecting;
    if (visible !== (entry.target.dataset.visible === "1")) (visible ? show : hide)(entry.target);
  }));

  tiles.forEach((tile, index) => {
    const img = tile.querySelector("img");
    const cam = tile.dataset.camera;
    img.dataset.mode = index < MJPEG_TILES ? "mjpeg" : "snapshot";
    tile.dataset.visible = "0";
    observer.observe(tile);
    tile.addEventListener("click", () => openZoom(tile));
    const toggle = tile.querySelector(".motion-toggle");
    if (toggle) toggle.addEventListener("click", (e) => {
      e.stopPropagation();              // not a click on the tile: no enlarged view
      const on = !motionView.has(cam);
      if (on) motionView.add(cam); else motionView.delete(cam);
      toggle.setAttribute("aria-pressed", String(on));
      if (img.dataset.mode === "mjpeg" && tile.dataset.visible === "1" && paused !== tile) startTile(tile);
    });
  });

  // The MJPEG / H.264 control: the choice applies at once to the tiles in view and the enlarged view.
  const choice = document.getElementById("view-choice");
  function renderChoice() {
    if (choice) choice.querySelectorAll("button[data-view]").forEach((button) =>
      button.setAttribute("aria-pressed", String(button.dataset.view === view)));
    tiles.forEach((tile) => showHint(tile, tile.dataset.camera));
  }
  function chooseView(next) {
    if (!VIEWS.includes(next) || next === view) return;
    view = next;
    fallenBack.clear();             // asked again: try H.264 again where it had fallen back
    try { localStorage.setItem(VIEW_KEY, view); } catch (e) { /* not remembered, still applied */ }
    const url = new URL(location.href);
    if (url.searchParams.has("view")) { url.searchParams.set("view", view); history.replaceState(null, "", url); }
    renderChoice();
    tiles.forEach((tile) => {
      if (tile.querySelector("img").dataset.mode === "mjpeg" && tile.dataset.visible === "1" && paused !== tile) startTile(tile);
    });
    if (!zoom.hidden) startLive(zoomImg, zoomVideo, zoomImg.dataset.camera);
  }
  if (choice) choice.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-view]");
    if (button) chooseView(button.dataset.view);
  });
  renderChoice();
  refreshStats();
  setInterval(refreshStats, 2000);
  setInterval(watchdog, WATCHDOG_MS);
})();
