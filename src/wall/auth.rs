//! Sign-in to the wall: every wall route (page, MJPEG, snapshots, SSE, API, and any route added
//! to the wall's router later, WebSocket included) sits behind [`protect`]'s layer.
//!
//! Three ways in:
//!
//! - **staff of the desk** follow the desk's "Video wall" link (`[desk] wall_url`): the desk
//!   signs a one-minute, one-use token with the wall's key (`[wall.auth] key_file`), and
//!   `GET /auth/desk?token=` turns it into a wall session, if the person's desk role is one of
//!   `[wall.auth] desk_roles`;
//! - **people with a wall account** sign in at `/login` with their password;
//! - **devices** (wall controllers, VMS, scripts) send their token on every request:
//!   `Authorization: Bearer TOKEN`, or HTTP Basic with the account name and the token;
//! - **another node's wall page** opens `/live/{site}?ticket=` for a site this node serves: the
//!   signed-in page asked its own node (`/api/live/{site}`) for a ticket, which that node signs
//!   with the deployment's shared wall key, for one site, for this node's URL (`aud`), valid for
//!   [`super::ticket::TICKET_TTL_S`] seconds and taken once ([`super::ticket`]). A session cookie of
//!   one node is not sent to another (another origin), so this is how one wall plays every
//!   node's sites with the sign-in intact (docs/deploy.md, "One wall for all nodes").
//!
//! A browser session is an HMAC-signed cookie (`HttpOnly`, `SameSite=Lax`, `Secure` when
//! configured) that names the person and ends after `session_hours`; a wall account's session
//! ends too when the account is removed or its password changes. Wrong passwords back off per
//! account and address like the desk's ([`crate::guard::LoginGuard`]). Each signed-in client
//! may have `max_streams_per_client` responses open at once (streams count until they end).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use futures::StreamExt;
use parking_lot::Mutex;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::accounts::{self, Kind};
use super::ticket::Tickets;
use super::WallError;
use crate::config::{Config, WallAuthConfig};
use crate::guard::cookie::cookie;
use crate::guard::{
    client_key, constant_time_eq, random_token, same_site_path, Handoff, Hasher, LoginGuard,
    Policy, Signer, HANDOFF_PURPOSE,
};

pub const SESSION_COOKIE: &str = "simpang_wall_session";
const LOGIN_CSRF_COOKIE: &str = "simpang_wall_login";
const DEVICE_COOKIE: &str = "simpang_wall_device";
const SESSION_PURPOSE: &str = "wall-session";
const DEVICE_PURPOSE: &str = "wall-device";

/// Who is watching; in every protected request's extensions.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// `person:NAME`, `device:NAME` or `desk:NAME`: what per-client limits count by.
    pub key: String,
    pub name: String,
    /// Let in by a live ticket of another node's wall (one `/live/{site}` socket): its page is
    /// of another origin, which the live route's origin check lets through for it alone.
    pub ticket: bool,
}

/// Where a session came from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    Person,
    Desk,
}

/// What a session cookie says.
#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    src: Source,
    /// The desk role (desk sessions).
    #[serde(default)]
    role: Option<String>,
    exp: i64,
    /// A fingerprint of the wall account's password hash: a new password ends old sessions.
    #[serde(default)]
    pw: Option<String>,
}

/// A trusted browser of a wall account (its own count of wrong passwords).
#[derive(Debug, Serialize, Deserialize)]
struct DeviceClaims {
    u: String,
    d: String,
}

