//! The hub: per-site latest-value slots shared between stages.
//!
//! Producers overwrite, consumers read the newest value, nobody waits: this is how the display
//! path stays at the source frame rate while analytics runs at its own pace, and how a viewer
//! joining or leaving the wall never slows a camera. Queues of work (analytics frames, rule
//! events) are bounded channels owned by the stages themselves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use chrono::{DateTime, Utc};
use parking_lot::{Condvar, Mutex};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::model::{AnalyticsFrame, DisplayFrame, IncidentMessage, SiteId, SiteResults};

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
    /// Newest display frame (tile size, source rate).
    pub display: ArcSwapOption<DisplayFrame>,
    /// Newest analytics results, drawn over display frames.
    pub results: ArcSwap<SiteResults>,
    pub status: ArcSwap<CameraStatus>,
    /// Display frames delivered since start (the wall's frame-rate meter reads it).
    pub display_frames: AtomicU64,
}

impl SiteHub {
    pub fn new(id: SiteId, now: DateTime<Utc>) -> Self {
        Self {
            id,
            display: ArcSwapOption::empty(),
            results: ArcSwap::from_pointee(SiteResults::default()),
            status: ArcSwap::from_pointee(CameraStatus::starting(now)),
            display_frames: AtomicU64::new(0),
        }
    }

    pub fn publish_display(&self, frame: DisplayFrame) {
        self.display.store(Some(Arc::new(frame)));
        self.display_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub fn update_status(&self, f: impl Fn(&mut CameraStatus)) {
        self.status.rcu(|cur| {
            let mut next = CameraStatus::clone(cur);
            f(&mut next);
            next
        });
    }
}

/// All sites' slots plus the live incident feed.
pub struct Hub {
    pub sites: Vec<Arc<SiteHub>>,
    /// Every incident message as it is published (the wall's SSE feed subscribes).
    pub incidents: broadcast::Sender<IncidentMessage>,
}

impl Hub {
    pub fn new(site_ids: impl IntoIterator<Item = SiteId>) -> Arc<Self> {
        let now = Utc::now();
        let (tx, _) = broadcast::channel(256);
        Arc::new(Self {
            sites: site_ids
                .into_iter()
                .map(|id| Arc::new(SiteHub::new(id, now)))
                .collect(),
            incidents: tx,
        })
    }

    pub fn site(&self, id: &str) -> Option<&Arc<SiteHub>> {
        self.sites.iter().find(|s| s.id.as_str() == id)
    }
}

/// Analytics frames waiting for the detector: the newest frame of each site, nothing older.
///
/// A camera that produces frames faster than the detector takes them overwrites its own slot
/// (counted as a drop) and never delays another camera. Workers take frames round-robin over
/// sites, several at once for a batch, and a site with a frame in flight is skipped until
/// [`AnalyticsQueue::done`], so each site's frames reach its tracker in order.
pub struct AnalyticsQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    slots: Vec<(Option<AnalyticsFrame>, bool)>, // (waiting frame, in flight)
    next: usize,
    closed: bool,
}

impl AnalyticsQueue {
    pub fn new(sites: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(QueueState {
                slots: (0..sites).map(|_| (None, false)).collect(),
                next: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        })
    }

    /// Offers site `i`'s newest frame. Returns true when it replaced a frame nobody took (a drop).
    pub fn put(&self, i: usize, frame: AnalyticsFrame) -> bool {
        let mut st = self.state.lock();
        let Some(slot) = st.slots.get_mut(i) else {
            return false;
        };
        let dropped = slot.0.replace(frame).is_some();
        drop(st);
        self.ready.notify_one();
        dropped
    }

    /// Waits up to `timeout` for frames of sites not in flight and takes up to `max` of them,
    /// marking those sites in flight. Empty on timeout or once closed.
    pub fn take(&self, max: usize, timeout: Duration) -> Vec<(usize, AnalyticsFrame)> {
        let deadline = std::time::Instant::now() + timeout;
        let mut st = self.state.lock();
        loop {
            if st.closed {
                return Vec::new();
            }
            let n = st.slots.len();
            let mut out = Vec::new();
            for k in 0..n {
                if out.len() >= max.max(1) {
                    break;
                }
                let i = (st.next + k) % n;
                let slot = &mut st.slots[i];
                if !slot.1 {
                    if let Some(f) = slot.0.take() {
                        slot.1 = true;
                        out.push((i, f));
                    }
                }
            }
            if let Some((last, _)) = out.last() {
                st.next = (last + 1) % n;
                return out;
            }
            if self.ready.wait_until(&mut st, deadline).timed_out() {
                return Vec::new();
            }
        }
    }

    /// Site `i`'s frame has been processed; its next frame may be taken.
    pub fn done(&self, i: usize) {
        let mut st = self.state.lock();
        if let Some(slot) = st.slots.get_mut(i) {
            slot.1 = false;
            let waiting = slot.0.is_some();
            drop(st);
            if waiting {
                self.ready.notify_one();
            }
        }
    }

    /// Wakes every waiting worker and makes further takes return nothing.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_all();
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
            source_width: 4,
            source_height: 4,
            image: Image::new(4, 4),
        }
    }

    #[test]
    fn queue_keeps_newest_and_counts_drops() {
        let q = AnalyticsQueue::new(2);
        assert!(!q.put(0, frame("a", 1)));
        assert!(q.put(0, frame("a", 2)));
        assert!(!q.put(5, frame("x", 1))); // unknown site: ignored, no panic
        let got = q.take(4, Duration::from_millis(10));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0, got[0].1.seq), (0, 2));
        assert!(q.take(4, Duration::from_millis(10)).is_empty());
    }

    #[test]
    fn queue_round_robin_and_in_flight() {
        let q = AnalyticsQueue::new(3);
        for i in 0..3 {
            q.put(i, frame("s", i as u64));
        }
        let a = q.take(2, Duration::from_millis(10));
        assert_eq!(a.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1]);
        // site 0 in flight: its next frame waits for done()
        q.put(0, frame("s", 10));
        let b = q.take(2, Duration::from_millis(10));
        assert_eq!(b.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2]);
        assert!(q.take(2, Duration::from_millis(10)).is_empty());
        q.done(0);
        let c = q.take(2, Duration::from_millis(10));
        assert_eq!((c[0].0, c[0].1.seq), (0, 10));
    }

    #[test]
    fn queue_wakes_waiter_and_closes() {
        let q = AnalyticsQueue::new(1);
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.take(1, Duration::from_secs(10)).len());
        std::thread::sleep(Duration::from_millis(50));
        q.put(0, frame("a", 1));
        assert_eq!(t.join().unwrap(), 1);
        let q3 = q.clone();
        let t = std::thread::spawn(move || q3.take(1, Duration::from_secs(10)).len());
        std::thread::sleep(Duration::from_millis(50));
        q.close();
        assert_eq!(t.join().unwrap(), 0);
    }
}
