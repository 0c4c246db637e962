// simpang video wall. No framework, no build step.
//
// Tiles: each H.264 camera's own video, played by the browser (LiveTile, live.js: Media Source
// Extensions fed over the WebSocket /live/{site}), with the analytics drawn on a canvas over it.
// The server decodes and encodes nothing for a browser. A camera the browser cannot play (H.265,
// a browser without MSE) or a wall with `wall.live = false` gets its burned-in MJPEG tile
// instead: all such tiles arrive over ONE multipart connection (/tiles.mjpg?sites=..., read with
// fetch() and drawn into a canvas per tile), because browsers allow six HTTP/1.1 connections per
// host (WebSockets do not count against it). Add ?mode=mjpeg to the page URL to use the
// burned-in tiles for every camera, ?mode=img for per-tile <img> MJPEG (up to five tiles).
// Feed: incidents and camera status come over one EventSource (/events), which reconnects by
// itself.
"use strict";

const KIND = {
  traffic_jam: "Kemacetan",
  crowd: "Kerumunan",
  garbage: "Sampah",
  camera_offline: "Kamera offline",
  camera_tamper: "Kamera terganggu",
};
const EVENT = { new: "BARU", update: "PEMBARUAN", end: "SELESAI" };
const HIGH = new Set(["macet", "tinggi", "kritis", "offline"]);
const MID = new Set(["padat", "sedang"]);
const TZ_ABBR = {
  "Asia/Jakarta": "WIB", "Asia/Pontianak": "WIB",
  "Asia/Makassar": "WITA", "Asia/Jayapura": "WIT",
};

const state = {
  cfg: null,
  tiles: new Map(),      // site id -> {el, img, meta, state, badge}
  incidents: new Map(),  // incident id -> latest browser JSON
  openBySite: new Map(), // site id -> count of open incidents from the feed
};

const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function tzAbbr(tz) { return TZ_ABBR[tz] || tz; }

