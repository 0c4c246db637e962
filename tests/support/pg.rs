//! A throw-away PostgreSQL 15 cluster for a test: `initdb` into a temporary folder, the server
//! on a loopback port of its own, run as the `postgres` OS user (the server refuses root).
//!
//! A test that needs it fails when it cannot start: nothing here skips. A developer without
//! PostgreSQL leaves those tests out explicitly with `SIMPANG_SKIP_POSTGRES=1 scripts/test.sh`
//! (every such test has `postgres::` in its name).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::ports;
use super::process::Proc;
use super::wait::poll;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// What a test that needs PostgreSQL says when it cannot have it.
pub const REQUIRED: &str = "PostgreSQL 15 is required by this test (scripts/setup.sh installs \
it); to run the suite without the PostgreSQL tests, leave them out explicitly: \
SIMPANG_SKIP_POSTGRES=1 scripts/test.sh";

/// A running cluster; stopped (immediate shutdown) and removed when dropped.
pub struct Pg {
    proc: Option<Proc>,
    _dir: tempfile::TempDir,
    pub port: u16,
}

fn postgres_ids() -> Result<(u32, u32), String> {
    let id = |args: &[&str]| -> Result<u32, String> {
        let o = Command::new("id")
            .args(args)
            .output()
            .map_err(|e| format!("id: {e}"))?;
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .map_err(|_| "there is no `postgres` OS user".to_string())
    };
    Ok((id(&["-u", "postgres"])?, id(&["-g", "postgres"])?))
}

impl Pg {
    /// A new cluster, or why there cannot be one here.
    pub fn start() -> Result<Pg, String> {
        if !Path::new(PG_BIN).join("postgres").exists() {
            return Err(format!("{PG_BIN}/postgres is not installed"));
        }
        let (uid, gid) = postgres_ids()?;
        let dir = tempfile::Builder::new()
            .prefix("simpang-desk-pg")
            .tempdir()
            .map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        let data = dir.path().join("data");
        let init = Command::new(Path::new(PG_BIN).join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        let mut clashes = Vec::new();
        for _ in 0..5 {
            let port = ports::port();
            let mut cmd = Command::new(Path::new(PG_BIN).join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .uid(uid)
                .gid(gid)
                .current_dir(dir.path())
                .stdout(Stdio::null());
            let mut proc = Proc::spawn("postgres", cmd);
            // Ready once the server accepts logins (its port opens a moment earlier).
            let ready = poll(Duration::from_secs(60), || {
                if !proc.is_running() {
                    return Some(false);
                }
                Command::new(Path::new(PG_BIN).join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
                    .then_some(true)
            });
            match ready {
                Some(true) => {
                    return Ok(Pg {
                        proc: Some(proc),
                        _dir: dir,
                        port,
                    })
                }
                Some(false) if ports::is_bind_clash(&proc.log()) => clashes.push(proc.log()),
                Some(false) => return Err(format!("postgres exited:\n{}", proc.log_tail())),
                None => {
                    return Err(format!(
                        "postgres did not accept logins within 60 s:\n{}",
                        proc.log_tail()
                    ))
                }
            }
        }
        Err(format!(
            "every port tried was taken:\n{}",
            clashes.join("\n---\n")
        ))
    }

    /// [`Pg::start`] for a test that needs it: a failure names what is missing.
    pub fn required() -> Pg {
        Pg::start().unwrap_or_else(|why| panic!("{REQUIRED}\nIt cannot start here: {why}"))
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SIGQUIT: immediate shutdown; the postmaster takes its backends down with it.
            p.signal(libc::SIGQUIT);
            if poll(Duration::from_secs(10), || !p.is_running()).is_none() {
                p.kill();
            }
        }
    }
}
