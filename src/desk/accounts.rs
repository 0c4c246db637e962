//! Staff accounts: who they are ([`StaffUser`]), what they may see, and the admin's work on
//! them (create, list, deactivate with hand-over of open reports, set a password). Signing in
//! is [`super::sessions`].

use std::sync::Arc;

use serde::Serialize;

use super::auth;
use super::core::{Actor, DeskCore};
use super::domain::Role;
use super::error::{invalid, DeskError, FieldError};
use super::store::{self, ReportRow, UserRow};

/// A signed-in staff member.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StaffUser {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub agency_id: Option<String>,
}

impl StaffUser {
    pub(crate) fn from_row(u: &UserRow) -> Result<Self, DeskError> {
        Ok(Self {
            id: u.id,
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            role: u.role()?,
            agency_id: u.agency_id.clone(),
        })
    }

    /// Whether this person may see the report: agency officers only what has been sent to
    /// their agency, everyone else on staff everything.
    pub fn can_see(&self, r: &ReportRow) -> bool {
        match self.role {
            Role::Agency => {
                r.agency_id.is_some()
                    && r.agency_id == self.agency_id
                    && r.status().is_ok_and(|s| s.is_with_agency())
            }
            Role::Admin | Role::Operator | Role::Viewer => true,
        }
    }

    /// The agency whose reports alone this person sees (agency officers), for queries.
    pub(crate) fn agency_scope(&self) -> Option<String> {
        match self.role {
            Role::Agency => Some(self.agency_id.clone().unwrap_or_default()),
            _ => None,
        }
    }
}

/// One demo account and the password it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoAccount {
    pub username: String,
    pub password: String,
    pub role: Role,
    pub agency: Option<String>,
}

/// The audit action that marks a database as the demo's own.
const DEMO_MARK: &str = "demo_database";

/// The admin's work on accounts.
pub struct Accounts {
    core: Arc<DeskCore>,
}

impl Accounts {
    pub fn new(core: Arc<DeskCore>) -> Self {
        Self { core }
    }

    /// Creates an account; `by` is the admin doing it (`None` from the command line).
    pub async fn create_user(
        &self,
        by: Option<&StaffUser>,
        username: &str,
        display_name: &str,
        role: Role,
        agency: Option<&str>,
        password: &str,
    ) -> Result<StaffUser, DeskError> {
        if let Some(u) = by {
            if u.role != Role::Admin {
                return Err(DeskError::Forbidden);
            }
        }
        let username = username.trim().to_lowercase();
        let mut errs = Vec::new();
        let name_ok = (3..=32).contains(&username.len())
            && username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !name_ok {
            errs.push(FieldError {
                field: "username",
                message: "3 sampai 32 karakter: huruf kecil, angka, titik, minus, garis bawah"
                    .into(),
            });
        }
        let display = display_name.trim();
        let display = if display.is_empty() {
            username.clone()
        } else {
            display.to_string()
        };
        if display.chars().count() > 100 {
            errs.push(FieldError {
                field: "display_name",
                message: "maksimal 100 karakter".into(),
            });
        }
        let agency = agency.map(str::trim).filter(|a| !a.is_empty());
        match (role, agency) {
            (Role::Agency, None) => errs.push(FieldError {
                field: "agency",
                message: "akun petugas OPD harus terikat pada satu OPD".into(),
            }),
            (Role::Agency, Some(a)) if self.core.cfg.desk.agency(a).is_none() => {
                errs.push(FieldError {
                    field: "agency",
                    message: format!("OPD {a:?} tidak dikenal"),
                })
            }
            (Role::Admin | Role::Operator | Role::Viewer, Some(_)) => errs.push(FieldError {
                field: "agency",
                message: "hanya akun petugas OPD yang terikat pada OPD".into(),
            }),
            _ => {}
        }
        if password.chars().count() < 10 {
            errs.push(FieldError {
                field: "password",
                message: "kata sandi minimal 10 karakter".into(),
            });
        }
        if !errs.is_empty() {
            return Err(DeskError::Invalid(errs));
        }
        let hash = self.core.hasher.hash(password.to_string()).await?;
        let now = self.core.clock.now();
        let mut tx = self.core.store.begin().await?;
        if store::user_by_name(&mut tx, &username).await?.is_some() {
            return Err(invalid(
                "username",
                format!("nama akun {username:?} sudah dipakai"),
            ));
        }
        let id = store::insert_user(&mut tx, &username, &display, role, agency, &hash, now).await?;
        let actor = by.cloned().map(Actor::Staff).unwrap_or(Actor::System);
        self.core
            .audit(
                &mut tx,
                &actor,
                "user_create",
                "user",
                &username,
                None,
                Some(serde_json::json!({
                    "display_name": display, "role": role.as_str(), "agency_id": agency, "active": true
                })),
            )
            .await?;
        tx.commit().await?;
        Ok(StaffUser {
            id,
            username,
            display_name: display,
            role,
            agency_id: agency.map(str::to_string),
        })
    }

