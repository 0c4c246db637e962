//! `GET /live/{site}`: the camera's own H.264 to a browser tile over one WebSocket, as
//! fragmented MP4 for Media Source Extensions, with the analytics results for the overlay on
//! the same socket. The server decodes nothing, scales nothing, encodes nothing for it: a
//! viewer costs the copy of the bytes it is sent (docs/wall.md, "The browser tile").
//!
//! Messages, in order (docs/wall.md has the details):
//!
//! | message | when |
//! |---|---|
//! | text `{"type":"hello", ...}` | on connect and at every new stream (camera reconnect): codec, size, zones, lines |
//! | binary, kind 1: init segment | after a `hello` whose `passthrough` is true |
//! | binary, kind 2: one fragment per frame | a late joiner first gets every frame since the last key frame |
//! | text `{"type":"analytics", ...}` | at each analytics result: tracks, zone states, line totals, keyed by media time `t` |
//! | text `{"type":"offline", ...}` | the camera's stream ended (and on connect while it delivers nothing) |
//! | text `{"type":"error", ...}` | before the server closes the socket |
//! | text `{"type":"gone"}` | this process stopped serving the site (a cluster node lost its lease); the socket closes and the page asks where the site is now |
//!
//! A binary message is a 16-byte header (kind u8, flags u8 with bit 0 = key frame, 2 bytes 0,
//! sequence number u32 LE, arrival at ingest f64 LE Unix ms) then the MP4 bytes.
//!
//! A viewer too slow for the camera's rate misses frames (the hub's bounded broadcast) and
//! resumes at the next key frame; nothing it does reaches the camera. The socket is the
//! server's to write: what the browser sends is read and dropped, and a browser that writes
//! more than a little is disconnected.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::fmp4;
use super::metrics::WallMetrics;
use super::scene::class_group;
use super::tile::SiteOutput;
use super::words::{class_name, zone_label};
use crate::config::Site;
use crate::hub::encoded::{Codec, EncodedEvent, EncodedFrame, StreamSetup};
use crate::ingest::h264;
use crate::model::{Labels, SiteResults, TrackState};

/// Kinds of binary message.
pub const KIND_INIT: u8 = 1;
pub const KIND_FRAGMENT: u8 = 2;
/// Bytes of the header before the MP4 bytes of a binary message.
pub const HEADER_LEN: usize = 16;
/// A peer that takes longer than this to accept one message is gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// What a browser may send over the life of a socket (it has nothing to say; pings aside).
const MAX_CLIENT_BYTES: usize = 64 * 1024;
/// Results older than this are no longer drawn as boxes (the page says analytics is behind).
pub const STALE_RESULTS_MS: i64 = 3000;

/// Settings and shared counters of the live route.
pub struct LiveCtx {
    pub enabled: bool,
    pub delay_ms: u32,
    pub max_viewers: usize,
    pub viewers: AtomicUsize,
    pub metrics: WallMetrics,
    pub cancel: CancellationToken,
}

/// One site's part of the live route: what its `hello` describes, and its analytics message,
/// built once per result for every viewer.
pub struct LiveSite {
    geometry: Value,
    labels: Labels,
    zone_names: Vec<(String, String)>,
    meta: Mutex<Option<(usize, Arc<str>)>>,
}

impl Default for LiveSite {
    /// A site with no zones or lines, class names unknown.
    fn default() -> Self {
        Self {
            geometry: json!({ "zones": [], "lines": [] }),
            labels: Arc::from(Vec::new()),
            zone_names: Vec::new(),
            meta: Mutex::new(None),
        }
    }
}

impl LiveSite {
    pub fn new(site: &Site, labels: Labels) -> Self {
        let geometry = json!({
            "zones": site.zones.iter().map(|z| json!({
                "id": z.id,
                "name": z.name,
                "kind": z.kind,
                "polygon": z.polygon,
            })).collect::<Vec<_>>(),
            "lines": site.lines.iter().map(|l| json!({
                "id": l.id,
                "name": l.name,
                "in_name": l.in_name,
                "out_name": l.out_name,
                "a": l.points[0],
                "b": l.points[1],
            })).collect::<Vec<_>>(),
        });
        Self {
            geometry,
            labels,
            zone_names: site
                .zones
                .iter()
                .map(|z| (z.id.clone(), z.name.clone()))
                .collect(),
            meta: Mutex::new(None),
        }
    }

