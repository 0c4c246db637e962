//! The report lifecycle: every change to a report goes through [`Workflow`].
//!
//! - [`transition`]: the one skeleton every step runs through (transaction, load the report for
//!   this person, check the move, apply, save with audit and status message, commit, tell the
//!   live feed), and the [`transition::Step`] trait a step implements to say what differs.
//! - [`steps`]: the steps themselves (verify, reject, merge, disposition, answer, confirm,
//!   claim, message), each a small struct.
//! - [`citizens`]: new reports from the web form and SMS, and the SMS commands.
//!
//! Camera incidents become reports in [`super::intake`]; the rules of which status may follow
//! which, and who may do what, are pure functions in [`super::domain`].

pub mod citizens;
mod steps;
mod transition;

use std::sync::Arc;

use super::accounts::StaffUser;
use super::core::DeskCore;
use super::error::{DeskError, FieldError};
use super::store::ReportRow;
use steps::{Answer, Claim, Confirm, Disposition, Merge, Message, Reject, Verify};
use transition::By;

pub use citizens::{Created, NewReport};

/// The report lifecycle: staff steps, citizens' steps and new reports from citizens.
pub struct Workflow {
    core: Arc<DeskCore>,
    /// Wrong PINs per ticket (and client address), backed off like wrong passwords.
    pin_guard: crate::guard::LoginGuard,
    /// Reports and SMS commands per phone number.
    phone_limits: crate::guard::Buckets,
}

impl Workflow {
    pub fn new(core: Arc<DeskCore>) -> Self {
        let d = &core.cfg.desk;
        Self {
            pin_guard: crate::guard::LoginGuard::new(super::sessions::policy(d)),
            phone_limits: crate::guard::Buckets::per_hour(
                d.limits.per_phone.per_hour,
                d.limits.per_phone.burst,
            ),
            core,
        }
    }

    /// One more report or SMS command from `phone` (normalised); `TooMany` past its rate.
    pub(crate) fn phone_rate(&self, phone: &str) -> Result<(), DeskError> {
        self.phone_limits
            .take(phone, self.core.clock.now())
            .map_err(DeskError::TooMany)
    }

    // ------------------------------------------------------------------------------------------
    // Operators

    /// The operator has checked the report (and may correct its category).
    pub async fn verify(
        &self,
        user: &StaffUser,
        ticket: &str,
        category: Option<&str>,
    ) -> Result<ReportRow, DeskError> {
        self.run(By::Staff(user), ticket, Verify { category }).await
    }

    /// Not a valid report; the reason goes on the thread.
    pub async fn reject(
        &self,
        user: &StaffUser,
        ticket: &str,
        reason: &str,
    ) -> Result<ReportRow, DeskError> {
        self.run(By::Staff(user), ticket, Reject::new(reason)?)
            .await
    }

    /// Folds a duplicate into `into`: the duplicate closes, pointing at the report that goes on.
    pub async fn merge(
        &self,
        user: &StaffUser,
        ticket: &str,
        into: &str,
    ) -> Result<ReportRow, DeskError> {
        self.run(By::Staff(user), ticket, Merge::new(into)?).await
    }

    /// Sends the report to an agency from its category's routing list (optionally moving it to
    /// another category first); starts the SLA clock.
    pub async fn disposition(
        &self,
        user: &StaffUser,
        ticket: &str,
        agency: &str,
        category: Option<&str>,
        note: Option<&str>,
    ) -> Result<ReportRow, DeskError> {
        let step = Disposition {
            agency,
            category,
            note,
        };
        self.run(By::Staff(user), ticket, step).await
    }

    /// The operator confirms a camera report in place of a reporter.
    pub async fn confirm_cctv(
        &self,
        user: &StaffUser,
        ticket: &str,
        satisfied: bool,
        text: &str,
    ) -> Result<ReportRow, DeskError> {
        let step = Confirm::by_operator(satisfied, text);
        self.run(By::Staff(user), ticket, step).await
    }

    // ------------------------------------------------------------------------------------------
    // Agencies

    /// The agency's answer: the report turns yellow.
    pub async fn answer(
        &self,
        user: &StaffUser,
        ticket: &str,
        text: &str,
    ) -> Result<ReportRow, DeskError> {
        self.run(By::Staff(user), ticket, Answer::new(text)?).await
    }

    // ------------------------------------------------------------------------------------------
    // Any staff who may act

    /// Takes the report as one's own: operators as the operator in charge, officers as the
    /// officer in charge.
    pub async fn claim(&self, user: &StaffUser, ticket: &str) -> Result<ReportRow, DeskError> {
        self.run(By::Staff(user), ticket, Claim).await
    }

    /// A staff message on the thread (`internal`: a note only staff see).
    pub async fn staff_message(
        &self,
        user: &StaffUser,
        ticket: &str,
        text: &str,
        internal: bool,
    ) -> Result<(), DeskError> {
        let step = Message::new(text, internal)?;
        self.run(By::Staff(user), ticket, step).await.map(drop)
    }

    // ------------------------------------------------------------------------------------------
    // Reporters, with the PIN from their receipt (SMS reporters: see `citizens`)

    /// The reporter confirms the agency's answer: green when satisfied, else back to the agency.
    /// `client` is the address key the PIN came from (its guesses back off on their own).
    pub async fn confirm_with_pin(
        &self,
        ticket: &str,
        pin: &str,
        client: &str,
        satisfied: bool,
        text: &str,
    ) -> Result<ReportRow, DeskError> {
        let step = Confirm::by_reporter(satisfied, text);
        self.run(By::Pin { pin, client }, ticket, step).await
    }

    /// The reporter's message on the thread.
    pub async fn reporter_message(
        &self,
        ticket: &str,
        pin: &str,
        client: &str,
        text: &str,
    ) -> Result<(), DeskError> {
        let step = Message::new(text, false)?;
        self.run(By::Pin { pin, client }, ticket, step)
            .await
            .map(drop)
    }
}

/// `Invalid` for a confirmation that says neither satisfied nor not (forms and API).
pub fn satisfied_missing() -> DeskError {
    DeskError::Invalid(vec![FieldError {
        field: "satisfied",
        message: "pilih puas atau belum puas".into(),
    }])
}