    /// Every account (admins only).
    pub async fn users(&self, by: &StaffUser) -> Result<Vec<UserRow>, DeskError> {
        if by.role != Role::Admin {
            return Err(DeskError::Forbidden);
        }
        let mut c = self.core.store.pool().acquire().await?;
        Ok(store::users(&mut c).await?)
    }

    /// Open reports a user is in charge of (admins only).
    pub async fn open_items_of(
        &self,
        by: &StaffUser,
        username: &str,
    ) -> Result<Vec<ReportRow>, DeskError> {
        if by.role != Role::Admin {
            return Err(DeskError::Forbidden);
        }
        let mut c = self.core.store.pool().acquire().await?;
        let u = store::user_by_name(&mut c, username)
            .await?
            .ok_or(DeskError::NotFound)?;
        Ok(store::open_items_of(&mut c, u.id).await?)
    }

    /// Deactivates an account (its sessions end at once) and hands its open reports to
    /// `reassign_to`, or back to the shared queue when none is given.
    pub async fn deactivate_user(
        &self,
        admin: &StaffUser,
        username: &str,
        reassign_to: Option<&str>,
    ) -> Result<usize, DeskError> {
        if admin.role != Role::Admin {
            return Err(DeskError::Forbidden);
        }
        let core = &*self.core;
        let mut tx = core.store.begin().await?;
        let u = store::user_by_name(&mut tx, &username.trim().to_lowercase())
            .await?
            .ok_or(DeskError::NotFound)?;
        if u.id == admin.id {
            return Err(invalid(
                "username",
                "tidak dapat menonaktifkan akun sendiri",
            ));
        }
        if u.active == 0 {
            return Err(invalid("username", "akun sudah nonaktif"));
        }
        let target = match reassign_to.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => {
                let t = store::user_by_name(&mut tx, &t.to_lowercase())
                    .await?
                    .filter(|t| t.active == 1)
                    .ok_or_else(|| {
                        invalid("reassign_to", format!("akun aktif {t:?} tidak ditemukan"))
                    })?;
                if t.id == u.id {
                    return Err(invalid("reassign_to", "pilih akun lain"));
                }
                Some(t)
            }
            None => None,
        };
        let now = core.clock.now();
        store::set_user_active(&mut tx, u.id, false, now).await?;
        store::delete_sessions_of(&mut tx, u.id).await?;
        let actor = Actor::Staff(admin.clone());
        core.audit(
            &mut tx,
            &actor,
            "user_deactivate",
            "user",
            &u.username,
            Some(serde_json::json!({ "active": true })),
            Some(serde_json::json!({ "active": false })),
        )
        .await?;
        let items = store::open_items_of(&mut tx, u.id).await?;
        let n = items.len();
        for before in items {
            let mut r = before.clone();
            let target_role = target.as_ref().map(|t| t.role()).transpose()?;
            if r.operator_id == Some(u.id) {
                r.operator_id = match (&target, target_role) {
                    (Some(t), Some(Role::Admin | Role::Operator)) => Some(t.id),
                    (Some(t), _) => {
                        return Err(invalid(
                            "reassign_to",
                            format!(
                                "{} bukan operator; laporan {} perlu operator",
                                t.username, r.ticket
                            ),
                        ))
                    }
                    (None, _) => None,
                };
            }
            if r.officer_id == Some(u.id) {
                r.officer_id = match (&target, target_role) {
                    (Some(t), Some(Role::Agency)) if t.agency_id == r.agency_id => Some(t.id),
                    (Some(t), _) => {
                        return Err(invalid(
                            "reassign_to",
                            format!(
                                "{} bukan petugas {}; laporan {} perlu petugas OPD yang sama",
                                t.username,
                                r.agency_id
                                    .as_deref()
                                    .map(|a| core.labels.agency_name(a))
                                    .unwrap_or_default(),
                                r.ticket
                            ),
                        ))
                    }
                    (None, _) => None,
                };
            }
            core.save(&mut tx, &actor, "reassign", &before, &mut r)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(user = %u.username, reassigned = n, "account deactivated");
        Ok(n)
    }

