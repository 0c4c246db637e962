//! `simpang demo`: the whole system in one process on embedded defaults: the sample cameras,
//! the pipeline with its embedded MQTT broker, the wall, and the complaint desk.

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
    let cfg = Config::load(&args.config)?;
    crate::ingest::init_gstreamer()?;
    std::fs::create_dir_all(cfg.data_dir())
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir().display()))?;

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

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("simpang-rt")
        .enable_all()
        .build()?;
    rt.block_on(async {
        // 2. The pipeline, with the embedded broker, the wall and RTSP out.
        let running = super::run(cfg.clone()).await?;

        // 3. The desk, subscribed to the same broker.
        let shared = Arc::new(cfg.clone());
        let url = crate::desk::database_url(&cfg, None);
        let desk = crate::desk::open(shared, &url, crate::desk::Clock::default())
            .await
            .context("cannot open the desk database")?;
        let accounts = crate::desk::ensure_demo_accounts(&desk).await?;
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
            &desk_addr.to_string(),
            samples.port(),
        );
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

fn print_banner(cfg: &Config, http: &str, desk: &str, samples_port: u16) {
    let mqtt = if cfg.mqtt.broker == "embedded" {
        format!("mqtt://{}", cfg.mqtt.embedded_listen)
    } else {
        cfg.mqtt.broker.clone()
    };
    let host = mqtt
        .trim_start_matches("mqtt://")
        .split(':')
        .next()
        .unwrap_or("127.0.0.1")
        .to_string();
    println!();
    println!(
        "simpang demo: {} sites of {}",
        cfg.sites.len(),
        cfg.city.name
    );
    println!("  Video wall        http://{http}/");
    println!("  Desk (pengaduan)  http://{desk}/   citizen form: http://{desk}/lapor");
    println!("  Metrics           http://{http}/metrics");
    println!(
        "  MQTT broker       {mqtt}   watch: mosquitto_sub -h {host} -p {} -t 'simpang/v1/#' -v",
        cfg.mqtt.embedded_listen.port()
    );
    if cfg.wall.rtsp_port != 0 {
        println!(
            "  Annotated RTSP    rtsp://127.0.0.1:{}/annotated/wall   per site: /annotated/<site>",
            cfg.wall.rtsp_port
        );
    }
    println!("  Sample cameras    rtsp://127.0.0.1:{samples_port}/<site>");
    println!();
}
