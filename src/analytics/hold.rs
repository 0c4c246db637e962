//! The life cycle every rule shares: a pure state machine over a yes/no condition, fed explicit
//! timestamps (no clock inside, so tests need none).
//!
//! ```text
//!            cond                 cond held dwell_s            !cond held clear_s
//!   Idle ──────────▶ Pending ─────────────────────▶ Active ───────────────────────▶ Idle
//!    ▲    !cond         │                             │  ▲ cond again: keep going
//!    └──────────────────┘                             └──┘
//! ```
//!
//! The condition itself comes from each rule with its own hysteresis (enter at one threshold,
//! leave at a lower one) and smoothing, so that a value wobbling at a threshold does not toggle
//! it; the machine adds the time filters on top: dwell before a start, a clear time before an
//! end. Together they are what stops a flapping condition: it cannot open an incident faster
//! than once per `dwell_s + clear_s`.
//!
//! Nothing holds a start back once its dwell is done: a condition that comes back after an end
//! is a new incident, reported after its own dwell, however soon (issue 18: a defocus 15 s
//! after a covered lens was swallowed by a 60 s cooldown). The cooldown is the window in which
//! such a recurrence is marked as one ([`super::rule::Reporter`]: evidence
//! `reopened_after_s`).

use chrono::{DateTime, Utc};

pub use crate::config::rules::{Timed, Timing};
use crate::model::Severity;

/// A frame gap longer than this (camera offline, analytics stalled) restarts a pending dwell:
/// the condition was not observed in between, so it cannot count as held.
pub const MAX_GAP_S: f64 = 30.0;

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Idle,
    Pending {
        since: DateTime<Utc>,
    },
    Active {
        started_at: DateTime<Utc>,
        clear_since: Option<DateTime<Utc>>,
    },
}

/// What one step decided.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Nothing going on.
    Idle,
    /// The condition holds but not yet for its dwell.
    Pending { since: DateTime<Utc> },
    /// Open an incident now; `started_at` is when the condition began.
    Start { started_at: DateTime<Utc> },
    /// An incident is open; `clearing` while the condition is gone but not for clear_s yet.
    Active {
        started_at: DateTime<Utc>,
        clearing: bool,
    },
    /// Close the incident now.
    End { started_at: DateTime<Utc> },
}

impl Step {
    /// The incident is open after this step (Start or Active).
    pub fn is_open(&self) -> bool {
        matches!(self, Step::Start { .. } | Step::Active { .. })
    }

    /// The wall's colour after this step: red while open, yellow while the rule's condition is
    /// `elevated` (above normal, not an incident), else green.
    pub fn severity(&self, elevated: bool) -> Severity {
        if self.is_open() {
            Severity::Alert
        } else if elevated {
            Severity::Elevated
        } else {
            Severity::Normal
        }
    }
}

/// One rule instance's life cycle.
#[derive(Clone, Debug)]
pub struct Hold {
    timing: Timing,
    state: State,
    last_at: Option<DateTime<Utc>>,
}

fn secs(d: chrono::TimeDelta) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

