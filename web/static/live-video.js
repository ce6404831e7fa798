// framecast live video: plays a camera's /video/<cam>.mp4 (fragmented MP4 over chunked HTTP) in a
// <video> through Media Source Extensions, and keeps it at the live edge.
//
// One connection is one generation of the camera's video: the server sends the init segment, then a
// moof+mdat fragment per frame, and ends the response when the generation changes (another encoder,
// a new size) or when its encoder stalls. Each connection gets its own MediaSource, since it starts
// with a new init segment. Between connections the player waits with backoff (none after a clean
// end: that is a generation change). A live view must not drift behind live until a reload (the
// failure of several MSE players): the buffer is kept to BUFFER_S behind the playhead, a playhead
// more than JUMP_S behind the newest frame jumps there, one more than RATE_S behind plays a little
// faster until it caught up (go2rtc's video-rtc.js does the same).
//
// Exposed on the <video> for tests and benchmarks: dataset.state ("connecting", "playing",
// "fallback", "stopped") and framecastStats {appended, reconnects, behind, jumps, generation, codec}.
"use strict";
(function (global) {
  const BUFFER_S = 10;          // keep this much played video behind the playhead, remove the rest
  const JUMP_S = 1.5;           // further behind the newest frame than this: jump to it
  const JUMP_TO_S = 0.1;        // ... landing this far before it (a frame at 10 fps)
  const RATE_S = 0.25;          // further behind than this: play at CATCH_UP_RATE (at 0.5 it settled ~0.4 s behind)
  const CATCH_UP_RATE = 1.1;
  const TICK_MS = 250;
  const STALL_MS = 8000;        // no byte, or a playhead that has not moved, for this long: reconnect
  const MAX_PENDING = 8 << 20;  // bytes waiting for the SourceBuffer; past that the tab cannot keep up
  const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 5000];

  function mediaSourceClass() {
    // ManagedMediaSource where MediaSource is missing (Safari on iPhone) or next to it (it lets the
    // browser manage memory); MediaSource elsewhere.
    return global.ManagedMediaSource || global.MediaSource || null;
  }

  function canPlay(mime) {
    const MS = mediaSourceClass();
    return !!MS && !!mime && MS.isTypeSupported(mime);
  }

  // Top-level MP4 boxes out of arbitrary chunks: whole boxes are appended, init (ftyp+moov) once
  // the moov is complete, then each fragment once its mdat is complete.
  class BoxReader {
    constructor() { this.chunks = []; this.length = 0; }
    push(chunk) { this.chunks.push(chunk); this.length += chunk.byteLength; }
    bytes() {
      if (this.chunks.length !== 1) {
        const all = new Uint8Array(this.length);
        let at = 0;
        this.chunks.forEach((c) => { all.set(c, at); at += c.byteLength; });
        this.chunks = [all];
      }
      return this.chunks[0];
    }
    // The complete boxes read so far, as [{type, data}], leaving the incomplete rest.
    boxes() {
      if (this.length < 8) return [];
      const data = this.bytes();
      const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      const out = [];
      let at = 0;
      while (data.byteLength - at >= 8) {
        let size = view.getUint32(at);
        const type = String.fromCharCode(data[at + 4], data[at + 5], data[at + 6], data[at + 7]);
        if (size === 1) {
          if (data.byteLength - at < 16) break;
          size = view.getUint32(at + 8) * 2 ** 32 + view.getUint32(at + 12);
        }
        if (size < 8) throw new Error("bad MP4 box " + JSON.stringify(type) + " of size " + size);
        if (data.byteLength - at < size) break;
        out.push({ type, data: data.subarray(at, at + size) });
        at += size;
      }
      const rest = data.subarray(at);
      this.chunks = rest.byteLength ? [rest] : [];
      this.length = rest.byteLength;
      return out;
    }
  }

  class FramecastLiveVideo {
    // options: headers (for fetch: the token), onFallback(reason) when this browser or server
    // cannot play it (404: video disabled; codec unsupported), onState(state).
    constructor(video, url, options) {
      this.video = video;
      this.url = url;
      this.options = options || {};
      this.session = 0;          // each connection's number: callbacks of an older one do nothing
      this.failures = 0;
      this.timer = null;
      this.retry = null;
      this.controller = null;
      this.objectUrl = null;
      video.muted = true;
      video.playsInline = true;
      video.framecastStats = { appended: 0, reconnects: 0, behind: 0, jumps: 0, generation: null, codec: null };
    }

    get stats() { return this.video.framecastStats; }

    setState(state) {
      if (this.video.dataset.state === state) return;
      this.video.dataset.state = state;
      if (this.options.onState) this.options.onState(state);
    }

    start() {
      this.stopped = false;
      this.connect();
    }

    stop() {
      this.stopped = true;
      this.teardown();
      clearTimeout(this.retry);
      this.setState("stopped");
    }

    teardown() {
      this.session += 1;
      clearInterval(this.timer);
      this.timer = null;
      if (this.controller) this.controller.abort();
      this.controller = null;
      this.video.removeAttribute("src");
      this.video.load();
      if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
      this.objectUrl = null;
    }

    // Called when a connection ended or failed: again after a backoff (at once after a clean end).
    reconnect(clean) {
      if (this.stopped) return;
      this.teardown();
      this.stats.reconnects += 1;
      const delay = clean && this.failures === 0 ? 0 : BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
      if (!clean) this.failures += 1;
      this.setState("connecting");
      clearTimeout(this.retry);
      this.retry = setTimeout(() => this.connect(), delay);
    }

    fallback(reason) {
      this.stopped = true;
      this.teardown();
      clearTimeout(this.retry);
      this.setState("fallback");
      if (this.options.onFallback) this.options.onFallback(reason);
    }

    async connect() {
      if (this.stopped) return;
      const session = ++this.session;
      this.setState("connecting");
      const controller = (this.controller = new AbortController());
      let response;
      try {
        response = await fetch(this.url, { headers: this.options.headers || {}, cache: "no-store",
                                           signal: controller.signal });
      } catch (e) {
        if (session === this.session) this.reconnect(false);  // the server is away: retry later
        return;
      }
      if (session !== this.session) { controller.abort(); return; }
      if (response.status === 404) { this.fallback("the server has no H.264 live view (video disabled)"); return; }
      if (!response.ok) {
        // 503: no encoder yet (our request just started one), 429: too many streams. Retry-After says when.
        const after = Number(response.headers.get("Retry-After"));
        controller.abort();
        this.stats.reconnects += 1;
        this.failures += 1;
        const delay = after > 0 ? after * 1000 : BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
        this.retry = setTimeout(() => this.connect(), delay);
        return;
      }
      const mime = response.headers.get("X-Video-Mime");
      if (!canPlay(mime)) {
        controller.abort();
        this.fallback("this browser cannot play " + (mime || "the video") + " through Media Source Extensions");
        return;
      }
      this.stats.codec = response.headers.get("X-Video-Codec");
      this.stats.generation = response.headers.get("X-Video-Generation");
      this.play(session, response, mime);
    }

    play(session, response, mime) {
      const video = this.video;
      const MS = mediaSourceClass();
      const source = new MS();
      if (global.ManagedMediaSource && source instanceof global.ManagedMediaSource) {
        video.disableRemotePlayback = true;  // a ManagedMediaSource plays only without AirPlay
      }
      this.objectUrl = URL.createObjectURL(source);
      video.src = this.objectUrl;
      const live = () => session === this.session && !this.stopped;
      const fail = () => { if (live()) this.reconnect(false); };
      video.onerror = () => {
        if (!live()) return;
        if (video.error && video.error.code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED) {
          this.fallback("this browser cannot decode the video");
        } else {
          fail();
        }
      };
      source.addEventListener("sourceopen", () => {
        if (!live()) return;
        let buffer;
        try {
          buffer = source.addSourceBuffer(mime);
        } catch (e) {
          this.fallback("this browser refused " + mime + " (" + e.message + ")");
          return;
        }
        const pending = [];     // whole boxes waiting while the SourceBuffer is busy
        let pendingBytes = 0, pendingFragments = 0;
        let head = [];          // boxes of the next unit: ftyp+moov, or moof+mdat
        let lastByte = performance.now(), lastMove = performance.now(), lastTime = -1;
        const flush = () => {
          if (!live() || buffer.updating || !pending.length || source.readyState !== "open") return;
          const parts = pending.splice(0);
          const data = new Uint8Array(pendingBytes);
          let at = 0;
          parts.forEach((p) => { data.set(p, at); at += p.byteLength; });
          pendingBytes = 0;
          try {
            buffer.appendBuffer(data);
            this.stats.appended += pendingFragments;
            pendingFragments = 0;
          } catch (e) {
            fail();  // QuotaExceededError and the like: start again at a keyframe
          }
        };
        const trimAndChase = () => {
          if (!live() || source.readyState !== "open") return;
          const ranges = buffer.buffered;
          if (!ranges.length) return;
          const start = ranges.start(0), end = ranges.end(ranges.length - 1);
          const now = video.currentTime;
          const behind = end - now;
          this.stats.behind = Math.round(behind * 1000) / 1000;
          if (now < start || behind > JUMP_S) {
            video.currentTime = Math.max(start, end - JUMP_TO_S);
            if (now >= start) this.stats.jumps += 1;
          } else {
            const rate = behind > RATE_S ? CATCH_UP_RATE : 1.0;
            if (video.playbackRate !== rate) video.playbackRate = rate;
          }
          if (!buffer.updating && now - start > BUFFER_S + 2) {
            try { buffer.remove(start, now - BUFFER_S); } catch (e) { /* busy: next tick */ }
          }
          if (video.paused) video.play().catch(() => {});  // muted autoplay; retried each tick
        };
        buffer.addEventListener("updateend", () => {
          trimAndChase();
          flush();
        });
        buffer.addEventListener("error", fail);
        this.timer = setInterval(() => {
          if (!live()) return;
          trimAndChase();
          flush();
          const t = performance.now();
          if (video.currentTime !== lastTime) {
            if (lastTime >= 0 && !video.paused) {
              this.failures = 0;
              this.setState("playing");
            }
            lastTime = video.currentTime;
            lastMove = t;
          }
          if (t - lastByte > STALL_MS || (this.stats.appended && t - lastMove > STALL_MS)) fail();
        }, TICK_MS);

        const boxes = new BoxReader();
        const reader = response.body.getReader();
        const pump = async () => {
          for (;;) {
            const { done, value } = await reader.read();
            if (!live()) return;
            if (done) { this.reconnect(true); return; }  // a new generation, or the encoder stalled
            lastByte = performance.now();
            boxes.push(value);
            for (const box of boxes.boxes()) {
              head.push(box.data);
              if (box.type !== "moov" && box.type !== "mdat") continue;
              head.forEach((part) => { pending.push(part); pendingBytes += part.byteLength; });
              head = [];
              if (box.type === "mdat") pendingFragments += 1;
            }
            if (pendingBytes > MAX_PENDING) { fail(); return; }
            flush();
          }
        };
        pump().catch(fail);
      }, { once: true });
    }
  }

  FramecastLiveVideo.canPlay = canPlay;
  FramecastLiveVideo.supported = () => !!mediaSourceClass();
  global.FramecastLiveVideo = FramecastLiveVideo;
})(window);
