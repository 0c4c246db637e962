//! The skeleton of every workflow step, written once.
//!
//! [`Workflow::run`] takes a [`Step`] (what differs: verify, reject, merge, ...) and does the
//! rest in this order, inside one transaction:
//!
//! 0. a reporter's PIN is checked first, outside the transaction (argon2 takes tens of
//!    milliseconds: inside a write transaction a stream of guesses would hold SQLite's write
//!    lock, and every other writer, MQTT intake included, would wait behind it);
//! 1. begin the transaction;
//! 2. load the report for the person taking the step ([`By`]): staff must see it (else "not
//!    found", so an agency officer learns nothing of other agencies) and their role must allow
//!    the action (else "forbidden"); a reporter proves the report is theirs with the PIN or by
//!    writing from the phone that filed it;
//! 3. the step's own checks ([`Step::check`], e.g. a merge's target);
//! 4. the workflow must allow the move from the report's status ([`domain::next_status`]);
//! 5. the step's change ([`Step::apply`]) on a copy already moved to its new status;
//! 6. save it: guarded by the row's version, with the audit entry (fields before → after) and,
//!    when the status or agency moved, the status message in the outbox;
//! 7. the step's writes beside the report ([`Step::record`]: thread messages, a second audit
//!    entry);
//! 8. commit; then wake the status publisher and tell the live feed ([`Step::announce`]).
//!
//! Any error before the commit drops the transaction: a refused step leaves no trace.

use super::Workflow;
use crate::desk::accounts::StaffUser;
use crate::desk::core::{Actor, DeskCore};
use crate::desk::domain::{self, Action, Source};
use crate::desk::error::{invalid, DeskError};
use crate::desk::input::normalise_ticket;
use crate::desk::store::{self, ReportRow, Tx};

/// Who takes a step, and how they prove they may.
#[derive(Clone, Copy, Debug)]
pub enum By<'a> {
    /// A signed-in staff member.
    Staff(&'a StaffUser),
    /// The reporter on the tracking page, with the PIN from the receipt, from a client
    /// address key.
    Pin { pin: &'a str, client: &'a str },
    /// The reporter by SMS, from the phone that filed the report.
    Phone(&'a str),
}

impl By<'_> {
    /// How the audit log names them.
    pub fn actor(&self) -> Actor {
        match self {
            By::Staff(u) => Actor::Staff((*u).clone()),
            By::Pin { .. } => Actor::Reporter(Source::Web),
            By::Phone(_) => Actor::Reporter(Source::Sms),
        }
    }
}

/// What a step sees while it runs.
pub struct Cx<'a> {
    pub core: &'a DeskCore,
    pub by: By<'a>,
    pub actor: Actor,
    /// The time of the step (stamps such as `verified_at`, thread messages).
    pub now: i64,
}

impl Cx<'_> {
    /// The staff member's account id, when staff take the step.
    pub fn staff_id(&self) -> Option<i64> {
        match self.by {
            By::Staff(u) => Some(u.id),
            _ => None,
        }
    }
}

/// What one workflow step does beyond the shared skeleton (see the module docs for the order).
/// Input checks that need nothing stored belong in the step's constructor, so they come first.
pub trait Step {
    /// The action the person's role and the report's status must allow.
    fn action(&self) -> Action;

    /// Which way a confirmation goes; every other step leaves it true.
    fn satisfied(&self) -> bool {
        true
    }

    /// The audit log's name for the change to the report, or `None` for a step that leaves
    /// the report's row as it is (a message), which writes its own audit entry in `record`.
    fn audit_action(&self) -> Option<&'static str>;

    /// Whether the live feed hears of the step after commit.
    fn announce(&self) -> bool {
        true
    }

    /// Checks that need the stored report or other rows; they come before the move's.
    async fn check(
        &mut self,
        _cx: &Cx<'_>,
        _tx: &mut Tx,
        _before: &ReportRow,
    ) -> Result<(), DeskError> {
        Ok(())
    }

