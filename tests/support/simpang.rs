//! The `simpang` binary as a test runs it: `simpang run` and `simpang samples` as child
//! processes that say where they listen, and the configs they run on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::metrics::Metrics;
use super::ports;
use super::process::{NotReady, Proc};

/// Start-up of a process that loads the model and starts GStreamer: generous, it only bounds
/// a hang on a loaded machine.
pub const START: Duration = Duration::from_secs(180);

/// `RUST_LOG` for the children: `SIMPANG_TEST_LOG` when chasing a failure (e.g.
/// `simpang::wall=debug`), else simpang's own default.
fn log_env() -> Vec<(&'static str, String)> {
    std::env::var("SIMPANG_TEST_LOG")
        .map(|v| vec![("RUST_LOG", v)])
        .unwrap_or_default()
}

/// `simpang run` as a child process.
pub struct Run {
    pub proc: Proc,
    /// `http://DEVICE:TOKEN@ADDR` of the wall, signed in as a wall device account made for
    /// this run (ureq sends the user info as HTTP Basic); no trailing slash.
    pub base: String,
    /// `http://ADDR` of the wall without credentials.
    pub anon: String,
    /// `http://ADDR` of the metrics listener (`/metrics`, `/api/status`).
    pub ops: String,
    /// The wall device account of this run: (name, token).
    pub device: (String, String),
    config: PathBuf,
}

/// A wall device account in `config`'s accounts file (made with the library, as `simpang wall
/// device add` makes it): (name, token).
pub fn wall_device(config: &Path) -> (String, String) {
    let cfg = simpang::config::Config::load(config)
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    wall_device_of(&cfg)
}

/// A person's wall account `name` with `password` (as `simpang wall user add` makes it), for
/// the tests that sign in at the wall page.
pub fn wall_person_of(cfg: &simpang::config::Config, name: &str, password: &str) {
    simpang::wall::accounts::add_person(
        &cfg.wall_accounts_path(),
        name,
        simpang::guard::secret::hash_password(password).expect("hash the password"),
        simpang::wall::accounts::By::Cli,
    )
    .expect("add a wall person account");
}

/// The same for a config already loaded (a wall the test serves in-process). Every test that
/// signs in to the wall as a device gets its account here.
pub fn wall_device_of(cfg: &simpang::config::Config) -> (String, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let token = simpang::wall::accounts::add_device(
        &cfg.wall_accounts_path(),
        &name,
        simpang::wall::accounts::By::Cli,
    )
    .expect("add a wall device account");
    (name, token)
}

/// `http://ADDR` with `name:token@` in it.
pub fn with_login(base: &str, (name, token): &(String, String)) -> String {
    base.replacen("://", &format!("://{name}:{token}@"), 1)
}

impl Run {
    /// `simpang run --config CONFIG [--sites ...]`, waiting for its `wall: http://ADDR/` line.
    /// The listeners that bind port 0 report themselves; when a fixed one (the embedded MQTT
    /// broker, annotated RTSP out) was taken, the config gets new ports from [`ports::port`]
    /// and the run starts again: read them back with [`Run::mqtt_port`] and [`Run::rtsp_port`].
    pub fn start(config: &Path, sites: &[&str]) -> Run {
        ports::retry_on_clash("simpang run", || Run::try_start(config, sites))
    }

    fn try_start(config: &Path, sites: &[&str]) -> Result<Run, String> {
        let device = wall_device(config);
        let cfg = config.display().to_string();
        let list = sites.join(",");
        let mut args = vec!["run", "--config", &cfg, "--metrics-listen", "127.0.0.1:0"];
        if !sites.is_empty() {
            args.extend(["--sites", &list]);
        }
        let env = log_env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut proc = Proc::simpang("run", &args, &env);
        match proc.try_wait_line("wall: http://", START) {
            Ok(line) => {
                let addr = line
                    .trim()
                    .trim_start_matches("wall: http://")
                    .trim_end_matches('/')
                    .to_string();
                let ops = proc.wait_line("metrics: http://", START);
                let ops = ops
                    .trim()
                    .trim_start_matches("metrics: ")
                    .trim_end_matches("/metrics")
                    .to_string();
                let anon = format!("http://{addr}");
                Ok(Run {
                    base: with_login(&anon, &device),
                    anon,
                    ops,
                    device,
                    proc,
                    config: config.to_path_buf(),
                })
            }
            Err(NotReady::Exited(_, log)) if ports::is_bind_clash(&log) => {
                if !repick_fixed_ports(config) {
                    panic!("simpang run could not bind a port it was given:\n{log}");
                }
                Err(log)
            }
            Err(NotReady::Exited(st, log)) => {
                panic!("simpang run exited ({st}) before it was up; stderr:\n{log}")
            }
            Err(NotReady::Timeout(log)) => {
                panic!("simpang run was not up within {START:?}; stderr:\n{log}")
            }
        }
    }

