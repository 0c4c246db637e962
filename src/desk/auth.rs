//! Passwords, session tokens, CSRF tokens and login rate limiting.
//!
//! Passwords (and reporters' PINs) are argon2id hashes in PHC format. A session cookie holds a
//! random token; the database keeps only its SHA-256, so a leaked database opens no session.
//! Each session has its own CSRF token, checked on every form post and API change.

use std::collections::{HashMap, VecDeque};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use parking_lot::Mutex;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Why a password could not be hashed or checked (a server fault, never the user's).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("password worker thread: {0}")]
    Worker(String),
}

/// Hashes a password (or PIN) with a fresh salt. CPU-heavy: call from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// True when `password` matches the stored hash; a malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// [`hash_password`] on a blocking thread, so argon2 does not stall the async workers.
pub async fn hash_blocking(secret: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || hash_password(&secret))
        .await
        .map_err(|e| AuthError::Worker(e.to_string()))?
}

/// [`verify_password`] on a blocking thread.
pub async fn verify_blocking(secret: String, hash: String) -> Result<bool, AuthError> {
    tokio::task::spawn_blocking(move || verify_password(&secret, &hash))
        .await
        .map_err(|e| AuthError::Worker(e.to_string()))
}

/// A hash of a password nobody knows, compared against when the account does not exist, so a
/// login for an unknown name takes as long as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password(&random_token()).unwrap_or_default())
}

/// 256 random bits, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A six-digit PIN for a citizen reporter.
pub fn random_pin() -> String {
    format!("{:06}", OsRng.next_u32() % 1_000_000)
}

/// A readable random password for demo and first accounts.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut out = String::with_capacity(14);
    for i in 0..12 {
        if i == 4 || i == 8 {
            out.push('-');
        }
        let idx = (OsRng.next_u32() as usize) % ALPHABET.len();
        out.push(char::from(ALPHABET[idx]));
    }
    out
}

/// Compares without an early exit, so timing says nothing about how much matched.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Counts failures per key (an account name, a client address, a ticket's PIN) in a sliding
/// window; a key with `max` failures inside the window is refused until the oldest ages out.
pub struct RateLimiter {
    max: u32,
    window_s: i64,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
}

/// Keys beyond this many trigger a sweep of stale ones, so the map cannot grow without bound.
const SWEEP_AT: usize = 10_000;

impl RateLimiter {
    pub fn new(max: u32, window_s: u64) -> Self {
        Self {
            max: max.max(1),
            window_s: i64::try_from(window_s).unwrap_or(i64::MAX).max(1),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds until a retry may succeed)` when the key is blocked.
    pub fn check(&self, key: &str, now: i64) -> Result<(), i64> {
        let mut map = self.failures.lock();
        let Some(q) = map.get_mut(key) else {
            return Ok(());
        };
        while q.front().is_some_and(|&t| t <= now - self.window_s) {
            q.pop_front();
        }
        if q.len() >= self.max as usize {
            let oldest = q.front().copied().unwrap_or(now);
            return Err((oldest + self.window_s - now).max(1));
        }
        Ok(())
    }

    pub fn fail(&self, key: &str, now: i64) {
        let mut map = self.failures.lock();
        if map.len() >= SWEEP_AT {
            let cutoff = now - self.window_s;
            map.retain(|_, q| q.back().is_some_and(|&t| t > cutoff));
        }
        map.entry(key.to_string()).or_default().push_back(now);
    }

    pub fn clear(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("rahasia-lawang-jabo").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("rahasia-lawang-jabo", &h));
        assert!(!verify_password("rahasia-lawang-jab", &h));
        assert!(!verify_password("", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(!verify_password("x", ""));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
        let pin = random_pin();
        assert_eq!(pin.len(), 6);
        assert!(pin.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(random_password().len(), 14);
    }

    #[test]
    fn constant_time_eq_cases() {
        let cases = [
            ("", "", true),
            ("a", "a", true),
            ("a", "b", false),
            ("ab", "a", false),
            ("", "a", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(constant_time_eq(a, b), want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn limiter_blocks_at_max_and_recovers_after_window() {
        let l = RateLimiter::new(3, 60);
        let t = 1_000;
        for i in 0..3 {
            assert_eq!(l.check("u", t + i), Ok(()), "failure {i}");
            l.fail("u", t + i);
        }
        // The fourth try inside the window is refused until the first failure ages out.
        assert_eq!(l.check("u", t + 3), Err(57));
        assert_eq!(l.check("other", t + 3), Ok(()));
        assert_eq!(l.check("u", t + 59), Err(1));
        assert_eq!(l.check("u", t + 60), Ok(()));
        l.fail("u", t + 60);
        l.clear("u");
        assert_eq!(l.check("u", t + 61), Ok(()));
    }
}
