// simpang video wall: one browser tile playing its camera's own H.264 (Media Source Extensions,
// fragmented MP4 over the WebSocket /live/{site}) with the analytics drawn on a canvas over the
// video, for the frame on screen. The server decodes and encodes nothing for it.
//
// Protocol (docs/wall.md, "The browser tile"): text `hello` (a new stream: codec, size, zones,
// lines), binary messages (16-byte header: kind 1 init / 2 fragment, flags bit 0 key frame, u32
// LE sequence, f64 LE arrival ms; then the MP4 bytes), text `analytics` (keyed by the media time
// `t` of the frame they were computed on, in 90 kHz ticks: the same clock as the fragments'
// decode times), text `offline`, text `error`, text `gone` (the node stopped serving the site).
//
// Where the tile plays from: it asks its own wall (`site.resolve`, /api/live/{site}) before
// every connection. A site this node serves plays from /live/{site} here; one another node
// serves plays from that node's /live/{site} with a one-site ticket this node signed. When the
// socket closes (the node died, the site moved) or the status line names another node, the
// tile asks again and follows the site, without a page reload.
//
// Which frame is on screen comes from requestVideoFrameCallback's mediaTime, never from pixels
// read back (they can be a frame off). Boxes of the displayed frame's own result are drawn as
// they are; otherwise the newest earlier result's boxes are moved by their velocity, at most
// 0.5 s ahead, as the burned-in tiles do.
"use strict";

const LIVE_MARGIN_S = 0.10;  // play-out buffer beyond one frame: less stalls on a loaded machine
const LIVE_JUMP_S = 1.0;     // further behind than this: seek instead of speeding up
const MAX_EXTRAPOLATION_S = 0.5;
const STALE_RESULTS_MS = 3000;
const TICKS = 90000;
const SEVERITY_RGB = { normal: [60, 200, 80], elevated: [255, 210, 0], alert: [230, 40, 40] };
// Matches class_colour in src/wall/scene.rs.
const GROUP_RGB = { vehicle: [255, 170, 0], person: [0, 210, 255], other: [190, 120, 255] };
const rgba = (c, a) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

