//! The way from the desk to the video wall: a signed-in staff member whose role the wall lets
//! in (`[wall.auth] desk_roles`) follows `GET /wall` and arrives signed in at the wall
//! (`[desk] wall_url`), with a one-minute, one-use token signed by the wall's key. The wall
//! then keeps its own session; the desk's session cookie never leaves the desk.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};

use super::{url_encode, AppState, PageError, PageSession};
use crate::desk::accounts::StaffUser;
use crate::desk::core::Actor;
use crate::desk::{Desk, DeskError};
use crate::guard::{random_token, Handoff, HANDOFF_PURPOSE};

/// How long a hand-off token is good for.
const HANDOFF_S: i64 = 60;

/// Whether the desk offers `u` the way to the wall.
pub fn offered(desk: &Desk, u: &StaffUser) -> bool {
    desk.desk_config().wall_url.is_some()
        && desk.core.keys.wall.is_some()
        && desk
            .config()
            .wall
            .auth
            .desk_roles
            .iter()
            .any(|r| r == u.role.as_str())
}

pub async fn handoff(
    State(desk): State<AppState>,
    PageSession(s): PageSession,
) -> Result<Response, PageError> {
    let (Some(base), Some(signer)) = (&desk.desk_config().wall_url, &desk.core.keys.wall) else {
        return Err(PageError(DeskError::NotFound));
    };
    if !offered(&desk, &s.user) {
        return Err(PageError(DeskError::Forbidden));
    }
    let now = desk.clock.now();
    let claims = Handoff {
        sub: s.user.username.clone(),
        name: s.user.display_name.clone(),
        role: s.user.role.as_str().to_string(),
        exp: now + HANDOFF_S,
        n: random_token(),
    };
    let token = signer.sign(HANDOFF_PURPOSE, &claims);
    let mut tx = desk.core.store.begin().await.map_err(DeskError::from)?;
    desk.core
        .audit(
            &mut tx,
            &Actor::Staff(s.user.clone()),
            "wall_handoff",
            "user",
            &s.user.username,
            None,
            Some(serde_json::json!({ "wall": base })),
        )
        .await?;
    tx.commit().await.map_err(DeskError::from)?;
    let to = format!(
        "{}/auth/desk?token={}",
        base.trim_end_matches('/'),
        url_encode(&token)
    );
    Ok(Redirect::to(&to).into_response())
}
