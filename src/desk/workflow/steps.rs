//! The workflow's steps. Each says only what differs from the shared skeleton
//! ([`super::transition`]): its action, its checks, its change to the report and what it
//! writes beside it.

use super::transition::{By, Cx, Step};
use crate::desk::domain::{self, Action, Role, Source, Status};
use crate::desk::error::{invalid, DeskError};
use crate::desk::input::{bounded, normalise_ticket};
use crate::desk::store::{self, ReportRow, Tx};

/// The operator has checked the report, optionally correcting its category.
pub struct Verify<'a> {
    pub category: Option<&'a str>,
}

impl Step for Verify<'_> {
    fn action(&self) -> Action {
        Action::Verify
    }
    fn audit_action(&self) -> Option<&'static str> {
        Some("verify")
    }
    fn apply(&self, cx: &Cx<'_>, r: &mut ReportRow) -> Result<(), DeskError> {
        if let Some(c) = self.category.map(str::trim).filter(|c| !c.is_empty()) {
            cx.core
                .cfg
                .desk
                .category(c)
                .ok_or_else(|| invalid("category", format!("kategori {c:?} tidak dikenal")))?;
            r.category_id = c.into();
        }
        r.verified_at = Some(cx.now);
        r.operator_id = r.operator_id.or(cx.staff_id());
        Ok(())
    }
}

/// Not a valid report: closed grey, the reason on the thread.
pub struct Reject {
    reason: String,
}

impl Reject {
    pub fn new(reason: &str) -> Result<Self, DeskError> {
        let reason = bounded("reason", reason, 5, 1000, "Alasan penolakan")?;
        Ok(Self { reason })
    }
}

impl Step for Reject {
    fn action(&self) -> Action {
        Action::Reject
    }
    fn audit_action(&self) -> Option<&'static str> {
        Some("reject")
    }
    fn apply(&self, cx: &Cx<'_>, r: &mut ReportRow) -> Result<(), DeskError> {
        r.reject_reason = Some(self.reason.clone());
        r.closed_at = Some(cx.now);
        r.operator_id = r.operator_id.or(cx.staff_id());
        Ok(())
    }
    async fn record(&self, cx: &Cx<'_>, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        let body = format!("Laporan ditolak: {}", self.reason);
        store::insert_message(tx, r.id, cx.now, "operator", cx.staff_id(), "chat", &body).await?;
        Ok(())
    }
}

/// A duplicate folded into the report that goes on: it closes grey and points there; the
/// other report's thread and audit trail say so.
pub struct Merge {
    into: String,
    /// The report that goes on (id, ticket), found by `check`.
    target: Option<(i64, String)>,
}

impl Merge {
    pub fn new(into: &str) -> Result<Self, DeskError> {
        let into = normalise_ticket(into);
        if into.is_empty() {
            return Err(invalid("into", "Nomor tiket tujuan wajib diisi"));
        }
        Ok(Self { into, target: None })
    }

    fn target(&self) -> Result<&(i64, String), DeskError> {
        self.target
            .as_ref()
            .ok_or_else(|| DeskError::Internal("merge target not checked".into()))
    }
}

impl Step for Merge {
    fn action(&self) -> Action {
        Action::Merge
    }
    fn audit_action(&self) -> Option<&'static str> {
        Some("merge")
    }
    async fn check(
        &mut self,
        _cx: &Cx<'_>,
        tx: &mut Tx,
        before: &ReportRow,
    ) -> Result<(), DeskError> {
        let into = &self.into;
        if before.ticket == *into {
            return Err(invalid(
                "into",
                "Laporan tidak dapat digabung ke dirinya sendiri",
            ));
        }
        let target = store::report_by_ticket(tx, into)
            .await?
            .ok_or_else(|| invalid("into", format!("Tiket {into} tidak ditemukan")))?;
        let ts = target.status()?;
        if matches!(ts, Status::Merged | Status::Rejected) {
            return Err(invalid(
                "into",
                format!(
                    "Tiket {into} berstatus {}; pilih laporan yang masih berjalan",
                    ts.label()
                ),
            ));
        }
        self.target = Some((target.id, target.ticket));
        Ok(())
    }
    fn apply(&self, cx: &Cx<'_>, r: &mut ReportRow) -> Result<(), DeskError> {
        r.merged_into = Some(self.target()?.0);
        r.closed_at = Some(cx.now);
        r.operator_id = r.operator_id.or(cx.staff_id());
        Ok(())
    }
    async fn record(&self, cx: &Cx<'_>, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        let (target_id, target_ticket) = self.target()?;
        let body = format!("Laporan {} digabung ke laporan ini (duplikat).", r.ticket);
        store::insert_message(
            tx,
            *target_id,
            cx.now,
            "system",
            cx.staff_id(),
            "system",
            &body,
        )
        .await?;
        let after = serde_json::json!({ "duplicate": r.ticket });
        cx.core
            .audit(
                tx,
                &cx.actor,
                "merge_in",
                "report",
                target_ticket,
                None,
                Some(after),
            )
            .await
    }
}

