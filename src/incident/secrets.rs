//! The secrets behind the broker's users: each user's password and each site's signing key, in
//! a TOML file that only its owner may read (written 0600, atomically).
//!
//! ```toml
//! [users.site-bkb]
//! password = "..."
//! signing_key = "<64 hex digits>"   # HMAC-SHA256 key of the site's messages (sign.rs)
//!
//! [users.desk]
//! password = "..."
//! ```
//!
//! One format for the whole set (`credentials.toml`) and for the per-client files
//! (`clients/<user>.toml`): a client file is the subset its holder needs (a site: its own
//! login and key; the desk: its login and every site's key, without their passwords), so files
//! of several sites can be concatenated for a machine that serves them all.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::access::{site_user, BrokerUser, UserKind};
use super::sign::{KeyError, SigningKey};

/// Length of generated passwords (letters and digits: ~190 bits).
const PASSWORD_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("credentials file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("credentials file {path}: {error}")]
    Parse {
        path: PathBuf,
        error: Box<toml::de::Error>,
    },
    #[error("credentials file {path}: cannot write: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("credentials: users.{user}.signing_key: {error}")]
    Key { user: String, error: KeyError },
}

/// A login for one connection. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Login({}, ***)", self.username)
    }
}

/// One user's secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Hex HMAC key of a site's messages (producers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
}

/// A credentials file: user name -> secrets.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default)]
    pub users: BTreeMap<String, UserSecret>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credentials {
    /// Reads `path`. A file others can read is used, with a warning naming it.
    pub fn load(path: &Path) -> Result<Self, SecretsError> {
        let text = std::fs::read_to_string(path).map_err(|error| SecretsError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        if let Some(mode) = loose_mode(path) {
            tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "credentials file is readable by other users; chmod 600 it");
        }
        let c: Credentials = toml::from_str(&text).map_err(|error| SecretsError::Parse {
            path: path.to_path_buf(),
            error: Box::new(error),
        })?;
        // Every key must parse: a typo should stop start-up, not silently turn signing off.
        c.signing_keys()?;
        Ok(c)
    }

    /// [`Credentials::load`], or empty when the file does not exist yet.
    pub fn load_or_empty(path: &Path) -> Result<Self, SecretsError> {
        match Self::load(path) {
            Err(SecretsError::Read { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Self::default())
            }
            other => other,
        }
    }

    pub fn password(&self, user: &str) -> Option<&str> {
        self.users.get(user)?.password.as_deref()
    }

    /// The login of `user`, if the file holds its password.
    pub fn login(&self, user: &str) -> Option<Login> {
        Some(Login {
            username: user.to_string(),
            password: self.password(user)?.to_string(),
        })
    }

    /// The signing key of `site` (user `site-{site}`), if any.
    pub fn signing_key(&self, site: &str) -> Result<Option<SigningKey>, SecretsError> {
        let user = site_user(site);
        match self.users.get(&user).and_then(|u| u.signing_key.as_deref()) {
            None => Ok(None),
            Some(k) => SigningKey::from_hex(k)
                .map(Some)
                .map_err(|error| SecretsError::Key { user, error }),
        }
    }

    /// Every site's signing key in the file, by site id.
    pub fn signing_keys(&self) -> Result<HashMap<String, SigningKey>, SecretsError> {
        let mut out = HashMap::new();
        for (user, s) in &self.users {
            let (Some(site), Some(k)) = (user.strip_prefix("site-"), s.signing_key.as_deref())
            else {
                continue;
            };
            let key = SigningKey::from_hex(k).map_err(|error| SecretsError::Key {
                user: user.clone(),
                error,
            })?;
            out.insert(site.to_string(), key);
        }
        Ok(out)
    }

    /// Gives every user in `users` a password (and every producer a signing key) it lacks, or
    /// new ones for all when `rotate`. True when anything changed.
    pub fn ensure(&mut self, users: &[BrokerUser], rotate: bool) -> bool {
        let mut changed = false;
        for u in users {
            let entry = self.users.entry(u.name.clone()).or_default();
            if rotate || entry.password.is_none() {
                entry.password = Some(new_password());
                changed = true;
            }
            if matches!(u.kind, UserKind::Producer { .. })
                && (rotate || entry.signing_key.is_none())
            {
                entry.signing_key = Some(SigningKey::generate().to_hex());
                changed = true;
            }
        }
        changed
    }

    /// What one client needs: its own login (and key, for a producer); the desk also gets
    /// every site's signing key, without the sites' passwords.
    pub fn for_client(&self, user: &BrokerUser) -> Credentials {
        let mut out = Credentials::default();
        if let Some(s) = self.users.get(&user.name) {
            out.users.insert(user.name.clone(), s.clone());
        }
        if user.kind == UserKind::Desk {
            for (name, s) in &self.users {
                if name.starts_with("site-") && s.signing_key.is_some() {
                    out.users.insert(
                        name.clone(),
                        UserSecret {
                            password: None,
                            signing_key: s.signing_key.clone(),
                        },
                    );
                }
            }
        }
        out
    }

    /// The file's text, after a comment header.
    pub fn to_toml(&self, header: &str) -> String {
        let mut out = String::new();
        for l in header.lines() {
            out.push_str("# ");
            out.push_str(l);
            out.push('\n');
        }
        out.push('\n');
        // Serialising plain strings in maps cannot fail.
        out.push_str(&toml::to_string(self).unwrap_or_default());
        out
    }

    /// Writes the file, readable by its owner only.
    pub fn save(&self, path: &Path, header: &str) -> Result<(), SecretsError> {
        write_private(path, self.to_toml(header).as_bytes()).map_err(|error| SecretsError::Write {
            path: path.to_path_buf(),
            error,
        })
    }
}

