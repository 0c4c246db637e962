//! The wall's own accounts (`[wall.auth] accounts`, a TOML file that `simpang wall ...` edits):
//!
//! - **people**: a password (argon2id) for the sign-in page; the browser then holds a session
//!   cookie;
//! - **devices** (wall controllers, VMS, scripts): a 256-bit token, stored as its SHA-256, sent
//!   as `Authorization: Bearer TOKEN`, or as HTTP / RTSP Basic with the account name as user
//!   and the token as password. A password never works over Basic: guessing one there would
//!   cost an argon2 run per request.
//!
//! Staff of the desk need no account here: the desk signs them in (see `auth`). The running
//! wall re-reads the file when it changes (checked at most once a second), so an account added
//! or removed with the command line counts at once, without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::guard::{constant_time_eq, random_token, token_hash};

/// Why the accounts file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("wall accounts file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("wall accounts file {path}: {error}")]
    Parse { path: PathBuf, error: String },
    #[error("account name {0:?}: use 3 to 32 lower-case letters, digits, '.', '-', '_'")]
    BadName(String),
    #[error("there is already an account named {0:?}")]
    Exists(String),
    #[error("no account named {0:?}")]
    Missing(String),
    #[error("account {0:?} was not made by the demo; the demo leaves it alone")]
    NotDemo(String),
}

/// A person (password, browser) or a device (token: Bearer, Basic, RTSP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Person,
    Device,
}

/// One account as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// `cli` or `demo`: the demo replaces only accounts it made.
    pub created_by: String,
    pub created_at: String,
}

/// The file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default, rename = "account")]
    accounts: Vec<Account>,
}

const HEADER: &str = "# simpang wall accounts: edit with `simpang wall user|device ...`.\n\
                      # Secrets are stored hashed; keep this file readable by simpang only.\n\n";

/// The accounts as last read, looked up by name and by token hash.
#[derive(Default)]
pub struct Snapshot {
    by_name: HashMap<String, Account>,
    by_token: HashMap<String, String>,
}

