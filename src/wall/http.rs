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
//! | `GET /api/wall` | sites (every site of the deployment, with the node serving each), layout, stream URLs |
//! | `GET /api/live/{site}` | where a browser tile plays the site now: this wall's `/live/{site}`, or the serving node's with a ticket |
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
    /// The sites served here now.
    pub local: Arc<super::tile::LocalSites>,
    pub live: Arc<super::live::LiveCtx>,
    pub shared: Arc<WorkerShared>,
    pub feed: Arc<Feed>,
    pub status: watch::Receiver<Arc<str>>,
    pub cancel: CancellationToken,
    /// The static part of `/api/wall`.
    pub page: Value,
    /// Page entries of sites started after the wall, by id (listed while served here).
    pub added: parking_lot::RwLock<Vec<(String, Value)>>,
    /// Where annotated RTSP out listens, if enabled.
    pub rtsp: Option<(IpAddr, u16)>,
    /// The sites with an annotated RTSP mount (those served at start).
    pub rtsp_sites: Vec<String>,
    /// Signs the tickets for other nodes' `/live/{site}`.
    pub auth: Arc<super::auth::WallAuth>,
    /// Which process serves each site of the deployment (`None`: every site is served here).
    pub directory: Option<Arc<super::directory::Directory>>,
    /// This process's cluster node name.
    pub node: Option<String>,
    /// This wall's advertised URL (`wall.public_url`, else `http://{listen}`).
    pub own_url: String,
}

#[derive(Clone)]
pub struct HttpState(pub Arc<HttpInner>);

impl HttpState {
    fn site(&self, id: &str) -> Option<Arc<SiteOutput>> {
        self.0.local.get(id)
    }

