//! The hub: per-site latest-value slots shared between stages, looked up by [`SiteId`].
//!
//! Producers overwrite, consumers read the newest value, nobody waits: this is how the display
//! path stays at the source frame rate while analytics runs at its own pace, and how a viewer
//! joining or leaving the wall never slows a camera. Queues of work (analytics frames, rule
//! events) are bounded channels owned by the stages themselves; the one shared between ingest
//! and the frame loop, [`AnalyticsQueue`], is here beside the slots.
//!
//! Sites are kept by id in a [`Registry`], never by position, so a site can start or stop while
//! the others run (a camera moving to another node).

pub mod encoded;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use chrono::{DateTime, Utc};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::model::{AnalyticsFrame, DisplayFrame, IncidentMessage, Picture, SiteId, SiteResults};
pub use encoded::EncodedStream;

/// Whether a camera is delivering frames, and since when.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CameraStatus {
    pub online: bool,
    /// When `online` last changed (or the process started).
    pub since: DateTime<Utc>,
    pub last_frame_at: Option<DateTime<Utc>>,
    /// The last error the pipeline reported, kept while offline.
    pub last_error: Option<String>,
    pub reconnects: u64,
    /// Native picture size, once known.
    pub width: u32,
    pub height: u32,
}

impl CameraStatus {
    pub fn starting(at: DateTime<Utc>) -> Self {
        Self {
            online: false,
            since: at,
            last_frame_at: None,
            last_error: None,
            reconnects: 0,
            width: 0,
            height: 0,
        }
    }
}

/// The slots of one site.
pub struct SiteHub {
    pub id: SiteId,
    /// The camera's own compressed video, before decoding (the browser wall plays it).
    pub encoded: EncodedStream,
    /// Newest display frame (tile size), while a burned-in output asks for them
    /// ([`SiteHub::set_display_demand`]).
    pub display: ArcSwapOption<DisplayFrame>,
    /// Newest analytics results; publish with [`SiteHub::publish_results`] so watchers wake.
    pub results: ArcSwap<SiteResults>,
    results_changed: watch::Sender<u64>,
    /// The newest picture analytics worked on, for incident snapshots (no display frames are
    /// made while nobody watches a burned-in output).
    pub picture: ArcSwapOption<Picture>,
    pub status: ArcSwap<CameraStatus>,
    /// Display frames delivered since start.
    pub display_frames: AtomicU64,
    /// Frames the camera sent (counted before decoding) since start, and when the last one
    /// arrived (Unix ms, 0 = never): the wall's frame-rate meter and live state read them.
    pub source_frames: AtomicU64,
    last_source_ms: AtomicI64,
    /// Display frames per second the burned-in outputs ask for, as f64 bits.
    display_demand: AtomicU64,
}

impl SiteHub {
    pub fn new(id: SiteId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            encoded: EncodedStream::default(),
            display: ArcSwapOption::empty(),
            results: ArcSwap::from_pointee(SiteResults::default()),
            results_changed: watch::channel(0).0,
            picture: ArcSwapOption::empty(),
            status: ArcSwap::from_pointee(CameraStatus::starting(now)),
            display_frames: AtomicU64::new(0),
            source_frames: AtomicU64::new(0),
            last_source_ms: AtomicI64::new(0),
            display_demand: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn publish_display(&self, frame: DisplayFrame) {
        self.display.store(Some(Arc::new(frame)));
        self.display_frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the analytics results and wakes whoever watches them.
    pub fn publish_results(&self, results: SiteResults) {
        self.results.store(Arc::new(results));
        self.results_changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wakes (`changed()`) at each [`SiteHub::publish_results`].
    pub fn watch_results(&self) -> watch::Receiver<u64> {
        self.results_changed.subscribe()
    }

    /// Counts a frame from the camera, arrived `at`.
    pub fn source_frame(&self, at: DateTime<Utc>) {
        self.source_frames.fetch_add(1, Ordering::Relaxed);
        self.last_source_ms
            .store(at.timestamp_millis(), Ordering::Relaxed);
    }

    /// When the camera's last frame arrived.
    pub fn last_source_at(&self) -> Option<DateTime<Utc>> {
        match self.last_source_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => DateTime::from_timestamp_millis(ms),
        }
    }

    /// Asks ingest for display frames at `fps` (0: none; infinity: every source frame). The
    /// display branch decodes, scales and copies only what is asked for.
    pub fn set_display_demand(&self, fps: f64) {
        let fps = if fps.is_nan() { 0.0 } else { fps.max(0.0) };
        self.display_demand.store(fps.to_bits(), Ordering::Relaxed);
    }

    pub fn display_demand(&self) -> f64 {
        f64::from_bits(self.display_demand.load(Ordering::Relaxed))
    }

    pub fn update_status(&self, f: impl Fn(&mut CameraStatus)) {
        self.status.rcu(|cur| {
            let mut next = CameraStatus::clone(cur);
            f(&mut next);
            next
        });
    }
}

/// Sites by id, in the order they were added (config order at start), readable from any
/// thread while sites come and go: the registry of the hub, and of the app's site slots.
///
/// A small ordered map: a node runs tens of cameras, so a scan under a read lock is cheaper
/// than hashing, and the order (the config's) is what the wall and `/api/status` list.
pub struct Registry<T> {
    entries: RwLock<Vec<(SiteId, Arc<T>)>>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            entries: RwLock::new(Vec::new()),
        }
    }
}