fn fingerprint(hash: &str) -> String {
    hex::encode(&Sha256::digest(hash.as_bytes())[..8])
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The wall's sign-in: accounts, keys, backoff, per-client stream counts.
pub struct WallAuth {
    accounts: Arc<accounts::Store>,
    signer: Signer,
    hasher: Hasher,
    guard: LoginGuard,
    cfg: WallAuthConfig,
    streams: Arc<Mutex<HashMap<String, u32>>>,
    /// Desk hand-off nonces already used, until they expire.
    used: Mutex<HashMap<String, i64>>,
    /// Live tickets for other nodes' walls, and the check of those made for this one.
    tickets: Tickets,
    refused: IntCounterVec,
    signins: IntCounterVec,
}

impl WallAuth {
    /// Reads the accounts and the key (creating the key file on first start).
    pub fn start(cfg: &Config, registry: &Registry) -> Result<Arc<Self>, WallError> {
        let signer = Signer::load_or_create(&cfg.wall_key_path())
            .map_err(|e| WallError::Other(e.to_string()))?;
        let accounts = accounts::Store::open(&cfg.wall_accounts_path())
            .map_err(|e| WallError::Other(e.to_string()))?;
        let refused = IntCounterVec::new(
            Opts::new(
                "simpang_wall_auth_refused_total",
                "Wall requests refused by sign-in: no or wrong credentials, a bad live ticket, too many streams",
            ),
            &["reason"],
        )?;
        let signins = IntCounterVec::new(
            Opts::new(
                "simpang_wall_signins_total",
                "Wall sign-ins (password, desk) and failed password tries",
            ),
            &["via"],
        )?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(signins.clone()))?;
        let tickets = Tickets::new(signer.clone(), cfg.wall.advertised_url());
        Ok(Arc::new(Self {
            accounts: Arc::new(accounts),
            signer,
            hasher: Hasher::new(1, 8),
            guard: LoginGuard::new(Policy::default()),
            cfg: cfg.wall.auth.clone(),
            streams: Arc::default(),
            used: Mutex::default(),
            tickets,
            refused,
            signins,
        }))
    }

    /// The accounts (RTSP out checks device tokens against them too).
    pub fn accounts(&self) -> Arc<accounts::Store> {
        self.accounts.clone()
    }

    /// Who sent these headers, if anyone the wall lets in.
    pub fn principal(&self, h: &HeaderMap) -> Option<Principal> {
        let snap = self.accounts.current();
        if let Some(v) = h.get(header::AUTHORIZATION) {
            let v = v.to_str().ok()?;
            let (scheme, rest) = v.split_once(' ')?;
            let device = if scheme.eq_ignore_ascii_case("bearer") {
                snap.device_by_token(rest.trim())
            } else if scheme.eq_ignore_ascii_case("basic") {
                let (name, secret) = basic_pair(rest)?;
                snap.device(&name, &secret)
            } else {
                None
            };
            return device.map(|a| Principal {
                key: format!("device:{}", a.name),
                name: a.name.clone(),
                ticket: false,
            });
        }
        let token = cookie(h, SESSION_COOKIE)?;
        let c: SessionClaims = self.signer.verify(SESSION_PURPOSE, &token)?;
        if c.exp <= now() {
            return None;
        }
        match c.src {
            Source::Person => {
                let a = snap.get(&c.sub).filter(|a| a.kind == Kind::Person)?;
                let pw = a.password_hash.as_deref().map(fingerprint);
                (pw.is_some() && pw == c.pw).then(|| Principal {
                    key: format!("person:{}", a.name),
                    name: a.name.clone(),
                    ticket: false,
                })
            }
            Source::Desk => {
                let role = c.role.as_deref()?;
                self.cfg
                    .desk_roles
                    .iter()
                    .any(|r| r == role)
                    .then(|| Principal {
                        key: format!("desk:{}", c.sub),
                        name: c.sub.clone(),
                        ticket: false,
                    })
            }
        }
    }

    /// A ticket for `p` to open `/live/{site}` once at the wall `aud` (another node's advertised
    /// URL, from the site's status), signed with the deployment's shared wall key.
    pub fn live_ticket(&self, site: &str, p: &Principal, aud: &str) -> String {
        self.tickets.issue(site, &p.name, aud)
    }

    /// The principal of a `/live/{site}?ticket=` request: `Ok(None)` without a ticket,
    /// `Err(why)` for a refused one.
    fn ticket_principal(&self, uri: &axum::http::Uri) -> Result<Option<Principal>, &'static str> {
        Ok(self.tickets.check(uri)?.map(|sub| Principal {
            key: format!("ticket:{sub}"),
            name: sub,
            ticket: true,
        }))
    }

    /// A place for one more open response of `key`, or `None` at the limit.
    fn slot(&self, key: &str) -> Option<StreamSlot> {
        let mut m = self.streams.lock();
        let n = m.entry(key.to_string()).or_insert(0);
        if *n >= self.cfg.max_streams_per_client {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            _held: Arc::new(SlotInner {
                streams: self.streams.clone(),
                key: key.to_string(),
            }),
        })
    }

    fn session_cookie(&self, claims: &SessionClaims) -> String {
        let token = self.signer.sign(SESSION_PURPOSE, claims);
        let max_age = i64::from(self.cfg.session_hours) * 3600;
        format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            self.secure()
        )
    }

    fn secure(&self) -> &'static str {
        if self.cfg.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    }

    /// Answer to a request without (valid) credentials: browsers asking for a page go to the
    /// sign-in page; everything else gets 401 (with a Basic challenge for non-browser clients,
    /// so VMS software and curl know to send their token).
    fn unauthorized(&self, req: &Request, had_credentials: bool) -> Response {
        let reason = if had_credentials {
            "bad_credentials"
        } else {
            "no_credentials"
        };
        self.refused.with_label_values(&[reason]).inc();
        let h = req.headers();
        let wants_page = req.method() == Method::GET
            && (h.get("sec-fetch-dest").is_some_and(|v| v == "document")
                || h.get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html")));
        if wants_page && !had_credentials {
            let next = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            let to = format!("/login?next={}", url_encode(next));
            return Redirect::to(&to).into_response();
        }
        let mut res = (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "silakan masuk terlebih dahulu (sign-in required)\n",
        )
            .into_response();
        if !h.contains_key("sec-fetch-mode") {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"simpang wall\", charset=\"UTF-8\""),
            );
        }
        res
    }
}