    /// Whether `id` is a site of the deployment that another process serves (or none now).
    fn elsewhere(&self, id: &str) -> bool {
        self.site(id).is_none() && self.0.directory.as_ref().is_some_and(|d| d.knows(id))
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
        .route("/api/live/{site}", get(api_live))
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
    // The annotated RTSP mounts' base. A wildcard bind address is not something a client can
    // dial: use the host the browser reached us by.
    let rtsp_base = st.0.rtsp.map(|(addr, port)| {
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
        format!("rtsp://{host}:{port}/annotated")
    });
    if let Some(sites) = v.get_mut("sites").and_then(|s| s.as_array_mut()) {
        for (id, entry) in st.0.added.read().iter() {
            let listed = sites.iter().any(|s| s["id"].as_str() == Some(id.as_str()));
            if !listed && st.site(id).is_some() {
                sites.push(entry.clone());
            }
        }
        for s in sites {
            let id = s
                .get("id")
                .and_then(|i| i.as_str())
                .unwrap_or("")
                .to_string();
            // Who serves the site now: this process, or the node its latest status names.
            let here = st.site(&id).is_some();
            let seen = st.0.directory.as_ref().and_then(|d| d.get(&id));
            let (node, wall, lease, online) = if here {
                let lease = seen
                    .as_ref()
                    .filter(|p| p.node == st.0.node)
                    .and_then(|p| p.lease);
                (st.0.node.clone(), Some(st.0.own_url.clone()), lease, true)
            } else {
                match &seen {
                    Some(p) => (p.node.clone(), p.wall.clone(), p.lease, p.online),
                    None => (None, None, None, false),
                }
            };
            let rtsp = rtsp_base
                .as_ref()
                .filter(|_| st.0.rtsp_sites.contains(&id))
                .map(|base| format!("{base}/{id}"));
            if let Some(so) = s.as_object_mut() {
                so.insert("served_here".into(), json!(here));
                so.insert("node".into(), json!(node));
                so.insert("wall".into(), json!(wall));
                so.insert("lease".into(), json!(lease));
                so.insert("online".into(), json!(online));
                if let Some(url) = rtsp {
                    so.insert("rtsp".into(), json!(url));
                }
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "directory".into(),
            json!(st.0.directory.as_ref().map(|d| d.connected())),
        );
        if let Some(base) = &rtsp_base {
            o.insert("rtsp_mosaic".into(), json!(format!("{base}/wall")));
        }
    }
    Json(v)
}

/// Where the browser tile of `site` plays it now: `{"url": "/live/{site}"}` when this process
/// serves it, else the serving node's `ws(s)://…/live/{site}?ticket=…` with a ticket for the
/// signed-in viewer (docs/deploy.md, "One wall for all nodes"). 503 while no node serves it
/// (the page asks again), 404 for a site outside the deployment.
async fn api_live(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    principal: Option<axum::Extension<super::auth::Principal>>,
) -> Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    if !st.0.live.enabled {
        return not_found("video langsung dimatikan (wall.live = false)");
    }
    if st.site(&id).is_some() {
        let body = json!({
            "site": id, "node": st.0.node, "served_here": true,
            "url": format!("/live/{id}"),
        });
        return (no_store, Json(body)).into_response();
    }
    if !st.elsewhere(&id) {
        return not_found(&id);
    }
    let seen = st.0.directory.as_ref().and_then(|d| d.get(&id));
    let target = seen.as_ref().filter(|p| p.online).and_then(|p| {
        // Our own URL in a status of a site we do not serve: that status is old news.
        let wall = p.wall.as_ref().filter(|w| **w != st.0.own_url)?;
        Some((p.node.clone(), wall.clone()))
    });
    let (Some((node, wall)), Some(axum::Extension(p))) = (target, principal) else {
        let body = json!({
            "site": id, "node": seen.and_then(|p| p.node), "served_here": false,
            "error": "belum ada node yang melayani kamera ini (no node serves this site now)",
        });
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "2")],
            no_store,
            Json(body),
        )
            .into_response();
    };
    let ticket = st.0.auth.live_ticket(&id, &p, &wall);
    let Some(url) = super::directory::live_ws_url(&wall, &id, &ticket) else {
        return not_found(&id);
    };
    let body = json!({
        "site": id, "node": node, "served_here": false, "wall": wall, "url": url,
    });
    (no_store, Json(body)).into_response()
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
    /// The site stopped being served here.
    gone: CancellationToken,
    _guard: ViewerGuard,
    cancel: CancellationToken,
    sent: prometheus::IntCounter,
    started: bool,
}

async fn mjpeg(State(st): State<HttpState>, Path(file): Path<String>) -> Response {
    let Some(site) = file.strip_suffix(".mjpg").and_then(|id| st.site(id)) else {
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
        gone: site.gone.clone(),
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
                _ = s.gone.cancelled() => return None,
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
    /// One per site: the stream ends when any of them stops being served here (the page
    /// opens it again with the sites it has now).
    gone: Vec<CancellationToken>,
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
    let sites = st.0.local.all();
    let wanted: Vec<Arc<SiteOutput>> = match &q.sites {
        Some(list) => {
            // Sites another node serves are left out (their tiles play from there), not refused:
            // the list was made before a site moved.
            let kept: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|id| !st.elsewhere(id))
                .collect();
            match parse_sites(&kept.join(","), |id| {
                sites.iter().position(|s| s.id.as_str() == id)
            }) {
                Ok(v) => v.into_iter().map(|i| sites[i].clone()).collect(),
                Err(id) => return not_found(&id),
            }
        }
        None => sites,
    };
    let metrics = &st.0.shared.metrics;
    let gone = wanted.iter().map(|s| s.gone.clone()).collect();
    let state = TilesState {
        gone,
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
                let gone =
                    futures::future::select_all(s.gone.iter().map(|g| Box::pin(g.cancelled())));
                tokio::select! {
                    _ = s.cancel.cancelled() => return None,
                    _ = gone => return None,
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
    let Some(site) = file.strip_suffix(".jpg").and_then(|id| st.site(id)) else {
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