    fn config_doc(&self) -> toml_edit::DocumentMut {
        read_doc(&self.config)
    }

    /// The port of the embedded MQTT broker this run was started with.
    pub fn mqtt_port(&self) -> u16 {
        let doc = self.config_doc();
        let listen = doc["mqtt"]["embedded_listen"]
            .as_str()
            .expect("the config sets mqtt.embedded_listen");
        listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in mqtt.embedded_listen {listen:?}"))
    }

    /// The port of the managed broker's TLS listener (`mqtt.embedded_tls_listen`).
    pub fn mqtt_tls_port(&self) -> u16 {
        let doc = self.config_doc();
        let listen = doc["mqtt"]["embedded_tls_listen"]
            .as_str()
            .expect("the config sets mqtt.embedded_tls_listen");
        listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in mqtt.embedded_tls_listen {listen:?}"))
    }

    /// The port of annotated RTSP out this run was started with.
    pub fn rtsp_port(&self) -> u16 {
        let p = self.config_doc()["wall"]["rtsp_port"]
            .as_integer()
            .expect("the config sets wall.rtsp_port");
        assert_ne!(p, 0, "annotated RTSP out is off in this config");
        p as u16
    }

    /// A wall URL, signed in as this run's device account.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A wall URL without credentials.
    pub fn anon_url(&self, path: &str) -> String {
        format!("{}{path}", self.anon)
    }

    /// A URL of the metrics listener (`/metrics`, `/api/status`, `/healthz`).
    pub fn ops_url(&self, path: &str) -> String {
        format!("{}{path}", self.ops)
    }

    /// `rtsp://DEVICE:TOKEN@127.0.0.1:PORT{path}` of annotated RTSP out.
    pub fn rtsp_url(&self, path: &str) -> String {
        let (name, token) = &self.device;
        format!("rtsp://{name}:{token}@127.0.0.1:{}{path}", self.rtsp_port())
    }

    /// A scrape of `/metrics` (panics when the run does not answer).
    pub fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.ops_url("/metrics")).unwrap_or_else(|| {
            panic!(
                "{} does not answer; stderr:\n{}",
                self.ops_url("/metrics"),
                self.proc.log_tail()
            )
        })
    }

    /// `name{site="SITE"}` now; `None` while the series does not exist.
    pub fn metric(&self, name: &str, site: &str) -> Option<f64> {
        self.metrics().site(name, site)
    }

    /// The sum of every series of `name` now.
    pub fn total(&self, name: &str) -> Option<f64> {
        self.metrics().sum(name, &[])
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

fn read_doc(config: &Path) -> toml_edit::DocumentMut {
    std::fs::read_to_string(config)
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()))
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()))
}

/// New ports for the fixed listeners of a config (the embedded broker, annotated RTSP out);
/// false when it has none.
fn repick_fixed_ports(config: &Path) -> bool {
    let mut doc = read_doc(config);
    let mut changed = false;
    if doc
        .get("mqtt")
        .and_then(|m| m.get("embedded_listen"))
        .is_some()
    {
        doc["mqtt"]["embedded_listen"] = toml_edit::value(format!("127.0.0.1:{}", ports::port()));
        changed = true;
    }
    if doc
        .get("mqtt")
        .and_then(|m| m.get("embedded_tls_listen"))
        .is_some()
    {
        doc["mqtt"]["embedded_tls_listen"] =
            toml_edit::value(format!("127.0.0.1:{}", ports::port()));
        changed = true;
    }
    if doc
        .get("wall")
        .and_then(|w| w.get("rtsp_port"))
        .and_then(|p| p.as_integer())
        .is_some_and(|p| p != 0)
    {
        doc["wall"]["rtsp_port"] = toml_edit::value(ports::port() as i64);
        changed = true;
    }
    if changed {
        std::fs::write(config, doc.to_string()).expect("rewrite the config");
    }
    changed
}

/// `simpang samples`: sample RTSP cameras on loopback.
pub struct Samples {
    pub proc: Proc,
    pub port: u16,
}

impl Samples {
    /// Serves the config's sites (or `sites`), from `footage` when given (one file for all)
    /// else the config's footage folder, on a port it picks and reports.
    pub fn start(config: &Path, sites: &[&str], footage: Option<&Path>) -> Samples {
        match Samples::try_start_on(config, sites, footage, 0) {
            Ok(s) => s,
            Err(log) => panic!("simpang samples could not bind port 0:\n{log}"),
        }
    }

    /// On a port that stays this camera's address across restarts: from [`ports::port`],
    /// retried on a clash.
    pub fn start_fixed(config: &Path, sites: &[&str], footage: Option<&Path>) -> Samples {
        ports::retry_on_clash("simpang samples", || {
            Samples::try_start_on(config, sites, footage, ports::port())
        })
    }

