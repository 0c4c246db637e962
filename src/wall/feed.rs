//! The live feed behind `/events`: incidents as the incident stage publishes them, and a status
//! line per site once a second.
//!
//! Each incident message is turned into its browser form once (JSON without the inline snapshot,
//! which is served at `/incidents/{id}/snapshot.jpg` instead, so a feed of dozens of incidents
//! does not push megabytes of base64 to every browser) and fanned out to every SSE client. The
//! latest message per incident is kept for a while, so a browser that opens the wall (or
//! reconnects) starts with the recent incidents rather than an empty list.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine;
use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::tile::is_fresh;
use crate::model::{IncidentEvent, IncidentMessage};

/// Incidents kept for browsers that connect later.
const RECENT: usize = 40;

struct Recent {
    id: String,
    json: Arc<str>,
    snapshot: Option<Bytes>,
}

/// Recent incidents and the live fan-out.
pub struct Feed {
    recent: Mutex<VecDeque<Recent>>,
    pub tx: broadcast::Sender<Arc<str>>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            recent: Mutex::new(VecDeque::new()),
            tx: broadcast::channel(256).0,
        }
    }
}

impl Feed {
    /// Takes one published message: remembers it, sends its browser form to every client.
    pub fn publish(&self, msg: &IncidentMessage) {
        let inc = &msg.incident;
        let snapshot = inc.snapshot.as_ref().and_then(|s| {
            match base64::engine::general_purpose::STANDARD.decode(s.data_base64.as_bytes()) {
                Ok(b) if b.starts_with(&[0xFF, 0xD8]) => Some(Bytes::from(b)),
                Ok(_) => {
                    warn!(incident = %inc.id, "incident snapshot is not a JPEG; not shown");
                    None
                }
                Err(e) => {
                    warn!(incident = %inc.id, error = %e, "incident snapshot is not base64; not shown");
                    None
                }
            }
        });
        let mut recent = self.recent.lock();
        // An update without a snapshot keeps showing the one it had.
        let prior = recent
            .iter()
            .position(|r| r.id == inc.id)
            .and_then(|i| recent.remove(i));
        let snapshot = snapshot.or(prior.and_then(|p| p.snapshot));
        let json: Arc<str> = Arc::from(browser_json(msg, snapshot.is_some()).to_string());
        recent.push_back(Recent {
            id: inc.id.clone(),
            json: json.clone(),
            snapshot,
        });
        while recent.len() > RECENT {
            recent.pop_front();
        }
        drop(recent);
        // No receivers is fine: nobody has the wall open.
        let _ = self.tx.send(json);
    }

    /// The recent incidents, oldest first, in browser form.
    pub fn backlog(&self) -> Vec<Arc<str>> {
        self.recent.lock().iter().map(|r| r.json.clone()).collect()
    }

    pub fn snapshot(&self, id: &str) -> Option<Bytes> {
        self.recent
            .lock()
            .iter()
            .rev()
            .find(|r| r.id == id)
            .and_then(|r| r.snapshot.clone())
    }
}