/// (name, secret) of a `Basic` credential's base64 value (HTTP and RTSP alike).
pub(crate) fn basic_pair_of(b64: &str) -> Option<(String, String)> {
    basic_pair(b64)
}

fn basic_pair(b64: &str) -> Option<(String, String)> {
    if b64.len() > 1024 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (name, secret) = text.split_once(':')?;
    Some((name.to_string(), secret.to_string()))
}

/// One open response of a client; the count goes down when the last clone is dropped (the
/// response's body ended, or a WebSocket handler that kept it let it go).
#[derive(Clone)]
pub struct StreamSlot {
    _held: Arc<SlotInner>,
}

struct SlotInner {
    streams: Arc<Mutex<HashMap<String, u32>>>,
    key: String,
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        let mut m = self.streams.lock();
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.key);
            }
        }
    }
}

/// Puts every route of `router` behind the wall's sign-in, and adds the sign-in routes
/// (`/login`, `/logout`, `/auth/desk`) in front of it.
pub fn protect(router: Router, auth: Arc<WallAuth>) -> Router {
    let public = Router::new()
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", post(logout))
        .route("/auth/desk", get(desk_handoff))
        // Browsers ask for it on every page, the sign-in page included: an empty answer, not a
        // 401 in the console (it shows nothing of the wall).
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .with_state(auth.clone());
    // An explicit fallback, so that unknown paths sit behind the layer too: a stranger learns
    // nothing, not even which routes exist.
    router
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn_with_state(auth, require))
        .merge(public)
        .layer(axum::middleware::from_fn(security_headers))
}

/// The layer: a principal, a stream slot held while the response is sent, or a refusal.
async fn require(State(auth): State<Arc<WallAuth>>, mut req: Request, next: Next) -> Response {
    let p = match auth.principal(req.headers()) {
        Some(p) => Some(p),
        None => match auth.ticket_principal(req.uri()) {
            Ok(p) => p,
            Err(why) => {
                auth.refused.with_label_values(&["bad_ticket"]).inc();
                let client = req
                    .extensions()
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|c| client_key(c.0.ip()))
                    .unwrap_or_default();
                tracing::warn!(%client, path = %req.uri().path(), why, "live ticket refused");
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!("tiket tidak berlaku (live ticket refused: {why})\n"),
                )
                    .into_response();
            }
        },
    };
    let Some(p) = p else {
        let had = req.headers().contains_key(header::AUTHORIZATION)
            || cookie(req.headers(), SESSION_COOKIE).is_some();
        return auth.unauthorized(&req, had);
    };
    let Some(slot) = auth.slot(&p.key) else {
        auth.refused.with_label_values(&["streams"]).inc();
        tracing::debug!(client = %p.key, "too many open responses");
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            "terlalu banyak aliran terbuka untuk akun ini (too many open streams)\n",
        )
            .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return res;
    };
    req.extensions_mut().insert(p);
    req.extensions_mut().insert(slot.clone());
    let res = next.run(req).await;
    if res.body().size_hint().exact().is_some() {
        // A whole answer: nothing stays open.
        return res;
    }
    let (parts, body) = res.into_parts();
    let held = body.into_data_stream().map(move |chunk| {
        let _ = &slot;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(held))
}