/// Sent to an agency from the category's routing list (the category may change in the same
/// step); the SLA clock starts. Also re-routes a report the agency has not answered yet.
pub struct Disposition<'a> {
    pub agency: &'a str,
    pub category: Option<&'a str>,
    /// A note for the agency, kept as an internal note on the thread.
    pub note: Option<&'a str>,
}

impl Step for Disposition<'_> {
    fn action(&self) -> Action {
        Action::Disposition
    }
    fn audit_action(&self) -> Option<&'static str> {
        Some("disposition")
    }
    fn apply(&self, cx: &Cx<'_>, r: &mut ReportRow) -> Result<(), DeskError> {
        let desk = &cx.core.cfg.desk;
        if let Some(c) = self.category.map(str::trim).filter(|c| !c.is_empty()) {
            desk.category(c)
                .ok_or_else(|| invalid("category", format!("Kategori {c:?} tidak dikenal")))?;
            r.category_id = c.into();
        }
        let cat = desk.category(&r.category_id).ok_or_else(|| {
            invalid(
                "category",
                format!("Kategori {:?} tidak dikenal", r.category_id),
            )
        })?;
        let agency = self.agency.trim();
        if !cat.agencies.iter().any(|a| a == agency) {
            let allowed: Vec<String> = cat
                .agencies
                .iter()
                .map(|a| cx.core.labels.agency_name(a))
                .collect();
            return Err(invalid(
                "agency",
                format!(
                    "Kategori {} didisposisikan ke: {}",
                    cat.name,
                    allowed.join(", ")
                ),
            ));
        }
        if r.agency_id.as_deref() != Some(agency) {
            // A different agency: its officers pick it up afresh.
            r.officer_id = None;
        }
        r.agency_id = Some(agency.into());
        r.verified_at = r.verified_at.or(Some(cx.now));
        r.dispositioned_at = Some(cx.now);
        r.due_at = Some(domain::due_at(cx.now, cat.sla_hours));
        r.operator_id = r.operator_id.or(cx.staff_id());
        Ok(())
    }
    async fn record(&self, cx: &Cx<'_>, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        if let Some(n) = self.note.map(str::trim).filter(|n| !n.is_empty()) {
            let n = bounded("note", n, 1, 2000, "Catatan")?;
            store::insert_message(tx, r.id, cx.now, "operator", cx.staff_id(), "note", &n).await?;
        }
        Ok(())
    }
}

/// The agency's answer: the report turns yellow and waits for the reporter.
pub struct Answer {
    text: String,
}

impl Answer {
    pub fn new(text: &str) -> Result<Self, DeskError> {
        let text = bounded("text", text, 5, 4000, "Jawaban")?;
        Ok(Self { text })
    }
}

impl Step for Answer {
    fn action(&self) -> Action {
        Action::Answer
    }
    fn audit_action(&self) -> Option<&'static str> {
        Some("answer")
    }
    fn apply(&self, cx: &Cx<'_>, r: &mut ReportRow) -> Result<(), DeskError> {
        r.answered_at = Some(cx.now);
        r.officer_id = r.officer_id.or(cx.staff_id());
        Ok(())
    }
    async fn record(&self, cx: &Cx<'_>, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        store::insert_message(
            tx,
            r.id,
            cx.now,
            "agency",
            cx.staff_id(),
            "answer",
            &self.text,
        )
        .await?;
        Ok(())
    }
}

/// The answer judged: green when satisfied, else back to the agency with a fresh due time and
/// the reason on the thread. Reporters confirm their own reports (PIN or SMS); operators
/// confirm camera reports, which have no reporter.
pub struct Confirm<'a> {
    action: Action,
    satisfied: bool,
    text: &'a str,
}