class LiveTile {
  // `opts.onFallback(reason)`: this tile cannot play passthrough (codec, browser); the wall
  // shows its burned-in MJPEG instead. `opts.onState(state)`: "playing", "offline", "connecting".
  constructor(site, box, opts) {
    this.site = site;
    this.box = box;
    this.opts = opts || {};
    this.video = document.createElement("video");
    this.video.muted = true;
    this.video.autoplay = true;
    this.video.playsInline = true;
    this.video.setAttribute("muted", "");
    this.video.setAttribute("aria-label", `Kamera ${site.name}`);
    this.canvas = document.createElement("canvas");
    this.canvas.className = "ov";
    this.ctx = this.canvas.getContext("2d");
    box.appendChild(this.video);
    box.appendChild(this.canvas);
    this.queue = [];
    this.results = [];
    this.hello = null;
    this.state = "connecting";
    this.stopped = false;
    this.failures = 0;
    this.node = null;       // the node the tile plays from (null: this wall, outside a cluster)
    this.servedHere = null;
    this.s = {
      connects: 0, resolves: 0, moves: 0, hellos: 0, inits: 0, fragments: 0, bytes: 0, analytics: 0, presented: 0,
      stalls: 0, seeks: 0, errors: [], boxes_drawn: 0, last_boxes: 0, first_frame_ms: null,
      exact: 0, extrapolated: 0, offline_msgs: 0, lat_ms: [],
    };
    this.arrivals = new Map(); // decode tick -> arrival ms (glass-to-glass for the bench)
    this.t0 = performance.now();
    this.video.addEventListener("waiting", () => this.s.stalls++);
    this.video.addEventListener("error", () => {
      const e = this.video.error;
      this.s.errors.push("video: " + (e ? `${e.code} ${e.message}` : "?"));
      // A decoder error needs a fresh MediaSource; reconnecting gives one.
      if (this.ws) this.ws.close();
    });
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
      const cb = (now, md) => {
        if (this.stopped) return;
        this.video.requestVideoFrameCallback(cb);
        this.presented(md.mediaTime, md.expectedDisplayTime || now);
      };
      this.video.requestVideoFrameCallback(cb);
    } else {
      const poll = () => {
        if (this.stopped) return;
        requestAnimationFrame(poll);
        const v = this.video;
        if (v.readyState >= 2 && v.currentTime !== this.lastCt) {
          this.lastCt = v.currentTime;
          this.presented(v.currentTime, performance.now());
        }
      };
      requestAnimationFrame(poll);
    }
    this.timer = setInterval(() => this.housekeeping(), 1000);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) this.keepLive(); });
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    if (this.ws) { this.ws.onclose = null; this.ws.close(); }
    this.dropMedia();
    this.video.remove();
    this.canvas.remove();
  }

  setState(s) {
    if (this.state === s) return;
    this.state = s;
    if (this.opts.onState) this.opts.onState(s);
  }

  connect() {
    if (this.stopped) return;
    if (!this.site.resolve) return this.open(this.site.live);
    this.s.resolves++;
    fetch(this.site.resolve, { cache: "no-store" })
      .then((r) => {
        if (r.status === 401) {
          location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
          return null;
        }
        return r.json().then((j) => Object.assign(j, { ok: r.ok }));
      })
      .then((j) => {
        if (this.stopped || !j) return;
        if (!j.ok || !j.url) {
          // No node serves the site right now (it is moving): ask again shortly.
          this.node = j.node || null;
          return this.retry();
        }
        if (this.node !== null && j.node !== this.node) this.s.moves++;
        this.node = j.node || null;
        this.servedHere = !!j.served_here;
        this.open(j.url);
      })
      .catch((e) => { this.s.errors.push("resolve: " + e); this.retry(); });
  }

  retry() {
    this.failures++;
    this.setState("connecting");
    // 1 s, then up to 5 s between tries: the server may be restarting.
    setTimeout(() => this.connect(), Math.min(5000, 1000 * this.failures));
  }

  // The status line names the node serving the site: a tile playing from another node
  // reconnects (and asks where to, so it gets there with a fresh ticket).
  follow(node) {
    if (this.stopped || !node || this.node === null || node === this.node || !this.ws) return;
    this.node = node;
    this.ws.close();
  }

  open(url) {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.startsWith("/") ? `${proto}//${location.host}${url}` : url);
    ws.binaryType = "arraybuffer";
    this.s.connects++;
    let opened = false;
    ws.onopen = () => { opened = true; this.failures = 0; };
    ws.onmessage = (e) => this.onMessage(e.data);
    ws.onclose = () => {
      if (this.stopped || this.ws !== ws) return;
      this.failures = opened ? 1 : this.failures + 1;
      this.setState("connecting");
      // 1 s, then up to 5 s between tries: the server may be restarting.
      setTimeout(() => this.connect(), Math.min(5000, 1000 * this.failures));
    };
    this.ws = ws;
  }

  onMessage(data) {
    if (typeof data === "string") {
      let m;
      try { m = JSON.parse(data); } catch (e) { this.s.errors.push("bad JSON"); return; }
      if (m.type === "hello") this.onHello(m);
      else if (m.type === "analytics") this.onAnalytics(m);
      else if (m.type === "offline") { this.s.offline_msgs++; this.dropMedia(); this.setState("offline"); }
      else if (m.type === "error") this.s.errors.push("server: " + m.message);
      else if (m.type === "gone") { this.s.gone = (this.s.gone || 0) + 1; this.dropMedia(); }
      return;
    }
    if (!this.hello || data.byteLength < 16) return;
    const dv = new DataView(data);
    const kind = dv.getUint8(0);
    const body = new Uint8Array(data, 16);
    if (kind === 1) this.s.inits++;
    else if (kind === 2) {
      this.s.fragments++;
      // Decode time of the fragment (tfdt, 64-bit at byte 60 of our moof) for the
      // glass-to-glass measurement: arrival at ingest of the frame now shown.
      if (body.length > 68) {
        const t = Number(new DataView(data, 16).getBigUint64(60));
        this.arrivals.set(t, dv.getFloat64(8, true));
        if (this.arrivals.size > 300) this.arrivals.delete(this.arrivals.keys().next().value);
      }
    }
    this.s.bytes += data.byteLength;
    this.queue.push(body);
    this.pump();
  }

  onHello(h) {
    this.s.hellos++;
    this.hello = h;
    this.geometry = { zones: h.zones || [], lines: h.lines || [] };
    this.results = this.results.filter((r) => r.epoch === h.epoch);
    this.dropMedia();
    if (!h.passthrough) return this.fallback(h.reason || `${h.media_type} tidak bisa diputar langsung`);
    if (!window.MediaSource || !MediaSource.isTypeSupported(h.mime)) {
      return this.fallback(`peramban tidak bisa memutar ${h.mime}`);
    }
    const ms = new MediaSource();
    this.ms = ms;
    this.url = URL.createObjectURL(ms);
    this.video.src = this.url;
    ms.addEventListener("sourceopen", () => {
      if (this.ms !== ms) return;
      try {
        this.sb = ms.addSourceBuffer(h.mime);
        this.sb.mode = "segments";
      } catch (e) {
        this.s.errors.push("addSourceBuffer: " + e);
        return this.fallback("MSE: " + e);
      }
      this.sb.addEventListener("updateend", () => { this.keepLive(); this.pump(); });
      this.sb.addEventListener("error", () => this.s.errors.push("SourceBuffer error"));
      this.pump();
    });
    this.setState("playing");
  }

  fallback(reason) {
    this.s.errors.push("fallback: " + reason);
    this.stop();
    if (this.opts.onFallback) this.opts.onFallback(reason);
  }

  dropMedia() {
    this.queue = [];
    this.sb = null;
    this.ms = null;
    if (this.url) { URL.revokeObjectURL(this.url); this.url = null; }
    this.video.removeAttribute("src");
    try { this.video.load(); } catch (e) { /* nothing loaded */ }
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
  }

  // Appends everything queued as one buffer once the SourceBuffer is free.
  pump() {
    const sb = this.sb;
    if (!sb || sb.updating || this.queue.length === 0 || !this.ms || this.ms.readyState !== "open") return;
    let n = 0;
    for (const b of this.queue) n += b.byteLength;
    const all = new Uint8Array(n);
    let o = 0;
    for (const b of this.queue) { all.set(b, o); o += b.byteLength; }
    this.queue = [];
    try { sb.appendBuffer(all); }
    catch (e) {
      this.s.errors.push("append: " + e.name);
      if (e.name === "QuotaExceededError") this.trim(2);
    }
  }

  target() {
    const frame = this.hello && this.hello.frame_ms > 0 ? this.hello.frame_ms / 1000 : 0.04;
    return frame + LIVE_MARGIN_S + ((this.hello && this.hello.delay_ms) || 0) / 1000;
  }

  // Plays `target` behind the newest frame: a little late, speeds up (no visible jump); far
  // behind (a stall, a hidden tab), seeks.
  keepLive() {
    const sb = this.sb;
    if (!sb || sb.updating) return;
    const b = sb.buffered;
    if (!b.length) return;
    const start = b.start(b.length - 1), end = b.end(b.length - 1);
    const v = this.video, lag = end - v.currentTime, t = this.target();
    let rate = v.playbackRate;
    if (v.currentTime < start || lag > t + LIVE_JUMP_S) {
      v.currentTime = Math.max(start, end - t);
      this.s.seeks++;
      rate = 1;
    } else if (lag > t + 0.08) rate = 1.1;
    else if (lag < t - 0.04) rate = 0.95;
    else if (Math.abs(lag - t) < 0.02) rate = 1;
    if (rate !== v.playbackRate) v.playbackRate = rate;
    if (v.paused) v.play().catch((e) => this.s.errors.push("play: " + e.name));
  }

  trim(keep) {
    const sb = this.sb;
    if (!sb || sb.updating || !sb.buffered.length) return;
    const cut = this.video.currentTime - keep;
    if (cut - sb.buffered.start(0) > 5) {
      try { sb.remove(0, cut); } catch (e) { /* removed later */ }
    }
  }

  onAnalytics(m) {
    this.s.analytics++;
    m.received = performance.now();
    if (this.hello && m.epoch != null && m.epoch !== this.hello.epoch) return;
    this.results.push(m);
    if (this.results.length > 64) this.results.shift();
  }

  presented(mediaTime, displayAt) {
    this.s.presented++;
    if (this.s.first_frame_ms === null) this.s.first_frame_ms = performance.now() - this.t0;
    const tick = Math.round(mediaTime * TICKS);
    let arrived;
    for (const d of [0, -1, 1, -2, 2]) {
      arrived = this.arrivals.get(tick + d);
      if (arrived !== undefined) break;
    }
    if (arrived !== undefined) {
      this.s.lat_ms.push(performance.timeOrigin + displayAt - arrived);
      if (this.s.lat_ms.length > 600) this.s.lat_ms.shift();
    }
    this.draw(tick);
  }

  // The result for the frame at `tick`: its own, else the newest earlier one (its boxes moved
  // by their velocity), else the oldest later one (while the video runs ahead of analytics).
  resultFor(tick) {
    const frame = this.hello && this.hello.frame_ms > 0 ? this.hello.frame_ms * 90 : 3000;
    let best = null;
    for (const r of this.results) {
      if (r.t == null) { best = r; continue; }
      if (Math.abs(r.t - tick) < frame / 3) return { r, dt: 0, exact: true };
      if (r.t <= tick && (!best || best.t == null || r.t > best.t)) best = r;
    }
    if (!best && this.results.length) best = this.results[0];
    if (!best) return null;
    const dt = best.t == null ? 0 : (tick - best.t) / TICKS;
    return { r: best, dt: Math.max(-MAX_EXTRAPOLATION_S, Math.min(MAX_EXTRAPOLATION_S, dt)), exact: false };
  }

  draw(tick) {
    const c = this.canvas, ctx = this.ctx;
    const w = c.clientWidth, h = c.clientHeight;
    if (!w || !h) return;
    const dpr = window.devicePixelRatio || 1;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(h * dpr);
    }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const vw = this.video.videoWidth, vh = this.video.videoHeight;
    if (!vw || !vh) return;
    // Where the picture is inside the element (object-fit: contain).
    const sc = Math.min(w / vw, h / vh);
    const pw = vw * sc, ph = vh * sc, ox = (w - pw) / 2, oy = (h - ph) / 2;
    const P = (x, y) => [ox + x * pw, oy + y * ph];
    const ui = Math.max(0.75, Math.min(3, ph / 360));
    const found = this.resultFor(tick);
    const r = found && found.r;
    const age = r ? (r.age_ms || 0) + (performance.now() - r.received) : Infinity;
    const mediaLag = r && r.t != null ? (tick - r.t) / TICKS * 1000 : 0;
    const fresh = !!r && age < STALE_RESULTS_MS && mediaLag < STALE_RESULTS_MS;
    const blink = Date.now() % 1000 < 500;
    ctx.lineJoin = "round";
    const zoneState = new Map(((r && r.zones) || []).map((z) => [z.id, z]));
    for (const z of this.geometry.zones) {
      const st = zoneState.get(z.id);
      const sev = st && (st.incident || fresh) ? st.severity : null;
      const pts = (z.polygon || []).map(([x, y]) => P(x, y));
      if (pts.length < 3) continue;
      ctx.beginPath();
      ctx.moveTo(pts[0][0], pts[0][1]);
      for (const p of pts.slice(1)) ctx.lineTo(p[0], p[1]);
      ctx.closePath();
      if (sev) {
        const col = SEVERITY_RGB[sev] || SEVERITY_RGB.normal;
        ctx.fillStyle = rgba(col, sev === "alert" && blink ? 0.43 : 0.25);
        ctx.fill();
        ctx.strokeStyle = rgba(col, 1);
        ctx.lineWidth = (st.incident ? 3 : 2) * ui;
      } else {
        ctx.strokeStyle = "rgba(200,200,200,0.9)";
        ctx.lineWidth = 1;
      }
      ctx.stroke();
      const text = st && fresh ? st.label : z.name;
      const top = pts.reduce((a, b) => (b[1] < a[1] || (b[1] === a[1] && b[0] < a[0]) ? b : a));
      this.label(text, top[0], top[1] + 4, sev ? SEVERITY_RGB[sev] : [60, 60, 60], ui, w, h, true);
    }
    const lineTotals = new Map(((r && r.lines) || []).map((l) => [l.id, l]));
    for (const l of this.geometry.lines) this.drawLine(l, lineTotals.get(l.id), P, ui, w, h);
    let boxes = 0;
    if (fresh) {
      const dt = found.dt;
      for (const t of r.tracks || []) {
        const [x1, y1, x2, y2] = t.box, [vx, vy] = t.v || [0, 0];
        const [ax, ay] = P(x1 + vx * dt, y1 + vy * dt);
        const [bx, by] = P(x2 + vx * dt, y2 + vy * dt);
        const col = GROUP_RGB[t.group] || GROUP_RGB.other;
        ctx.strokeStyle = rgba(col, 1);
        ctx.lineWidth = 2 * ui;
        ctx.strokeRect(ax, ay, Math.max(2, bx - ax), Math.max(2, by - ay));
        this.label(t.label, ax, ay, col, ui, w, h, false, true);
        boxes++;
      }
      if (found.exact) this.s.exact++; else this.s.extrapolated++;
    } else {
      const text = r ? "ANALITIK TERTUNDA" : "ANALITIK BELUM AKTIF";
      ctx.font = `${Math.round(11 * ui)}px sans-serif`;
      const tw = ctx.measureText(text).width;
      ctx.fillStyle = "rgba(40,40,40,0.85)";
      ctx.fillRect(w - tw - 18, h - 26 * ui, tw + 10, 18 * ui);
      ctx.fillStyle = "#ddd";
      ctx.fillText(text, w - tw - 13, h - 13 * ui);
    }
    this.s.last_boxes = boxes;
    this.s.boxes_drawn += boxes;
  }

  drawLine(l, totals, P, ui, w, h) {
    const ctx = this.ctx;
    const [ax, ay] = P(l.a[0], l.a[1]), [bx, by] = P(l.b[0], l.b[1]);
    ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by);
    ctx.strokeStyle = "rgba(30,30,30,0.9)"; ctx.lineWidth = 4 * ui; ctx.stroke();
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 2 * ui; ctx.stroke();
    ctx.fillStyle = "#fff";
    for (const [x, y] of [[ax, ay], [bx, by]]) { ctx.beginPath(); ctx.arc(x, y, 4 * ui, 0, 2 * Math.PI); ctx.fill(); }
    // "in" is a crossing from the left of A->B to its right (y down): the right-hand normal.
    const dx = bx - ax, dy = by - ay, len = Math.max(1, Math.hypot(dx, dy));
    const nx = -dy / len, ny = dx / len, arrow = 26 * ui, cyan = [0, 200, 255];
    const counts = [[0.35, 1, totals ? totals.in : 0], [0.65, -1, totals ? totals.out : 0]];
    for (const [frac, sign, n] of counts) {
      const mx = ax + dx * frac, my = ay + dy * frac;
      const tx = mx + sign * nx * arrow, ty = my + sign * ny * arrow;
      ctx.strokeStyle = rgba(cyan, 1); ctx.lineWidth = 2 * ui;
      ctx.beginPath(); ctx.moveTo(mx, my); ctx.lineTo(tx, ty); ctx.stroke();
      const hd = 7 * ui, an = Math.atan2(ty - my, tx - mx);
      ctx.beginPath();
      ctx.moveTo(tx, ty);
      ctx.lineTo(tx - hd * Math.cos(an - 0.5), ty - hd * Math.sin(an - 0.5));
      ctx.lineTo(tx - hd * Math.cos(an + 0.5), ty - hd * Math.sin(an + 0.5));
      ctx.closePath(); ctx.fillStyle = rgba(cyan, 1); ctx.fill();
      this.label(String(n), tx + (tx - mx) / 2, ty + (ty - my) / 2, cyan, ui, w, h, true);
    }
  }

  // A label with a coloured backing; `centred` centres it on x, `above` puts it above y.
  label(text, x, y, col, ui, w, h, centred, above) {
    const ctx = this.ctx;
    ctx.font = `${Math.round(11 * ui)}px sans-serif`;
    const tw = ctx.measureText(text).width, th = 15 * ui;
    let lx = centred ? x - tw / 2 - 4 : x;
    let ly = above ? y - th : y;
    lx = Math.max(2, Math.min(w - tw - 10, lx));
    ly = Math.max(2, Math.min(h - th - 2, ly));
    ctx.fillStyle = rgba(col, 0.9);
    ctx.fillRect(lx, ly, tw + 8, th);
    const luma = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2];
    ctx.fillStyle = luma > 140 ? "#111" : "#eee";
    ctx.fillText(text, lx + 4, ly + th - 4 * ui);
  }

  housekeeping() {
    this.trim(10);
    this.keepLive();
  }

  // What the tests and the bench read (window.wallLive()).
  stats() {
    const v = this.video, sb = this.sb;
    let thumb = null;
    try {
      const c = this.thumbCanvas || (this.thumbCanvas = document.createElement("canvas"));
      c.width = 32; c.height = 18;
      const x = c.getContext("2d", { willReadFrequently: true });
      x.drawImage(v, 0, 0, 32, 18);
      const d = x.getImageData(0, 0, 32, 18).data;
      let hash = 0, sum = 0, sq = 0;
      for (let i = 0; i < d.length; i += 4) {
        hash = (hash * 31 + d[i]) >>> 0;
        sum += d[i]; sq += d[i] * d[i];
      }
      const n = d.length / 4, mean = sum / n;
      thumb = { hash, mean, sd: Math.sqrt(Math.max(0, sq / n - mean * mean)) };
    } catch (e) { /* no picture yet */ }
    // Overlay pixels in the box colours: boxes are really on the canvas.
    let boxPixels = 0;
    try {
      const c = this.canvas;
      if (c.width && c.height) {
        const d = this.ctx.getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i + 3] < 200) continue;
          for (const g of Object.values(GROUP_RGB)) {
            if (Math.abs(d[i] - g[0]) < 8 && Math.abs(d[i + 1] - g[1]) < 8 && Math.abs(d[i + 2] - g[2]) < 8) { boxPixels++; break; }
          }
        }
      }
    } catch (e) { /* canvas not ready */ }
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    return Object.assign({}, this.s, {
      site: this.site.id, node: this.node, served_here: this.servedHere, state: this.state, epoch: this.hello ? this.hello.epoch : null,
      passthrough: !!(this.hello && this.hello.passthrough), mime: this.hello ? this.hello.mime : null,
      currentTime: v.currentTime, paused: v.paused, readyState: v.readyState,
      videoWidth: v.videoWidth, videoHeight: v.videoHeight,
      buffered: sb ? [...Array(sb.buffered.length).keys()].map((i) => [sb.buffered.start(i), sb.buffered.end(i)]) : [],
      dropped: q ? q.droppedVideoFrames : null, total: q ? q.totalVideoFrames : null,
      thumb, box_pixels: boxPixels, results: this.results.length, lat_ms: this.s.lat_ms.slice(-100),
    });
  }
}

window.LiveTile = LiveTile;