impl<T> Registry<T> {
    /// Adds `value` under `id`; gives it back when the id is taken.
    pub fn insert(&self, id: SiteId, value: Arc<T>) -> Result<(), Arc<T>> {
        let mut e = self.entries.write();
        if e.iter().any(|(k, _)| *k == id) {
            return Err(value);
        }
        e.push((id, value));
        Ok(())
    }

    /// Takes the entry of `id` out, if there is one.
    pub fn remove(&self, id: &str) -> Option<Arc<T>> {
        let mut e = self.entries.write();
        let i = e.iter().position(|(k, _)| k.as_str() == id)?;
        Some(e.remove(i).1)
    }

    pub fn get(&self, id: &str) -> Option<Arc<T>> {
        self.entries
            .read()
            .iter()
            .find(|(k, _)| k.as_str() == id)
            .map(|(_, v)| v.clone())
    }

    /// Every entry now, in order (a copy: sites added or removed later do not show in it).
    pub fn all(&self) -> Vec<Arc<T>> {
        self.entries.read().iter().map(|(_, v)| v.clone()).collect()
    }

    pub fn ids(&self) -> Vec<SiteId> {
        self.entries.read().iter().map(|(k, _)| k.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.read().is_empty()
    }
}

/// Every site's latest-value slots, by id, plus the live incident feed. Sites may be added and
/// removed while running ([`Hub::add`], [`Hub::remove`]); stages look a site up by its id.
pub struct Hub {
    sites: Registry<SiteHub>,
    /// Every incident message as it is published (the wall's SSE feed subscribes).
    pub incidents: broadcast::Sender<IncidentMessage>,
}

impl Hub {
    pub fn new(site_ids: impl IntoIterator<Item = SiteId>) -> Arc<Self> {
        let (tx, _) = broadcast::channel(256);
        let hub = Self {
            sites: Registry::default(),
            incidents: tx,
        };
        for id in site_ids {
            // A repeated id is the same site: it keeps its first slot.
            let _ = hub.add(id);
        }
        Arc::new(hub)
    }

    /// Adds a site with fresh slots (camera starting now). None when the id is already there.
    pub fn add(&self, id: SiteId) -> Option<Arc<SiteHub>> {
        let slot = Arc::new(SiteHub::new(id.clone(), Utc::now()));
        self.sites.insert(id, slot.clone()).ok().map(|()| slot)
    }

    /// Adds a site's slots made elsewhere; gives them back when the id is already there.
    pub fn insert(&self, slot: Arc<SiteHub>) -> Result<(), Arc<SiteHub>> {
        self.sites.insert(slot.id.clone(), slot)
    }

    /// Takes a site out; whoever still holds its slots may finish with them.
    pub fn remove(&self, id: &str) -> Option<Arc<SiteHub>> {
        self.sites.remove(id)
    }

    pub fn site(&self, id: &str) -> Option<Arc<SiteHub>> {
        self.sites.get(id)
    }