    /// The analytics message of `results` (cached: every viewer of the site sends the same).
    pub fn meta(&self, results: &Arc<SiteResults>) -> Arc<str> {
        let key = Arc::as_ptr(results) as usize;
        let mut cached = self.meta.lock();
        if let Some((k, text)) = cached.as_ref() {
            if *k == key {
                return text.clone();
            }
        }
        let text: Arc<str> = Arc::from(self.meta_json(results).to_string());
        *cached = Some((key, text.clone()));
        text
    }

    fn meta_json(&self, r: &SiteResults) -> Value {
        let age_ms = r
            .captured_at
            .map(|t| (Utc::now() - t).num_milliseconds().max(0));
        let tracks: Vec<Value> = r
            .tracks
            .iter()
            .filter(|t| t.state == TrackState::Confirmed)
            .map(|t| {
                let name = class_name(&self.labels, t.class_id);
                let label = match t.speed_kmh {
                    Some(v) if v >= 1.0 => format!("{name} {} {v:.0}km/j", t.id),
                    _ => format!("{name} {}", t.id),
                };
                json!({
                    "id": t.id,
                    "group": class_group(&name),
                    "label": label,
                    "box": [t.bbox.x1, t.bbox.y1, t.bbox.x2, t.bbox.y2],
                    "v": [t.velocity.x, t.velocity.y],
                })
            })
            .collect();
        let zones: Vec<Value> = self
            .zone_names
            .iter()
            .map(|(id, name)| {
                let state = r.zones.iter().find(|z| z.zone.as_str() == id);
                let incident = r
                    .open_incidents
                    .iter()
                    .any(|(_, z)| z.as_ref().is_some_and(|z| z.as_str() == id));
                let label = match state {
                    Some(s) => match zone_label(s) {
                        w if !w.is_empty() => format!("{name}: {w}"),
                        _ => format!("{name}: {}", s.count),
                    },
                    None => name.clone(),
                };
                json!({
                    "id": id,
                    "severity": if incident { Some(crate::model::Severity::Alert) } else { state.map(|s| s.severity) },
                    "incident": incident,
                    "label": label,
                })
            })
            .collect();
        json!({
            "type": "analytics",
            "epoch": r.media_time.map(|m| m.epoch),
            "t": r.media_time.map(|m| fmp4::ticks(m.ns)),
            "age_ms": age_ms,
            "tracks": tracks,
            "zones": zones,
            "lines": r.lines.iter().map(|l| json!({
                "id": l.line,
                "in": l.in_count,
                "out": l.out_count,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Whether a WebSocket handshake's `Origin` (when a browser sends one) is the wall's own page:
/// another site's page must not open the cameras in a visitor's browser.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true; // not a browser: the route is as open as the rest of the wall
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, h)| h.trim_end_matches('/').eq_ignore_ascii_case(host))
}

/// The route's handler.
pub async fn live(
    State(st): State<super::http::HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    principal: Option<axum::Extension<super::auth::Principal>>,
    ws: WebSocketUpgrade,
) -> Response {
    let ctx = st.0.live.clone();
    let Some(site) = st.0.local.get(&id) else {
        return (StatusCode::NOT_FOUND, format!("tidak ditemukan: {id}\n")).into_response();
    };
    let refused = ctx
        .metrics
        .live_refused
        .with_label_values(&[site.id.as_str()]);
    if !ctx.enabled {
        return (
            StatusCode::NOT_FOUND,
            "video langsung dimatikan (wall.live = false)\n",
        )
            .into_response();
    }
    // Another node's wall page (another origin) comes with a ticket for this one site; a
    // session cookie or device token from a foreign page does not get in.
    let ticket = principal.is_some_and(|p| p.ticket);
    if !ticket && !same_origin(&headers) {
        refused.inc();
        return (StatusCode::FORBIDDEN, "origin tidak diizinkan\n").into_response();
    }
    // Counted here, before the upgrade, so a burst of handshakes cannot overshoot the limit.
    let guard = match ViewerGuard::take(&ctx, &site) {
        Some(g) => g,
        None => {
            refused.inc();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                "terlalu banyak penonton, coba lagi\n",
            )
                .into_response();
        }
    };
    ws.max_message_size(MAX_CLIENT_BYTES)
        .max_frame_size(MAX_CLIENT_BYTES)
        .on_upgrade(move |socket| async move {
            let _guard = guard;
            let mut v = Viewer::new(site, ctx);
            if let Err(e) = v.run(socket).await {
                debug!(site = %v.site.id, error = %e, "live viewer ended");
            }
        })
}

/// Counts a live viewer from the handshake until its socket is gone.
struct ViewerGuard {
    ctx: Arc<LiveCtx>,
    site: Arc<SiteOutput>,
}

impl ViewerGuard {
    fn take(ctx: &Arc<LiveCtx>, site: &Arc<SiteOutput>) -> Option<Self> {
        let n = ctx.viewers.fetch_add(1, Ordering::SeqCst);
        if n >= ctx.max_viewers {
            ctx.viewers.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        ctx.metrics
            .live_viewers
            .with_label_values(&[site.id.as_str()])
            .inc();
        ctx.metrics
            .live_joins
            .with_label_values(&[site.id.as_str()])
            .inc();
        Some(Self {
            ctx: ctx.clone(),
            site: site.clone(),
        })
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.ctx.viewers.fetch_sub(1, Ordering::SeqCst);
        self.ctx
            .metrics
            .live_viewers
            .with_label_values(&[self.site.id.as_str()])
            .dec();
    }
}

#[derive(Debug, thiserror::Error)]
enum ViewerError {
    #[error("socket: {0}")]
    Socket(#[from] axum::Error),
    #[error("the viewer took over {0:?} to accept a message")]
    Slow(Duration),
}

/// One browser tile's socket.
struct Viewer {
    site: Arc<SiteOutput>,
    ctx: Arc<LiveCtx>,
    setup: Option<Arc<StreamSetup>>,
    /// Frames are skipped until a key frame: after a new setup, and after missing frames.
    want_key: bool,
    client_bytes: usize,
    fragments: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    skipped: prometheus::IntCounter,
    meta: prometheus::IntCounter,
}

impl Viewer {
    fn new(site: Arc<SiteOutput>, ctx: Arc<LiveCtx>) -> Self {
        let m = &ctx.metrics;
        let id = [site.id.as_str()];
        Self {
            fragments: m.live_fragments.with_label_values(&id),
            bytes: m.live_bytes.with_label_values(&id),
            skipped: m.live_skipped.with_label_values(&id),
            meta: m.live_meta.with_label_values(&id),
            site,
            ctx,
            setup: None,
            want_key: true,
            client_bytes: 0,
        }
    }

    async fn run(&mut self, mut socket: WebSocket) -> Result<(), ViewerError> {
        let joined = self.site.hub.encoded.join();
        let mut live = joined.live;
        let mut results = self.site.hub.watch_results();
        match joined.setup {
            Some(setup) => {
                self.start(&mut socket, setup).await?;
                for f in &joined.gop {
                    self.frame(&mut socket, f).await?;
                }
            }
            None => self.offline(&mut socket).await?,
        }
        self.analytics(&mut socket).await?;
        results.mark_unchanged();
        let cancel = self.ctx.cancel.clone();
        let gone = self.site.gone.clone();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = self.close(&mut socket, "wall berhenti").await;
                    return Ok(());
                }
                _ = gone.cancelled() => {
                    let _ = self.text(&mut socket, json!({ "type": "gone" })).await;
                    let _ = self.close(&mut socket, "kamera tidak lagi dilayani node ini").await;
                    return Ok(());
                }
                ev = live.recv() => match ev {
                    Ok(EncodedEvent::Start(setup)) => self.start(&mut socket, setup).await?,
                    Ok(EncodedEvent::Frame(f)) => self.frame(&mut socket, &f).await?,
                    Ok(EncodedEvent::End) => {
                        self.setup = None;
                        self.offline(&mut socket).await?;
                    }
                    Err(RecvError::Lagged(n)) => {
                        // Missed frames cannot be decoded around: wait for a key frame.
                        self.skipped.inc_by(n);
                        self.want_key = true;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
                r = results.changed() => {
                    if r.is_err() {
                        return Ok(());
                    }
                    self.analytics(&mut socket).await?;
                }
                msg = socket.recv() => match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(m)) => {
                        self.client_bytes += match &m {
                            Message::Text(t) => t.len(),
                            Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
                            Message::Close(_) => 0,
                        };
                        if self.client_bytes > MAX_CLIENT_BYTES {
                            let _ = self.close(&mut socket, "klien mengirim terlalu banyak data").await;
                            return Ok(());
                        }
                    }
                },
            }
        }
    }

    async fn send(&self, socket: &mut WebSocket, msg: Message) -> Result<(), ViewerError> {
        match tokio::time::timeout(SEND_TIMEOUT, socket.send(msg)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ViewerError::Slow(SEND_TIMEOUT)),
        }
    }

    async fn text(&self, socket: &mut WebSocket, v: Value) -> Result<(), ViewerError> {
        self.send(socket, Message::Text(v.to_string().into())).await
    }

    /// A new stream: `hello`, then the init segment when the browser can play it.
    async fn start(
        &mut self,
        socket: &mut WebSocket,
        setup: Arc<StreamSetup>,
    ) -> Result<(), ViewerError> {
        self.want_key = true;
        let mut hello = json!({
            "type": "hello",
            "site": self.site.id,
            "epoch": setup.epoch,
            "serial": setup.serial,
            "width": setup.width,
            "height": setup.height,
            "frame_ms": setup.frame_ns as f64 / 1e6,
            "timescale": fmp4::TIMESCALE,
            "delay_ms": self.ctx.delay_ms,
        });
        let init = match &setup.codec {
            Codec::H264 { avcc } => match h264::codecs_string(avcc) {
                Ok(codecs) => {
                    hello["passthrough"] = json!(true);
                    hello["media_type"] = json!("video/x-h264");
                    hello["codecs"] = json!(codecs);
                    hello["mime"] = json!(format!("video/mp4; codecs=\"{codecs}\""));
                    Some(fmp4::init_segment(avcc, setup.width, setup.height))
                }
                Err(e) => {
                    hello["passthrough"] = json!(false);
                    hello["media_type"] = json!("video/x-h264");
                    hello["reason"] = json!(e.to_string());
                    None
                }
            },
            Codec::Other { media_type } => {
                hello["passthrough"] = json!(false);
                hello["media_type"] = json!(media_type);
                hello["reason"] = json!("hanya H.264 yang diputar langsung di peramban");
                None
            }
        };
        if let (Some(o), Some(g)) = (hello.as_object_mut(), self.site.live.geometry.as_object()) {
            o.extend(g.clone());
        }
        self.text(socket, hello).await?;
        self.setup = Some(setup.clone());
        if let Some(init) = init {
            let msg = with_header(KIND_INIT, false, 0, 0.0, &init);
            self.send(socket, Message::Binary(msg)).await?;
        } else {
            // Nothing to play: the page shows the burned-in tile instead.
            self.setup = None;
        }
        Ok(())
    }

    async fn frame(&mut self, socket: &mut WebSocket, f: &EncodedFrame) -> Result<(), ViewerError> {
        if self.setup.is_none() {
            return Ok(());
        }
        if self.want_key {
            if !f.key {
                self.skipped.inc();
                return Ok(());
            }
            self.want_key = false;
        }
        let dts = f.media.ns as i64 + f.decode_offset_ns;
        let decode_time = fmp4::ticks(dts.max(0) as u64);
        let pts_ticks = fmp4::ticks(f.media.ns);
        let header = header(
            KIND_FRAGMENT,
            f.key,
            f.seq as u32,
            f.arrived_at.timestamp_micros() as f64 / 1000.0,
        );
        let msg = fmp4::fragment(
            &header,
            &fmp4::Sample {
                seq: f.seq as u32,
                decode_time,
                composition_offset: (pts_ticks as i64 - decode_time as i64) as i32,
                duration: fmp4::ticks(f.duration_ns).max(1) as u32,
                key: f.key,
                data: &f.data,
            },
        );
        let n = msg.len() as u64;
        self.send(socket, Message::Binary(Bytes::from(msg))).await?;
        self.fragments.inc();
        self.bytes.inc_by(n);
        Ok(())
    }

    async fn analytics(&mut self, socket: &mut WebSocket) -> Result<(), ViewerError> {
        let results = self.site.hub.results.load_full();
        if results.captured_at.is_none() {
            return Ok(()); // analytics has not run yet
        }
        let text = self.site.live.meta(&results);
        self.send(socket, Message::Text(text.as_ref().into()))
            .await?;
        self.meta.inc();
        Ok(())
    }

    async fn offline(&mut self, socket: &mut WebSocket) -> Result<(), ViewerError> {
        let st = self.site.hub.status.load();
        self.text(
            socket,
            json!({
                "type": "offline",
                "since": st.since,
                "last_frame_at": st.last_frame_at,
                "reason": st.last_error,
            }),
        )
        .await
    }

    async fn close(&self, socket: &mut WebSocket, why: &str) -> Result<(), ViewerError> {
        self.text(socket, json!({ "type": "error", "message": why }))
            .await?;
        self.send(
            socket,
            Message::Close(Some(CloseFrame {
                code: 1001,
                reason: why.into(),
            })),
        )
        .await
    }
}

/// The 16-byte header of a binary message.
pub fn header(kind: u8, key: bool, seq: u32, arrived_ms: f64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind;
    h[1] = u8::from(key);
    h[4..8].copy_from_slice(&seq.to_le_bytes());
    h[8..16].copy_from_slice(&arrived_ms.to_le_bytes());
    h
}

fn with_header(kind: u8, key: bool, seq: u32, arrived_ms: f64, body: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(HEADER_LEN + body.len());
    v.extend_from_slice(&header(kind, key, seq, arrived_ms));
    v.extend_from_slice(body);
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        BBox, IncidentKind, Level, MediaTime, Point, Severity, Track, TrackId, ZoneId, ZoneKind,
        ZoneState, ZoneWatch,
    };
    use crate::wall::scene::tests::site;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn origin_cases() {
        let cases = [
            (vec![("host", "127.0.0.1:8080")], true),
            (
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:8080"),
                ],
                true,
            ),
            (
                vec![
                    ("host", "wall.local:8080"),
                    ("origin", "https://WALL.local:8080"),
                ],
                true,
            ),
            (
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://evil.example"),
                ],
                false,
            ),
            (
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("origin", "http://127.0.0.1:9090"),
                ],
                false,
            ),
            (vec![("origin", "http://127.0.0.1:8080")], false),
            (vec![("host", "127.0.0.1:8080"), ("origin", "null")], false),
        ];
        for (h, want) in cases {
            assert_eq!(same_origin(&headers(&h)), want, "{h:?}");
        }
    }

    #[test]
    fn header_layout() {
        let h = header(KIND_FRAGMENT, true, 0x01020304, 1.5);
        assert_eq!(&h[..8], &[2, 1, 0, 0, 4, 3, 2, 1]);
        assert_eq!(f64::from_le_bytes(h[8..].try_into().unwrap()), 1.5);
    }

    /// The analytics message speaks the wall's words, carries the media time in the video's
    /// ticks, draws confirmed tracks only, and is built once per result.
    #[test]
    fn analytics_message() {
        let labels: Labels = Arc::from(vec!["person".to_string(), "car".to_string()]);
        let live = LiveSite::new(&site(), labels);
        let track = |id, state| Track {
            id: TrackId(id),
            class_id: 1,
            bbox: BBox::new(0.1, 0.2, 0.3, 0.4),
            score: 0.9,
            state,
            velocity: Point::new(0.2, 0.0),
            speed_px_s: 0.0,
            speed_kmh: Some(23.4),
            age_s: 1.0,
            hits: 5,
        };
        let results = Arc::new(SiteResults {
            captured_at: Some(Utc::now()),
            media_time: Some(MediaTime {
                epoch: 3,
                ns: 2_000_000_000,
            }),
            tracks: vec![
                track(7, TrackState::Confirmed),
                track(8, TrackState::Tentative),
            ],
            zones: vec![ZoneState {
                severity: Severity::Elevated,
                watch: ZoneWatch::Live,
                level: Some(Level::Padat),
                count: 9,
                ..ZoneState::new(ZoneId::new("sudirman"), ZoneKind::TrafficJam)
            }],
            open_incidents: vec![(IncidentKind::TrafficJam, Some(ZoneId::new("sudirman")))],
            ..Default::default()
        });
        let text = live.meta(&results);
        assert!(Arc::ptr_eq(&text, &live.meta(&results)), "built once");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "analytics");
        assert_eq!(
            (v["epoch"].as_u64(), v["t"].as_u64()),
            (Some(3), Some(180_000))
        );
        let tracks = v["tracks"].as_array().unwrap();
        assert_eq!(tracks.len(), 1);
        assert_eq!(tracks[0]["label"], "mobil 7 23km/j");
        assert_eq!(tracks[0]["group"], "vehicle");
        assert_eq!(v["zones"][0]["label"], "Pendekat Sudirman: padat");
        assert_eq!(v["zones"][0]["severity"], "alert");
        assert_eq!(v["zones"][0]["incident"], true);
        let other = Arc::new(SiteResults::default());
        assert!(!Arc::ptr_eq(&text, &live.meta(&other)));
    }
}