fn new_password() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, PASSWORD_LEN)
}

/// The file's mode when group or others may read or write it.
pub fn loose_mode(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Writes `bytes` to `path` with mode 0600, atomically (a temporary file beside it, fsync'd,
/// renamed over it), so a reader never sees half a file and the secret is never world-readable,
/// not even for a moment.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let done = f.write_all(bytes).and_then(|_| f.sync_all());
    drop(f);
    if let Err(e) = done.and_then(|_| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// Makes `dir` (and its parents) and restricts it to its owner.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(site: &str) -> BrokerUser {
        BrokerUser {
            name: site_user(site),
            kind: UserKind::Producer { site: site.into() },
            read: vec![],
            write: vec![],
        }
    }

    fn desk() -> BrokerUser {
        BrokerUser {
            name: "desk".into(),
            kind: UserKind::Desk,
            read: vec![],
            write: vec![],
        }
    }

    #[test]
    fn ensure_keeps_what_exists_and_rotate_replaces_it() {
        let users = [producer("bkb"), producer("ampera"), desk()];
        let mut c = Credentials::default();
        assert!(c.ensure(&users, false));
        let first = c.clone();
        assert!(!c.ensure(&users, false), "nothing missing: unchanged");
        assert_eq!(c, first);
        let pw = c.password("site-bkb").unwrap();
        assert_eq!(pw.len(), PASSWORD_LEN);
        assert!(c.signing_key("bkb").unwrap().is_some());
        assert!(
            c.users["desk"].signing_key.is_none(),
            "the desk signs nothing"
        );
        assert_eq!(c.signing_keys().unwrap().len(), 2);
        assert!(c.ensure(&users, true));
        assert_ne!(c.password("site-bkb"), first.password("site-bkb"));
        assert_ne!(
            c.signing_key("bkb").unwrap(),
            first.signing_key("bkb").unwrap()
        );
    }

    #[test]
    fn client_files_hold_only_what_the_client_needs() {
        let users = [producer("bkb"), producer("ampera"), desk()];
        let mut c = Credentials::default();
        c.ensure(&users, false);
        let site = c.for_client(&users[0]);
        assert_eq!(site.users.keys().collect::<Vec<_>>(), ["site-bkb"]);
        assert!(site.password("site-bkb").is_some());
        let d = c.for_client(&users[2]);
        assert_eq!(
            d.users.keys().collect::<Vec<_>>(),
            ["desk", "site-ampera", "site-bkb"]
        );
        assert!(
            d.password("site-bkb").is_none(),
            "no site password at the desk"
        );
        assert_eq!(d.signing_keys().unwrap().len(), 2);
    }

    #[test]
    fn file_round_trip_is_private_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/credentials.toml");
        let mut c = Credentials::default();
        c.ensure(&[producer("bkb"), desk()], false);
        c.save(&p, "secret\nsecond line").unwrap();
        assert_eq!(loose_mode(&p), None);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("# secret\n# second line\n"), "{text}");
        assert_eq!(Credentials::load(&p).unwrap(), c);
        // Missing file: empty for load_or_empty, an error naming it for load.
        let missing = dir.path().join("none.toml");
        assert!(Credentials::load_or_empty(&missing)
            .unwrap()
            .users
            .is_empty());
        let e = Credentials::load(&missing).unwrap_err().to_string();
        assert!(e.contains("none.toml"), "{e}");
        // A bad key is an error naming the user.
        std::fs::write(&p, "[users.site-x]\nsigning_key = \"abc\"\n").unwrap();
        let e = Credentials::load(&p).unwrap_err().to_string();
        assert!(e.contains("users.site-x.signing_key"), "{e}");
        std::fs::write(&p, "[users.desk]\npasword = \"x\"\n").unwrap();
        let e = Credentials::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("credentials.toml") && e.contains("pasword"),
            "{e}"
        );
        // Debug output shows names, never secrets.
        let dbg = format!("{c:?} {:?}", c.login("desk").unwrap());
        assert!(!dbg.contains(c.password("desk").unwrap()), "{dbg}");
    }
}