    /// The change, on a copy of the report already moved to its new status.
    fn apply(&self, _cx: &Cx<'_>, _r: &mut ReportRow) -> Result<(), DeskError> {
        Ok(())
    }

    /// Writes beside the report, after it is saved (thread messages, a second audit entry).
    async fn record(&self, _cx: &Cx<'_>, _tx: &mut Tx, _r: &ReportRow) -> Result<(), DeskError> {
        Ok(())
    }
}

impl Workflow {
    /// Runs `step` on `ticket` for `by`; returns the report as saved.
    pub(crate) async fn run<S: Step>(
        &self,
        by: By<'_>,
        ticket: &str,
        mut step: S,
    ) -> Result<ReportRow, DeskError> {
        let core = &*self.core;
        if let By::Pin { pin, client } = by {
            self.check_pin(ticket, pin, client).await?;
        }
        let mut tx = core.store.begin().await?;
        let before = self.load_for(&mut tx, by, ticket, step.action()).await?;
        let cx = Cx {
            core,
            by,
            actor: by.actor(),
            now: core.clock.now(),
        };
        step.check(&cx, &mut tx, &before).await?;
        let mut after = before.clone();
        let to = domain::next_status(before.status()?, step.action(), step.satisfied())?;
        after.status = to.as_str().into();
        step.apply(&cx, &mut after)?;
        if let Some(name) = step.audit_action() {
            core.save(&mut tx, &cx.actor, name, &before, &mut after)
                .await?;
        }
        step.record(&cx, &mut tx, &after).await?;
        tx.commit().await?;
        if step.announce() {
            core.after_commit("status", &after, None);
        }
        Ok(after)
    }

    /// The report `ticket`, if `by` may take `action` on it.
    async fn load_for(
        &self,
        tx: &mut Tx,
        by: By<'_>,
        ticket: &str,
        action: Action,
    ) -> Result<ReportRow, DeskError> {
        let r = store::report_by_ticket(tx, &normalise_ticket(ticket))
            .await?
            .ok_or(DeskError::NotFound)?;
        match by {
            By::Staff(user) => {
                if !user.can_see(&r) {
                    return Err(DeskError::NotFound);
                }
                if !user.role.may(action) {
                    return Err(DeskError::Forbidden);
                }
            }
            // Checked before the transaction began (`run`); the PIN hash never changes.
            By::Pin { .. } => {}
            // Another phone's report is "not found": the SMS reply says no more than that.
            By::Phone(phone) => {
                if r.phone.as_deref() != Some(phone) {
                    return Err(DeskError::NotFound);
                }
            }
        }
        Ok(r)
    }

    /// The reporter's PIN, checked on a plain connection (no transaction) on the desk's
    /// bounded hasher; wrong ones back off per ticket and client like wrong passwords, counted
    /// before the check.
    async fn check_pin(&self, ticket: &str, pin: &str, client: &str) -> Result<(), DeskError> {
        let ticket = normalise_ticket(ticket);
        let r = {
            let mut c = self.core.store.pool().acquire().await?;
            store::report_by_ticket(&mut c, &ticket)
                .await?
                .ok_or(DeskError::NotFound)?
        };
        let now = self.core.clock.now();
        let attempt = self
            .pin_guard
            .begin(&format!("ticket:{}", r.ticket), client, None, now)
            .map_err(DeskError::RateLimited)?;
        let pin = pin.trim();
        let ok = match &r.pin_hash {
            Some(h) if pin.len() <= 64 => {
                match self.core.hasher.verify(pin.to_string(), h.clone()).await {
                    Ok(ok) => ok,
                    Err(e) => {
                        attempt.cancelled();
                        return Err(e.into());
                    }
                }
            }
            _ => false,
        };
        if ok {
            attempt.succeeded();
            Ok(())
        } else {
            attempt.failed();
            Err(invalid("pin", "PIN tidak cocok dengan tiket ini"))
        }
    }
}

