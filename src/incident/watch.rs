//! Turns a camera's status (from the hub) into `camera_offline` rule phases: a pure state
//! machine, fed the status and an explicit `now` on every tick.

use chrono::{DateTime, Duration, Utc};

use crate::hub::CameraStatus;
use crate::model::RulePhase;

/// What one observation means.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The rule phase to feed the lifecycle, with the condition's start time.
    pub phase: Option<(RulePhase, DateTime<Utc>)>,
    /// Seconds the camera has been offline (when offline).
    pub offline_s: Option<f32>,
    /// The camera's online flag changed (or this is the first look): republish the status.
    pub health_changed: bool,
}

/// Watches one camera.
#[derive(Debug)]
pub struct OfflineWatch {
    grace: Duration,
    /// Start of the offline condition reported to the lifecycle.
    raised: Option<DateTime<Utc>>,
    last_online: Option<bool>,
    /// The first time the camera is seen online an End is sent even with nothing raised: it
    /// closes a `camera_offline` restored from before a restart (the lifecycle ignores an End
    /// when nothing is open).
    closed_restored: bool,
}

impl OfflineWatch {
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            raised: None,
            last_online: None,
            closed_restored: false,
        }
    }

    pub fn observe(&mut self, st: &CameraStatus, now: DateTime<Utc>) -> Observation {
        let health_changed = self.last_online != Some(st.online);
        self.last_online = Some(st.online);
        if st.online {
            let phase = match self.raised.take() {
                Some(start) => Some((RulePhase::End, start)),
                None if !self.closed_restored => Some((RulePhase::End, st.since)),
                None => None,
            };
            self.closed_restored = true;
            return Observation {
                phase,
                offline_s: None,
                health_changed,
            };
        }
        let offline = now - st.since;
        let offline_s = Some(offline.num_milliseconds().max(0) as f32 / 1000.0);
        let phase = if offline < self.grace {
            None
        } else {
            match self.raised {
                // `since` moved while offline (it only moves on an online change, so this is a
                // new outage we did not see come back): a new condition.
                Some(start) if start == st.since => Some((RulePhase::Update, start)),
                _ => {
                    self.raised = Some(st.since);
                    Some((RulePhase::Start, st.since))
                }
            }
        };
        Observation {
            phase,
            offline_s,
            health_changed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap() + Duration::seconds(s)
    }

    fn st(online: bool, since: i64) -> CameraStatus {
        let mut s = CameraStatus::starting(t(since));
        s.online = online;
        s
    }

    #[test]
    fn offline_past_grace_then_back() {
        let mut w = OfflineWatch::new(Duration::seconds(60));
        // (status, now) -> (phase, start), health_changed
        type Step = (CameraStatus, i64, Option<(RulePhase, i64)>, bool);
        let steps: Vec<Step> = vec![
            (st(false, 0), 1, None, true),
            (st(false, 0), 59, None, false),
            (st(false, 0), 60, Some((RulePhase::Start, 0)), false),
            (st(false, 0), 61, Some((RulePhase::Update, 0)), false),
            (st(true, 70), 71, Some((RulePhase::End, 0)), true),
            (st(true, 70), 72, None, false),
            (st(false, 80), 100, None, true),
            (st(false, 80), 140, Some((RulePhase::Start, 80)), false),
        ];
        for (i, (s, now, want, changed)) in steps.into_iter().enumerate() {
            let o = w.observe(&s, t(now));
            assert_eq!(o.phase, want.map(|(p, s)| (p, t(s))), "step {i}");
            assert_eq!(o.health_changed, changed, "step {i}");
        }
    }

    #[test]
    fn first_online_closes_a_restored_incident_once() {
        let mut w = OfflineWatch::new(Duration::seconds(60));
        assert_eq!(
            w.observe(&st(true, 5), t(6)).phase,
            Some((RulePhase::End, t(5)))
        );
        assert_eq!(w.observe(&st(true, 5), t(7)).phase, None);
    }

    #[test]
    fn offline_seconds_reported() {
        let mut w = OfflineWatch::new(Duration::seconds(60));
        assert_eq!(w.observe(&st(false, 0), t(90)).offline_s, Some(90.0));
        assert_eq!(w.observe(&st(true, 95), t(96)).offline_s, None);
    }
}
