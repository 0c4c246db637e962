//! Signing in and out: the password check behind the backoff of wrong guesses
//! ([`crate::guard::LoginGuard`]: per account and client address, per trusted browser, per
//! client over all accounts, and a slow-down of an account under a distributed attack; never a
//! lock an attacker can set off), session tokens (the database keeps only their hash), the
//! CSRF token of each session, and the trusted-device cookie a successful sign-in leaves.

use std::sync::Arc;

use super::accounts::StaffUser;
use super::auth::{self, DeviceClaims, DEVICE_PURPOSE};
use super::core::{Actor, DeskCore};
use super::error::{invalid, DeskError};
use super::store;
use crate::guard::{LoginGuard, Policy};

/// A successful login: the token for the cookie, the session's CSRF token, the person, and the
/// trusted-device cookie value for this browser.
pub struct Login {
    pub token: String,
    pub csrf: String,
    pub user: StaffUser,
    pub device: String,
}

/// Staff sessions; owns the count of wrong passwords.
pub struct Sessions {
    core: Arc<DeskCore>,
    guard: LoginGuard,
}

/// The backoff of wrong passwords and PINs, from `[desk]`.
pub(crate) fn policy(d: &crate::config::DeskConfig) -> Policy {
    let secs = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    Policy {
        free_failures: d.login_max_failures,
        window_s: secs(d.login_window_s),
        max_backoff_s: secs(d.login_max_backoff_s),
        client_free_failures: d.login_client_max_failures,
        account_free_failures: d.login_account_max_failures,
        account_slowdown_s: secs(d.login_account_slowdown_s),
    }
}

impl Sessions {
    pub fn new(core: Arc<DeskCore>) -> Self {
        Self {
            guard: LoginGuard::new(policy(&core.cfg.desk)),
            core,
        }
    }

    /// The trusted-device id in `cookie`, when it was given to a browser that signed in to
    /// `account`.
    fn device_of(&self, account: &str, cookie: Option<&str>) -> Option<String> {
        let c: DeviceClaims = self.core.keys.device.verify(DEVICE_PURPOSE, cookie?)?;
        (c.u == account).then_some(c.d)
    }

    /// Checks a login from `client` (its address key), with the trusted-device cookie the
    /// browser sent (if any), and opens a session.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
        device_cookie: Option<&str>,
    ) -> Result<Login, DeskError> {
        let core = &*self.core;
        let now = core.clock.now();
        let name = username.trim().to_lowercase();
        if name.len() > 64 || password.len() > 1024 {
            return Err(invalid("password", "nama akun atau kata sandi salah"));
        }
        let device = self.device_of(&name, device_cookie);
        // The failure is counted here, before the check: parallel guesses cannot all pass.
        let attempt = match self.guard.begin(&name, client, device.as_deref(), now) {
            Ok(a) => a,
            Err(wait) => {
                tracing::debug!(account = %name, client, wait, "sign-in refused: backing off");
                return Err(DeskError::RateLimited(wait));
            }
        };
        let user = {
            let mut c = core.store.pool().acquire().await?;
            store::user_by_name(&mut c, &name).await?
        };
        // An unknown or inactive account is checked against a dummy hash, so it takes as long
        // as a wrong password and the timing tells nothing.
        let hash = user
            .as_ref()
            .filter(|u| u.active == 1)
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| auth::dummy_hash().to_string());
        let ok = match core.hasher.verify(password.to_string(), hash).await {
            Ok(ok) => ok && user.as_ref().is_some_and(|u| u.active == 1),
            Err(e) => {
                // Not checked (busy, or a server fault): not the guesser's failure.
                attempt.cancelled();
                return Err(e.into());
            }
        };
        let Some(user) = user.filter(|_| ok) else {
            attempt.failed();
            let mut tx = core.store.begin().await?;
            core.audit(
                &mut tx,
                &Actor::System,
                "login_failed",
                "user",
                &name,
                None,
                Some(serde_json::json!({ "client": client, "trusted_device": device.is_some() })),
            )
            .await?;
            tx.commit().await?;
            return Err(invalid("password", "nama akun atau kata sandi salah"));
        };
        attempt.succeeded();
        let staff = StaffUser::from_row(&user)?;
        let token = auth::random_token();
        let csrf = auth::random_token();
        let expires = now + i64::from(core.cfg.desk.session_hours) * 3600;
        let device_cookie = core.keys.device.sign(
            DEVICE_PURPOSE,
            &DeviceClaims {
                u: name.clone(),
                d: device.unwrap_or_else(auth::new_device_id),
            },
        );
        let mut tx = core.store.begin().await?;
        store::purge_sessions(&mut tx, now).await?;
        store::insert_session(
            &mut tx,
            &auth::token_hash(&token),
            user.id,
            &csrf,
            now,
            expires,
        )
        .await?;
        core.audit(
            &mut tx,
            &Actor::Staff(staff.clone()),
            "login",
            "user",
            &staff.username,
            None,
            Some(serde_json::json!({ "client": client })),
        )
        .await?;
        tx.commit().await?;
        Ok(Login {
            token,
            csrf,
            user: staff,
            device: device_cookie,
        })
    }

    /// The user and CSRF token behind a session cookie's token.
    pub async fn session(&self, token: &str) -> Result<Option<(StaffUser, String)>, DeskError> {
        let mut c = self.core.store.pool().acquire().await?;
        match store::session(&mut c, &auth::token_hash(token), self.core.clock.now()).await? {
            Some((u, csrf)) => Ok(Some((StaffUser::from_row(&u)?, csrf))),
            None => Ok(None),
        }
    }

    /// Ends the session behind `token`.
    pub async fn logout(&self, token: &str) -> Result<(), DeskError> {
        let mut c = self.core.store.pool().acquire().await?;
        store::delete_session(&mut c, &auth::token_hash(token)).await?;
        Ok(())
    }
}