#[cfg(test)]
mod tests {
    //! The skeleton against a real SQLite file: for each (report, person, step), the step is
    //! taken or refused as the rules say; a refused step leaves no trace, a taken one writes
    //! the row, its audit entry and (when the status or agency moved) one status message on the
    //! configured topic.

    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::config::Config;
    use crate::desk::domain::{Role, Status};
    use crate::desk::workflow::steps::{
        Answer, Claim, Confirm, Disposition, Merge, Message, Reject, Verify,
    };
    use crate::desk::{Clock, Store};

    const PIN: &str = "482913";
    const PHONE: &str = "081234567890";
    const PREFIX: &str = "kota/pengaduan";

    /// A desk core on a fresh SQLite file, with one account per role.
    struct Fixture {
        workflow: Workflow,
        core: Arc<DeskCore>,
        operator: StaffUser,
        viewer: StaffUser,
        dishub: StaffUser,
        dlh: StaffUser,
        pin_hash: String,
        next: std::cell::Cell<u32>,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("desk.db").display());
        let store = Store::open(&url).await.unwrap();
        let text = "[city]\nname = \"P\"\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"x\"\n\
                    lat = 0.0\nlon = 0.0\nstream = \"rtsp://h/a\"\n";
        let mut cfg = Config::from_str_at(text, Path::new("/etc/simpang/c.toml")).unwrap();
        cfg.desk.mqtt.status_topic_prefix = PREFIX.into();
        let core = Arc::new(DeskCore::new(
            Arc::new(cfg),
            store,
            Clock::default(),
            crate::desk::auth::DeskKeys::ephemeral(),
        ));
        let mut c = core.store.pool().acquire().await.unwrap();
        let operator = user(&mut c, "operator", Role::Operator, None).await;
        let viewer = user(&mut c, "viewer", Role::Viewer, None).await;
        let dishub = user(&mut c, "dishub", Role::Agency, Some("dishub")).await;
        let dlh = user(&mut c, "dlh", Role::Agency, Some("dlh")).await;
        drop(c);
        Fixture {
            workflow: Workflow::new(core.clone()),
            core,
            operator,
            viewer,
            dishub,
            dlh,
            pin_hash: crate::desk::auth::hash_password(PIN).unwrap(),
            next: std::cell::Cell::new(0),
            _dir: dir,
        }
    }

    async fn user(
        c: &mut sqlx::AnyConnection,
        name: &str,
        role: Role,
        agency: Option<&str>,
    ) -> StaffUser {
        let id = store::insert_user(c, name, name, role, agency, "-", 0)
            .await
            .unwrap();
        StaffUser {
            id,
            username: name.into(),
            display_name: name.into(),
            role,
            agency_id: agency.map(str::to_string),
        }
    }

    impl Fixture {
        /// A traffic report in `status`, with the agency `agency`, filed by `source` (with the
        /// reporter's PIN and phone).
        async fn report(&self, source: Source, status: Status, agency: Option<&str>) -> ReportRow {
            self.next.set(self.next.get() + 1);
            let ticket = format!("PLG-T{:04}", self.next.get());
            let mut r = ReportRow::blank(&ticket, source, self.core.clock.now());
            r.status = status.as_str().into();
            r.category_id = "traffic".into();
            r.title = "Macet".into();
            r.agency_id = agency.map(str::to_string);
            r.phone = Some(PHONE.into());
            r.pin_hash = Some(self.pin_hash.clone());
            let mut c = self.core.store.pool().acquire().await.unwrap();
            r.id = store::insert_report(&mut c, &r).await.unwrap();
            r
        }

        async fn stored(&self, ticket: &str) -> ReportRow {
            let mut c = self.core.store.pool().acquire().await.unwrap();
            store::report_by_ticket(&mut c, ticket)
                .await
                .unwrap()
                .unwrap()
        }

        /// (audit entries, messages on the thread, outbox rows) about `r`.
        async fn traces(&self, r: &ReportRow) -> (i64, i64, Vec<String>) {
            let pool = self.core.store.pool();
            let audit: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM audit_log WHERE entity = 'report' AND entity_id = $1",
            )
            .bind(&r.ticket)
            .fetch_one(pool)
            .await
            .unwrap();
            let messages: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE report_id = $1")
                    .bind(r.id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
            let topics: Vec<String> =
                sqlx::query_scalar("SELECT topic FROM status_outbox WHERE payload LIKE $1")
                    .bind(format!("%\"ticket\":\"{}\"%", r.ticket))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            (audit, messages, topics)
        }
    }

    /// Who takes the step in a case.
    #[derive(Clone, Copy, Debug)]
    enum Who {
        Operator,
        Viewer,
        Dishub,
        Dlh,
        Pin(&'static str),
        Phone(&'static str),
    }

    /// Which step.
    #[derive(Clone, Copy, Debug)]
    enum Take {
        Verify(Option<&'static str>),
        Reject,
        MergeIntoOther,
        MergeIntoItself,
        Disposition(&'static str),
        Answer,
        ConfirmOperator(bool),
        ConfirmReporter(bool),
        Claim,
        Chat,
    }

    /// What should become of it.
    #[derive(Debug, PartialEq)]
    enum Want {
        To(Status),
        NotAllowed,
        Forbidden,
        NotFound,
        Invalid(&'static str),
    }

    /// A report (source, status, agency), who takes which step, and what should happen.
    type Case = (Source, Status, Option<&'static str>, Who, Take, Want);

    async fn take(
        fx: &Fixture,
        who: Who,
        r: &ReportRow,
        take: Take,
        other: &str,
    ) -> Result<ReportRow, DeskError> {
        let by = match who {
            Who::Operator => By::Staff(&fx.operator),
            Who::Viewer => By::Staff(&fx.viewer),
            Who::Dishub => By::Staff(&fx.dishub),
            Who::Dlh => By::Staff(&fx.dlh),
            Who::Pin(p) => By::Pin {
                pin: p,
                client: "192.0.2.1",
            },
            Who::Phone(p) => By::Phone(p),
        };
        let wf = &fx.workflow;
        let t = r.ticket.as_str();
        match take {
            Take::Verify(category) => wf.run(by, t, Verify { category }).await,
            Take::Reject => wf.run(by, t, Reject::new("Bukan kewenangan")?).await,
            Take::MergeIntoOther => wf.run(by, t, Merge::new(other)?).await,
            Take::MergeIntoItself => wf.run(by, t, Merge::new(t)?).await,
            Take::Disposition(agency) => {
                let step = Disposition {
                    agency,
                    category: None,
                    note: Some("Mohon ditindaklanjuti"),
                };
                wf.run(by, t, step).await
            }
            Take::Answer => wf.run(by, t, Answer::new("Petugas sudah di lokasi")?).await,
            Take::ConfirmOperator(s) => wf.run(by, t, Confirm::by_operator(s, "")).await,
            Take::ConfirmReporter(s) => wf.run(by, t, Confirm::by_reporter(s, "ok")).await,
            Take::Claim => wf.run(by, t, Claim).await,
            Take::Chat => wf.run(by, t, Message::new("Halo", false)?).await,
        }
    }

    fn outcome(r: &Result<ReportRow, DeskError>) -> Want {
        match r {
            Ok(r) => Want::To(r.status().unwrap()),
            Err(DeskError::NotAllowed(_)) => Want::NotAllowed,
            Err(DeskError::Forbidden) => Want::Forbidden,
            Err(DeskError::NotFound) => Want::NotFound,
            Err(DeskError::Invalid(f)) => Want::Invalid(f[0].field),
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    #[tokio::test]
    async fn allowed_and_refused_moves() {
        use Source::{Cctv, Sms, Web};
        use Status::*;
        let fx = fixture().await;
        let other = fx.report(Web, Received, None).await;
        let d = Some("dishub");
        #[rustfmt::skip]
        let cases: &[Case] = &[
            // Operators sort and route.
            (Web, Received, None, Who::Operator, Take::Verify(None), Want::To(Verified)),
            (Web, Received, None, Who::Operator, Take::Verify(Some("nope")), Want::Invalid("category")),
            (Web, Verified, None, Who::Operator, Take::Verify(None), Want::NotAllowed),
            (Web, Received, None, Who::Viewer, Take::Verify(None), Want::Forbidden),
            (Web, Received, None, Who::Dishub, Take::Verify(None), Want::NotFound),
            (Web, Dispositioned, d, Who::Dishub, Take::Verify(None), Want::Forbidden),
            (Web, Verified, None, Who::Operator, Take::Reject, Want::To(Rejected)),
            (Web, Dispositioned, d, Who::Operator, Take::Reject, Want::NotAllowed),
            (Web, Received, None, Who::Operator, Take::MergeIntoOther, Want::To(Merged)),
            (Web, Received, None, Who::Operator, Take::MergeIntoItself, Want::Invalid("into")),
            (Web, Received, None, Who::Operator, Take::Disposition("dishub"), Want::To(Dispositioned)),
            (Web, Reopened, d, Who::Operator, Take::Disposition("satlantas"), Want::To(Dispositioned)),
            (Web, Received, None, Who::Operator, Take::Disposition("dlh"), Want::Invalid("agency")),
            (Web, Answered, d, Who::Operator, Take::Disposition("dishub"), Want::NotAllowed),
            // Agencies answer their own reports only.
            (Web, Dispositioned, d, Who::Dishub, Take::Answer, Want::To(Answered)),
            (Web, Reopened, d, Who::Dishub, Take::Answer, Want::To(Answered)),
            (Web, Dispositioned, d, Who::Dlh, Take::Answer, Want::NotFound),
            (Web, Dispositioned, d, Who::Operator, Take::Answer, Want::Forbidden),
            (Web, Answered, d, Who::Dishub, Take::Answer, Want::NotAllowed),
            // Confirmations: operators for camera reports, reporters for their own.
            (Cctv, Answered, d, Who::Operator, Take::ConfirmOperator(true), Want::To(Done)),
            (Cctv, Answered, d, Who::Operator, Take::ConfirmOperator(false), Want::To(Reopened)),
            (Web, Answered, d, Who::Operator, Take::ConfirmOperator(true), Want::Forbidden),
            (Cctv, Answered, d, Who::Dishub, Take::ConfirmOperator(true), Want::Forbidden),
            (Web, Answered, d, Who::Pin(PIN), Take::ConfirmReporter(false), Want::To(Reopened)),
            (Web, Answered, d, Who::Pin("000000"), Take::ConfirmReporter(true), Want::Invalid("pin")),
            (Web, Done, d, Who::Pin(PIN), Take::ConfirmReporter(true), Want::NotAllowed),
            (Sms, Answered, d, Who::Phone(PHONE), Take::ConfirmReporter(true), Want::To(Done)),
            (Sms, Answered, d, Who::Phone("089999999999"), Take::ConfirmReporter(true), Want::NotFound),
            // Claims and messages keep the status, on open reports only.
            (Web, Received, None, Who::Operator, Take::Claim, Want::To(Received)),
            (Web, Dispositioned, d, Who::Dishub, Take::Claim, Want::To(Dispositioned)),
            (Web, Done, d, Who::Operator, Take::Claim, Want::NotAllowed),
            (Web, Answered, d, Who::Dishub, Take::Chat, Want::To(Answered)),
            (Web, Dispositioned, d, Who::Pin(PIN), Take::Chat, Want::To(Dispositioned)),
            (Web, Rejected, None, Who::Operator, Take::Chat, Want::NotAllowed),
            (Web, Answered, d, Who::Viewer, Take::Chat, Want::Forbidden),
        ];
        for &(source, status, agency, who, step, ref want) in cases {
            let case = format!("{source:?} {status:?} {agency:?} {who:?} {step:?}");
            let before = fx.report(source, status, agency).await;
            let (audit0, messages0, outbox0) = fx.traces(&before).await;
            let got = take(&fx, who, &before, step, &other.ticket).await;
            assert_eq!(&outcome(&got), want, "{case}");
            let stored = fx.stored(&before.ticket).await;
            let (audit, messages, outbox) = fx.traces(&before).await;
            let Ok(after) = got else {
                assert_eq!(stored, before, "{case}: a refused step changes nothing");
                assert_eq!((audit, messages), (audit0, messages0), "{case}");
                assert_eq!(outbox, outbox0, "{case}");
                continue;
            };
            assert_eq!(
                stored, after,
                "{case}: what the step returns is what is stored"
            );
            assert_eq!(audit, audit0 + 1, "{case}: one audit entry");
            let row_written = !matches!(step, Take::Chat);
            assert_eq!(
                stored.version,
                before.version + i64::from(row_written),
                "{case}"
            );
            let moved = before.status != after.status || before.agency_id != after.agency_id;
            let want_topic = format!("{PREFIX}/{}/status", before.ticket);
            let mut want_outbox = outbox0.clone();
            if moved {
                want_outbox.push(want_topic);
            }
            assert_eq!(outbox, want_outbox, "{case}: a status message per move");
            let thread = match step {
                Take::Reject | Take::Answer | Take::Chat => 1,
                Take::ConfirmOperator(_) | Take::ConfirmReporter(_) => 1,
                Take::Disposition(_) => 1,
                _ => 0,
            };
            assert_eq!(messages, messages0 + thread, "{case}: thread messages");
        }
        // The merge's other side: the report that goes on says so on its thread and in its
        // audit trail, and its own status is untouched.
        let (audit, messages, outbox) = fx.traces(&other).await;
        assert_eq!((audit, messages, outbox.len()), (1, 1, 0));
        assert_eq!(fx.stored(&other.ticket).await, other);
    }

    #[tokio::test]
    async fn steps_stamp_who_and_when() {
        let fx = fixture().await;
        let r = fx.report(Source::Web, Status::Received, None).await;
        let now = fx.core.clock.now();
        let step = Disposition {
            agency: "satlantas",
            category: None,
            note: None,
        };
        let after = fx
            .workflow
            .run(By::Staff(&fx.operator), &r.ticket, step)
            .await
            .unwrap();
        assert_eq!(after.agency_id.as_deref(), Some("satlantas"));
        assert_eq!(after.operator_id, Some(fx.operator.id));
        assert!(
            after.verified_at.is_some_and(|t| t >= now),
            "implicitly verified"
        );
        let due = after.due_at.unwrap() - after.dispositioned_at.unwrap();
        assert_eq!(due, 24 * 3600, "traffic's SLA");
        // Re-routed before an answer: the new agency's officers pick it up afresh.
        let claimed = fx
            .workflow
            .run(By::Staff(&fx.operator), &r.ticket, Claim)
            .await
            .unwrap();
        assert_eq!(claimed.officer_id, None);
        let step = Disposition {
            agency: "dishub",
            category: None,
            note: None,
        };
        let rerouted = fx
            .workflow
            .run(By::Staff(&fx.operator), &r.ticket.to_lowercase(), step)
            .await
            .unwrap();
        assert_eq!(rerouted.agency_id.as_deref(), Some("dishub"));
        let answered = fx
            .workflow
            .run(
                By::Staff(&fx.dishub),
                &r.ticket,
                Answer::new("Sudah lancar").unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(answered.officer_id, Some(fx.dishub.id));
        assert!(answered.answered_at.is_some());
    }

    #[tokio::test]
    async fn a_concurrent_change_is_a_conflict() {
        let fx = fixture().await;
        let r = fx.report(Source::Web, Status::Received, None).await;
        // Someone else saved the report after this step's copy was read: the version guard
        // refuses the write and the transaction is rolled back.
        let stale = r.clone();
        let mut tx = fx.core.store.begin().await.unwrap();
        let mut moved = r.clone();
        moved.title = "Diubah orang lain".into();
        assert!(store::update_report(&mut tx, &moved).await.unwrap());
        tx.commit().await.unwrap();
        let mut tx = fx.core.store.begin().await.unwrap();
        let mut mine = stale.clone();
        let got = fx
            .core
            .save(&mut tx, &Actor::System, "verify", &stale, &mut mine)
            .await;
        assert!(matches!(got, Err(DeskError::Conflict)), "{got:?}");
    }
}