impl<'a> Confirm<'a> {
    pub fn by_operator(satisfied: bool, text: &'a str) -> Self {
        Self {
            action: Action::ConfirmCctv,
            satisfied,
            text,
        }
    }
    pub fn by_reporter(satisfied: bool, text: &'a str) -> Self {
        Self {
            action: Action::ConfirmReporter,
            satisfied,
            text,
        }
    }
}

impl Step for Confirm<'_> {
    fn action(&self) -> Action {
        self.action
    }
    fn satisfied(&self) -> bool {
        self.satisfied
    }
    fn audit_action(&self) -> Option<&'static str> {
        Some(if self.satisfied {
            "confirm_satisfied"
        } else {
            "confirm_unsatisfied"
        })
    }
    async fn check(
        &mut self,
        _cx: &Cx<'_>,
        _tx: &mut Tx,
        before: &ReportRow,
    ) -> Result<(), DeskError> {
        // Citizens' reports are confirmed by the citizen, never by staff in their place.
        if self.action == Action::ConfirmCctv && before.source()? != Source::Cctv {
            return Err(DeskError::Forbidden);
        }
        Ok(())
    }
    fn apply(&self, cx: &Cx<'_>, r: &mut ReportRow) -> Result<(), DeskError> {
        if self.satisfied {
            r.closed_at = Some(cx.now);
        } else {
            let sla = cx
                .core
                .cfg
                .desk
                .category(&r.category_id)
                .map(|c| c.sla_hours)
                .unwrap_or(72);
            r.due_at = Some(domain::due_at(cx.now, sla));
            r.answered_at = None;
        }
        Ok(())
    }
    async fn record(&self, cx: &Cx<'_>, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        let text = self.text.trim();
        let author = match cx.by {
            By::Staff(_) => "operator",
            By::Pin { .. } | By::Phone(_) => "reporter",
        };
        let body = match (self.satisfied, text.is_empty()) {
            (true, true) => "Dikonfirmasi selesai.".to_string(),
            (true, false) => format!("Dikonfirmasi selesai. {text}"),
            (false, true) => "Belum puas dengan jawaban; dikembalikan ke OPD.".to_string(),
            (false, false) => format!("Belum puas: {text}"),
        };
        let body: String = body.chars().take(2000).collect();
        store::insert_message(tx, r.id, cx.now, author, cx.staff_id(), "chat", &body).await?;
        Ok(())
    }
}

/// Taking the report as one's own: operators as the operator in charge, agency officers as
/// the officer in charge. The status stays; the live feed is not told.
pub struct Claim;

impl Step for Claim {
    fn action(&self) -> Action {
        Action::Claim
    }
    fn audit_action(&self) -> Option<&'static str> {
        Some("claim")
    }
    fn announce(&self) -> bool {
        false
    }
    fn apply(&self, cx: &Cx<'_>, r: &mut ReportRow) -> Result<(), DeskError> {
        if let By::Staff(u) = cx.by {
            match u.role {
                Role::Agency => r.officer_id = Some(u.id),
                _ => r.operator_id = Some(u.id),
            }
        }
        Ok(())
    }
}

/// A line on the report's thread: chat the reporter sees, or (staff only) an internal note.
/// The report's row stays as it is; the message has its own audit entry.
pub struct Message {
    text: String,
    internal: bool,
}

impl Message {
    pub fn new(text: &str, internal: bool) -> Result<Self, DeskError> {
        let text = bounded("text", text, 1, 2000, "Pesan")?;
        Ok(Self { text, internal })
    }
}

impl Step for Message {
    fn action(&self) -> Action {
        if self.internal {
            Action::Note
        } else {
            Action::Message
        }
    }
    fn audit_action(&self) -> Option<&'static str> {
        None
    }
    fn announce(&self) -> bool {
        false
    }
    async fn record(&self, cx: &Cx<'_>, tx: &mut Tx, r: &ReportRow) -> Result<(), DeskError> {
        let author = match cx.by {
            By::Staff(u) if u.role == Role::Agency => "agency",
            By::Staff(_) => "operator",
            By::Pin { .. } | By::Phone(_) => "reporter",
        };
        let kind = if self.internal { "note" } else { "chat" };
        store::insert_message(tx, r.id, cx.now, author, cx.staff_id(), kind, &self.text).await?;
        let after = serde_json::json!({ "kind": kind, "body": self.text });
        cx.core
            .audit(
                tx,
                &cx.actor,
                "message",
                "report",
                &r.ticket,
                None,
                Some(after),
            )
            .await
    }
}