function fmtTime(iso, withDate) {
  if (!iso) return "–";
  const d = new Date(iso);
  const tz = state.cfg ? state.cfg.timezone : undefined;
  const opts = { timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
  if (withDate) { opts.day = "2-digit"; opts.month = "2-digit"; }
  return new Intl.DateTimeFormat("id-ID", opts).format(d).replace(/\./g, ":");
}

function tickClock() {
  if (!state.cfg) return;
  const tz = state.cfg.timezone;
  const now = new Date();
  $("clock-time").textContent =
    new Intl.DateTimeFormat("id-ID", { timeZone: tz, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false })
      .format(now).replace(/\./g, ":") + " " + tzAbbr(tz);
  $("clock-date").textContent =
    new Intl.DateTimeFormat("id-ID", { timeZone: tz, weekday: "long", day: "numeric", month: "long", year: "numeric" }).format(now);
}

// Sizes the grid so whole tiles (picture + footer) fit the width, and the height left after the
// summary table, as large as possible.
function layout() {
  const cfg = state.cfg;
  if (!cfg) return;
  const wall = $("wall");
  const col = wall.parentElement;
  const gap = 8, pad = 16, foot = 27;
  const board = Math.min(34 + 31 * cfg.sites.length, Math.floor(col.clientHeight * 0.3));
  const W = col.clientWidth - pad - gap * (cfg.cols - 1);
  const H = col.clientHeight - board - pad - gap * (cfg.rows - 1);
  const aspect = cfg.tile_width / cfg.tile_height;
  let w = Math.floor(W / cfg.cols);
  const hMax = Math.floor(H / cfg.rows) - foot;
  if (w / aspect > hMax) w = Math.floor(hMax * aspect);
  w = Math.max(w, 160);
  wall.style.gridTemplateColumns = `repeat(${cfg.cols}, ${w}px)`;
  wall.style.gridAutoRows = "min-content";
  // The summary table lines up with the grid above it.
  const boardEl = col.querySelector(".board");
  if (boardEl) boardEl.style.width = `${w * cfg.cols + gap * (cfg.cols - 1) + pad}px`;
}

const PAGE_MODE = new URLSearchParams(location.search).get("mode");
const IMG_MODE = PAGE_MODE === "img"
  || !(window.ReadableStream && window.fetch && window.createImageBitmap);
const LIVE_OK = PAGE_MODE !== "img" && PAGE_MODE !== "mjpeg" && !!window.MediaSource
  && !!window.WebSocket;

function streamUrl(site) { return `${site.mjpeg}?t=${Date.now()}`; }

// The tile's picture: its camera's own video (LiveTile), or the burned-in MJPEG.
function startLive(t) {
  t.mode = "live";
  t.el.classList.add("passthrough");
  t.live = new window.LiveTile(t.site, t.video, {
    onFallback: (reason) => {
      console.info(`${t.site.id}: burned-in tile (${reason})`);
      t.live = null;
      startMjpeg(t);
      restartTiles();
    },
    onState: (s) => t.el.classList.toggle("no-video", s !== "playing"),
  });
}

function startMjpeg(t) {
  t.mode = "mjpeg";
  t.el.classList.remove("passthrough", "no-video");
  if (IMG_MODE) {
    t.img = el("img");
    t.img.alt = `Kamera ${t.site.name}`;
    t.img.src = streamUrl(t.site);
    t.video.prepend(t.img);
  } else {
    t.canvas = el("canvas");
    t.canvas.width = state.cfg.tile_width;
    t.canvas.height = state.cfg.tile_height;
    t.canvas.setAttribute("role", "img");
    t.canvas.setAttribute("aria-label", `Kamera ${t.site.name}`);
    t.video.prepend(t.canvas);
    t.ctx = t.canvas.getContext("2d");
  }
}

function buildTiles() {
  const wall = $("wall");
  wall.textContent = "";
  const cfg = state.cfg;
  document.documentElement.style.setProperty("--tile-aspect", `${cfg.tile_width} / ${cfg.tile_height}`);
  for (const site of cfg.sites) {
    const tile = el("div", "tile");
    tile.dataset.site = site.id;
    tile.title = `${site.name}\n${site.address}` + (site.rtsp ? `\nRTSP: ${site.rtsp}` : "");
    const video = el("div", "video");
    const banner = el("div", "banner");
    banner.appendChild(el("div", "title", "MENGHUBUNGKAN KAMERA..."));
    banner.appendChild(el("div", "since", ""));
    banner.appendChild(el("div", "why", ""));
    video.appendChild(banner);
    video.appendChild(el("div", "hint", "klik untuk memperbesar · Esc kembali"));
    const foot = el("div", "foot");
    foot.appendChild(el("span", "dot"));
    foot.appendChild(el("span", "name", site.name));
    const badge = el("span", "badge");
    badge.hidden = true;
    foot.appendChild(badge);
    const meta = el("span", "meta", "");
    const st = el("span", "meta state", "menghubungkan");
    foot.appendChild(meta);
    foot.appendChild(st);
    tile.appendChild(video);
    tile.appendChild(foot);
    tile.addEventListener("click", () => toggleEnlarge(site.id));
    wall.appendChild(tile);
    const t = {
      el: tile, video, banner, img: null, canvas: null, ctx: null, live: null, mode: null,
      meta, state: st, badge, site, busy: false, pending: null, frames: 0,
    };
    state.tiles.set(site.id, t);
    if (LIVE_OK && site.live) startLive(t); else startMjpeg(t);
  }
  layout();
}

// The tiles that show the burned-in MJPEG.
function mjpegSites() {
  return [...state.tiles.values()].filter((t) => t.mode === "mjpeg").map((t) => t.site.id);
}

function toggleEnlarge(id, force) {
  for (const [sid, t] of state.tiles) {
    const on = sid === id && (force === true || !t.el.classList.contains("enlarged"));
    t.el.classList.toggle("enlarged", on);
  }
}

function reloadStreams() {
  if (IMG_MODE) for (const t of state.tiles.values()) if (t.img) t.img.src = streamUrl(t.site);
}

// Draws the newest JPEG of a tile; while one decodes, newer ones replace the waiting one, so a
// slow machine shows fewer frames instead of falling behind.
function showFrame(t, bytes) {
  if (t.busy) { t.pending = bytes; return; }
  t.busy = true;
  createImageBitmap(new Blob([bytes], { type: "image/jpeg" }))
    .then((bmp) => {
      t.ctx.drawImage(bmp, 0, 0, t.canvas.width, t.canvas.height);
      bmp.close();
      t.frames++;
    })
    .catch(() => {})
    .finally(() => {
      t.busy = false;
      if (t.pending) { const b = t.pending; t.pending = null; showFrame(t, b); }
    });
}

const CRLF2 = new Uint8Array([13, 10, 13, 10]);
function indexOf(buf, pat, from) {
  outer: for (let i = from; i <= buf.length - pat.length; i++) {
    for (let j = 0; j < pat.length; j++) if (buf[i + j] !== pat[j]) continue outer;
    return i;
  }
  return -1;
}

// Splits a multipart byte stream into parts with their headers. Parts carry Content-Length, so
// the JPEG bytes are never searched for the boundary.
class MultipartReader {
  constructor(onPart) { this.buf = new Uint8Array(0); this.onPart = onPart; this.dec = new TextDecoder(); }
  push(chunk) {
    const b = new Uint8Array(this.buf.length + chunk.length);
    b.set(this.buf); b.set(chunk, this.buf.length);
    this.buf = b;
    let pos = 0;
    for (;;) {
      const end = indexOf(this.buf, CRLF2, pos);
      if (end < 0) break;
      const head = this.dec.decode(this.buf.subarray(pos, end));
      const len = /content-length:\s*(\d+)/i.exec(head);
      if (!len) { pos = end + 4; continue; }
      const start = end + 4, stop = start + parseInt(len[1], 10);
      if (stop > this.buf.length) break;
      const site = /x-site:\s*(\S+)/i.exec(head);
      this.onPart(site ? site[1] : null, this.buf.slice(start, stop));
      pos = stop;
    }
    this.buf = this.buf.slice(pos);
  }
}

// The wall is behind a sign-in: a 401 (session ended) goes back to the sign-in page.
function signInAgain(r) {
  if (r.status === 401) {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    return true;
  }
  return false;
}

// One multipart connection for every burned-in tile; reopened when the set of such tiles
// changes, and not opened at all while every tile plays its camera's own video (so nothing is
// decoded for display, drawn or JPEG-encoded on the server for this browser).
let tilesAbort = null;
let tilesWake = null;
function restartTiles() {
  if (IMG_MODE) return;
  if (tilesAbort) tilesAbort.abort();
  if (tilesWake) tilesWake();
}

async function runTiles() {
  for (;;) {
    const sites = mjpegSites();
    if (!sites.length) {
      await new Promise((res) => { tilesWake = res; });
      tilesWake = null;
      continue;
    }
    tilesAbort = new AbortController();
    try {
      const q = sites.length === state.tiles.size ? "" : `?sites=${sites.map(encodeURIComponent).join(",")}`;
      const r = await fetch(`/tiles.mjpg${q}`, { cache: "no-store", signal: tilesAbort.signal });
      if (signInAgain(r)) return;
      if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
      const reader = r.body.getReader();
      const parts = new MultipartReader((site, bytes) => {
        const t = state.tiles.get(site);
        if (t && t.ctx) showFrame(t, bytes);
      });
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parts.push(value);
      }
    } catch (err) {
      if (err.name === "AbortError") continue; // the set of tiles changed: reopen at once
      console.warn("tiles stream", err);
    }
    await new Promise((res) => setTimeout(res, 2000));
  }
}

