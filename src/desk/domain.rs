//! The complaint workflow as plain data and pure functions: statuses and their colours, roles
//! and what each may do, SLA arithmetic. No I/O here; the service applies these rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The citizen web form (or `POST /api/reports`).
    Web,
    /// The SMS gateway (`LAPOR <isi>` to 1708).
    Sms,
    /// An auto-generated incident from the cameras, over MQTT.
    Cctv,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Web, Source::Sms, Source::Cctv];
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Web => "web",
            Source::Sms => "sms",
            Source::Cctv => "cctv",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Source::Web => "Web",
            Source::Sms => "SMS 1708",
            Source::Cctv => "CCTV",
        }
    }
}

/// Where a report is in the workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// In, not yet sorted by an operator.
    Received,
    /// Checked by an operator; waits for disposition.
    Verified,
    /// Not a valid report (reason recorded). Final.
    Rejected,
    /// A duplicate, folded into another report. Final.
    Merged,
    /// Sent to an agency (OPD); its SLA clock runs.
    Dispositioned,
    /// The agency answered; waits for the reporter's confirmation.
    Answered,
    /// The reporter was not satisfied: back to the agency.
    Reopened,
    /// The reporter (or, for camera reports, the operator) confirmed it solved. Final.
    Done,
}

/// The three-colour board of the seed services (plus grey for reports closed without action).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    /// Not yet followed up by the agency.
    Red,
    /// Answered by the agency.
    Yellow,
    /// The reporter is satisfied.
    Green,
    /// Rejected or merged.
    Grey,
}

impl Colour {
    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Yellow => "yellow",
            Colour::Green => "green",
            Colour::Grey => "grey",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Colour::Red => "Merah: belum ditindaklanjuti",
            Colour::Yellow => "Kuning: sudah dijawab",
            Colour::Green => "Hijau: selesai, pelapor puas",
            Colour::Grey => "Abu-abu: ditutup",
        }
    }
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Received,
        Status::Verified,
        Status::Dispositioned,
        Status::Answered,
        Status::Reopened,
        Status::Done,
        Status::Rejected,
        Status::Merged,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Verified => "verified",
            Status::Rejected => "rejected",
            Status::Merged => "merged",
            Status::Dispositioned => "dispositioned",
            Status::Answered => "answered",
            Status::Reopened => "reopened",
            Status::Done => "done",
        }
    }
    /// The word operators and citizens see.
    pub fn label(self) -> &'static str {
        match self {
            Status::Received => "Diterima",
            Status::Verified => "Terverifikasi",
            Status::Rejected => "Ditolak",
            Status::Merged => "Digabung",
            Status::Dispositioned => "Didisposisikan ke OPD",
            Status::Answered => "Dijawab OPD",
            Status::Reopened => "Dikembalikan ke OPD",
            Status::Done => "Selesai",
        }
    }
    pub fn colour(self) -> Colour {
        match self {
            Status::Received | Status::Verified | Status::Dispositioned | Status::Reopened => {
                Colour::Red
            }
            Status::Answered => Colour::Yellow,
            Status::Done => Colour::Green,
            Status::Rejected | Status::Merged => Colour::Grey,
        }
    }
    /// Still needs someone to act.
    pub fn is_open(self) -> bool {
        !matches!(self, Status::Rejected | Status::Merged | Status::Done)
    }
    /// The SLA clock runs: the agency owes an answer.
    pub fn awaits_agency(self) -> bool {
        matches!(self, Status::Dispositioned | Status::Reopened)
    }
    /// The agency can see it (it has been sent there).
    pub fn is_with_agency(self) -> bool {
        matches!(
            self,
            Status::Dispositioned | Status::Answered | Status::Reopened | Status::Done
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that names no known variant.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("unknown {what} {value:?}")]
pub struct UnknownName {
    pub what: &'static str,
    pub value: String,
}

impl FromStr for Status {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "status",
                value: s.into(),
            })
    }
}

impl FromStr for Source {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "source",
                value: s.into(),
            })
    }
}

