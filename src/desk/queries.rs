//! Reading, for the pages and the API: one report with everything around it, lists, overdue,
//! the camera feed, the dashboard, the audit log and dead letters. Nothing here writes; every
//! read is limited to what the person may see (agency officers: their agency's reports; the
//! phone number only for those who call reporters back).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::accounts::StaffUser;
use super::core::DeskCore;
use super::dashboard::{self, Dashboard};
use super::domain::{Role, Source, Status};
use super::error::DeskError;
use super::input::normalise_ticket;
use super::store::{
    self, AttachmentMeta, AuditRow, DeadLetterRow, MessageRow, ReportFilter, ReportRow, UserRow,
};

/// Everything a report page shows about one report.
#[derive(Clone, Debug)]
pub struct ReportView {
    pub report: ReportRow,
    pub status: Status,
    pub source: Source,
    pub attachments: Vec<AttachmentMeta>,
    pub messages: Vec<MessageRow>,
    pub merged: Vec<ReportRow>,
    pub merged_into: Option<String>,
    pub audit: Vec<AuditRow>,
    /// Account id -> display name, for the ids the audit trail records.
    pub names: BTreeMap<i64, String>,
    pub operator: Option<String>,
    pub officer: Option<String>,
}

/// The desk's read side.
pub struct Queries {
    core: Arc<DeskCore>,
}

