//! Running the plain-Python baseline (`benches/baseline/baseline.py`) and reading its result.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

use super::report::{judge, BaselineRun, Mode};
use super::BenchError;
use crate::procfs;

/// The two configurations the issue names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// (a) a thread per stream, one onnxruntime session per stream, `intra_op_num_threads=1`.
    PerStream,
    /// (b) one session shared by all stream threads, onnxruntime's default threads.
    Shared,
}

impl Setup {
    pub fn arg(self) -> &'static str {
        match self {
            Setup::PerStream => "per_stream",
            Setup::Shared => "shared",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Setup::PerStream => {
                "a: thread per stream, one onnxruntime session per stream, intra_op_num_threads=1"
            }
            Setup::Shared => {
                "b: thread per stream, one shared onnxruntime session, default threads"
            }
        }
    }
}

/// Where the baseline lives and what it runs on.
#[derive(Clone, Debug)]
pub struct BaselineOptions {
    pub python: PathBuf,
    pub script: PathBuf,
    pub footage: PathBuf,
    pub manifest: PathBuf,
    /// The ONNX file simpang's detector loads for that manifest on this CPU.
    pub onnx: PathBuf,
    pub input_size: Option<[u32; 2]>,
    pub detect_fps: f64,
    pub seconds: f64,
    pub warmup: f64,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Line {
    Progress(serde_json::Value),
    Result(BaselineRun),
}

/// Runs the baseline with `streams` streams; `progress` sees its per-second lines.
pub fn run(
    o: &BaselineOptions,
    setup: Setup,
    streams: usize,
    progress: &dyn Fn(&serde_json::Value),
) -> Result<BaselineRun, BenchError> {
    let mut cmd = Command::new(&o.python);
    cmd.arg(&o.script)
        .arg("--footage")
        .arg(&o.footage)
        .arg("--manifest")
        .arg(&o.manifest)
        .arg("--onnx")
        .arg(&o.onnx)
        .args(["--setup", setup.arg()])
        .args(["--streams", &streams.to_string()])
        .args(["--seconds", &o.seconds.to_string()])
        .args(["--warmup", &o.warmup.to_string()])
        .args(["--detect-fps", &o.detect_fps.to_string()]);
    if let Some([w, h]) = o.input_size {
        cmd.args(["--input-size", &w.to_string(), &h.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| BenchError::Io {
            what: format!(
                "cannot run the baseline with {} (made by scripts/setup.sh)",
                o.python.display()
            ),
            error,
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| BenchError::Protocol("baseline has no stdout".into()))?;
    let stderr = child.stderr.take();
    // Drained on its own thread so a chatty stderr cannot block the child.
    let err_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(e) = stderr {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        text
    });
    let mut result = None;
    // Machine and baseline CPU from the first progress line (a second into the window) to the
    // result, for the CPU other processes took meanwhile.
    let mut first: Option<(std::time::Instant, f64, f64)> = None;
    let pid = child.id();
    let mut others = 0.0;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|error| BenchError::Io {
            what: "cannot read the baseline's output".into(),
            error,
        })?;
        let cpu_now = || {
            (
                std::time::Instant::now(),
                procfs::machine_busy_seconds().unwrap_or(0.0),
                procfs::cpu_seconds(Some(pid)).unwrap_or(0.0)
                    + procfs::cpu_seconds(None).unwrap_or(0.0),
            )
        };
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Progress(v)) => {
                if first.is_none() {
                    first = Some(cpu_now());
                }
                progress(&v)
            }
            Ok(Line::Result(r)) => {
                if let Some((t0, m0, c0)) = first {
                    let (t1, m1, c1) = cpu_now();
                    let dt = (t1 - t0).as_secs_f64().max(1e-6);
                    others = ((m1 - m0) - (c1 - c0)).max(0.0) / dt * 100.0;
                }
                result = Some(r)
            }
            Err(_) => tracing::debug!(line, "baseline output"),
        }
    }
    let status = child.wait().map_err(|error| BenchError::Io {
        what: "baseline".into(),
        error,
    })?;
    let stderr = err_thread.join().unwrap_or_default();
    let mut run = match (status.success(), result) {
        (true, Some(r)) => r,
        _ => {
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            return Err(BenchError::Child(format!(
                "the Python baseline failed ({status}):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )));
        }
    };
    run.others_cpu_percent = others;
    run.failures = judge(
        &run.rows(),
        Mode::Realtime,
        run.source_fps,
        run.detect_fps,
        run.window_s,
    );
    run.holds = run.failures.is_empty();
    Ok(run)
}

/// `path` as given if it exists, else under the source tree this binary was built from (so the
/// bench also works from another working directory of a checkout).
pub fn locate(path: &Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if in_tree.exists() {
        in_tree
    } else {
        path.to_path_buf()
    }
}
