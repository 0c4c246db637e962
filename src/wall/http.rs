//! HTTP side of the wall: the page, MJPEG tiles, single JPEG snapshots, the SSE feed and the
//! wall's JSON description.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the wall page (assets/wall/) |
//! | `GET /live/{site}` | WebSocket: the camera's own H.264 as fMP4 and the analytics (live.rs) |
//! | `GET /stream/{site}.mjpg` | annotated tile, `multipart/x-mixed-replace` |
//! | `GET /tiles.mjpg?sites=a,b` | every (or the listed) site's tiles over one connection |
//! | `GET /snapshot/{site}.jpg` | one annotated tile as JPEG |
//! | `GET /events` | Server-Sent Events: `incident` and `status` |
//! | `GET /incidents/{id}/snapshot.jpg` | an incident's snapshot |
//! | `GET /api/wall` | sites, layout, stream URLs |
//!
//! Every route here is behind the wall's sign-in (`auth::protect`, applied by `Wall::router`
//! to the whole router, so a route added here is protected by being added).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::Stream;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::feed::Feed;
use super::tile::{JpegFrame, SiteOutput, ViewerGuard, WorkerShared};

const INDEX_HTML: &str = include_str!("../../assets/wall/index.html");
const WALL_CSS: &str = include_str!("../../assets/wall/wall.css");
const WALL_JS: &str = include_str!("../../assets/wall/wall.js");
const LIVE_JS: &str = include_str!("../../assets/wall/live.js");

/// Multipart boundary of the MJPEG streams.
const BOUNDARY: &str = "simpangframe";

pub struct HttpInner {
    pub sites: Vec<Arc<SiteOutput>>,
    pub live: Arc<super::live::LiveCtx>,
    pub shared: Arc<WorkerShared>,
    pub feed: Arc<Feed>,
    pub status: watch::Receiver<Arc<str>>,
    pub cancel: CancellationToken,
    /// The static part of `/api/wall`.
    pub page: Value,
    /// Where annotated RTSP out listens, if enabled.
    pub rtsp: Option<(IpAddr, u16)>,
}

#[derive(Clone)]
pub struct HttpState(pub Arc<HttpInner>);

impl HttpState {
    fn site(&self, id: &str) -> Option<&Arc<SiteOutput>> {
        self.0.sites.iter().find(|s| s.id.as_str() == id)
    }
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/wall.css", get(css))
        .route("/wall.js", get(js))
        .route("/live.js", get(live_js))
        .route("/live/{site}", get(super::live::live))
        .route("/api/wall", get(api_wall))
        .route("/stream/{file}", get(mjpeg))
        .route("/tiles.mjpg", get(tiles))
        .route("/snapshot/{file}", get(snapshot))
        .route("/events", get(events))
        .route("/incidents/{id}/snapshot.jpg", get(incident_snapshot))
        .with_state(state)
}

fn no_cache() -> [(header::HeaderName, &'static str); 1] {
    [(header::CACHE_CONTROL, "no-cache")]
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        no_cache(),
        INDEX_HTML,
    )
}

async fn css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        no_cache(),
        WALL_CSS,
    )
}

async fn js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        no_cache(),
        WALL_JS,
    )
}

async fn live_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        no_cache(),
        LIVE_JS,
    )
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("tidak ditemukan: {what}\n"),
    )
        .into_response()
}

async fn api_wall(State(st): State<HttpState>, headers: HeaderMap) -> Json<Value> {
    let mut v = st.0.page.clone();
    if let (Some((addr, port)), Some(o)) = (st.0.rtsp, v.as_object_mut()) {
        // A wildcard bind address is not something a client can dial: use the host the
        // browser reached us by.
        let host = if addr.is_unspecified() {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(host_only)
                .unwrap_or_else(|| "127.0.0.1".into())
        } else if addr.is_ipv6() {
            format!("[{addr}]")
        } else {
            addr.to_string()
        };
        let base = format!("rtsp://{host}:{port}/annotated");
        o.insert("rtsp_mosaic".into(), json!(format!("{base}/wall")));
        if let Some(sites) = o.get_mut("sites").and_then(|s| s.as_array_mut()) {
            for s in sites {
                let id = s
                    .get("id")
                    .and_then(|i| i.as_str())
                    .unwrap_or("")
                    .to_string();
                if let Some(so) = s.as_object_mut() {
                    so.insert("rtsp".into(), json!(format!("{base}/{id}")));
                }
            }
        }
    }
    Json(v)
}