impl Queries {
    pub fn new(core: Arc<DeskCore>) -> Self {
        Self { core }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, DeskError> {
        Ok(self.core.store.pool().acquire().await?)
    }

    /// A report as staff see it: with its audit trail; without the phone number for those who
    /// do not call reporters; "not found" for an agency officer it was not sent to.
    pub async fn report_for_staff(
        &self,
        user: &StaffUser,
        ticket: &str,
    ) -> Result<ReportView, DeskError> {
        let mut c = self.conn().await?;
        let r = store::report_by_ticket(&mut c, &normalise_ticket(ticket))
            .await?
            .ok_or(DeskError::NotFound)?;
        if !user.can_see(&r) {
            return Err(DeskError::NotFound);
        }
        let mut view = view_of(&mut c, r).await?;
        if !user.role.sees_contact() {
            view.report.phone = None;
        }
        view.audit =
            store::audit_list(&mut c, Some(("report", &view.report.ticket)), 500, 0).await?;
        view.names = store::user_names(&mut c).await?.into_iter().collect();
        Ok(view)
    }

    /// What the public tracker may show: no phone, PIN, internal notes or staff names (the
    /// tracker renders less still; see `web::api::track_json`).
    pub async fn report_for_public(&self, ticket: &str) -> Result<ReportView, DeskError> {
        let mut c = self.conn().await?;
        let r = store::report_by_ticket(&mut c, &normalise_ticket(ticket))
            .await?
            .ok_or(DeskError::NotFound)?;
        let mut view = view_of(&mut c, r).await?;
        view.report.phone = None;
        view.report.pin_hash = None;
        view.messages.retain(|m| m.kind != "note");
        view.operator = None;
        view.officer = None;
        Ok(view)
    }

    /// One page of reports and the total matching `filter`, within what `user` may see.
    pub async fn list(
        &self,
        user: &StaffUser,
        mut filter: ReportFilter,
    ) -> Result<(Vec<ReportRow>, i64), DeskError> {
        if let Some(a) = user.agency_scope() {
            filter.scope_agency = Some(a);
        }
        let mut c = self.conn().await?;
        let (mut rows, total) = store::list_reports(&mut c, &filter).await?;
        if !user.role.sees_contact() {
            for r in &mut rows {
                r.phone = None;
            }
        }
        Ok((rows, total))
    }

    /// An attachment, if `user` may see its report.
    pub async fn attachment(
        &self,
        user: &StaffUser,
        id: i64,
    ) -> Result<(AttachmentMeta, Vec<u8>), DeskError> {
        let mut c = self.conn().await?;
        let (meta, bytes) = store::attachment_bytes(&mut c, id)
            .await?
            .ok_or(DeskError::NotFound)?;
        let r = store::report_by_id(&mut c, meta.report_id)
            .await?
            .ok_or(DeskError::NotFound)?;
        if !user.can_see(&r) {
            return Err(DeskError::NotFound);
        }
        Ok((meta, bytes))
    }

    /// The dashboard's numbers for reports filed since `since` (all when None).
    pub async fn dashboard(
        &self,
        user: &StaffUser,
        since: Option<i64>,
    ) -> Result<Dashboard, DeskError> {
        let scope = user.agency_scope();
        let now = self.core.clock.now();
        let mut c = self.conn().await?;
        let rows = store::stats(&mut c, now, scope.as_deref(), since).await?;
        let mut d = dashboard::tally(&rows, &self.core.cfg.desk)?;
        let (_, n) = store::list_reports(
            &mut c,
            &ReportFilter {
                source: Some(Source::Cctv),
                scope_agency: scope,
                created_since: since,
                limit: 1,
                ..Default::default()
            },
        )
        .await?;
        d.by_source.insert("cctv".into(), n);
        Ok(d)
    }

    /// Reports past their SLA due time, the longest overdue first.
    pub async fn overdue(&self, user: &StaffUser, limit: i64) -> Result<Vec<ReportRow>, DeskError> {
        let f = ReportFilter {
            overdue_at: Some(self.core.clock.now()),
            limit,
            ..Default::default()
        };
        Ok(self.list(user, f).await?.0)
    }

    /// The latest camera reports with their newest snapshot, for the live feed's first page.
    pub async fn cctv_feed(
        &self,
        user: &StaffUser,
        limit: i64,
    ) -> Result<Vec<(ReportRow, Option<i64>)>, DeskError> {
        let scope = user.agency_scope();
        let mut c = self.conn().await?;
        Ok(store::latest_cctv(&mut c, limit, scope.as_deref()).await?)
    }

    /// The audit log, newest first (admins and operators).
    pub async fn audit_log(
        &self,
        user: &StaffUser,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditRow>, DeskError> {
        staff_desk_only(user)?;
        let mut c = self.conn().await?;
        Ok(store::audit_list(&mut c, None, limit, offset).await?)
    }

    /// Account id -> display name (admins and operators).
    pub async fn user_names(&self, user: &StaffUser) -> Result<BTreeMap<i64, String>, DeskError> {
        staff_desk_only(user)?;
        let mut c = self.conn().await?;
        Ok(store::user_names(&mut c).await?.into_iter().collect())
    }

    /// Incident messages that failed a check, newest first (admins and operators).
    pub async fn dead_letters(
        &self,
        user: &StaffUser,
        limit: i64,
    ) -> Result<Vec<DeadLetterRow>, DeskError> {
        staff_desk_only(user)?;
        let mut c = self.conn().await?;
        Ok(store::dead_letters(&mut c, limit).await?)
    }
}

/// The Command Center's own records (audit log, dead letters) are for admins and operators.
fn staff_desk_only(user: &StaffUser) -> Result<(), DeskError> {
    if matches!(user.role, Role::Admin | Role::Operator) {
        Ok(())
    } else {
        Err(DeskError::Forbidden)
    }
}

/// A report with its attachments, thread, duplicates and the names of the people in charge.
async fn view_of(c: &mut sqlx::AnyConnection, r: ReportRow) -> Result<ReportView, DeskError> {
    let attachments = store::attachments_of(c, r.id).await?;
    let messages = store::messages_of(c, r.id).await?;
    let merged = store::merged_into(c, r.id).await?;
    let merged_into = match r.merged_into {
        Some(id) => store::report_by_id(c, id).await?.map(|t| t.ticket),
        None => None,
    };
    let name_of = |u: Option<UserRow>| u.map(|u| u.display_name);
    let operator = match r.operator_id {
        Some(id) => name_of(store::user_by_id(c, id).await?),
        None => None,
    };
    let officer = match r.officer_id {
        Some(id) => name_of(store::user_by_id(c, id).await?),
        None => None,
    };
    Ok(ReportView {
        status: r.status()?,
        source: r.source()?,
        report: r,
        attachments,
        messages,
        merged,
        merged_into,
        audit: Vec::new(),
        names: BTreeMap::new(),
        operator,
        officer,
    })
}