    /// The sites now, in the order they were added.
    pub fn sites(&self) -> Vec<Arc<SiteHub>> {
        self.sites.all()
    }
}

/// Analytics frames waiting for the detector: the newest frame of each site, nothing older.
///
/// A camera that produces frames faster than the detector takes them overwrites its own slot
/// (counted as a drop) and never delays another camera. Workers take frames round-robin over
/// sites, several at once for a batch, and a site with a frame in flight is skipped until
/// [`AnalyticsQueue::done`], so each site's frames reach its tracker in order. Sites are added
/// and removed by id while workers run.
///
/// A *lossless* queue ([`AnalyticsQueue::lossless`], `simpang replay`) drops nothing: `put`
/// waits until the site's previous frame has been taken, which holds the file's decoder back
/// to the detector's pace.
pub struct AnalyticsQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Signalled when a waiting frame is taken (lossless producers wait on it).
    taken: Condvar,
    lossless: bool,
}

struct QueueSlot {
    site: SiteId,
    waiting: Option<AnalyticsFrame>,
    in_flight: bool,
}

struct QueueState {
    slots: Vec<QueueSlot>,
    next: usize,
    closed: bool,
}

impl QueueState {
    fn slot(&mut self, site: &SiteId) -> Option<&mut QueueSlot> {
        self.slots.iter_mut().find(|s| s.site == *site)
    }
}

impl AnalyticsQueue {
    pub fn new(sites: impl IntoIterator<Item = SiteId>) -> Arc<Self> {
        Self::make(sites, false)
    }

    /// A queue that never drops a frame: [`AnalyticsQueue::put`] waits for room instead.
    pub fn lossless(sites: impl IntoIterator<Item = SiteId>) -> Arc<Self> {
        Self::make(sites, true)
    }

