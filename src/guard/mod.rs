//! What every listener of simpang uses on a hostile network (neutral ground: no stage imports
//! here, the desk and the wall both use it; docs/security.md has the threat model):
//!
//! - [`serve`]: HTTP with header and request timeouts, a write-stall timeout and connection
//!   caps (total and per client address), for the desk, the wall and the metrics listener;
//! - [`throttle`]: token-bucket rate limits per key, and the backoff of password and PIN
//!   guesses (counted before the secret is checked; no lock an attacker can trigger);
//! - [`redirect`]: where a browser may go after signing in (same-site paths only);
//! - [`cookie`]: a cookie's value from a request;
//! - [`secret`]: argon2 hashing on a bounded pool, random tokens, HMAC-signed claims under a
//!   key file (the wall's session cookies, the desk's hand-off to the wall, trusted devices).

pub mod cookie;
pub mod redirect;
pub mod secret;
pub mod serve;
pub mod throttle;

pub use redirect::same_site_path;
pub use secret::{
    constant_time_eq, random_token, token_hash, Handoff, HashError, Hasher, KeyError, Signer,
    HANDOFF_PURPOSE,
};
pub use serve::{client_key, serve, Limits};
pub use throttle::{Attempt, Buckets, LoginGuard, Policy};