impl Hold {
    /// The life cycle of a rule with settings `rule`.
    pub fn of(rule: &impl Timed) -> Self {
        Self::new(rule.timing())
    }

    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            state: State::Idle,
            last_at: None,
        }
    }

    /// True while an incident is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Active { .. })
    }

    /// When the current condition (pending or open) began.
    pub fn since(&self) -> Option<DateTime<Utc>> {
        match self.state {
            State::Idle => None,
            State::Pending { since } => Some(since),
            State::Active { started_at, .. } => Some(started_at),
        }
    }

    /// The condition can no longer be observed (the camera is gone). An open incident ends:
    /// its start time is returned for the End event. A pending condition is forgotten: when the
    /// camera returns, the condition must hold its full dwell again.
    pub fn abandon(&mut self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let started = match self.state {
            State::Active { started_at, .. } => Some(started_at),
            _ => None,
        };
        self.state = State::Idle;
        self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
        started
    }

    /// Ends an open incident now (its start time is returned for the End event) because
    /// another condition took its place, which has held since `since`: it is pending from
    /// then, so it opens on the next step if it held its dwell.
    pub fn end_now(&mut self, at: DateTime<Utc>, since: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let State::Active { started_at, .. } = self.state else {
            return None;
        };
        self.state = State::Pending { since };
        self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
        Some(started_at)
    }

    /// Feeds the condition as observed at `at`. Timestamps that go backwards count as `at` =
    /// the latest one seen.
    pub fn step(&mut self, at: DateTime<Utc>, cond: bool) -> Step {
        let at = match self.last_at {
            Some(last) if at < last => last,
            _ => at,
        };
        let gap = self.last_at.map(|l| secs(at - l)).unwrap_or(0.0);
        self.last_at = Some(at);
        let t = self.timing;
        match self.state {
            State::Idle | State::Pending { .. } => {
                if !cond {
                    self.state = State::Idle;
                    return Step::Idle;
                }
                let since = match self.state {
                    State::Pending { since } if gap <= MAX_GAP_S => since,
                    _ => at,
                };
                if secs(at - since) >= t.dwell_s {
                    self.state = State::Active {
                        started_at: since,
                        clear_since: None,
                    };
                    Step::Start { started_at: since }
                } else {
                    self.state = State::Pending { since };
                    Step::Pending { since }
                }
            }
            State::Active {
                started_at,
                clear_since,
            } => {
                if cond {
                    self.state = State::Active {
                        started_at,
                        clear_since: None,
                    };
                    return Step::Active {
                        started_at,
                        clearing: false,
                    };
                }
                let clear_since = clear_since.unwrap_or(at);
                if secs(at - clear_since) >= t.clear_s {
                    self.state = State::Idle;
                    Step::End { started_at }
                } else {
                    self.state = State::Active {
                        started_at,
                        clear_since: Some(clear_since),
                    };
                    Step::Active {
                        started_at,
                        clearing: true,
                    }
                }
            }
        }
    }
}

/// Least time between two `update` events of one incident unless its level word changes. The
/// incident stage rate-limits again (`incidents.update_interval_s`); this keeps the channel
/// quiet when a count wobbles.
pub const UPDATE_MIN_S: f64 = 10.0;

/// Decides when an open incident's evidence changed enough for an `update` event. `L` is what
/// the rule reports as its level (a [`crate::model::Level`], a tamper reason): a change of it is
/// news at once.
#[derive(Clone, Debug)]
pub struct UpdateGate<L> {
    last_at: Option<DateTime<Utc>>,
    last_level: Option<L>,
    last_value: f64,
}

impl<L> Default for UpdateGate<L> {
    fn default() -> Self {
        Self {
            last_at: None,
            last_level: None,
            last_value: 0.0,
        }
    }
}

impl<L: Copy + PartialEq> UpdateGate<L> {
    /// Remembers what the start (or last update) event said.
    pub fn reported(&mut self, at: DateTime<Utc>, level: L, value: f64) {
        self.last_at = Some(at);
        self.last_level = Some(level);
        self.last_value = value;
    }

    /// Whether `step` makes an `update`: a start is remembered as the first report; while the
    /// incident is open and its condition holds, [`UpdateGate::check`] with `min_change`; while
    /// it is clearing, a level change when `level_news_while_clearing`, else nothing.
    pub fn on_step(
        &mut self,
        step: Step,
        at: DateTime<Utc>,
        level: L,
        value: f64,
        min_change: f64,
        level_news_while_clearing: bool,
    ) -> bool {
        match step {
            Step::Start { .. } => {
                self.reported(at, level, value);
                false
            }
            Step::Active {
                clearing: false, ..
            } => self.check(at, level, value, min_change),
            Step::Active { clearing: true, .. } if level_news_while_clearing => {
                self.check(at, level, value, f64::INFINITY)
            }
            _ => false,
        }
    }

