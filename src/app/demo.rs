//! `simpang demo`: the whole system in one process on embedded defaults: the sample cameras,
//! the pipeline with its embedded MQTT broker, the wall, and the complaint desk, with the
//! accounts it needs (desk staff, a wall user and a wall device for RTSP), printed at start.
//!
//! The demo makes accounts only in a database it owns: pointed at a real desk's database (one
//! with accounts it did not make), it refuses before starting anything, and leaves them alone.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tracing::info;

use crate::config::Config;
use crate::ingest::samples::{footage_for, SampleServer};

/// Arguments of `simpang demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value_os_t = crate::config::default_path())]
    pub config: PathBuf,
}

pub fn demo_main(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(&args.config)?;
    crate::ingest::init_gstreamer()?;
    std::fs::create_dir_all(cfg.data_dir())
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir().display()))?;
    // The desk sends its staff to the wall, and the wall's sign-in page points back.
    if cfg.wall.listen.port() != 0 && cfg.desk.wall_url.is_none() {
        cfg.desk.wall_url = Some(format!("http://{}", cfg.wall.listen));
    }
    if cfg.desk.listen.port() != 0 && cfg.wall.auth.desk_url.is_none() {
        cfg.wall.auth.desk_url = Some(format!("http://{}", cfg.desk.listen));
    }
    let rt = super::runtime()?;

    // 0. Accounts first: a real desk's database stops the demo before anything starts.
    let url = crate::desk::database_url(&cfg, None);
    let (desk, accounts) = rt.block_on(async {
        let desk = crate::desk::open(Arc::new(cfg.clone()), &url, crate::desk::Clock::default())
            .await
            .with_context(|| {
                format!(
                    "cannot open the desk database {}",
                    crate::desk::redact(&url)
                )
            })?;
        let accounts = crate::desk::ensure_demo_accounts(&desk)
            .await
            .with_context(|| format!("desk database {}", crate::desk::redact(&url)))?;
        Ok::<_, anyhow::Error>((desk, accounts))
    })?;
    let wall_login = wall_accounts(&cfg)?;

    // 1. Sample cameras: the config's streams point at rtsp://127.0.0.1:<samples.port>/<site>.
    let footage = cfg.resolve(&cfg.samples.footage_dir);
    let feeds = cfg
        .sites
        .iter()
        .map(|s| {
            footage_for(&footage, s.id.as_str(), &cfg.samples.default_footage)
                .map(|p| (s.id.clone(), p))
                .with_context(|| format!("sample footage for site {:?}", s.id))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let samples = SampleServer::start(&feeds, cfg.samples.port)?;

    rt.block_on(async {
        // 2. The pipeline, with the embedded broker, the wall and RTSP out.
        let running = super::run(cfg.clone()).await?;

        // 3. The desk, subscribed to the same broker.
        let listener = tokio::net::TcpListener::bind(cfg.desk.listen)
            .await
            .with_context(|| format!("cannot listen on desk.listen {}", cfg.desk.listen))?;
        let desk_addr = listener.local_addr()?;
        let (stop_desk, desk_stopped) = tokio::sync::oneshot::channel::<()>();
        let desk_task = tokio::spawn(crate::desk::run_until(desk, listener, async move {
            let _ = desk_stopped.await;
        }));

        print_banner(
            &cfg,
            &running.http_addr.to_string(),
            &running.metrics_addr.to_string(),
            &desk_addr.to_string(),
            samples.port(),
        );
        println!("Demo accounts for the wall (new at every start):");
        match &wall_login {
            Some(w) => {
                println!(
                    "  sign in at http://{}/login   {:<10} {}",
                    running.http_addr, w.user, w.password
                );
                if cfg.wall.rtsp_port != 0 {
                    println!(
                        "  RTSP / HTTP device          rtsp://{}:{}@127.0.0.1:{}/annotated/wall",
                        w.device, w.token, cfg.wall.rtsp_port
                    );
                }
                println!(
                    "  HTTP device                 curl -H 'Authorization: Bearer {}' http://{}/api/wall",
                    w.token, running.http_addr
                );
            }
            None => println!("  (wall accounts named like the demo's exist already; left alone)"),
        }
        if cfg.desk.wall_url.is_some() {
            println!("  desk staff (admin, operator, pemantau) open the wall from the desk's \"Video wall\" link");
        }
        if let Some(b) = running.managed_broker() {
            print_broker_logins(&cfg, &b);
        }
        println!("Demo accounts for the desk (new passwords at every start):");
        for a in &accounts {
            let agency = a
                .agency
                .as_deref()
                .map(|g| format!(", {g}"))
                .unwrap_or_default();
            println!(
                "  {:<10} {:<16} ({:?}{agency})",
                a.username, a.password, a.role
            );
        }
        println!("Ctrl-C stops everything.");

        crate::shutdown::signal().await;
        info!("demo shutting down");
        let _ = stop_desk.send(());
        let _ = desk_task.await;
        running.stop().await;
        Ok::<_, anyhow::Error>(())
    })?;
    samples.stop();
    Ok(ExitCode::SUCCESS)
}

/// The demo's wall credentials, printed at start.
struct WallLogin {
    user: String,
    password: String,
    device: String,
    token: String,
}

/// A wall user and a wall device of the demo's own, new credentials at every start; `None`
/// when accounts of those names exist that the demo did not make (they are left alone).
fn wall_accounts(cfg: &Config) -> anyhow::Result<Option<WallLogin>> {
    use crate::wall::accounts::{add_device, add_person, AccountsError, By};
    let path = cfg.wall_accounts_path();
    let password = crate::desk::auth::random_password();
    let hash = crate::guard::secret::hash_password(&password)?;
    let (user, device) = ("wall", "wall-vms");
    match add_person(&path, user, hash, By::Demo) {
        Ok(()) => {}
        Err(AccountsError::NotDemo(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let token = match add_device(&path, device, By::Demo) {
        Ok(t) => t,
        Err(AccountsError::NotDemo(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(Some(WallLogin {
        user: user.into(),
        password,
        device: device.into(),
        token,
    }))
}

fn print_banner(cfg: &Config, http: &str, metrics: &str, desk: &str, samples_port: u16) {
    println!();
    println!(
        "simpang demo: {} sites of {}",
        cfg.sites.len(),
        cfg.city.name
    );
    println!("  Video wall        http://{http}/");
    println!("  Desk (pengaduan)  http://{desk}/   citizen form: http://{desk}/lapor");
    println!("  Metrics           http://{metrics}/metrics");
    if cfg.mqtt.broker == "embedded" {
        let tls = cfg
            .mqtt
            .embedded_tls_listen
            .map(|t| format!("   mqtts://{t}"))
            .unwrap_or_default();
        println!(
            "  MQTT broker       mqtt://{}{tls}   (mosquitto, logins required)",
            cfg.mqtt.embedded_listen
        );
    } else {
        println!("  MQTT broker       {}", cfg.mqtt.broker_urls().join(", "));
    }
    if cfg.wall.rtsp_port != 0 {
        println!(
            "  Annotated RTSP    rtsp://DEVICE:TOKEN@127.0.0.1:{}/annotated/wall   per site: /annotated/<site>",
            cfg.wall.rtsp_port
        );
    }
    println!("  Sample cameras    rtsp://127.0.0.1:{samples_port}/<site>");
    println!();
}

/// The managed broker's logins (they live in `{data_dir}/mqtt/credentials.toml`, 0600, and are
/// kept across starts) and how to watch the messages with them.
fn print_broker_logins(cfg: &Config, b: &crate::incident::ManagedBroker) {
    use crate::incident::access::{DESK_USER, VIEWER_USER};
    let creds = b.credentials();
    let files = b.files();
    let listen = crate::incident::mosquitto::loopback(cfg.mqtt.embedded_listen);
    println!(
        "MQTT logins (kept in {}, readable by you only):",
        files.credentials.display()
    );
    for user in [VIEWER_USER, DESK_USER] {
        if let Some(l) = creds.login(user) {
            println!("  {:<10} {}", l.username, l.password);
        }
    }
    println!("  site-<id>  one per site, used by simpang run itself; signing keys beside them");
    if let Some(v) = creds.login(VIEWER_USER) {
        println!(
            "Watch:  mosquitto_sub -h {} -p {} -u {} -P '{}' -t 'simpang/v1/#' -v",
            listen.ip(),
            listen.port(),
            v.username,
            v.password
        );
        if let Some(t) = cfg.mqtt.embedded_tls_listen {
            let t = crate::incident::mosquitto::loopback(t);
            println!(
                "  TLS:  mosquitto_sub -h localhost -p {} --cafile {} -u {} -P '{}' -t 'simpang/v1/#' -v",
                t.port(),
                files.ca().display(),
                v.username,
                v.password
            );
        }
    }
    println!();
}
