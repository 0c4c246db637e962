//! Passwords, session tokens, CSRF tokens, reporters' PINs and the desk's keys.
//!
//! Passwords (and reporters' PINs) are argon2id hashes in PHC format, checked on the desk's
//! bounded [`Hasher`] (never inside a write transaction). A session cookie holds a random
//! token; the database keeps only its SHA-256, so a leaked database opens no session. Each
//! session has its own CSRF token, checked on every form post and API change. A browser that
//! signed in gets a signed *trusted-device* cookie ([`DeviceClaims`]), which keeps its own
//! count of wrong passwords, so an attacker guessing elsewhere does not lock its user out.

use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::Config;
pub use crate::guard::secret::{
    constant_time_eq, dummy_hash, hash_password, random_token, token_hash, verify_password,
    HashError, Hasher, KeyError, Signer,
};

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

/// Purpose words of the desk's signed tokens.
pub const DEVICE_PURPOSE: &str = "desk-device";

/// What a trusted-device cookie says: this browser signed in to account `u`; `d` names the
/// browser (its own count of wrong passwords).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeviceClaims {
    pub u: String,
    pub d: String,
}

/// A trusted-device id for a browser signing in for the first time.
pub fn new_device_id() -> String {
    random_token()[..24].to_string()
}

/// The desk's signing keys: trusted-device cookies (`[desk] key_file`), and the wall's key
/// (`[wall.auth] key_file`) when the desk sends staff to the wall (`[desk] wall_url`).
#[derive(Clone, Debug)]
pub struct DeskKeys {
    pub device: Signer,
    pub wall: Option<Signer>,
}

impl DeskKeys {
    /// Keys that live as long as the process (tests, and services built without `open`):
    /// trusted devices are forgotten at restart and no hand-off to the wall is signed.
    pub fn ephemeral() -> Self {
        Self {
            device: Signer::ephemeral(),
            wall: None,
        }
    }

    /// Reads the key files, creating those that do not exist yet.
    pub fn load(cfg: &Config) -> Result<Self, KeyError> {
        let device = Signer::load_or_create(&cfg.desk_key_path())?;
        let wall = match &cfg.desk.wall_url {
            Some(_) => Some(Signer::load_or_create(&cfg.wall_key_path())?),
            None => None,
        };
        Ok(Self { device, wall })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(new_device_id().len(), 24);
    }

    #[test]
    fn device_claims_are_bound_to_the_key() {
        let keys = DeskKeys::ephemeral();
        let c = DeviceClaims {
            u: "admin".into(),
            d: new_device_id(),
        };
        let t = keys.device.sign(DEVICE_PURPOSE, &c);
        assert_eq!(
            keys.device.verify::<DeviceClaims>(DEVICE_PURPOSE, &t),
            Some(c)
        );
        assert!(DeskKeys::ephemeral()
            .device
            .verify::<DeviceClaims>(DEVICE_PURPOSE, &t)
            .is_none());
    }
}
