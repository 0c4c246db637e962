//! Helpers for integration tests that run the real `simpang` binary and servers on loopback.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simpang")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A child process killed (SIGKILL) when dropped, with its stdout lines in a channel and its
/// stderr kept in a file for failure messages.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    pub stderr_path: PathBuf,
}

impl Proc {
    pub fn spawn(args: &[&str], log_dir: &Path, name: &str) -> Proc {
        Self::spawn_env(args, log_dir, name, &[])
    }

    pub fn spawn_env(args: &[&str], log_dir: &Path, name: &str, env: &[(&str, &str)]) -> Proc {
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let stderr = std::fs::File::create(&stderr_path).expect("stderr log");
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(root())
            .env(
                "ORT_DYLIB_PATH",
                root().join("vendor-lib/onnxruntime/libonnxruntime.so"),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn simpang");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr_path,
        }
    }

    /// Waits for a stdout line starting with `prefix`; returns it.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        if let Some(l) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return l.clone();
        }
        while Instant::now() < end {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(l.clone());
                if l.starts_with(prefix) {
                    return l;
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "process exited ({st}) before printing {prefix:?}\n{}",
                    self.stderr()
                );
            }
        }
        panic!(
            "no line starting with {prefix:?} within {timeout:?}\n{}",
            self.stderr()
        );
    }

    /// Drains stdout lines printed so far.
    pub fn drain(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    pub fn stderr(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        unsafe {
            libc_kill(self.child.id() as i32, 15);
        }
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `simpang samples` for some sites on a free port; returns the process and its port.
pub fn start_samples(config: &Path, sites: &[&str], port: u16, log_dir: &Path) -> Proc {
    let mut args = vec![
        "samples".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--port".into(),
        port.to_string(),
    ];
    if !sites.is_empty() {
        args.push("--sites".into());
        args.push(sites.join(","));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = Proc::spawn(&args, log_dir, &format!("samples-{}", sites.join("-")));
    p.wait_line("samples: rtsp://", Duration::from_secs(20));
    p
}

/// `simpang run` with a config; returns the process and its HTTP address.
pub fn start_run(config: &Path, log_dir: &Path, name: &str) -> (Proc, String) {
    let cfg = config.display().to_string();
    let mut p = Proc::spawn(&["run", "--config", &cfg], log_dir, name);
    let line = p.wait_line("wall: http://", Duration::from_secs(60));
    let addr = line
        .trim_start_matches("wall: http://")
        .trim_end_matches('/')
        .to_string();
    (p, addr)
}

pub fn http_get(addr: &str, path: &str) -> Result<String, String> {
    ureq::get(&format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .call()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|e| e.to_string())
}

/// Value of a Prometheus series `name{site="..."}` in a /metrics text.
pub fn metric(text: &str, name: &str, site: &str) -> Option<f64> {
    let prefix = format!("{name}{{site=\"{site}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

pub fn site_metric(addr: &str, name: &str, site: &str) -> Option<f64> {
    http_get(addr, "/metrics")
        .ok()
        .and_then(|t| metric(&t, name, site))
}

/// Polls `f` until it returns true or `timeout` passes; returns the time it took.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// A minimal config for tests: absolute paths into the repository, data in `dir`, the wall on a
/// free port, sites appended by the caller.
pub fn base_config(dir: &Path) -> String {
    let r = root();
    format!(
        r#"data_dir = "{data}"

[city]
name = "Palembang"
timezone = "Asia/Jakarta"

[detect]
model = "{r}/models/nanodet-m-int8/manifest.toml"
ort_library = "{r}/vendor-lib/onnxruntime/libonnxruntime.so"

[ingest]
silence_timeout_s = 3.0
backoff_initial_s = 1.0
backoff_max_s = 4.0

[mqtt]
embedded_listen = "127.0.0.1:{mqtt}"

[wall]
listen = "127.0.0.1:0"
rtsp_port = 0

[samples]
footage_dir = "{r}/samples"

[desk]
listen = "127.0.0.1:0"
"#,
        data = dir.join("data").display(),
        r = r.display(),
        mqtt = free_port(),
    )
}

/// A `[[sites]]` block with no zones.
pub fn site_block(id: &str, stream: &str) -> String {
    format!(
        r#"
[[sites]]
id = "{id}"
name = "Site {id}"
address = "Jl. Test {id}, Palembang"
lat = -2.99
lon = 104.76
stream = "{stream}"
"#
    )
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}