/// What a staff account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accounts, plus everything an operator does.
    Admin,
    /// Command Center operator: sorts, dispositions, confirms camera reports.
    Operator,
    /// Liaison officer of one agency (OPD): sees and answers that agency's reports only.
    Agency,
    /// Reads everything staff may read, changes nothing.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Agency, Role::Viewer];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Agency => "agency",
            Role::Viewer => "viewer",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Role::Admin => "Administrator",
            Role::Operator => "Operator Command Center",
            Role::Agency => "Petugas penghubung OPD",
            Role::Viewer => "Pemantau",
        }
    }
    /// Sees the reporter's phone number (operators call reporters back).
    pub fn sees_contact(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
    pub fn may(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin | Role::Operator => matches!(
                action,
                Verify | Reject | Merge | Disposition | ConfirmCctv | Message | Note | Claim
            ),
            Role::Agency => matches!(action, Answer | Message | Note | Claim),
            Role::Viewer => false,
        }
    }
}

impl FromStr for Role {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // "officer" is what people call the agency role; accept both.
        if s == "officer" {
            return Ok(Role::Agency);
        }
        Role::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "role",
                value: s.into(),
            })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step a person takes on a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Verify,
    Reject,
    /// Fold this report into another as a duplicate.
    Merge,
    /// Send to an agency (also re-send to another agency before it answers).
    Disposition,
    Answer,
    /// The operator confirms a camera report solved (or not) in place of a reporter.
    ConfirmCctv,
    /// The reporter confirms (public, with the report's PIN or from the reporting phone).
    ConfirmReporter,
    /// A chat message on the report's thread (visible to the reporter).
    Message,
    /// An internal note (staff only).
    Note,
    /// Take the report as one's own (operator or officer in charge).
    Claim,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Verify => "verify",
            Action::Reject => "reject",
            Action::Merge => "merge",
            Action::Disposition => "disposition",
            Action::Answer => "answer",
            Action::ConfirmCctv => "confirm",
            Action::ConfirmReporter => "confirm",
            Action::Message => "message",
            Action::Note => "note",
            Action::Claim => "claim",
        }
    }
}

/// A step that the report's status does not allow.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("laporan berstatus \"{}\" tidak dapat di-{}", from.label(), action.as_str())]
pub struct NotAllowed {
    pub from: Status,
    pub action: Action,
}

/// The status after `action` on a report in `from`; `satisfied` matters for confirmations only.
pub fn next_status(from: Status, action: Action, satisfied: bool) -> Result<Status, NotAllowed> {
    use Status::*;
    let to = match (action, from) {
        (Action::Verify, Received) => Some(Verified),
        (Action::Reject, Received | Verified) => Some(Rejected),
        (Action::Merge, Received | Verified) => Some(Merged),
        // Disposition from Received verifies implicitly (one step for the operator); from
        // Dispositioned or Reopened it re-routes to another agency before an answer.
        (Action::Disposition, Received | Verified | Dispositioned | Reopened) => {
            Some(Dispositioned)
        }
        (Action::Answer, Dispositioned | Reopened) => Some(Answered),
        (Action::ConfirmCctv | Action::ConfirmReporter, Answered) => {
            Some(if satisfied { Done } else { Reopened })
        }
        (Action::Message | Action::Note | Action::Claim, s) if s.is_open() => Some(s),
        _ => None,
    };
    to.ok_or(NotAllowed { from, action })
}

/// Due time of an agency's answer: `sla_hours` after the disposition (or the reopening).
pub fn due_at(from: i64, sla_hours: u32) -> i64 {
    from.saturating_add(i64::from(sla_hours) * 3600)
}

/// Past its due time without an answer.
pub fn is_overdue(status: Status, due_at: Option<i64>, now: i64) -> bool {
    status.awaits_agency() && due_at.is_some_and(|d| now > d)
}

