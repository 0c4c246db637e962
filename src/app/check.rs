//! `simpang check`: validates the config, the model and the GStreamer elements the pipelines
//! need, printing every problem, so a mistake shows before the cameras are touched.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::analytics::SiteAnalytics;
use crate::config::Config;
use crate::detect::Detector;
use crate::incident::{self, BrokerTarget};
use crate::ingest::{self, Templates};

/// Arguments of `simpang check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    #[arg(long, default_value_os_t = crate::config::default_path())]
    pub config: PathBuf,
}

/// Elements used outside the camera templates: decoders that decodebin must find for H.264 and
/// H.265 cameras, the sample server, the wall's encoders.
const EXTRA_ELEMENTS: &[(&str, &str)] = &[
    ("H.264 cameras", "avdec_h264"),
    ("H.265 cameras", "avdec_h265"),
    ("RTSP cameras", "rtph264depay"),
    ("RTSP cameras", "rtph265depay"),
    ("sample cameras", "qtdemux"),
    ("wall passthrough (H.264 to browsers)", "h264parse"),
    ("wall passthrough (H.264 to browsers)", "capsfilter"),
    ("sample cameras", "h264parse"),
    ("sample cameras", "rtph264pay"),
    ("sample cameras", "appsrc"),
    ("wall MJPEG", "jpegenc"),
    ("wall RTSP out", "x264enc"),
];

pub fn check_main(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let mut problems = 0usize;
    let cfg = match Config::load(&args.config) {
        Ok(c) => {
            println!(
                "ok   config {} ({} sites, {} zones, {} lines)",
                args.config.display(),
                c.sites.len(),
                c.sites.iter().map(|s| s.zones.len()).sum::<usize>(),
                c.sites.iter().map(|s| s.lines.len()).sum::<usize>()
            );
            Some(c)
        }
        Err(e) => {
            for line in e.to_string().lines() {
                println!("FAIL {line}");
                problems += 1;
            }
            None
        }
    };

    if let Some(cfg) = &cfg {
        let model = cfg.resolve(&cfg.detect.model);
        if !model.is_file() {
            println!(
                "FAIL detect.model: model manifest {} does not exist",
                model.display()
            );
            problems += 1;
        } else {
            // Loading runs the model once and checks its outputs against the manifest, so a
            // corrupt file, a missing ONNX Runtime or a mismatched manifest all show here.
            match Detector::load(cfg) {
                Err(e) => {
                    println!("FAIL detect.model: {e}");
                    problems += 1;
                }
                Ok(det) => {
                    let (w, h) = det.input_size();
                    let amx = if det.manifest().runs_amx_file() {
                        ", AMX-INT8 copy"
                    } else {
                        ""
                    };
                    println!(
                        "ok   model {} ({w}x{h}, {} classes{amx})",
                        model.display(),
                        det.labels().len()
                    );
                    // Rules and lines name detector classes: check them against this model.
                    for (i, site) in cfg.sites.iter().enumerate() {
                        if let Err(e) = SiteAnalytics::new(site, det.labels()) {
                            let at = cfg.locate(&format!("sites[{i}].{}", e.field()));
                            println!("FAIL {}{e}", at.map(|a| a + ": ").unwrap_or_default());
                            problems += 1;
                        }
                    }
                }
            }
        }
    }

    // --- incident stage (src/incident): data directory and MQTT broker ---
    if let Some(cfg) = &cfg {
        problems += check_incident_stage(cfg);
    }
    // --- end incident stage ---

    match ingest::init_gstreamer() {
        Err(e) => {
            println!("FAIL {e}");
            problems += 1;
        }
        Ok(()) => {
            let dir = cfg
                .as_ref()
                .and_then(|c| c.ingest.pipelines_dir.as_ref().map(|p| c.resolve(p)));
            match Templates::load(dir.as_deref()) {
                Err(e) => {
                    println!("FAIL {e}");
                    problems += 1;
                }
                Ok(t) => {
                    let mut needed: Vec<(String, String)> = t.elements();
                    needed.extend(
                        EXTRA_ELEMENTS
                            .iter()
                            .map(|(why, e)| (why.to_string(), e.to_string())),
                    );
                    let mut missing = 0;
                    for (origin, element) in &needed {
                        if gstreamer::ElementFactory::find(element).is_none() {
                            println!(
                                "FAIL GStreamer element {element:?} (needed by {origin}) is not installed"
                            );
                            missing += 1;
                        }
                    }
                    if missing == 0 {
                        println!("ok   GStreamer elements ({} checked)", needed.len());
                    }
                    problems += missing;
                }
            }
        }
    }

    if problems == 0 {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{problems} problem(s) found");
        Ok(super::failure())
    }
}

/// The data directory must be writable (outbox, snapshots); the broker settings must resolve
/// (URL, CA file). An unreachable broker or a busy embedded port is only a warning: `run`
/// keeps retrying and keeps messages in the outbox meanwhile. Returns the problems found.
fn check_incident_stage(cfg: &Config) -> usize {
    let mut problems = 0;
    let data_dir = cfg.data_dir();
    match incident::check_data_dir(&data_dir) {
        Ok(()) => println!("ok   data_dir {} is writable", data_dir.display()),
        Err(e) => {
            println!("FAIL {e}");
            problems += 1;
        }
    }
    let targets = match BrokerTarget::from_config(cfg) {
        Ok(t) => t,
        Err(e) => {
            println!("FAIL {e}");
            return problems + 1;
        }
    };
    if cfg.mqtt.broker == "embedded" {
        match incident::mosquitto::check_binary(cfg) {
            Ok(b) => println!(
                "ok   mqtt.broker embedded: managed mosquitto {}",
                b.display()
            ),
            Err(e) => {
                println!("FAIL {e}");
                problems += 1;
            }
        }
        let listeners = std::iter::once(("mqtt.embedded_listen", cfg.mqtt.embedded_listen)).chain(
            cfg.mqtt
                .embedded_tls_listen
                .map(|a| ("mqtt.embedded_tls_listen", a)),
        );
        for (setting, addr) in listeners {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => println!("ok   {setting} {addr} is free"),
                Err(e) => println!(
                    "WARN {setting} {addr}: cannot listen now ({e}); is another broker or simpang running?"
                ),
            }
        }
        return problems;
    }
    // Every node of a cluster is checked: one down is a warning like a single broker down,
    // since the links fail over to the others.
    for target in &targets {
        let reachable =
            std::net::ToSocketAddrs::to_socket_addrs(&(target.host.as_str(), target.port))
                .map_err(|e| e.to_string())
                .and_then(|addrs| {
                    let mut last = "no address".to_string();
                    for a in addrs {
                        match std::net::TcpStream::connect_timeout(
                            &a,
                            std::time::Duration::from_secs(3),
                        ) {
                            Ok(_) => return Ok(()),
                            Err(e) => last = e.to_string(),
                        }
                    }
                    Err(last)
                });
        match reachable {
            Ok(()) => println!("ok   mqtt.broker {} is reachable", target.display),
            Err(e) => println!(
                "WARN mqtt.broker {} is not reachable now ({e}); simpang run keeps retrying and keeps messages in the outbox",
                target.display
            ),
        }
    }
    problems
}