/// `host:port` or `[v6]:port` -> host part.
fn host_only(h: &str) -> String {
    if let Some(rest) = h.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return format!("[{}]", &rest[..end]);
        }
    }
    h.rsplit_once(':').map_or(h, |(a, _)| a).to_string()
}

/// One part of the multipart stream. The next boundary is written right after the JPEG: browsers
/// show a part only once they see the boundary that ends it, so this shows each frame at once
/// instead of one frame late.
fn part(f: &JpegFrame, site: Option<&str>) -> Bytes {
    let head = match site {
        Some(id) => format!(
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Site: {id}\r\n\r\n",
            f.data.len()
        ),
        None => format!(
            "Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            f.data.len()
        ),
    };
    let tail = format!("\r\n--{BOUNDARY}\r\n");
    let mut v = Vec::with_capacity(head.len() + f.data.len() + tail.len());
    v.extend_from_slice(head.as_bytes());
    v.extend_from_slice(&f.data);
    v.extend_from_slice(tail.as_bytes());
    Bytes::from(v)
}

struct MjpegState {
    rx: watch::Receiver<Option<JpegFrame>>,
    _guard: ViewerGuard,
    cancel: CancellationToken,
    sent: prometheus::IntCounter,
    started: bool,
}

async fn mjpeg(State(st): State<HttpState>, Path(file): Path<String>) -> Response {
    let Some(site) = file
        .strip_suffix(".mjpg")
        .and_then(|id| st.site(id))
        .cloned()
    else {
        return not_found(&file);
    };
    let mut rx = site.jpeg.subscribe();
    // Whatever is in the slot now was encoded for earlier viewers; it is shown only if recent.
    rx.mark_unchanged();
    let sent =
        st.0.shared
            .metrics
            .mjpeg_frames_sent
            .with_label_values(&[site.id.as_str()]);
    let state = MjpegState {
        rx,
        _guard: ViewerGuard::new(site, st.0.shared.clone()),
        cancel: st.0.cancel.clone(),
        sent,
        started: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        let mut prefix = Vec::new();
        if !s.started {
            s.started = true;
            prefix.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            let current = s.rx.borrow().clone();
            if let Some(f) = current.filter(|f| f.at.elapsed() < Duration::from_millis(500)) {
                prefix.extend_from_slice(&part(&f, None));
                s.sent.inc();
                return Some((Ok::<_, Infallible>(Bytes::from(prefix)), s));
            }
        }
        loop {
            tokio::select! {
                _ = s.cancel.cancelled() => return None,
                r = s.rx.changed() => {
                    if r.is_err() {
                        return None;
                    }
                }
            }
            let current = s.rx.borrow_and_update().clone();
            if let Some(f) = current {
                prefix.extend_from_slice(&part(&f, None));
                s.sent.inc();
                return Some((Ok(Bytes::from(prefix)), s));
            }
        }
    });
    multipart_response(Body::from_stream(stream))
}

fn multipart_response(body: Body) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                format!("multipart/x-mixed-replace; boundary={BOUNDARY}"),
            ),
            (
                header::CACHE_CONTROL,
                "no-cache, no-store, must-revalidate".into(),
            ),
            (header::PRAGMA, "no-cache".into()),
            // Reverse proxies (nginx) must pass frames through, not buffer them.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                "no".into(),
            ),
        ],
        body,
    )
        .into_response()
}

struct TilesState {
    rx: Vec<(String, watch::Receiver<Option<JpegFrame>>)>,
    _guards: Vec<ViewerGuard>,
    cancel: CancellationToken,
    sent: Vec<prometheus::IntCounter>,
    started: bool,
}

/// Query of `/tiles.mjpg`.
#[derive(serde::Deserialize)]
pub struct TilesQuery {
    /// Comma-separated site ids; all sites when absent.
    sites: Option<String>,
}