/// Answered within its due time (None while there is no answer to judge).
pub fn answered_on_time(answered_at: Option<i64>, due_at: Option<i64>) -> Option<bool> {
    Some(answered_at? <= due_at?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn transitions_table() {
        let cases = [
            (Received, Action::Verify, true, Ok(Verified)),
            (Verified, Action::Verify, true, Err(())),
            (Received, Action::Reject, true, Ok(Rejected)),
            (Verified, Action::Reject, true, Ok(Rejected)),
            (Dispositioned, Action::Reject, true, Err(())),
            (Received, Action::Merge, true, Ok(Merged)),
            (Answered, Action::Merge, true, Err(())),
            (Received, Action::Disposition, true, Ok(Dispositioned)),
            (Verified, Action::Disposition, true, Ok(Dispositioned)),
            (Dispositioned, Action::Disposition, true, Ok(Dispositioned)),
            (Reopened, Action::Disposition, true, Ok(Dispositioned)),
            (Answered, Action::Disposition, true, Err(())),
            (Done, Action::Disposition, true, Err(())),
            (Verified, Action::Answer, true, Err(())),
            (Dispositioned, Action::Answer, true, Ok(Answered)),
            (Reopened, Action::Answer, true, Ok(Answered)),
            (Answered, Action::Answer, true, Err(())),
            (Answered, Action::ConfirmCctv, true, Ok(Done)),
            (Answered, Action::ConfirmReporter, false, Ok(Reopened)),
            (Dispositioned, Action::ConfirmReporter, true, Err(())),
            (Done, Action::ConfirmReporter, true, Err(())),
            (Answered, Action::Message, true, Ok(Answered)),
            (Done, Action::Message, true, Err(())),
            (Rejected, Action::Note, true, Err(())),
            (Merged, Action::Verify, true, Err(())),
        ];
        for (from, action, sat, want) in cases {
            let got = next_status(from, action, sat).map_err(|_| ());
            assert_eq!(got, want, "{from:?} --{action:?}-->");
        }
    }

    #[test]
    fn colours_follow_the_seed_board() {
        let cases = [
            (Received, Colour::Red),
            (Verified, Colour::Red),
            (Dispositioned, Colour::Red),
            (Reopened, Colour::Red),
            (Answered, Colour::Yellow),
            (Done, Colour::Green),
            (Rejected, Colour::Grey),
            (Merged, Colour::Grey),
        ];
        for (s, c) in cases {
            assert_eq!(s.colour(), c, "{s:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("officer".parse::<Role>(), Ok(Role::Agency));
        assert!("".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
        assert!("".parse::<Status>().is_err());
    }

    #[test]
    fn role_permissions() {
        for a in [Action::Verify, Action::Disposition, Action::ConfirmCctv] {
            assert!(Role::Operator.may(a));
            assert!(Role::Admin.may(a));
            assert!(!Role::Agency.may(a));
            assert!(!Role::Viewer.may(a));
        }
        assert!(Role::Agency.may(Action::Answer));
        assert!(!Role::Operator.may(Action::Answer));
        for a in [Action::Message, Action::Note, Action::Claim, Action::Answer] {
            assert!(!Role::Viewer.may(a));
        }
        // Nobody on staff confirms in place of a citizen reporter.
        for r in Role::ALL {
            assert!(!r.may(Action::ConfirmReporter));
        }
    }

    #[test]
    fn sla_boundaries() {
        let t0 = 1_000_000;
        let due = due_at(t0, 24);
        assert_eq!(due - t0, 86_400);
        let cases = [
            (Dispositioned, Some(due), due, false),
            (Dispositioned, Some(due), due + 1, true),
            (Reopened, Some(due), due + 1, true),
            (Answered, Some(due), due + 100, false),
            (Received, None, due + 100, false),
            (Dispositioned, None, due + 100, false),
        ];
        for (s, d, now, want) in cases {
            assert_eq!(is_overdue(s, d, now), want, "{s:?} {d:?} {now}");
        }
        assert_eq!(answered_on_time(Some(due), Some(due)), Some(true));
        assert_eq!(answered_on_time(Some(due + 1), Some(due)), Some(false));
        assert_eq!(answered_on_time(None, Some(due)), None);
        assert_eq!(due_at(i64::MAX, 72), i64::MAX);
    }
}