    /// On `port` again (the camera comes back where it was).
    pub fn restart_on(config: &Path, sites: &[&str], footage: Option<&Path>, port: u16) -> Samples {
        Samples::try_start_on(config, sites, footage, port)
            .unwrap_or_else(|log| panic!("port {port} was taken while its camera was down:\n{log}"))
    }

    /// `Err(stderr)` only when the port was taken.
    fn try_start_on(
        config: &Path,
        sites: &[&str],
        footage: Option<&Path>,
        port: u16,
    ) -> Result<Samples, String> {
        let cfg = config.display().to_string();
        let port_arg = port.to_string();
        let list = sites.join(",");
        let file = footage.map(|f| f.display().to_string());
        let mut args = vec!["samples", "--config", &cfg, "--port", &port_arg];
        if !sites.is_empty() {
            args.extend(["--sites", &list]);
        }
        if let Some(f) = &file {
            args.extend(["--footage", f]);
        }
        let mut proc = Proc::simpang("samples", &args, &[]);
        match proc.try_wait_line("samples: rtsp://", START) {
            Ok(line) => {
                let got = line
                    .split("127.0.0.1:")
                    .nth(1)
                    .and_then(|r| r.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| panic!("no port in {line:?}"));
                if port != 0 {
                    assert_eq!(got, port, "samples serves on the port it was given");
                }
                Ok(Samples { proc, port: got })
            }
            Err(NotReady::Exited(_, log)) if port != 0 && ports::is_bind_clash(&log) => Err(log),
            Err(e) => panic!("simpang samples did not start: {e:?}"),
        }
    }

    /// `rtsp://127.0.0.1:PORT/SITE`.
    pub fn url(&self, site: &str) -> String {
        format!("rtsp://127.0.0.1:{}/{site}", self.port)
    }

    /// SIGTERM (then SIGKILL): the cameras go away.
    pub fn stop(&mut self) {
        self.proc.terminate(Duration::from_secs(10));
    }

    /// SIGKILL: the cameras go away at once.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// A minimal config: absolute paths into the repository, data in `dir/data`, the wall and the
/// desk on port 0, the embedded broker on a port of its own, no annotated RTSP out; sites are
/// appended by the caller ([`site_block`]).
pub fn base_config(dir: &Path) -> String {
    let r = super::root();
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
        mqtt = ports::port(),
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

/// Writes `text` to `dir/name`; its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

/// A config for `simpang run` in `dir`: sites whose cameras are unreachable (port 1 on loopback
/// refuses at once, so the camera offline path produces incidents), the wall on port 0, no RTSP
/// out, the given `[mqtt]` and `[incidents]` bodies.
pub fn run_config(dir: &Path, mqtt: &str, incidents: &str, sites: &[&str]) -> PathBuf {
    let streams: Vec<(&str, String)> = sites
        .iter()
        .map(|s| (*s, format!("rtsp://127.0.0.1:1/{s}")))
        .collect();
    run_config_streams(dir, mqtt, incidents, &streams)
}

/// [`run_config`] with each site's stream given.
pub fn run_config_streams(
    dir: &Path,
    mqtt: &str,
    incidents: &str,
    sites: &[(&str, String)],
) -> PathBuf {
    let data = dir.join("data");
    let mut t = format!(
        "data_dir = {data:?}\n\n[city]\nname = \"Palembang\"\ntimezone = \"Asia/Jakarta\"\n\n\
         [detect]\nmodel = {model:?}\nort_library = {ort:?}\n\n\
         [ingest]\nbackoff_initial_s = 1.0\nbackoff_max_s = 2.0\nsilence_timeout_s = 2.0\n\n\
         [mqtt]\n{mqtt}\n\n[incidents]\n{incidents}\n\n\
         [wall]\nlisten = \"127.0.0.1:0\"\nrtsp_port = 0\n",
        model = super::root().join("models/nanodet-m-416/manifest.toml"),
        ort = super::root().join("vendor-lib/onnxruntime/libonnxruntime.so"),
    );
    for (i, (s, stream)) in sites.iter().enumerate() {
        t += &format!(
            "\n[[sites]]\nid = \"{s}\"\nname = \"Simpang Uji {i}\"\naddress = \"Jl. Uji No. {i}, Palembang\"\nlat = -2.99\nlon = 104.75\nstream = \"{stream}\"\n"
        );
    }
    let p = dir.join("simpang.toml");
    std::fs::write(&p, t).expect("config file");
    p
}

/// Points every site's stream of a config at `samples` (`rtsp://127.0.0.1:PORT/SITE`).
pub fn point_streams_at(config: &Path, samples_port: u16) {
    let mut doc = read_doc(config);
    if let Some(sites) = doc["sites"].as_array_of_tables_mut() {
        for s in sites.iter_mut() {
            let id = s["id"].as_str().unwrap_or_default().to_string();
            s["stream"] = toml_edit::value(format!("rtsp://127.0.0.1:{samples_port}/{id}"));
        }
    }
    std::fs::write(config, doc.to_string()).expect("rewrite the config");
}