/// The sites a `sites=` list asks for, each once, in the order first named: a site repeated
/// 10,000 times is still one stream (each tile is sent once per connection, whatever the
/// list). `Err(id)` names the first id that is not a site. The list is outside data: any text
/// is taken or refused without panicking, and the work is linear in its length.
pub fn parse_sites(
    list: &str,
    index_of: impl Fn(&str) -> Option<usize>,
) -> Result<Vec<usize>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let i = index_of(id).ok_or_else(|| id.chars().take(64).collect::<String>())?;
        if seen.insert(i) {
            out.push(i);
        }
    }
    Ok(out)
}

/// All tiles over one connection: the same shared JPEGs as `/stream/{site}.mjpg`, each part
/// tagged with an `X-Site` header. The wall page reads it with `fetch()` and draws each part
/// into its tile. One connection instead of one per tile because browsers allow only six
/// HTTP/1.1 connections per host (Chromium and Firefox alike): six tile streams plus the
/// `/events` feed would leave one tile, and every thumbnail request, waiting forever.
async fn tiles(
    State(st): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<TilesQuery>,
) -> Response {
    let wanted: Vec<Arc<SiteOutput>> = match &q.sites {
        Some(list) => {
            let sites = &st.0.sites;
            match parse_sites(list, |id| sites.iter().position(|s| s.id.as_str() == id)) {
                Ok(v) => v.into_iter().map(|i| sites[i].clone()).collect(),
                Err(id) => return not_found(&id),
            }
        }
        None => st.0.sites.clone(),
    };
    let metrics = &st.0.shared.metrics;
    let state = TilesState {
        rx: wanted
            .iter()
            .map(|s| {
                let mut rx = s.jpeg.subscribe();
                rx.mark_unchanged();
                (s.id.to_string(), rx)
            })
            .collect(),
        sent: wanted
            .iter()
            .map(|s| {
                metrics
                    .mjpeg_frames_sent
                    .with_label_values(&[s.id.as_str()])
            })
            .collect(),
        _guards: wanted
            .into_iter()
            .map(|s| ViewerGuard::new(s, st.0.shared.clone()))
            .collect(),
        cancel: st.0.cancel.clone(),
        started: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        let mut out = Vec::new();
        if !s.started {
            s.started = true;
            out.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
            for (i, (id, rx)) in s.rx.iter().enumerate() {
                let current = rx.borrow().clone();
                if let Some(f) = current.filter(|f| f.at.elapsed() < Duration::from_millis(500)) {
                    out.extend_from_slice(&part(&f, Some(id)));
                    s.sent[i].inc();
                }
            }
        }
        loop {
            if s.rx.is_empty() {
                return None;
            }
            // Wait for any site's next JPEG, then send every site that has one.
            let (changed, first) = {
                let waits = s.rx.iter_mut().map(|(_, rx)| Box::pin(rx.changed()));
                tokio::select! {
                    _ = s.cancel.cancelled() => return None,
                    (r, i, _) = futures::future::select_all(waits) => (r, i),
                }
            };
            if changed.is_err() {
                return None;
            }
            for (i, (id, rx)) in s.rx.iter_mut().enumerate() {
                // `changed()` marked the first one's value as seen already.
                if i != first && !rx.has_changed().unwrap_or(false) {
                    continue;
                }
                let current = rx.borrow_and_update().clone();
                if let Some(f) = current {
                    out.extend_from_slice(&part(&f, Some(id)));
                    s.sent[i].inc();
                }
            }
            if !out.is_empty() {
                return Some((Ok::<_, Infallible>(Bytes::from(out)), s));
            }
        }
    });
    multipart_response(Body::from_stream(stream))
}

async fn snapshot(State(st): State<HttpState>, Path(file): Path<String>) -> Response {
    let Some(site) = file
        .strip_suffix(".jpg")
        .and_then(|id| st.site(id))
        .cloned()
    else {
        return not_found(&file);
    };
    let mut rx = site.jpeg.subscribe();
    let asked = Instant::now();
    let _guard = ViewerGuard::new(site, st.0.shared.clone());
    let wait = async {
        loop {
            if let Some(f) = rx.borrow_and_update().clone() {
                if f.at >= asked || f.at.elapsed() < Duration::from_millis(500) {
                    return Some(f);
                }
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), wait).await {
        Ok(Some(f)) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            f.data,
        )
            .into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "gambar belum tersedia, coba lagi\n",
        )
            .into_response(),
    }
}