function summaryRow(site) {
  let tr = document.querySelector(`#summary-body tr[data-site="${CSS.escape(site.id)}"]`);
  if (!tr) {
    tr = el("tr");
    tr.dataset.site = site.id;
    for (let i = 0; i < 5; i++) tr.appendChild(el("td"));
    tr.cells[0].className = "site-name";
    tr.addEventListener("click", () => toggleEnlarge(site.id, true));
    $("summary-body").appendChild(tr);
  }
  return tr;
}

function applySummary(cfgSite, s) {
  const tr = summaryRow(cfgSite);
  tr.cells[0].textContent = cfgSite.name;
  const cam = tr.cells[1];
  if (s.live) { cam.textContent = `online · ${s.fps.toFixed(1)} fps`; cam.className = "cam-ok"; }
  else if (!s.last_frame_at && !(s.reconnects > 0)) { cam.textContent = "menghubungkan"; cam.className = "cam-wait"; }
  else { cam.textContent = `OFFLINE sejak ${fmtTime(s.since)}`; cam.className = "cam-bad"; }
  const zones = tr.cells[2];
  zones.textContent = "";
  const states = new Map((s.zones || []).map((z) => [z.id, z]));
  for (const z of cfgSite.zones) {
    const st = states.get(z.id);
    const sev = st ? (st.incident ? "alert" : st.severity) : "";
    const p = el("span", "pill " + sev);
    p.appendChild(el("i"));
    const what = st ? (st.label || st.level || `${st.count}`) : "–";
    p.appendChild(document.createTextNode(`${z.name}: ${what}`));
    zones.appendChild(p);
  }
  if (!cfgSite.zones.length) zones.textContent = "–";
  const lines = tr.cells[3];
  lines.textContent = "";
  const totals = new Map((s.lines || []).map((l) => [l.id, l]));
  for (const l of cfgSite.lines) {
    const t = totals.get(l.id) || { in: 0, out: 0 };
    const p = el("span", "pill");
    p.appendChild(document.createTextNode(`${l.name}: ${l.in_name} ${t.in} · ${l.out_name} ${t.out}`));
    lines.appendChild(p);
  }
  if (!cfgSite.lines.length) lines.textContent = "–";
  const an = tr.cells[4];
  an.className = "mono";
  an.textContent = s.analytics_age_s == null ? "belum aktif"
    : s.analytics_age_s < 3 ? "langsung" : `tertunda ${Math.round(s.analytics_age_s)} dtk`;
}

