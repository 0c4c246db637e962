//! Signing in and out: password check with lockout after repeated failures (per account name
//! and per client address), session tokens (the database keeps only their hash), the CSRF
//! token of each session.

use std::sync::Arc;

use super::accounts::StaffUser;
use super::auth::{self, RateLimiter};
use super::core::{Actor, DeskCore};
use super::error::{invalid, DeskError};
use super::store;

/// A successful login: the token for the cookie, the session's CSRF token, the person.
pub struct Login {
    pub token: String,
    pub csrf: String,
    pub user: StaffUser,
}

/// Staff sessions; owns the login failure counts.
pub struct Sessions {
    core: Arc<DeskCore>,
    login_limiter: RateLimiter,
}

impl Sessions {
    pub fn new(core: Arc<DeskCore>) -> Self {
        let d = &core.cfg.desk;
        Self {
            login_limiter: RateLimiter::new(d.login_max_failures, d.login_window_s),
            core,
        }
    }

    /// Checks a login from `client` (its address) and opens a session.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<Login, DeskError> {
        let core = &*self.core;
        let now = core.clock.now();
        let name = username.trim().to_lowercase();
        let keys = [format!("user:{name}"), format!("ip:{client}")];
        for k in &keys {
            self.login_limiter
                .check(k, now)
                .map_err(DeskError::RateLimited)?;
        }
        let mut c = core.store.pool().acquire().await?;
        let user = store::user_by_name(&mut c, &name).await?;
        drop(c);
        // An unknown or inactive account is checked against a dummy hash, so it takes as long
        // as a wrong password and the timing tells nothing.
        let hash = user
            .as_ref()
            .filter(|u| u.active == 1)
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| auth::dummy_hash().to_string());
        let ok = auth::verify_blocking(password.to_string(), hash).await?
            && user.as_ref().is_some_and(|u| u.active == 1);
        let mut tx = core.store.begin().await?;
        let Some(user) = user.filter(|_| ok) else {
            for k in &keys {
                self.login_limiter.fail(k, now);
            }
            core.audit(
                &mut tx,
                &Actor::System,
                "login_failed",
                "user",
                &name,
                None,
                Some(serde_json::json!({ "client": client })),
            )
            .await?;
            tx.commit().await?;
            return Err(invalid("password", "nama akun atau kata sandi salah"));
        };
        self.login_limiter.clear(&keys[0]);
        let staff = StaffUser::from_row(&user)?;
        let token = auth::random_token();
        let csrf = auth::random_token();
        let expires = now + i64::from(core.cfg.desk.session_hours) * 3600;
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