    /// True (and remembered) when the level changed, or when `value` moved from the last
    /// reported one by at least `min_change` (absolute) and [`UPDATE_MIN_S`] have passed.
    pub fn check(&mut self, at: DateTime<Utc>, level: L, value: f64, min_change: f64) -> bool {
        let due = match self.last_at {
            None => true,
            Some(last) if Some(level) != self.last_level => last <= at,
            Some(last) => {
                (value - self.last_value).abs() >= min_change && secs(at - last) >= UPDATE_MIN_S
            }
        };
        if due {
            self.reported(at, level, value);
        }
        due
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    pub fn t(s: f64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap()
            + TimeDelta::milliseconds((s * 1000.0).round() as i64)
    }

    /// Rounds to 0.1 s, for comparing times built from 0.2 s steps.
    pub fn r1(s: f64) -> f64 {
        (s * 10.0).round() / 10.0
    }

    fn timing() -> Timing {
        Timing {
            dwell_s: 10.0,
            clear_s: 5.0,
            cooldown_s: 20.0,
        }
    }

    #[test]
    fn abandon_ends_open_and_forgets_pending() {
        let mut h = Hold::new(timing());
        assert_eq!(h.abandon(t(0.0)), None); // idle: nothing to end
        for i in 0..=60 {
            h.step(t(i as f64 * 0.2), true);
        }
        assert!(h.is_open());
        assert_eq!(h.abandon(t(13.0)), Some(t(0.0)));
        assert!(!h.is_open());
        assert_eq!(h.abandon(t(14.0)), None); // once only
                                              // back: the full dwell again, and no cooldown in the way
        assert!(matches!(h.step(t(100.0), true), Step::Pending { .. }));
        assert!(matches!(h.step(t(109.8), true), Step::Pending { .. }));
        assert!(matches!(h.step(t(110.0), true), Step::Start { .. }));
        // pending when abandoned: the dwell starts over
        let mut h = Hold::new(timing());
        h.step(t(0.0), true);
        h.step(t(8.0), true);
        assert_eq!(h.abandon(t(9.0)), None);
        assert!(matches!(h.step(t(10.0), true), Step::Pending { .. }));
    }

    /// Feeds `(time, cond)` pairs; returns the times of starts and ends as ("S"|"E", t).
    fn run(timing: Timing, seq: &[(f64, bool)]) -> Vec<(&'static str, f64)> {
        let mut h = Hold::new(timing);
        let mut out = Vec::new();
        for &(s, c) in seq {
            match h.step(t(s), c) {
                Step::Start { .. } => out.push(("S", r1(s))),
                Step::End { .. } => out.push(("E", r1(s))),
                _ => {}
            }
        }
        out
    }

    /// The condition `f(time)` sampled every 0.2 s (5 fps) up to `until`.
    fn sampled(until: f64, f: impl Fn(f64) -> bool) -> Vec<(f64, bool)> {
        (0..=(until * 5.0) as usize)
            .map(|i| {
                let s = i as f64 * 0.2;
                (s, f(s))
            })
            .collect()
    }

    // a table of cases: the tuple type is the table's columns
    #[allow(clippy::type_complexity)]
    #[test]
    fn cases() {
        let cases: Vec<(&str, Timing, Vec<(f64, bool)>, Vec<(&str, f64)>)> = vec![
            ("empty", timing(), vec![], vec![]),
            ("never true", timing(), sampled(60.0, |_| false), vec![]),
            // true from 1.0: starts at the first frame with 10 s held (11.0), not before
            (
                "starts after the dwell",
                timing(),
                sampled(30.0, |s| s >= 1.0),
                vec![("S", 11.0)],
            ),
            (
                "shorter than dwell",
                timing(),
                sampled(30.0, |s| (1.0..10.8).contains(&s)),
                vec![],
            ),
            (
                "a gap restarts the dwell",
                timing(),
                sampled(30.0, |s| s >= 1.0 && !(8.0..8.3).contains(&s)),
                vec![("S", 18.4)],
            ),
            (
                "ends after the clear time",
                timing(),
                sampled(40.0, |s| (0.0..20.0).contains(&s)),
                vec![("S", 10.0), ("E", 25.0)],
            ),
            (
                "short clearing does not end it",
                timing(),
                sampled(40.0, |s| !(15.0..19.0).contains(&s)),
                vec![("S", 10.0)],
            ),
            (
                // ends at 25; true again from 27: a new start once its dwell is done (37),
                // the cooldown (20 s) does not hold it back
                "a recurrence within the cooldown is a new incident",
                timing(),
                sampled(60.0, |s| !(20.0..27.0).contains(&s)),
                vec![("S", 10.0), ("E", 25.0), ("S", 37.0)],
            ),
            (
                "zero dwell starts at once",
                Timing {
                    dwell_s: 0.0,
                    clear_s: 0.0,
                    cooldown_s: 0.0,
                },
                vec![(0.0, false), (1.0, true), (2.0, false), (3.0, true)],
                vec![("S", 1.0), ("E", 2.0), ("S", 3.0)],
            ),
            (
                "time going backwards counts as no time",
                timing(),
                vec![
                    (5.0, true),
                    (1.0, true),
                    (2.0, true),
                    (14.9, true),
                    (15.0, true),
                ],
                vec![("S", 15.0)],
            ),
            (
                "a long frame gap restarts the dwell",
                timing(),
                vec![
                    (0.0, true),
                    (5.0, true),
                    (50.0, true),
                    (55.0, true),
                    (60.0, true),
                ],
                vec![("S", 60.0)],
            ),
        ];
        for (name, timing, seq, want) in cases {
            assert_eq!(run(timing, &seq), want, "{name}");
        }
    }

    #[test]
    fn started_at_is_the_dwell_start_and_stays() {
        let mut h = Hold::new(timing());
        assert_eq!(h.step(t(0.0), false), Step::Idle);
        assert_eq!(h.step(t(1.0), true), Step::Pending { since: t(1.0) });
        assert_eq!(h.step(t(11.0), true), Step::Start { started_at: t(1.0) });
        assert!(h.is_open());
        assert_eq!(
            h.step(t(12.0), false),
            Step::Active {
                started_at: t(1.0),
                clearing: true
            }
        );
        assert_eq!(h.since(), Some(t(1.0)));
        assert_eq!(h.step(t(17.0), false), Step::End { started_at: t(1.0) });
        assert!(!h.is_open());
        assert_eq!(h.since(), None);
    }

    #[test]
    fn update_gate_on_steps() {
        let s0 = t(0.0);
        let active = |clearing| Step::Active {
            started_at: s0,
            clearing,
        };
        let mut g = UpdateGate::default();
        let start = Step::Start { started_at: s0 };
        assert!(!g.on_step(start, t(1.0), "macet", 1.0, 0.1, true));
        assert!(!g.on_step(
            Step::Pending { since: s0 },
            t(20.0),
            "padat",
            5.0,
            0.1,
            true
        ));
        // clearing: a level change is news only where the rule says so
        assert!(!g.on_step(active(true), t(21.0), "padat", 1.0, 0.1, false));
        assert!(g.on_step(active(true), t(21.0), "padat", 1.0, 0.1, true));
        assert!(!g.on_step(active(true), t(40.0), "padat", 9.0, 0.1, true));
        assert!(g.on_step(active(false), t(41.0), "padat", 9.0, 0.1, true));
        assert_eq!(start.severity(false), Severity::Alert);
        assert_eq!(active(true).severity(false), Severity::Alert);
        assert_eq!(Step::Idle.severity(true), Severity::Elevated);
        assert_eq!(
            Step::End { started_at: s0 }.severity(false),
            Severity::Normal
        );
    }

    #[test]
    fn update_gate_cases() {
        let mut g = UpdateGate::default();
        g.reported(t(0.0), "sedang", 10.0);
        let cases = [
            ("small change", 20.0, "sedang", 11.0, false),
            ("big change too soon", 5.0, "sedang", 20.0, false),
            ("big change after the interval", 20.0, "sedang", 20.0, true),
            ("same value", 40.0, "sedang", 20.0, false),
            ("level change at once", 40.5, "tinggi", 20.0, true),
            ("level change back", 40.6, "sedang", 20.0, true),
        ];
        for (name, at, level, v, want) in cases {
            assert_eq!(g.check(t(at), level, v, 3.0), want, "{name}");
        }
    }
}