/// The incident as the browser gets it: the message minus the base64 snapshot, plus where to
/// fetch the snapshot.
fn browser_json(msg: &IncidentMessage, has_snapshot: bool) -> Value {
    let inc = &msg.incident;
    let mut v = serde_json::to_value(inc).unwrap_or_else(|_| json!({ "id": inc.id }));
    if let Some(o) = v.as_object_mut() {
        o.remove("snapshot");
        o.insert("event".into(), json!(msg.event.as_str()));
        o.insert(
            "open".into(),
            json!(msg.event != IncidentEvent::End && inc.ended_at.is_none()),
        );
        let url = has_snapshot.then(|| {
            format!(
                "/incidents/{}/snapshot.jpg?seq={}",
                url_escape(&inc.id),
                inc.seq
            )
        });
        o.insert("snapshot_url".into(), json!(url));
    }
    v
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Feeds published incidents into `feed` until cancelled.
pub async fn run_incidents(
    mut rx: broadcast::Receiver<IncidentMessage>,
    feed: Arc<Feed>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = rx.recv() => match r {
                Ok(msg) => feed.publish(&msg),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(skipped = n, "wall incident feed fell behind; some messages not shown");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
    debug!("incident feed ended");
}

/// Display frames per second over a sliding window of counter samples.
#[derive(Debug, Default)]
pub struct FpsWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl FpsWindow {
    pub fn push(&mut self, at: Instant, count: u64, window: Duration) -> f64 {
        // A counter that went backwards (it never should) restarts the window.
        if self.samples.back().is_some_and(|&(_, c)| count < c) {
            self.samples.clear();
        }
        self.samples.push_back((at, count));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|&(t, _)| at.duration_since(t) > window)
        {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some(&(t0, c0)), Some(&(t1, c1))) if t1 > t0 => {
                (c1 - c0) as f64 / t1.duration_since(t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

/// What the status line is made of: every site the page shows, the ones served here, and what
/// the deployment's status messages say of the others.
pub struct StatusSources {
    /// (id, name) of every site shown, in page order.
    pub sites: Vec<(String, String)>,
    pub local: Arc<super::tile::LocalSites>,
    pub directory: Option<Arc<super::directory::Directory>>,
    /// This process's node name.
    pub node: Option<String>,
}

/// The status line of a site another process serves, from its last status message.
fn remote_status(id: &str, name: &str, p: Option<&super::directory::Placement>) -> Value {
    let online = p.is_some_and(|p| p.online);
    let camera = p.and_then(|p| p.camera_online).unwrap_or(false);
    json!({
        "id": id,
        "name": name,
        "remote": true,
        "node": p.and_then(|p| p.node.clone()),
        "served": online,
        "live": online && camera,
        "online": online && camera,
        "since": p.map(|p| p.at.clone()),
        "last_frame_at": p.and_then(|p| p.last_frame_at.clone()),
        "last_error": p.and_then(|p| p.last_error.clone()),
        "reconnects": if p.is_some() { 1 } else { 0 },
        "fps": 0.0,
        "analytics_age_s": null,
        "open_incidents": 0,
        "zones": [],
        "lines": [],
    })
}

/// Once a second: measures each site's display rate and publishes the status line.
pub async fn run_status(
    src: StatusSources,
    metrics: super::metrics::WallMetrics,
    tx: watch::Sender<Arc<str>>,
    cancel: CancellationToken,
) {
    let mut windows: std::collections::HashMap<String, FpsWindow> = Default::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let utc = Utc::now();
        let mut list = Vec::with_capacity(src.sites.len());
        let local = src.local.all();
        windows.retain(|id, _| local.iter().any(|s| s.id.as_str() == id));
        // The page's sites, then any started here since (outside the page's list).
        let later: Vec<(String, String)> = local
            .iter()
            .filter(|s| !src.sites.iter().any(|(id, _)| s.id.as_str() == id))
            .map(|s| (s.id.to_string(), s.name.clone()))
            .collect();
        for (id, name) in src.sites.iter().chain(later.iter()) {
            let Some(s) = local.iter().find(|s| s.id.as_str() == id) else {
                let p = src.directory.as_ref().and_then(|d| d.get(id));
                list.push(remote_status(id, name, p.as_ref()));
                continue;
            };
            let w = windows.entry(id.clone()).or_default();
            // The camera's own frames, counted before decoding: what the browser wall plays,
            // whether or not anything is decoded for display.
            let count = s.hub.source_frames.load(Ordering::Relaxed);
            let fps = w.push(now, count, Duration::from_secs(5));
            s.display_fps.store(fps.to_bits(), Ordering::Relaxed);
            metrics
                .display_fps
                .with_label_values(&[s.id.as_str()])
                .set(fps);
            let st = s.hub.status.load();
            let live = s.hub.last_source_at().is_some_and(|t| is_fresh(t, utc));
            let results = s.hub.results.load();
            let analytics_age = results
                .captured_at
                .map(|t| ((utc - t).num_milliseconds() as f64 / 1000.0).max(0.0));
            list.push(json!({
                "id": s.id,
                "name": s.name,
                "live": live,
                "online": st.online,
                "since": st.since,
                "last_frame_at": st.last_frame_at,
                "last_error": st.last_error,
                "reconnects": st.reconnects,
                "width": st.width,
                "height": st.height,
                "fps": (fps * 10.0).round() / 10.0,
                "analytics_age_s": analytics_age,
                "open_incidents": results.open_incidents.len(),
                "zones": results.zones.iter().map(|z| json!({
                    "id": z.zone,
                    "severity": z.severity,
                    "level": z.level,
                    "label": super::words::zone_label(z),
                    "count": z.count,
                    "incident": results.open_incidents.iter().any(|(_, zz)| zz.as_ref() == Some(&z.zone)),
                })).collect::<Vec<_>>(),
                "lines": results.lines.iter().map(|l| json!({
                    "id": l.line,
                    "in": l.in_count,
                    "out": l.out_count,
                })).collect::<Vec<_>>(),
                "viewers": s.mjpeg_viewers.load(Ordering::Relaxed),
                "live_viewers": s.hub.encoded.viewers(),
                "node": src.node,
                "remote": false,
            }));
        }
        let line = json!({ "at": utc, "sites": list }).to_string();
        tx.send_replace(Arc::from(line));
    }
    debug!("status ticker ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Evidence, Incident, IncidentKind, Snapshot, INCIDENT_SCHEMA};

    pub(crate) fn message(id: &str, event: IncidentEvent, jpeg: Option<&[u8]>) -> IncidentMessage {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-23T17:00:00+07:00").unwrap();
        IncidentMessage {
            schema: INCIDENT_SCHEMA.into(),
            event,
            incident: Incident {
                id: id.into(),
                seq: 1,
                site: "charitas".into(),
                site_name: "Simpang Charitas".into(),
                camera: "charitas".into(),
                kind: IncidentKind::TrafficJam,
                level: crate::model::Level::Macet,
                title: "Kemacetan di Simpang Charitas".into(),
                title_en: "Traffic jam".into(),
                description: "d".into(),
                description_en: "d".into(),
                address: "Jl. X".into(),
                lat: -2.9,
                lon: 104.7,
                zone: Some("sudirman".into()),
                zone_name: Some("Pendekat".into()),
                started_at: t,
                updated_at: t,
                ended_at: None,
                evidence: Evidence::default(),
                snapshot: jpeg.map(|j| Snapshot {
                    content_type: "image/jpeg".into(),
                    width: 2,
                    height: 2,
                    sha256: String::new(),
                    path: String::new(),
                    data_base64: base64::engine::general_purpose::STANDARD.encode(j),
                }),
            },
        }
    }

    #[test]
    fn feed_keeps_latest_per_incident_and_its_snapshot() {
        let feed = Feed::default();
        let mut rx = feed.tx.subscribe();
        feed.publish(&message("a/1", IncidentEvent::New, Some(&[0xFF, 0xD8, 1])));
        feed.publish(&message("b", IncidentEvent::New, Some(b"not a jpeg")));
        feed.publish(&message("a/1", IncidentEvent::Update, None));
        let backlog = feed.backlog();
        assert_eq!(backlog.len(), 2);
        let last: Value = serde_json::from_str(&backlog[1]).unwrap();
        assert_eq!(last["id"], "a/1");
        assert_eq!(last["event"], "update");
        assert_eq!(last["open"], true);
        assert_eq!(last["snapshot_url"], "/incidents/a%2F1/snapshot.jpg?seq=1");
        assert!(last.get("snapshot").is_none());
        assert_eq!(feed.snapshot("a/1").unwrap().as_ref(), &[0xFF, 0xD8, 1]);
        assert!(feed.snapshot("b").is_none());
        let first: Value = serde_json::from_str(&backlog[0]).unwrap();
        assert_eq!(first["snapshot_url"], Value::Null);
        assert!(rx.try_recv().unwrap().as_ref().contains("\"a/1\""));
        for i in 0..100 {
            feed.publish(&message(&format!("x{i}"), IncidentEvent::End, None));
        }
        assert_eq!(feed.backlog().len(), RECENT);
        let v: Value = serde_json::from_str(&feed.backlog()[0]).unwrap();
        assert_eq!(v["open"], false);
    }

    #[test]
    fn fps_window_cases() {
        let t0 = Instant::now();
        let mut w = FpsWindow::default();
        assert_eq!(w.push(t0, 0, Duration::from_secs(5)), 0.0);
        let mut fps = 0.0;
        for s in 1..=10u64 {
            fps = w.push(t0 + Duration::from_secs(s), s * 30, Duration::from_secs(5));
        }
        assert!((fps - 30.0).abs() < 1e-9, "{fps}");
        // counter reset (camera pipeline rebuilt elsewhere would not do this, but be safe)
        assert_eq!(
            w.push(t0 + Duration::from_secs(11), 5, Duration::from_secs(5)),
            0.0
        );
        // stalled camera: rate falls to 0 once the window has only equal counts
        let mut w = FpsWindow::default();
        for s in 0..10u64 {
            fps = w.push(t0 + Duration::from_secs(s), 100, Duration::from_secs(5));
        }
        assert_eq!(fps, 0.0);
        assert_eq!(url_escape("a b/ü"), "a%20b%2F%C3%BC");
    }
}