function applyStatus(s) {
  let online = 0;
  for (const site of s.sites) {
    const t = state.tiles.get(site.id);
    if (!t) continue;
    if (site.live) online++;
    t.el.classList.toggle("live", site.live);
    t.el.classList.toggle("offline", !site.live);
    const connecting = !site.live && !site.last_frame_at && !(site.reconnects > 0);
    t.el.classList.toggle("connecting", connecting);
    // A tile playing from another node follows the site to the node its status names.
    if (t.live && site.node) t.live.follow(site.node);
    if (site.remote) {
      t.meta.textContent = site.node ? `node ${site.node}` : "";
      t.state.textContent = site.served ? (site.live ? "" : "OFFLINE") : "berpindah node";
    } else if (site.live) {
      t.meta.textContent = `${site.fps.toFixed(1)} fps · ${fmtTime(site.last_frame_at || s.at)}`;
      t.state.textContent = "";
    } else if (!site.last_frame_at) {
      t.meta.textContent = "";
      t.state.textContent = site.reconnects > 0 ? "OFFLINE" : "menghubungkan";
    } else {
      t.meta.textContent = `terakhir ${fmtTime(site.last_frame_at)}`;
      t.state.textContent = "OFFLINE";
    }
    // The banner over a tile that plays its camera's own video (burned-in tiles draw theirs).
    const [title, since, why] = t.banner.children;
    title.textContent = connecting ? "MENGHUBUNGKAN KAMERA..." : "KAMERA OFFLINE";
    since.textContent = connecting ? "" : `sejak ${fmtTime(site.online ? site.last_frame_at || site.since : site.since)}`;
    why.textContent = site.last_error || "";
    const open = Math.max(site.open_incidents || 0, state.openBySite.get(site.id) || 0);
    t.badge.hidden = open === 0;
    t.badge.textContent = `${open} insiden`;
    t.el.classList.toggle("incident", open > 0);
  }
  $("cams-online").textContent = `${online}/${s.sites.length}`;
  for (const site of s.sites) {
    const cfgSite = state.cfg.sites.find((c) => c.id === site.id);
    if (cfgSite) applySummary(cfgSite, site);
  }
}

function levelClass(level) {
  const l = (level || "").toLowerCase();
  if (HIGH.has(l)) return "high";
  if (MID.has(l)) return "mid";
  return "";
}

function evidenceText(inc) {
  const e = inc.evidence || {};
  const parts = [];
  if (e.vehicle_count != null) parts.push(`${e.vehicle_count} kendaraan`);
  if (e.median_speed_kmh != null) parts.push(`${Math.round(e.median_speed_kmh)} km/jam`);
  if (e.degree_of_saturation != null) parts.push(`DS ${e.degree_of_saturation.toFixed(2)}`);
  if (e.persons != null) parts.push(`${e.persons} orang`);
  if (e.objects != null) parts.push(`${e.objects} objek`);
  if (e.dwell_s != null) parts.push(`${Math.max(1, Math.round(e.dwell_s / 60))} mnt`);
  if (e.offline_s != null) parts.push(`offline ${Math.max(1, Math.round(e.offline_s / 60))} mnt`);
  if (!parts.length && e.reason) parts.push(e.reason);
  return parts.join(" · ");
}

function recountOpen() {
  state.openBySite.clear();
  for (const inc of state.incidents.values()) {
    if (inc.open) state.openBySite.set(inc.site, (state.openBySite.get(inc.site) || 0) + 1);
  }
  let n = 0;
  for (const v of state.openBySite.values()) n += v;
  $("incidents-open").textContent = n;
  $("summary").querySelector(".stat.alert").classList.toggle("on", n > 0);
}

