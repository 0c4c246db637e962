//! HTML templates (maud escapes every interpolated value). Indonesian for the people who use
//! the desk. One file per family of pages: [`login`], [`dashboard`], [`reports`] (the list),
//! [`report`] (one report), [`audit`], [`admin`], [`citizen`] (form, receipt, tracker); the
//! shared [`layout`] and [`components`].

mod admin;
mod audit;
mod citizen;
mod components;
mod dashboard;
mod layout;
mod login;
mod report;
mod reports;

pub use admin::{dead_letters_page, users_page};
pub use audit::audit_page;
pub use citizen::{receipt_page, report_form_page, track_page, track_search_page, FormValues};
pub use dashboard::dashboard_page;
pub use layout::error_page;
pub use login::login_page;
pub use report::report_page;
pub use reports::reports_page;
