//! Secrets: argon2id password and PIN hashes checked on a bounded pool ([`Hasher`]), random
//! tokens, and HMAC-signed claims ([`Signer`]) under a key kept in a file.
//!
//! Argon2 is deliberately slow (about 20 MiB and tens of milliseconds per check): a stream of
//! guesses must not take every core or every blocking thread, so checks run at most
//! `parallel` at a time and at most `queue` wait; beyond that a guess is refused as busy
//! without being hashed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

/// Why a secret could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Too many checks running and waiting: the caller answers "try again" (429/503).
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("password worker thread: {0}")]
    Worker(String),
}

/// Hashes a password (or PIN) with a fresh salt. CPU-heavy: call from a blocking thread (or
/// through a [`Hasher`]).
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
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

/// A hash of a password nobody knows, checked when an account does not exist, so a try on an
/// unknown name costs (and takes) what a wrong password does.
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

/// SHA-256, hex: how high-entropy tokens (sessions, device tokens) are stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Compares without an early exit, so timing says nothing about how much matched.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Runs argon2 on blocking threads, a bounded number at a time.
pub struct Hasher {
    permits: Semaphore,
    /// Checks running or waiting for a permit.
    inflight: AtomicUsize,
    running: AtomicUsize,
    /// Most checks running or waiting at once.
    capacity: usize,
    /// Added to every check (tests make a check slow enough to watch what happens meanwhile).
    debug_delay: Duration,
}

impl Hasher {
    pub fn new(parallel: usize, queue: usize) -> Self {
        Self {
            permits: Semaphore::new(parallel.max(1)),
            inflight: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            capacity: parallel.max(1) + queue,
            debug_delay: Duration::ZERO,
        }
    }

    pub fn with_debug_delay(mut self, delay: Duration) -> Self {
        self.debug_delay = delay;
        self
    }

    /// Checks running now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    pub async fn verify(&self, secret: String, hash: String) -> Result<bool, HashError> {
        self.run(move || Ok(verify_password(&secret, &hash))).await
    }

    pub async fn hash(&self, secret: String) -> Result<String, HashError> {
        self.run(move || hash_password(&secret)).await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        if self.inflight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(HashError::Busy);
        }
        let _inflight = Release(&self.inflight);
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Worker(e.to_string()))?;
        self.running.fetch_add(1, Ordering::SeqCst);
        let _running = Release(&self.running);
        let delay = self.debug_delay;
        let r = tokio::task::spawn_blocking(move || {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            f()
        })
        .await;
        r.map_err(|e| HashError::Worker(e.to_string()))?
    }
}

/// Counts a check out of `inflight` however it ends (a dropped request future included).
struct Release<'a>(&'a AtomicUsize);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Purpose word of the desk's hand-off of a signed-in staff member to the wall.
pub const HANDOFF_PURPOSE: &str = "wall-handoff";

/// What the desk tells the wall about a staff member it sends there (signed with the wall's
/// key, valid for a minute, used once).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Handoff {
    /// Account name at the desk.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Desk role (`admin`, `operator`, `agency`, `viewer`).
    pub role: String,
    /// Unix seconds after which the wall refuses it.
    pub exp: i64,
    /// A random nonce: the wall takes each token once.
    pub n: String,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    Bad { path: PathBuf, reason: String },
}

