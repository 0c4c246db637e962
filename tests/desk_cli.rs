//! The `simpang desk` command itself (the real binary): accounts from the command line with the
//! password on stdin, config errors that name file, line and field, and a server that starts,
//! answers and stops cleanly on SIGTERM.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::desk::Http;
use support::process::Proc;

const BIN: &str = env!("CARGO_BIN_EXE_simpang");

fn config(dir: &Path, desk: &str) -> std::path::PathBuf {
    let text = format!(
        "data_dir = \"data\"\n{}\n[desk]\n{desk}\n",
        support::desk::SITES
    );
    let path = dir.join("desk.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn desk(cfg: &Path, db: &str, args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(BIN)
        .arg("desk")
        .arg("--config")
        .arg(cfg)
        .args(["--db", db])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("simpang binary");
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

#[test]
fn user_add_reads_the_password_from_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[desk.mqtt]\nbroker = \"none\"");
    let db = format!("sqlite://{}", dir.path().join("desk.db").display());
    // (args, stdin, exit code, text expected on stdout or stderr)
    let cases: &[(&[&str], &str, i32, &str)] = &[
        (
            &[
                "user",
                "add",
                "sari.dishub",
                "--role",
                "agency",
                "--agency",
                "dishub",
                "--display-name",
                "Sari (Dishub)",
            ],
            "kata-sandi-sari-1\n",
            0,
            "created sari.dishub (agency, dishub)",
        ),
        (
            &[
                "user", "add", "budi", "--role", "officer", "--agency", "dlh",
            ],
            "kata-sandi-budi-1",
            0,
            "created budi (agency, dlh)",
        ),
        (
            &["user", "add", "admin", "--role", "admin"],
            "kata-sandi-admin-1\r\n",
            0,
            "created admin (admin)",
        ),
        (
            &["user", "add", "sari.dishub", "--role", "operator"],
            "kata-sandi-lain-1\n",
            2,
            "sudah dipakai",
        ),
        (
            &["user", "add", "andi", "--role", "agency"],
            "kata-sandi-andi-1\n",
            2,
            "harus terikat pada satu OPD",
        ),
        (
            &[
                "user", "add", "andi", "--role", "agency", "--agency", "nasa",
            ],
            "kata-sandi-andi-1\n",
            2,
            "tidak dikenal",
        ),
        (
            &["user", "add", "andi", "--role", "operator"],
            "pendek\n",
            2,
            "minimal 10 karakter",
        ),
        (
            &["user", "add", "andi", "--role", "operator"],
            "",
            2,
            "minimal 10 karakter",
        ),
        (
            &["user", "add", "andi", "--role", "root"],
            "kata-sandi-andi-1\n",
            1,
            "unknown role",
        ),
        (
            &["user", "add", "A B", "--role", "viewer"],
            "kata-sandi-andi-1\n",
            2,
            "huruf kecil",
        ),
    ];
    for (args, stdin, code, text) in cases {
        let out = desk(&cfg, &db, args, stdin);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {all}");
        assert!(all.contains(text), "{args:?}: {all}");
    }
    let out = desk(&cfg, &db, &["user", "list"], "");
    let list = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, vec!["admin", "budi", "sari.dishub"], "{list}");
    assert!(list.contains("Sari (Dishub)"));
}

/// The database URL from `SIMPANG_DESK_DB` (so a password stays out of the process list) is
/// the one used, and `--help` does not print its value.
#[test]
fn the_database_url_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[desk.mqtt]\nbroker = \"none\"");
    let file = dir.path().join("from-env.db");
    let secret = format!("sqlite://{}", file.display());
    let run = |args: &[&str], stdin: &str| {
        let mut c = Command::new(BIN)
            .arg("desk")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("SIMPANG_DESK_DB", &secret)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("simpang binary");
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    let out = run(
        &["user", "add", "budi", "--role", "operator"],
        "kata-sandi-panjang-sekali\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        file.exists(),
        "the account went into the database the variable names"
    );
    let list = run(&["user", "list"], "");
    assert!(String::from_utf8_lossy(&list.stdout).contains("budi"));
    let help = run(&["--help"], "");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("SIMPANG_DESK_DB"), "{text}");
    assert!(!text.contains(&secret), "--help prints the URL: {text}");
}

#[test]
fn config_errors_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("desk.db").display());
    // ([desk] body, field named); the line is where the offending key sits in the file.
    let cases = [
        ("ticket_prefix = \"plg\"", "desk.ticket_prefix"),
        ("session_hours = 0", "desk.session_hours"),
        ("colour = \"red\"", "desk"),
        (
            "[desk.mqtt]\nbroker = \"http://broker\"",
            "desk.mqtt.broker",
        ),
    ];
    for (body, field) in cases {
        let cfg = config(dir.path(), body);
        let key = body.lines().last().unwrap().split(" =").next().unwrap();
        let text = std::fs::read_to_string(&cfg).unwrap();
        let line = 1 + text.lines().position(|l| l.starts_with(key)).unwrap();
        let out = desk(&cfg, &db, &[], "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{body}: {err}");
        let want = format!("{}:{line}:", cfg.display());
        assert!(
            err.contains(&want) && err.contains(&format!("field `{field}")),
            "{body}: want {want} and {field} in {err}"
        );
    }
}

#[test]
fn serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[desk.mqtt]\nbroker = \"none\"");
    let cfg = cfg.display().to_string();
    // Port 0: the desk binds a free port and prints where it listens.
    let mut child = Proc::simpang(
        "desk",
        &["desk", "--config", &cfg, "--listen", "127.0.0.1:0"],
        &[],
    );
    let line = child.wait_line("desk: http://", support::simpang::START);
    let base = line
        .trim()
        .trim_start_matches("desk: ")
        .trim_end_matches('/');
    let h = Http::new(base);
    assert_eq!(h.get("/healthz").status, 200, "the desk answers");
    assert_eq!(h.get("/login").status, 200);
    assert_eq!(h.get("/dashboard").status, 303);
    // The default database is data_dir/desk.db, relative to the config file, in WAL mode.
    assert!(dir.path().join("data/desk.db").exists());
    assert!(dir.path().join("data/desk.db-wal").exists(), "WAL journal");
    let status = child
        .terminate(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the desk did not stop on SIGTERM:\n{}", child.log_tail()));
    assert!(status.success(), "{status}");
}
