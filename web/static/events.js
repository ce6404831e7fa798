// framecast dashboard, events: zone/line overlays over each tile, live counts, an events panel per
// camera (snapshot thumbnails; click plays the clip). Camera figures come from dashboard.js's
// /api/cameras poll (the "framecast:cameras" event), so this adds no request of its own for them.
"use strict";
(function () {
  const token = document.body.dataset.token || "";
  const EVENTS_MS = 4000;
  const PER_CAMERA = 6;
  const SVG = "http://www.w3.org/2000/svg";
  const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const tileOf = (cam) => document.querySelector('.tile[data-camera="' + CSS.escape(cam) + '"]');
  const eventUrl = (id, file) => withToken("/api/events/" + encodeURIComponent(id) + "/" + file);

  function svgEl(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
    parent.appendChild(el);
    return el;
  }

  // The overlay has the picture's own coordinates (its natural size) and letterboxes like the
  // <img> or <video> (object-fit: contain), so fractions of the frame land on the same pixels.
  function drawOverlay(tile, cam) {
    const img = tile.querySelector(".frame img");
    const svg = tile.querySelector(".overlay");
    const video = tile.querySelector(".frame video");  // the H.264 view, where the <img> stays empty
    const w = img.naturalWidth || (video && video.videoWidth) || 640;
    const h = img.naturalHeight || (video && video.videoHeight) || 480;
    const key = JSON.stringify([cam.zones, cam.lines, w, h]);
    if (svg.dataset.key === key) return;
    svg.dataset.key = key;
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "xMidYMid meet");
    const font = String(Math.round(h * 0.045));
    (cam.zones || []).forEach((zone) => {
      const points = zone.points.map(([x, y]) => x * w + "," + y * h).join(" ");
      svgEl("polygon", { class: "zone", points, "data-name": zone.name }, svg);
      const [x, y] = zone.points[0];
      svgEl("text", { class: "zone-name", x: x * w + 4, y: y * h + Number(font), "font-size": font }, svg)
        .textContent = zone.name;
    });
    (cam.lines || []).forEach((line) => {
      const [[ax, ay], [bx, by]] = line.points.map(([x, y]) => [x * w, y * h]);
      svgEl("line", { class: "line", x1: ax, y1: ay, x2: bx, y2: by, "data-name": line.name }, svg);
      // An arrow from the middle towards the side crossing into which counts as "in" (y points down:
      // the right of A->B is (-dy, dx)).
      const dx = bx - ax, dy = by - ay, len = Math.hypot(dx, dy) || 1, sign = line.in_side === "left" ? -1 : 1;
      const nx = (-dy / len) * sign, ny = (dx / len) * sign, arrow = h * 0.08;
      const mx = (ax + bx) / 2, my = (ay + by) / 2, tx = mx + nx * arrow, ty = my + ny * arrow;
      svgEl("line", { class: "line-in", x1: mx, y1: my, x2: tx, y2: ty }, svg);
      svgEl("text", { class: "line-name", x: ax + 4, y: ay - 6, "font-size": font }, svg).textContent = line.name;
      svgEl("text", { class: "line-in-label", x: tx + nx * 4, y: ty + ny * Number(font), "font-size": font,
                      "text-anchor": "middle" }, svg).textContent = "in";
    });
  }

  const sum = (byLabel) => Object.values(byLabel || {}).reduce((a, b) => a + b, 0);
  const detail = (byLabel) => Object.entries(byLabel || {}).filter(([, n]) => n).map(([l, n]) => l + " " + n).join(", ");

  function showCounts(tile, cam) {
    const out = tile.querySelector(".counts");
    if (cam.counts_error) { out.textContent = "counts unavailable: " + cam.counts_error; return; }
    const counts = cam.counts || { lines: {}, zones: {} };
    const parts = [];
    (cam.lines || []).forEach((line) => {
      const dirs = counts.lines[line.name] || {};
      const label = [detail(dirs.in) && "in: " + detail(dirs.in), detail(dirs.out) && "out: " + detail(dirs.out)];
      parts.push({ text: line.name + " in " + sum(dirs.in) + " · out " + sum(dirs.out),
                   title: label.filter(Boolean).join("; ") });
    });
    (cam.zones || []).forEach((zone) => {
      const now = counts.zones[zone.name] || {};
      parts.push({ text: zone.name + " now " + sum(now), title: detail(now) });
    });
    out.replaceChildren(...parts.map(({ text, title }) => {
      const span = document.createElement("span");
      span.textContent = text;
      if (title) span.title = title;
      return span;
    }));
  }

  document.addEventListener("framecast:cameras", (e) => {
    e.detail.cameras.forEach((cam) => {
      const tile = tileOf(cam.id);
      if (!tile) return;
      drawOverlay(tile, cam);
      showCounts(tile, cam);
    });
  });

  // --- the events panel ------------------------------------------------------------------------------
  function describe(ev) {
    const bits = [];
    if (ev.entered_zones.length) bits.push("zones " + ev.entered_zones.join(", "));
    ev.lines_crossed.forEach((c) => bits.push(c.line + " " + c.direction));
    return bits.join(" · ");
  }

  function renderEvents(tile, events) {
    const list = tile.querySelector(".events");
    const key = JSON.stringify(events.map((ev) => [ev.id, ev.has_clip, ev.has_snapshot, ev.snapshot && ev.snapshot.frame_time,
                                                   ev.entered_zones, ev.lines_crossed.length]));
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren(...events.map((ev) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "event" + (ev.has_clip ? " has-clip" : "");
      button.dataset.event = ev.id;
      button.title = ev.has_clip ? "play the clip" : "the clip is written when the event ends";
      if (ev.has_snapshot) {
        const thumb = document.createElement("img");
        thumb.alt = ev.label;
        thumb.loading = "lazy";
        thumb.src = eventUrl(ev.id, "snapshot.jpg?v=" + (ev.snapshot ? ev.snapshot.frame_time : 0));
        button.appendChild(thumb);
      }
      const label = document.createElement("strong");
      label.textContent = ev.label + " " + Math.round(ev.top_score * 100) + "%";
      const when = document.createElement("time");
      when.dateTime = new Date(ev.start_time * 1000).toISOString();
      when.textContent = new Date(ev.start_time * 1000).toLocaleTimeString() + (ev.end_time === null ? " · now" : "");
      const where = document.createElement("span");
      where.className = "where";
      where.textContent = describe(ev);
      button.append(label, when, where);
      button.addEventListener("click", () => play(ev));
      item.appendChild(button);
      return item;
    }));
  }

  // Events are fetched only for tiles in view (dashboard.js keeps `data-visible`) of cameras with
  // events configured (`data-events`): a camera without zones or lines has none to show.
  const wantsEvents = (tile) => tile.dataset.events === "1" && tile.dataset.visible === "1";
  async function loadEvents(tile) {
    const cam = tile.dataset.camera;
    try {
      const response = await fetch(withToken("/api/events?camera=" + encodeURIComponent(cam) + "&limit=" + PER_CAMERA),
                                   { headers, cache: "no-store" });
      if (!response.ok) throw new Error(response.status);
      renderEvents(tile, (await response.json()).events);
    } catch (e) {
      tile.querySelector(".events").dataset.error = String(e.message);
    }
  }
  async function refreshEvents() {
    for (const tile of document.querySelectorAll(".tile")) {
      if (wantsEvents(tile)) await loadEvents(tile);
    }
    setTimeout(refreshEvents, EVENTS_MS);
  }
  // A tile scrolled into view shows its events at once rather than at the next round.
  document.addEventListener("framecast:tile-visible", (e) => { if (wantsEvents(e.detail)) loadEvents(e.detail); });

  // --- the clip player -----------------------------------------------------------------------------
  const player = document.getElementById("player");
  const video = player.querySelector("video");
  const caption = player.querySelector("figcaption");
  function play(ev) {
    player.hidden = false;
    caption.textContent = ev.camera + " · " + ev.label + " · " + new Date(ev.start_time * 1000).toLocaleString() +
      (ev.has_clip ? "" : " · no clip yet (it is written when the event ends)");
    video.poster = ev.has_snapshot ? eventUrl(ev.id, "snapshot.jpg") : "";
    video.dataset.event = ev.id;
    if (ev.has_clip) {
      video.src = eventUrl(ev.id, "clip.mp4");
      video.play().catch(() => {});  // autoplay may be refused; the controls are there
    } else {
      video.removeAttribute("src");
      video.load();
    }
  }
  function closePlayer() {
    if (player.hidden) return;
    player.hidden = true;
    video.pause();
    video.removeAttribute("src");  // let go of the connection
    video.load();
  }
  player.addEventListener("click", (e) => { if (e.target === player || e.target.matches("button")) closePlayer(); });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closePlayer(); });
  // The panel sits inside a tile: its clicks play clips rather than enlarge the tile.
  document.querySelectorAll(".tile .events").forEach((list) => list.addEventListener("click", (e) => e.stopPropagation()));
  refreshEvents();
})();
