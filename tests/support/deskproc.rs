//! `simpang desk` as a child process on a shared PostgreSQL ([`DeskProc`]), its accounts
//! (`simpang desk user add`), and direct reads of the database the desks share ([`Db`]).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::desk::{password, Http};
use super::process::Proc;
use super::wait::poll;

/// A `simpang desk` process and its base URL.
pub struct DeskProc {
    pub proc: Proc,
    pub base: String,
}

impl DeskProc {
    /// `simpang desk --instance NAME` on `db`; returns once it listens and its incident intake
    /// subscribed (within `wait`).
    pub fn start(cfg: &Path, db: &str, instance: &str, wait: Duration) -> DeskProc {
        let mut proc = Proc::simpang(
            &format!("desk-{instance}"),
            &[
                "desk",
                "--config",
                cfg.to_str().unwrap(),
                "--db",
                db,
                "--instance",
                instance,
                "--listen",
                "127.0.0.1:0",
            ],
            &[("RUST_LOG", "info")],
        );
        let line = proc.wait_line("desk: http://", wait);
        let base = line
            .trim()
            .trim_start_matches("desk: ")
            .trim_end_matches('/')
            .to_string();
        assert!(
            poll(wait, || proc
                .log()
                .contains("incident intake subscribed")
                .then_some(()))
            .is_some(),
            "desk {instance} subscribes to incidents:\n{}",
            proc.log_tail()
        );
        DeskProc { proc, base }
    }

    /// Signs `name` in (password from [`password`]); `None` when the desk refuses.
    pub fn login(&self, name: &str) -> Option<Http> {
        let mut h = Http::new(&self.base);
        let r = h.post_json(
            "/api/login",
            &json!({ "username": name, "password": password(name) }),
        );
        if r.status != 200 {
            return None;
        }
        h.take_cookie(&r);
        h.csrf = r.json()["csrf"].as_str().map(str::to_string);
        Some(h)
    }
}

/// `simpang desk user add` (the password on standard input).
pub fn add_user(cfg: &Path, db: &str, name: &str, role: &str) {
    let mut child = Command::new(super::bin())
        .args(["desk", "--config", cfg.to_str().unwrap(), "--db", db])
        .args(["user", "add", name, "--role", role])
        .env(
            "ORT_DYLIB_PATH",
            super::root().join("vendor-lib/onnxruntime/libonnxruntime.so"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("simpang runs");
    writeln!(child.stdin.take().unwrap(), "{}", password(name)).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads the desks' PostgreSQL database directly.
pub struct Db {
    rt: tokio::runtime::Runtime,
    pool: sqlx::PgPool,
}

impl Db {
    pub fn open(url: &str) -> Db {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let pool = rt.block_on(sqlx::PgPool::connect(url)).expect("PostgreSQL");
        Db { rt, pool }
    }

    /// incident id -> how many reports carry it, and the highest `incident_seq` among them.
    pub fn incident_reports(&self) -> HashMap<String, (i64, i64)> {
        let rows: Vec<(String, i64, Option<i64>)> = self
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT incident_id, COUNT(*), MAX(incident_seq) FROM reports \
                     WHERE incident_id IS NOT NULL GROUP BY incident_id",
                )
                .fetch_all(&self.pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|(id, n, seq)| (id, (n, seq.unwrap_or(0))))
            .collect()
    }

    /// incident id -> (ticket, last seq, cleared)
    pub fn reports(&self) -> HashMap<String, (String, i64, bool)> {
        let rows: Vec<(String, String, i64, Option<i64>)> = self
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT incident_id, ticket, incident_seq, cleared_at FROM reports \
                     WHERE incident_id IS NOT NULL",
                )
                .fetch_all(&self.pool),
            )
            .unwrap();
        rows.into_iter()
            .map(|(id, t, seq, c)| (id, (t, seq, c.is_some())))
            .collect()
    }

    /// ticket -> the audit actions on it, oldest first.
    pub fn audit(&self) -> HashMap<String, Vec<String>> {
        let rows: Vec<(String, String)> = self
            .rt
            .block_on(
                sqlx::query_as(
                    "SELECT entity_id, action FROM audit_log WHERE entity = 'report' ORDER BY id",
                )
                .fetch_all(&self.pool),
            )
            .unwrap();
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for (t, a) in rows {
            out.entry(t).or_default().push(a);
        }
        out
    }

    /// (payload, claimed_by) of every status message, and how many wait to be published.
    pub fn outbox(&self) -> (Vec<(String, Option<String>)>, i64) {
        self.rt.block_on(async {
            let rows: Vec<(String, Option<String>)> =
                sqlx::query_as("SELECT payload, claimed_by FROM status_outbox ORDER BY id")
                    .fetch_all(&self.pool)
                    .await
                    .unwrap();
            let pending: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM status_outbox WHERE published_at IS NULL")
                    .fetch_one(&self.pool)
                    .await
                    .unwrap();
            (rows, pending)
        })
    }

    pub fn dead_letters(&self) -> i64 {
        self.rt
            .block_on(sqlx::query_scalar("SELECT COUNT(*) FROM dead_letters").fetch_one(&self.pool))
            .unwrap()
    }
}