/// Headers every wall response carries: no framing, no MIME sniffing, no referrer elsewhere.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    res
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `?next=` of the sign-in page.
#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: Option<String>,
}

fn login_page(auth: &WallAuth, status: StatusCode, error: Option<&str>, next: &str) -> Response {
    let csrf = random_token();
    let desk = auth
        .cfg
        .desk_url
        .as_deref()
        .map(|u| {
            format!(
                "<p class=\"alt\"><a href=\"{}/wall\">Masuk lewat Meja Pengaduan (akun desk)</a></p>",
                html_escape(u.trim_end_matches('/'))
            )
        })
        .unwrap_or_default();
    let error = error
        .map(|e| format!("<p class=\"err\" role=\"alert\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    let page = format!(
        r#"<!doctype html>
<html lang="id"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Masuk · Video Wall</title>
<style>
body{{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:#0b1220;color:#e5e7eb;font:16px system-ui,sans-serif}}
form{{background:#111a2e;padding:2rem;border-radius:10px;width:min(22rem,90vw);box-shadow:0 10px 30px #0008}}
h1{{font-size:1.3rem;margin:0 0 1rem}}label{{display:block;margin:.8rem 0 .3rem}}
input{{width:100%;box-sizing:border-box;padding:.6rem;border-radius:6px;border:1px solid #334155;background:#0b1220;color:#e5e7eb}}
button{{margin-top:1.2rem;width:100%;padding:.7rem;border:0;border-radius:6px;background:#2563eb;color:#fff;font-weight:600}}
.err{{background:#7f1d1d;padding:.6rem;border-radius:6px}}.alt a{{color:#93c5fd}}
</style></head><body>
<form method="post" action="/login" id="login">
<h1>Video Wall · Command Center</h1>{error}
<input type="hidden" name="csrf" value="{csrf}"><input type="hidden" name="next" value="{next}">
<label for="username">Nama akun</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Kata sandi</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Masuk</button>{desk}
</form></body></html>"#,
        next = html_escape(next),
    );
    let mut res = (status, Html(page)).into_response();
    let c = format!(
        "{LOGIN_CSRF_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        auth.secure()
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn login_form(State(auth): State<Arc<WallAuth>>, Query(q): Query<NextQuery>) -> Response {
    let next = q.next.as_deref().and_then(same_site_path).unwrap_or("/");
    login_page(&auth, StatusCode::OK, None, next)
}

/// The sign-in form.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: String,
}

async fn login_submit(
    State(auth): State<Arc<WallAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = same_site_path(&f.next).unwrap_or("/").to_string();
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&f.csrf, &expected) {
        return login_page(
            &auth,
            StatusCode::FORBIDDEN,
            Some("Formulir kedaluwarsa; silakan coba lagi."),
            &next,
        );
    }
    let name = f.username.trim().to_lowercase();
    let client = client_key(peer.ip());
    let device = cookie(&headers, DEVICE_COOKIE)
        .and_then(|c| auth.signer.verify::<DeviceClaims>(DEVICE_PURPOSE, &c))
        .filter(|c| c.u == name)
        .map(|c| c.d);
    let wrong = || {
        login_page(
            &auth,
            StatusCode::UNAUTHORIZED,
            Some("Nama akun atau kata sandi salah."),
            &next,
        )
    };
    if name.len() > 64 || f.password.len() > 1024 {
        return wrong();
    }
    let attempt = match auth.guard.begin(&name, &client, device.as_deref(), now()) {
        Ok(a) => a,
        Err(wait) => {
            let mut res = login_page(
                &auth,
                StatusCode::TOO_MANY_REQUESTS,
                Some(&format!(
                    "Terlalu banyak percobaan gagal. Coba lagi dalam {wait} detik."
                )),
                &next,
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return res;
        }
    };
    let snap = auth.accounts.current();
    let account = snap.get(&name).filter(|a| a.kind == Kind::Person).cloned();
    let hash = account
        .as_ref()
        .and_then(|a| a.password_hash.clone())
        .unwrap_or_else(|| crate::guard::secret::dummy_hash().to_string());
    let ok = match auth.hasher.verify(f.password.clone(), hash.clone()).await {
        Ok(ok) => ok && account.is_some(),
        Err(e) => {
            attempt.cancelled();
            tracing::warn!(error = %e, "wall sign-in not checked");
            return login_page(
                &auth,
                StatusCode::SERVICE_UNAVAILABLE,
                Some("Server sedang sibuk; coba lagi sebentar lagi."),
                &next,
            );
        }
    };
    if !ok {
        attempt.failed();
        auth.signins.with_label_values(&["failed"]).inc();
        tracing::warn!(account = %name, %client, "wall sign-in failed");
        return wrong();
    }
    attempt.succeeded();
    auth.signins.with_label_values(&["password"]).inc();
    tracing::info!(account = %name, %client, "wall sign-in");
    let session = auth.session_cookie(&SessionClaims {
        sub: name.clone(),
        src: Source::Person,
        role: None,
        exp: now() + i64::from(auth.cfg.session_hours) * 3600,
        pw: Some(fingerprint(&hash)),
    });
    let device = auth.signer.sign(
        DEVICE_PURPOSE,
        &DeviceClaims {
            u: name,
            d: device.unwrap_or_else(|| random_token()[..24].to_string()),
        },
    );
    let device = format!(
        "{DEVICE_COOKIE}={device}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=31536000{}",
        auth.secure()
    );
    let mut res = Redirect::to(&next).into_response();
    for c in [session, device] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

async fn logout(State(auth): State<Arc<WallAuth>>) -> Response {
    let mut res = Redirect::to("/login").into_response();
    let c = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        auth.secure()
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// `?token=` of the desk's hand-off.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HandoffQuery {
    token: String,
}

async fn desk_handoff(
    State(auth): State<Arc<WallAuth>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<HandoffQuery>,
) -> Response {
    let t = now();
    let claims = auth
        .signer
        .verify::<Handoff>(HANDOFF_PURPOSE, &q.token)
        .filter(|c| c.exp > t && c.exp <= t + 600);
    let refuse = |why: &str| {
        auth.refused.with_label_values(&["bad_handoff"]).inc();
        tracing::warn!(client = %client_key(peer.ip()), why, "desk hand-off refused");
        login_page(
            &auth,
            StatusCode::FORBIDDEN,
            Some("Tautan dari Meja Pengaduan tidak berlaku lagi; masuk lewat desk sekali lagi."),
            "/",
        )
    };
    let Some(c) = claims else {
        return refuse("bad or expired token");
    };
    if !auth.cfg.desk_roles.contains(&c.role) {
        return refuse("desk role not let in");
    }
    {
        let mut used = auth.used.lock();
        used.retain(|_, exp| *exp > t);
        if used.len() > 10_000 || used.insert(c.n.clone(), c.exp).is_some() {
            drop(used);
            return refuse("token already used");
        }
    }
    auth.signins.with_label_values(&["desk"]).inc();
    tracing::info!(account = %c.sub, role = %c.role, client = %client_key(peer.ip()), "wall sign-in through the desk");
    let cookie = auth.session_cookie(&SessionClaims {
        sub: c.sub,
        src: Source::Desk,
        role: Some(c.role),
        exp: t + i64::from(auth.cfg.session_hours) * 3600,
        pw: None,
    });
    let mut res = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_pairs() {
        let enc = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        assert_eq!(
            basic_pair(&enc("vms:abc:d")),
            Some(("vms".into(), "abc:d".into()))
        );
        assert_eq!(basic_pair(&enc("novalue")), None);
        assert_eq!(basic_pair("***"), None);
        assert_eq!(basic_pair(&"A".repeat(2000)), None);
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("\"><script>x</script>"),
            "&quot;&gt;&lt;script&gt;x&lt;/script&gt;"
        );
    }
}
