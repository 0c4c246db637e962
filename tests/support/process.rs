//! Child processes of a test: stdout read line by line (for the lines that say a process is
//! ready and where it listens), stderr kept in a log file whose tail goes into every failure
//! message, and SIGKILL when the value is dropped, so a failing test leaves nothing running.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
}

/// Why a process did not print the line a test waited for.
#[derive(Debug)]
pub enum NotReady {
    /// It exited; its status and the tail of its stderr.
    Exited(ExitStatus, String),
    /// It still runs; the tail of its stderr.
    Timeout(String),
}

static LOGS: AtomicU32 = AtomicU32::new(0);

impl Proc {
    /// Starts `cmd` with stdout piped to the test and stderr into a log file.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let log = std::env::temp_dir().join(format!(
            "simpang-test-{}-{}-{name}.log",
            std::process::id(),
            LOGS.fetch_add(1, Ordering::Relaxed)
        ));
        let err = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_string(),
            child,
            lines: rx,
            seen: Vec::new(),
            log,
        }
    }

    /// `simpang ARGS` from the repository root, with the ONNX Runtime the tests use.
    pub fn simpang(name: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(super::bin());
        cmd.args(args).current_dir(super::root()).env(
            "ORT_DYLIB_PATH",
            super::root().join("vendor-lib/onnxruntime/libonnxruntime.so"),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        Proc::spawn(name, cmd)
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The first stdout line (printed so far or within `deadline`) that contains `needle`.
    pub fn try_wait_line(&mut self, needle: &str, deadline: Duration) -> Result<String, NotReady> {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return Ok(l.clone());
        }
        let end = Instant::now() + deadline;
        loop {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Ok(l);
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process ended (or closes it as it ends).
                    let st = self.child.wait().expect("wait for the child");
                    return Err(NotReady::Exited(st, self.log_tail()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // Lines it printed before exiting may still be in the pipe, not yet read by the
                // reader thread: read until it sees the end of the pipe (the channel closes).
                while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Ok(l);
                    }
                }
                return Err(NotReady::Exited(st, self.log_tail()));
            }
            if Instant::now() >= end {
                return Err(NotReady::Timeout(self.log_tail()));
            }
        }
    }

    /// [`Proc::try_wait_line`], panicking with the process's stderr when it does not come.
    pub fn wait_line(&mut self, needle: &str, deadline: Duration) -> String {
        match self.try_wait_line(needle, deadline) {
            Ok(l) => l,
            Err(NotReady::Exited(st, log)) => panic!(
                "{} exited ({st}) before printing {needle:?}; stderr:\n{log}",
                self.name
            ),
            Err(NotReady::Timeout(log)) => panic!(
                "{} printed no line with {needle:?} within {deadline:?}; stderr:\n{log}",
                self.name
            ),
        }
    }

    /// Every stdout line printed so far.
    pub fn stdout_lines(&mut self) -> Vec<String> {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
        self.seen.clone()
    }

    /// Everything on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 60 lines of stderr, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of a child this value owns and has not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `grace` for it to exit; its status, or `None` when it had to be
    /// killed.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return Some(st);
        }
        self.signal(libc::SIGTERM);
        let end = Instant::now() + grace;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("{} stderr kept in {}", self.name, self.log.display());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
