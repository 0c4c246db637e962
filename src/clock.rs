//! The two clocks of a capture: the **rules' clock**, which only ever runs forward at the rate of
//! real seconds, and the **wall clock**, which people read.
//!
//! The rules (dwell, clear time, smoothing windows, reporting intervals) measure durations. On
//! the wall clock a step (NTP correcting a wrong RTC, an operator setting the date) would freeze
//! every timer for the length of a backward step and fire them all on a forward one. So a live
//! capture is stamped twice ([`Clock::now`]): `rule` from the monotonic clock, anchored to the
//! wall clock once at start, and `wall` as the wall clock says now, for what is shown and for
//! incident ids. The two agree until the wall clock steps; after that they differ by the step,
//! and the analytics translate the times they report back to wall time
//! ([`crate::analytics::SiteAnalytics::process`]).
//!
//! A replay (`simpang replay`) stamps both with media time instead: the file's timestamps
//! are the rules' clock, so dwell and clear times mean the same as live at any replay speed.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

/// One capture's times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The rules' clock: monotonic, in wall-clock terms as of the clock's start.
    pub rule: DateTime<Utc>,
    /// The wall clock.
    pub wall: DateTime<Utc>,
}

type WallFn = dyn Fn() -> DateTime<Utc> + Send + Sync;
type MonoFn = dyn Fn() -> Duration + Send + Sync;

/// A monotonic clock mapped onto the wall clock at its start, beside the wall clock itself.
#[derive(Clone)]
pub struct Clock {
    wall: Arc<WallFn>,
    mono: Arc<MonoFn>,
    /// Wall time and monotonic reading at the start.
    anchor: (DateTime<Utc>, Duration),
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("anchor", &self.anchor)
            .finish()
    }
}

impl Clock {
    /// A clock over the given wall and monotonic sources (tests inject both).
    pub fn new(
        wall: impl Fn() -> DateTime<Utc> + Send + Sync + 'static,
        mono: impl Fn() -> Duration + Send + Sync + 'static,
    ) -> Self {
        let anchor = (wall(), mono());
        Self {
            wall: Arc::new(wall),
            mono: Arc::new(mono),
            anchor,
        }
    }

    /// The process's clock: `Utc::now()` and `Instant`, anchored at first use.
    pub fn system() -> &'static Clock {
        static CLOCK: OnceLock<Clock> = OnceLock::new();
        CLOCK.get_or_init(|| {
            let start = Instant::now();
            Clock::new(Utc::now, move || start.elapsed())
        })
    }

    /// Now on both clocks.
    pub fn now(&self) -> Stamp {
        let wall = (self.wall)();
        let elapsed = (self.mono)().saturating_sub(self.anchor.1);
        let rule = self.anchor.0
            + TimeDelta::from_std(elapsed)
                .unwrap_or_else(|_| TimeDelta::seconds(i64::from(i32::MAX)));
        Stamp { rule, wall }
    }
}

/// Now on the process's clock ([`Clock::system`]).
pub fn now() -> Stamp {
    Clock::system().now()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_wall_clock_step_moves_wall_time_not_rule_time() {
        let base = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        // wall offset (ms) and monotonic reading (ms), stepped by the test
        let step = Arc::new(AtomicI64::new(0));
        let mono = Arc::new(AtomicI64::new(5_000));
        let (s, m) = (step.clone(), mono.clone());
        let mono_now = move || Duration::from_millis(m.load(Ordering::SeqCst) as u64);
        let wall_now = {
            let m = mono.clone();
            move || {
                base + TimeDelta::milliseconds(
                    m.load(Ordering::SeqCst) - 5_000 + s.load(Ordering::SeqCst),
                )
            }
        };
        let c = Clock::new(wall_now, mono_now);
        assert_eq!(
            c.now(),
            Stamp {
                rule: base,
                wall: base
            }
        );
        mono.store(15_000, Ordering::SeqCst);
        let t10 = base + TimeDelta::seconds(10);
        assert_eq!(
            c.now(),
            Stamp {
                rule: t10,
                wall: t10
            }
        );
        // the wall clock jumps back an hour: rule time goes on
        step.store(-3_600_000, Ordering::SeqCst);
        mono.store(16_000, Ordering::SeqCst);
        let now = c.now();
        assert_eq!(now.rule, base + TimeDelta::seconds(11));
        assert_eq!(
            now.wall,
            base + TimeDelta::seconds(11) - TimeDelta::hours(1)
        );
        // and forward a day
        step.store(86_400_000, Ordering::SeqCst);
        mono.store(17_000, Ordering::SeqCst);
        assert_eq!(c.now().rule, base + TimeDelta::seconds(12));
    }

    #[test]
    fn the_system_clock_runs_forward() {
        let a = now();
        let b = now();
        assert!(b.rule >= a.rule);
        assert!((a.wall - a.rule).num_seconds().abs() < 60, "{a:?}");
    }
}