impl Snapshot {
    fn of(file: File) -> Self {
        let mut s = Snapshot::default();
        for a in file.accounts {
            if let Some(t) = &a.token_sha256 {
                s.by_token.insert(t.clone(), a.name.clone());
            }
            s.by_name.insert(a.name.clone(), a);
        }
        s
    }

    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name)
    }

    /// The device whose token this is.
    pub fn device_by_token(&self, token: &str) -> Option<&Account> {
        if token.len() > 256 {
            return None;
        }
        let name = self.by_token.get(&token_hash(token))?;
        self.by_name.get(name).filter(|a| a.kind == Kind::Device)
    }

    /// The device `name` if `token` is its token.
    pub fn device(&self, name: &str, token: &str) -> Option<&Account> {
        let a = self.by_name.get(name).filter(|a| a.kind == Kind::Device)?;
        let want = a.token_sha256.as_deref()?;
        constant_time_eq(&token_hash(token), want).then_some(a)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The accounts file of a running wall, re-read when it changes.
pub struct Store {
    path: PathBuf,
    current: ArcSwap<Snapshot>,
    seen: Mutex<(Instant, Option<SystemTime>)>,
}

impl Store {
    /// Reads the file; one that does not exist yet means no accounts.
    pub fn open(path: &Path) -> Result<Self, AccountsError> {
        let file = read(path)?;
        if file.accounts.is_empty() {
            tracing::warn!(
                path = %path.display(),
                "the wall has no accounts yet: only staff the desk sends can sign in; add one \
                 with `simpang wall user add NAME` or `simpang wall device add NAME`"
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(Snapshot::of(file)),
            seen: Mutex::new((Instant::now(), mtime(path))),
        })
    }

    /// The accounts now (re-reading the file if it changed since the last look).
    pub fn current(&self) -> Arc<Snapshot> {
        let changed = {
            let mut seen = self.seen.lock();
            if seen.0.elapsed() < Duration::from_secs(1) {
                false
            } else {
                let m = mtime(&self.path);
                seen.0 = Instant::now();
                let changed = m != seen.1;
                seen.1 = m;
                changed
            }
        };
        if changed {
            match read(&self.path) {
                Ok(f) => {
                    tracing::info!(accounts = f.accounts.len(), "wall accounts re-read");
                    self.current.store(Arc::new(Snapshot::of(f)));
                }
                Err(e) => {
                    tracing::error!(error = %e, "wall accounts not re-read; keeping the last")
                }
            }
        }
        self.current.load_full()
    }
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn read(path: &Path) -> Result<File, AccountsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(File::default()),
        Err(error) => {
            return Err(AccountsError::Io {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    parse(&text).map_err(|error| AccountsError::Parse {
        path: path.to_path_buf(),
        error,
    })
}

/// Parses the file's text (never panics on any input).
fn parse(text: &str) -> Result<File, String> {
    toml::from_str::<File>(text).map_err(|e| e.to_string())
}

/// Writes the file whole (a temporary file renamed over it, mode 0600).
fn write(path: &Path, file: &File) -> Result<(), AccountsError> {
    let io = |error| AccountsError::Io {
        path: path.to_path_buf(),
        error,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let text = toml::to_string(file).map_err(|e| AccountsError::Parse {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io)?;
        use std::io::Write;
        f.write_all(HEADER.as_bytes()).map_err(io)?;
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Account names: what the desk allows too.
pub fn check_name(name: &str) -> Result<String, AccountsError> {
    let n = name.trim().to_lowercase();
    let ok = (3..=32).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    ok.then_some(n)
        .ok_or_else(|| AccountsError::BadName(name.into()))
}

/// Who is editing the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Cli,
    /// `simpang demo`: replaces its own accounts, never one it did not make.
    Demo,
}

impl By {
    fn word(self) -> &'static str {
        match self {
            By::Cli => "cli",
            By::Demo => "demo",
        }
    }
}

/// Adds (or, for the demo, replaces) an account.
fn put(path: &Path, account: Account, by: By) -> Result<(), AccountsError> {
    let mut f = read(path)?;
    if let Some(i) = f.accounts.iter().position(|a| a.name == account.name) {
        match by {
            By::Demo if f.accounts[i].created_by == "demo" => {
                f.accounts.remove(i);
            }
            By::Demo => return Err(AccountsError::NotDemo(account.name)),
            By::Cli => return Err(AccountsError::Exists(account.name)),
        }
    }
    f.accounts.push(account);
    write(path, &f)
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Adds a person with an argon2 hash of their password (see [`crate::guard::secret`]).
pub fn add_person(
    path: &Path,
    name: &str,
    password_hash: String,
    by: By,
) -> Result<(), AccountsError> {
    let name = check_name(name)?;
    put(
        path,
        Account {
            name,
            kind: Kind::Person,
            password_hash: Some(password_hash),
            token_sha256: None,
            created_by: by.word().into(),
            created_at: now_text(),
        },
        by,
    )
}

/// Adds a device; returns its token (shown once: only its hash is kept).
pub fn add_device(path: &Path, name: &str, by: By) -> Result<String, AccountsError> {
    let name = check_name(name)?;
    let token = random_token();
    put(
        path,
        Account {
            name,
            kind: Kind::Device,
            password_hash: None,
            token_sha256: Some(token_hash(&token)),
            created_by: by.word().into(),
            created_at: now_text(),
        },
        by,
    )?;
    Ok(token)
}

/// Removes an account (its sessions end at its next request).
pub fn remove(path: &Path, name: &str) -> Result<(), AccountsError> {
    let mut f = read(path)?;
    let before = f.accounts.len();
    f.accounts.retain(|a| a.name != name);
    if f.accounts.len() == before {
        return Err(AccountsError::Missing(name.into()));
    }
    write(path, &f)
}

/// Every account, as stored.
pub fn list(path: &Path) -> Result<Vec<Account>, AccountsError> {
    Ok(read(path)?.accounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accounts_round_trip_and_tokens_identify_devices() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wall-accounts.toml");
        let store = Store::open(&p).unwrap();
        assert!(store.current().is_empty(), "no file: no accounts");
        add_person(
            &p,
            "Ops",
            crate::guard::secret::hash_password("x").unwrap(),
            By::Cli,
        )
        .unwrap();
        let token = add_device(&p, "vms-1", By::Cli).unwrap();
        assert!(matches!(
            add_device(&p, "vms-1", By::Cli),
            Err(AccountsError::Exists(_))
        ));
        assert!(matches!(
            add_device(&p, "v", By::Cli),
            Err(AccountsError::BadName(_))
        ));
        let s = Snapshot::of(read(&p).unwrap());
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("ops").unwrap().kind, Kind::Person);
        assert_eq!(s.device_by_token(&token).unwrap().name, "vms-1");
        assert_eq!(s.device("vms-1", &token).unwrap().name, "vms-1");
        assert!(s.device("vms-1", "wrong").is_none());
        assert!(
            s.device("ops", &token).is_none(),
            "a person is not a device"
        );
        assert!(s.device_by_token("wrong").is_none());
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(!text.contains(&token), "only the token's hash is stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The demo replaces its own accounts only.
        let t1 = add_device(&p, "demo-vms", By::Demo).unwrap();
        let t2 = add_device(&p, "demo-vms", By::Demo).unwrap();
        assert_ne!(t1, t2);
        assert!(matches!(
            add_device(&p, "vms-1", By::Demo),
            Err(AccountsError::NotDemo(_))
        ));
        remove(&p, "vms-1").unwrap();
        assert!(matches!(
            remove(&p, "vms-1"),
            Err(AccountsError::Missing(_))
        ));
        assert_eq!(list(&p).unwrap().len(), 2);
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "[[account]]\nname = 1\n").unwrap();
        let e = Store::open(&p).err().unwrap().to_string();
        assert!(e.contains("a.toml"), "{e}");
    }

    proptest! {
        /// The accounts file is outside data: any text parses or is refused, never panics.
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,400}") {
            let _ = parse(&text);
        }

        #[test]
        fn account_like_text_parses_or_is_refused(
            name in "[a-z\\\\\\\" ]{0,12}",
            kind in "(person|device|admin|)",
            extra in "(|x = 1|token_sha256 = \\\"ab\\\"|password_hash = 3)",
        ) {
            let text = format!(
                "[[account]]\nname = \"{name}\"\nkind = \"{kind}\"\n{extra}\ncreated_by = \"cli\"\ncreated_at = \"t\"\n"
            );
            let _ = parse(&text);
        }
    }
}