    fn make(sites: impl IntoIterator<Item = SiteId>, lossless: bool) -> Arc<Self> {
        let q = Self {
            state: Mutex::new(QueueState {
                slots: Vec::new(),
                next: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            taken: Condvar::new(),
            lossless,
        };
        for id in sites {
            q.add(id);
        }
        Arc::new(q)
    }

    /// Makes room for a site's frames. False when it already has a slot.
    pub fn add(&self, site: SiteId) -> bool {
        let mut st = self.state.lock();
        if st.slot(&site).is_some() {
            return false;
        }
        st.slots.push(QueueSlot {
            site,
            waiting: None,
            in_flight: false,
        });
        true
    }

    /// Forgets a site and its waiting frame. A frame of it in flight still ends with
    /// [`AnalyticsQueue::done`], which then does nothing.
    pub fn remove(&self, site: &SiteId) -> bool {
        let mut st = self.state.lock();
        let Some(i) = st.slots.iter().position(|s| s.site == *site) else {
            return false;
        };
        st.slots.remove(i);
        if st.next > i {
            st.next -= 1;
        }
        if st.next >= st.slots.len() {
            st.next = 0;
        }
        drop(st);
        self.taken.notify_all();
        true
    }

    /// Offers the newest frame of its site. True when it replaced a frame nobody took (a drop).
    /// A frame of a site without a slot (removed meanwhile) is let go. A lossless queue waits
    /// until the site's previous frame is taken (or the queue closes, or the site leaves).
    pub fn put(&self, frame: AnalyticsFrame) -> bool {
        let mut st = self.state.lock();
        if self.lossless {
            while !st.closed && st.slot(&frame.site).is_some_and(|s| s.waiting.is_some()) {
                self.taken.wait(&mut st);
            }
            if st.closed {
                return false;
            }
        }
        let Some(slot) = st.slot(&frame.site) else {
            return false;
        };
        let dropped = slot.waiting.replace(frame).is_some();
        drop(st);
        self.ready.notify_one();
        dropped
    }

    /// No frame waits and none is in flight.
    pub fn is_idle(&self) -> bool {
        let st = self.state.lock();
        st.slots.iter().all(|s| s.waiting.is_none() && !s.in_flight)
    }

    /// Waits up to `timeout` for frames of sites not in flight and takes up to `max` of them,
    /// marking those sites in flight. Empty on timeout or once closed.
    pub fn take(&self, max: usize, timeout: Duration) -> Vec<AnalyticsFrame> {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.state.lock();
        loop {
            if st.closed {
                return Vec::new();
            }
            let n = st.slots.len();
            let mut out = Vec::new();
            let mut last = None;
            for k in 0..n {
                if out.len() >= max.max(1) {
                    break;
                }
                let i = (st.next + k) % n;
                let slot = &mut st.slots[i];
                if !slot.in_flight {
                    if let Some(f) = slot.waiting.take() {
                        slot.in_flight = true;
                        out.push(f);
                        last = Some(i);
                    }
                }
            }
            if let Some(last) = last {
                st.next = (last + 1) % n;
                drop(st);
                if self.lossless {
                    self.taken.notify_all();
                }
                return out;
            }
            if self.ready.wait_until(&mut st, deadline).timed_out() {
                return Vec::new();
            }
        }
    }

    /// The site's frame has been processed; its next frame may be taken.
    pub fn done(&self, site: &SiteId) {
        let mut st = self.state.lock();
        if let Some(slot) = st.slot(site) {
            slot.in_flight = false;
            let waiting = slot.waiting.is_some();
            drop(st);
            if waiting {
                self.ready.notify_one();
            }
        }
    }

    /// Wakes every waiting worker (and lossless producer) and makes further takes and puts do
    /// nothing.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
        self.taken.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Image;

    #[test]
    fn display_slot_keeps_newest() {
        let hub = Hub::new([SiteId::new("a"), SiteId::new("b")]);
        let a = hub.site("a").unwrap();
        assert!(a.display.load().is_none());
        for seq in 0..3 {
            a.publish_display(DisplayFrame {
                site: a.id.clone(),
                seq,
                captured_at: Utc::now(),
                image: Arc::new(Image::new(2, 2)),
            });
        }
        assert_eq!(a.display.load().as_ref().unwrap().seq, 2);
        assert_eq!(a.display_frames.load(Ordering::Relaxed), 3);
        assert!(hub.site("b").unwrap().display.load().is_none());
        assert!(hub.site("c").is_none());
    }

    #[test]
    fn status_update() {
        let hub = Hub::new([SiteId::new("a")]);
        let a = hub.site("a").unwrap();
        a.update_status(|s| {
            s.online = true;
            s.reconnects += 1;
        });
        let s = a.status.load();
        assert!(s.online);
        assert_eq!(s.reconnects, 1);
    }

    fn frame(site: &str, seq: u64) -> AnalyticsFrame {
        AnalyticsFrame {
            site: SiteId::new(site),
            seq,
            captured_at: Utc::now(),
            rule_at: Utc::now(),
            pts: None,
            media_time: None,
            source_width: 4,
            source_height: 4,
            image: Image::new(4, 4),
        }
    }

    #[test]
    fn queue_keeps_newest_and_counts_drops() {
        let q = AnalyticsQueue::new([SiteId::new("a"), SiteId::new("b")]);
        assert!(!q.put(frame("a", 1)));
        assert!(q.put(frame("a", 2)));
        assert!(!q.put(frame("x", 1))); // unknown site: ignored, no panic
        let got = q.take(4, Duration::from_millis(10));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].site.as_str(), got[0].seq), ("a", 2));
        assert!(q.take(4, Duration::from_millis(10)).is_empty());
    }

    fn sites_of(batch: &[AnalyticsFrame]) -> Vec<&str> {
        batch.iter().map(|f| f.site.as_str()).collect()
    }

    #[test]
    fn queue_round_robin_and_in_flight() {
        let q = AnalyticsQueue::new(["s0", "s1", "s2"].map(SiteId::new));
        for (i, s) in ["s0", "s1", "s2"].into_iter().enumerate() {
            q.put(frame(s, i as u64));
        }
        let a = q.take(2, Duration::from_millis(10));
        assert_eq!(sites_of(&a), ["s0", "s1"]);
        // s0 in flight: its next frame waits for done()
        q.put(frame("s0", 10));
        let b = q.take(2, Duration::from_millis(10));
        assert_eq!(sites_of(&b), ["s2"]);
        assert!(q.take(2, Duration::from_millis(10)).is_empty());
        q.done(&SiteId::new("s0"));
        let c = q.take(2, Duration::from_millis(10));
        assert_eq!((c[0].site.as_str(), c[0].seq), ("s0", 10));
    }

    /// Sites come and go while frames wait and are in flight: no frame of a removed site is
    /// handed out, its late done() is harmless, and the round-robin goes on over the rest.
    #[test]
    fn queue_sites_added_and_removed_while_running() {
        let q = AnalyticsQueue::new(["a", "b", "c"].map(SiteId::new));
        assert!(!q.add(SiteId::new("b")), "an id has one slot");
        for s in ["a", "b", "c"] {
            q.put(frame(s, 1));
        }
        let first = q.take(1, Duration::from_millis(10));
        assert_eq!(sites_of(&first), ["a"]);
        assert!(q.remove(&SiteId::new("a")), "in flight");
        assert!(q.remove(&SiteId::new("b")), "waiting");
        assert!(!q.remove(&SiteId::new("b")));
        q.done(&SiteId::new("a"));
        assert!(!q.put(frame("b", 2)), "a removed site's frames are let go");
        assert!(q.add(SiteId::new("d")));
        q.put(frame("d", 1));
        let rest = q.take(4, Duration::from_millis(10));
        assert_eq!(sites_of(&rest), ["c", "d"]);
        for f in &rest {
            q.done(&f.site);
        }
        assert!(q.take(4, Duration::from_millis(10)).is_empty());
        assert!(q.add(SiteId::new("a")), "a site can come back");
        q.put(frame("a", 9));
        assert_eq!(q.take(4, Duration::from_millis(10))[0].seq, 9);
    }

    #[test]
    fn hub_sites_by_id_added_and_removed() {
        let hub = Hub::new(["a", "b", "a"].map(SiteId::new));
        let ids = |h: &Hub| {
            h.sites()
                .iter()
                .map(|s| s.id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&hub), ["a", "b"]);
        let a = hub.site("a").unwrap();
        a.update_status(|s| s.reconnects = 3);
        assert!(
            hub.add(SiteId::new("a")).is_none(),
            "a running site keeps its slots"
        );
        assert_eq!(hub.site("a").unwrap().status.load().reconnects, 3);
        let c = hub.add(SiteId::new("c")).unwrap();
        assert!(Arc::ptr_eq(&c, &hub.site("c").unwrap()));
        assert_eq!(ids(&hub), ["a", "b", "c"]);
        let gone = hub.remove("b").unwrap();
        assert_eq!(gone.id.as_str(), "b");
        assert!(hub.site("b").is_none());
        assert!(hub.remove("b").is_none());
        assert_eq!(ids(&hub), ["a", "c"]);
    }

    #[test]
    fn queue_wakes_waiter_and_closes() {
        let q = AnalyticsQueue::new([SiteId::new("a")]);
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.take(1, Duration::from_secs(10)).len());
        std::thread::sleep(Duration::from_millis(50));
        q.put(frame("a", 1));
        assert_eq!(t.join().unwrap(), 1);
        let q3 = q.clone();
        let t = std::thread::spawn(move || q3.take(1, Duration::from_secs(10)).len());
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert_eq!(t.join().unwrap(), 0);
    }

    #[test]
    fn lossless_queue_holds_the_producer_back_and_drops_nothing() {
        let q = AnalyticsQueue::lossless([SiteId::new("a")]);
        let q2 = q.clone();
        // the producer offers 20 frames; each waits until the one before was taken
        let producer = std::thread::spawn(move || (0..20).any(|i| q2.put(frame("a", i))));
        let mut seen = Vec::new();
        while seen.len() < 20 {
            for f in q.take(4, Duration::from_secs(10)) {
                seen.push(f.seq);
                assert!(!q.is_idle(), "in flight");
                q.done(&f.site);
            }
        }
        assert!(!producer.join().unwrap(), "nothing dropped");
        assert_eq!(seen, (0..20).collect::<Vec<_>>());
        assert!(q.is_idle());
        // a producer waiting for room is let go when the queue closes
        q.put(frame("a", 20));
        let q3 = q.clone();
        let blocked = std::thread::spawn(move || q3.put(frame("a", 21)));
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert!(!blocked.join().unwrap());
    }
}