/// Signs and checks claims with HMAC-SHA256. A token is `base64url(json).base64url(mac)`; the
/// MAC also covers a purpose word, so a token made for one use is refused for another.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    pub fn from_key(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A key nobody else has (process lifetime): what a service uses when it has no key file.
    pub fn ephemeral() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Self { key }
    }

    /// Reads a key file: 64 hex digits (32 bytes), surrounding whitespace ignored.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|error| KeyError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let bad = |reason: &str| KeyError::Bad {
            path: path.to_path_buf(),
            reason: reason.into(),
        };
        let bytes = hex::decode(text.trim())
            .map_err(|_| bad("not hex (expected 64 hex digits, as `simpang` writes it)"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("wrong length (expected 64 hex digits, 32 bytes)"))?;
        warn_if_readable_by_others(path);
        Ok(Self { key })
    }

    /// [`Signer::load`], creating the file (mode 0600, with its folder) with a fresh random
    /// key when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            return Self::load(path);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|error| KeyError::Io {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        match opts.open(path) {
            Ok(mut f) => {
                use std::io::Write;
                writeln!(f, "{}", hex::encode(key)).map_err(|error| KeyError::Io {
                    path: path.to_path_buf(),
                    error,
                })?;
                tracing::info!(path = %path.display(), "created a new signing key");
                Ok(Self { key })
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path),
            Err(error) => Err(KeyError::Io {
                path: path.to_path_buf(),
                error,
            }),
        }
    }

    fn mac(&self, purpose: &str, body: &str) -> Vec<u8> {
        // A 32-byte key is a valid HMAC key; new_from_slice fails only on lengths HMAC rejects.
        let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return Vec::new();
        };
        m.update(purpose.as_bytes());
        m.update(b"\n");
        m.update(body.as_bytes());
        m.finalize().into_bytes().to_vec()
    }

    pub fn sign(&self, purpose: &str, claims: &impl Serialize) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let body = URL_SAFE_NO_PAD.encode(json);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(purpose, &body));
        format!("{body}.{mac}")
    }

    /// The claims of a token signed for `purpose` with this key; `None` for anything else.
    pub fn verify<T: DeserializeOwned>(&self, purpose: &str, token: &str) -> Option<T> {
        if token.len() > 4096 {
            return None;
        }
        let (body, mac) = token.split_once('.')?;
        let want = URL_SAFE_NO_PAD.encode(self.mac(purpose, body));
        if !constant_time_eq(mac, &want) {
            return None;
        }
        let json = URL_SAFE_NO_PAD.decode(body).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "key file is readable by other users; `chmod 600` it"
                );
            }
        }
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
    fn signed_claims_round_trip_and_refuse_tampering() {
        let s = Signer::from_key([7; 32]);
        let t = s.sign("wall-session", &serde_json::json!({"sub": "ops", "exp": 5}));
        let v: serde_json::Value = s.verify("wall-session", &t).unwrap();
        assert_eq!(v["sub"], "ops");
        assert!(s.verify::<serde_json::Value>("desk-device", &t).is_none());
        assert!(Signer::from_key([8; 32])
            .verify::<serde_json::Value>("wall-session", &t)
            .is_none());
        let (body, mac) = t.split_once('.').unwrap();
        let forged = format!(
            "{}.{mac}",
            URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","exp":5}"#)
        );
        assert!(s
            .verify::<serde_json::Value>("wall-session", &forged)
            .is_none());
        for bad in ["", ".", "x.y", body, &format!("{body}."), &"a".repeat(5000)] {
            assert!(s.verify::<serde_json::Value>("wall-session", bad).is_none());
        }
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/wall.key");
        let a = Signer::load_or_create(&p).unwrap();
        let b = Signer::load(&p).unwrap();
        assert_eq!(a.key, b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "zz").unwrap();
        assert!(matches!(Signer::load(&p), Err(KeyError::Bad { .. })));
        std::fs::write(&p, "abcd").unwrap();
        assert!(matches!(Signer::load(&p), Err(KeyError::Bad { .. })));
        assert!(matches!(
            Signer::load(&dir.path().join("missing")),
            Err(KeyError::Io { .. })
        ));
    }

    #[test]
    fn the_hasher_bounds_running_and_waiting_checks() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let h = std::sync::Arc::new(Hasher::new(1, 1).with_debug_delay(Duration::from_millis(300)));
        let hash = hash_password("pin").unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let (h, hash) = (h.clone(), hash.clone());
                    tokio::spawn(async move { h.verify("pin".into(), hash).await })
                })
                .collect();
            let mut ok = 0;
            let mut busy = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(true) => ok += 1,
                    Err(HashError::Busy) => busy += 1,
                    other => panic!("{other:?}"),
                }
            }
            // One running, one waiting; the other two refused at once.
            assert_eq!((ok, busy), (2, 2));
            assert_eq!(h.running(), 0);
        });
    }
}