    /// Sets a new password (used by the demo accounts and the CLI).
    pub async fn set_password(&self, username: &str, password: &str) -> Result<(), DeskError> {
        let hash = self.core.hasher.hash(password.to_string()).await?;
        let mut tx = self.core.store.begin().await?;
        let u = store::user_by_name(&mut tx, username)
            .await?
            .ok_or(DeskError::NotFound)?;
        store::set_user_password(&mut tx, u.id, &hash).await?;
        self.core
            .audit(
                &mut tx,
                &Actor::System,
                "password_set",
                "user",
                username,
                None,
                None,
            )
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes sure the demo accounts exist, each with a fresh random password (so the printed
    /// credentials always work), and returns them for printing.
    ///
    /// Only in a demo database: one that had no account when the demo first used it (the demo
    /// marks it then, in the audit log). A database with accounts and no such mark belongs to
    /// a real desk: its accounts are left alone and the demo is refused
    /// ([`DeskError::NotDemoDatabase`]), so `simpang demo` pointed at a real desk's data can
    /// never reset its admin's password.
    pub async fn ensure_demo(&self) -> Result<Vec<DemoAccount>, DeskError> {
        {
            let mut tx = self.core.store.begin().await?;
            let marked = store::audit_has_action(&mut tx, DEMO_MARK).await?;
            if !marked {
                let accounts = store::users(&mut tx).await?.len();
                if accounts > 0 {
                    return Err(DeskError::NotDemoDatabase { accounts });
                }
                self.core
                    .audit(
                        &mut tx,
                        &Actor::System,
                        DEMO_MARK,
                        "desk",
                        "demo",
                        None,
                        None,
                    )
                    .await?;
                tx.commit().await?;
            }
        }
        let plan: [(&str, &str, Role, Option<&str>); 6] = [
            ("admin", "Admin Diskominfo", Role::Admin, None),
            ("operator", "Operator Lawang Jabo", Role::Operator, None),
            (
                "dishub",
                "Petugas Dinas Perhubungan",
                Role::Agency,
                Some("dishub"),
            ),
            ("dlh", "Petugas DLHK", Role::Agency, Some("dlh")),
            (
                "satpolpp",
                "Petugas Satpol PP",
                Role::Agency,
                Some("satpolpp"),
            ),
            ("pemantau", "Pemantau Bappeda", Role::Viewer, None),
        ];
        let mut out = Vec::new();
        for (name, display, role, agency) in plan {
            if let Some(a) = agency {
                if self.core.cfg.desk.agency(a).is_none() {
                    continue;
                }
            }
            let password = auth::random_password();
            let exists = {
                let mut c = self.core.store.pool().acquire().await?;
                store::user_by_name(&mut c, name).await?.is_some()
            };
            if exists {
                self.set_password(name, &password).await?;
            } else {
                self.create_user(None, name, display, role, agency, &password)
                    .await?;
            }
            out.push(DemoAccount {
                username: name.into(),
                password,
                role,
                agency: agency.map(str::to_string),
            });
        }
        Ok(out)
    }
}