function renderIncident(inc, fresh) {
  const list = $("feed-list");
  let li = list.querySelector(`li[data-id="${CSS.escape(inc.id)}"]`);
  if (!li) {
    li = el("li", "inc");
    li.dataset.id = inc.id;
  } else {
    li.textContent = "";
  }
  const lc = levelClass(inc.level);
  li.className = "inc" + (lc ? ` lvl-${lc}` : "") + (inc.open ? "" : " ended") + (fresh ? " fresh" : "");
  let thumb;
  if (inc.snapshot_url) {
    thumb = el("img", "thumb");
    thumb.src = inc.snapshot_url;
    thumb.alt = "Cuplikan";
    thumb.loading = "lazy";
    thumb.addEventListener("click", (ev) => { ev.stopPropagation(); openLightbox(inc); });
  } else {
    thumb = el("div", "thumb none", "tanpa cuplikan");
  }
  li.appendChild(thumb);
  const body = el("div", "body");
  const row1 = el("div", "row1");
  row1.appendChild(el("span", "kind", KIND[inc.kind] || inc.kind));
  row1.appendChild(el("span", "lvl " + lc, inc.level || "-"));
  body.appendChild(row1);
  body.appendChild(el("div", "site", inc.site_name + (inc.zone_name ? ` · ${inc.zone_name}` : "")));
  const ev = evidenceText(inc);
  if (ev) body.appendChild(el("div", "ev", ev));
  const when = el("div", "when");
  const tag = el("span", "tag" + (inc.event === "end" ? " end" : ""), EVENT[inc.event] || inc.event);
  when.appendChild(tag);
  when.appendChild(document.createTextNode(` ${fmtTime(inc.updated_at || inc.started_at, true)}`));
  body.appendChild(when);
  li.appendChild(body);
  li.title = `${inc.title}\n${inc.description || ""}`;
  li.onclick = () => toggleEnlarge(inc.site, true);
  list.prepend(li);
  while (list.children.length > 60) list.lastElementChild.remove();
  $("feed-empty").hidden = list.children.length > 0;
}

function onIncident(inc, live) {
  const prev = state.incidents.get(inc.id);
  if (prev && (prev.seq || 0) > (inc.seq || 0)) return; // stale (replayed backlog)
  state.incidents.set(inc.id, inc);
  if (state.incidents.size > 200) {
    const first = state.incidents.keys().next().value;
    state.incidents.delete(first);
  }
  renderIncident(inc, live && inc.event === "new");
  recountOpen();
}

function openLightbox(inc) {
  $("lightbox-img").src = inc.snapshot_url;
  $("lightbox-cap").textContent = `${inc.title} — ${fmtTime(inc.updated_at, true)} ${tzAbbr(state.cfg.timezone)}`;
  $("lightbox").hidden = false;
}

function connectEvents() {
  const es = new EventSource("/events");
  const conn = $("conn");
  let hadError = false;
  let backlogDone = false;
  es.onopen = () => {
    conn.textContent = "terhubung";
    conn.className = "conn ok";
    if (hadError) reloadStreams(); // the server may have restarted: reopen the tiles too
    hadError = false;
  };
  es.onerror = () => {
    conn.textContent = "terputus, menyambung ulang…";
    conn.className = "conn bad";
    hadError = true;
  };
  es.addEventListener("incident", (e) => {
    try { onIncident(JSON.parse(e.data), backlogDone); } catch (err) { console.warn("incident", err); }
  });
  es.addEventListener("status", (e) => {
    backlogDone = true; // the backlog is sent before the first status line
    try { applyStatus(JSON.parse(e.data)); } catch (err) { console.warn("status", err); }
  });
}

async function start() {
  try {
    const r = await fetch("/api/wall", { cache: "no-store" });
    if (signInAgain(r)) return;
    state.cfg = await r.json();
  } catch (err) {
    $("wall").textContent = "Tidak dapat memuat konfigurasi wall. Muat ulang halaman.";
    return;
  }
  $("wall-title").textContent = state.cfg.title;
  $("wall-city").textContent = `Video wall analitik CCTV · Kota ${state.cfg.city} · ${state.cfg.sites.length} kamera`;
  document.title = `${state.cfg.title} · Video Wall`;
  buildTiles();
  tickClock();
  setInterval(tickClock, 1000);
  window.addEventListener("resize", layout);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") { toggleEnlarge(null); $("lightbox").hidden = true; }
  });
  $("lightbox").addEventListener("click", () => { $("lightbox").hidden = true; });
  connectEvents();
  if (!IMG_MODE) runTiles();
}

// What the tests and the bench read: every tile's mode and, for passthrough tiles, the player's
// counters (and the node it plays from), a thumbnail of the picture and the box pixels on its
// overlay.
window.wallLive = () => [...state.tiles.values()].map((t) => Object.assign(
  { site: t.site.id, mode: t.mode, mjpeg_frames: t.frames },
  t.live ? t.live.stats() : {},
));

start();