async fn incident_snapshot(State(st): State<HttpState>, Path(id): Path<String>) -> Response {
    match st.0.feed.snapshot(&id) {
        Some(b) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            b,
        )
            .into_response(),
        None => not_found(&id),
    }
}

/// Counts an SSE client while it is connected.
struct SseGuard(prometheus::IntGauge);

impl Drop for SseGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct SseState {
    backlog: std::vec::IntoIter<Arc<str>>,
    incidents: broadcast::Receiver<Arc<str>>,
    status: watch::Receiver<Arc<str>>,
    cancel: CancellationToken,
    _guard: SseGuard,
}

async fn events(State(st): State<HttpState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let gauge = st.0.shared.metrics.sse_clients.clone();
    gauge.inc();
    // Subscribe before reading the backlog so nothing published in between is lost; a message
    // in both is harmless (the page keys incidents by id and seq).
    let incidents = st.0.feed.tx.subscribe();
    let mut status = st.0.status.clone();
    status.mark_changed();
    let state = SseState {
        backlog: st.0.feed.backlog().into_iter(),
        incidents,
        status,
        cancel: st.0.cancel.clone(),
        _guard: SseGuard(gauge),
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if let Some(j) = s.backlog.next() {
            return Some((Ok(Event::default().event("incident").data(&*j)), s));
        }
        loop {
            tokio::select! {
                _ = s.cancel.cancelled() => return None,
                r = s.incidents.recv() => match r {
                    Ok(j) => return Some((Ok(Event::default().event("incident").data(&*j)), s)),
                    // A browser too slow for the feed misses some; the next ones still come.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
                r = s.status.changed() => {
                    if r.is_err() {
                        return None;
                    }
                    let line = s.status.borrow_and_update().clone();
                    if line.is_empty() {
                        continue;
                    }
                    return Some((Ok(Event::default().event("status").data(&*line)), s));
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_only_cases() {
        let cases = [
            ("10.0.0.5:8080", "10.0.0.5"),
            ("wall.local", "wall.local"),
            ("[fe80::1]:8080", "[fe80::1]"),
        ];
        for (h, want) in cases {
            assert_eq!(host_only(h), want);
        }
    }

    #[test]
    fn sites_lists_are_deduplicated() {
        let known = ["bkb", "ampera", "charitas"];
        let idx = |id: &str| known.iter().position(|k| *k == id);
        let cases: [(&str, Result<Vec<usize>, String>); 7] = [
            ("bkb,ampera", Ok(vec![0, 1])),
            ("ampera,bkb,ampera,bkb", Ok(vec![1, 0])),
            (" bkb , ,charitas,", Ok(vec![0, 2])),
            ("", Ok(vec![])),
            (",,,", Ok(vec![])),
            ("bkb,nope,ampera", Err("nope".into())),
            ("BKB", Err("BKB".into())),
        ];
        for (list, want) in cases {
            assert_eq!(parse_sites(list, idx), want, "{list:?}");
        }
        let flood = vec!["bkb"; 10_000].join(",");
        assert_eq!(parse_sites(&flood, idx), Ok(vec![0]));
    }

    proptest::proptest! {
        /// Any list: no panic, no site twice, only known sites.
        #[test]
        fn any_sites_list(list in "[a-z ,\\u{0}-\\u{7f}é]{0,300}") {
            let known = ["bkb", "ampera", "a"];
            if let Ok(v) = parse_sites(&list, |id| known.iter().position(|k| *k == id)) {
                let mut d = v.clone();
                d.sort_unstable();
                d.dedup();
                proptest::prop_assert_eq!(d.len(), v.len());
                proptest::prop_assert!(v.iter().all(|&i| i < known.len()));
            }
        }
    }

    #[test]
    fn part_has_length_and_next_boundary() {
        let f = JpegFrame {
            seq: 1,
            data: Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]),
            at: Instant::now(),
        };
        let p = part(&f, None);
        let s = String::from_utf8_lossy(&p);
        assert!(s.starts_with("Content-Type: image/jpeg\r\nContent-Length: 4\r\n\r\n"));
        assert!(s.ends_with(&format!("\r\n--{BOUNDARY}\r\n")));
    }
}
