//! Live tickets: how one node's wall page plays a site another node serves with the sign-in
//! intact (docs/deploy.md, "One wall for all nodes"). A session cookie of node A is not sent to
//! node B (another origin), so A, having checked the page's session, signs a ticket with the
//! deployment's shared wall key (`[wall.auth] key_file`) for one site, for B's advertised URL
//! (`aud`) and [`TICKET_TTL_S`] seconds; the page opens `ws(s)://B/live/{site}?ticket=…` and B
//! checks signature, expiry, site and audience, and takes each ticket once.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::guard::{random_token, Signer};

/// Purpose word of the tickets' MAC: a session cookie or hand-off token is never a ticket.
pub const TICKET_PURPOSE: &str = "wall-live-ticket";
/// How long a ticket is good for: the page asks for one right before it connects.
pub const TICKET_TTL_S: i64 = 30;
/// Used nonces remembered at most (each only until its ticket expires).
const MAX_USED: usize = 10_000;

/// What a ticket says: the holder may open `/live/{site}` at the wall `aud` once, before `exp`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LiveTicket {
    pub site: String,
    /// Who asked, at the wall that signed it (for logs and per-client stream counts).
    pub sub: String,
    /// The wall it is for (its advertised URL): a ticket sent to a wall other than the one a
    /// site's status names (a forged status) is refused by the real one.
    pub aud: String,
    pub exp: i64,
    pub n: String,
}

/// Signs tickets for other walls and checks the ones made for this wall.
pub struct Tickets {
    signer: Signer,
    /// This wall's advertised URL: the audience of the tickets it takes.
    own_url: String,
    /// Nonces already used, until their tickets expire.
    used: Mutex<HashMap<String, i64>>,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Tickets {
    pub fn new(signer: Signer, own_url: String) -> Self {
        Self {
            signer,
            own_url,
            used: Mutex::default(),
        }
    }

    /// A ticket for `sub` to open `/live/{site}` once at the wall `aud`.
    pub fn issue(&self, site: &str, sub: &str, aud: &str) -> String {
        self.signer.sign(
            TICKET_PURPOSE,
            &LiveTicket {
                site: site.to_string(),
                sub: sub.to_string(),
                aud: aud.to_string(),
                exp: now() + TICKET_TTL_S,
                n: random_token()[..24].to_string(),
            },
        )
    }

    /// Who a `/live/{site}?ticket=` request comes from: `Ok(None)` when it carries no ticket,
    /// `Err(why)` for a ticket that is refused (route, signature, expiry, another site, another
    /// wall, used before).
    pub fn check(&self, uri: &axum::http::Uri) -> Result<Option<String>, &'static str> {
        let Some(token) = uri.query().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "ticket")
                .map(|(_, v)| v.into_owned())
        }) else {
            return Ok(None);
        };
        let Some(site) = uri.path().strip_prefix("/live/") else {
            return Err("a ticket is good for /live/{site} only");
        };
        let t = now();
        let c = self
            .signer
            .verify::<LiveTicket>(TICKET_PURPOSE, &token)
            .ok_or("bad signature (is [wall.auth] key_file the same file on every node?)")?;
        if c.exp <= t || c.exp > t + 2 * TICKET_TTL_S {
            return Err("expired");
        }
        if c.site != site {
            return Err("made for another site");
        }
        if c.aud != self.own_url {
            return Err("made for another wall");
        }
        let mut used = self.used.lock();
        used.retain(|_, exp| *exp > t);
        if used.len() > MAX_USED || used.insert(c.n.clone(), c.exp).is_some() {
            return Err("already used");
        }
        Ok(Some(c.sub))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_one_site_at_one_wall_once() {
        let key = Signer::from_key([3; 32]);
        let here = "http://wall-b.test:8080";
        let b = Tickets::new(key.clone(), here.into());
        let uri = |path: &str, t: &str| -> axum::http::Uri {
            format!("{path}?ticket={t}").parse().unwrap()
        };
        let t = b.issue("a", "op", here);
        assert_eq!(
            b.check(&uri("/live/b", &t)).err(),
            Some("made for another site")
        );
        assert_eq!(
            b.check(&uri("/api/wall", &t)).err(),
            Some("a ticket is good for /live/{site} only")
        );
        assert_eq!(b.check(&uri("/live/a", &t)), Ok(Some("op".into())));
        assert_eq!(b.check(&uri("/live/a", &t)).err(), Some("already used"));
        let elsewhere = b.issue("a", "op", "http://wall-c.test:8080");
        assert_eq!(
            b.check(&uri("/live/a", &elsewhere)).err(),
            Some("made for another wall")
        );
        let made = |signer: &Signer, exp: i64, n: &str| {
            signer.sign(
                TICKET_PURPOSE,
                &LiveTicket {
                    site: "a".into(),
                    sub: "op".into(),
                    aud: here.into(),
                    exp,
                    n: n.into(),
                },
            )
        };
        assert_eq!(
            b.check(&uri("/live/a", &made(&key, now() - 1, "n1"))).err(),
            Some("expired")
        );
        assert_eq!(
            b.check(&uri("/live/a", &made(&key, now() + 3600, "n2")))
                .err(),
            Some("expired"),
            "a ticket good for longer than it may be"
        );
        assert!(b
            .check(&uri(
                "/live/a",
                &made(&Signer::from_key([9; 32]), now() + 10, "n3")
            ))
            .unwrap_err()
            .starts_with("bad signature"));
        // Another purpose's token (a session cookie) is not a ticket.
        let session = key.sign("wall-session", &serde_json::json!({"site": "a"}));
        assert!(b.check(&uri("/live/a", &session)).is_err());
        assert_eq!(b.check(&"/live/a".parse().unwrap()), Ok(None));
        assert_eq!(
            b.check(&uri("/live/a", &made(&key, now() + 10, "n4"))),
            Ok(Some("op".into()))
        );
    }
}
