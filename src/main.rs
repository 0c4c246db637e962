//! The `simpang` command line. Parsing only: every subcommand lives in its stage's module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// CCTV video analytics for a city command center.
#[derive(Parser)]
#[command(name = "simpang", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cameras -> detection -> incidents -> MQTT; annotated wall and RTSP out.
    Run(simpang::app::RunArgs),
    /// The complaint workflow service: web UI, HTTP API, MQTT intake.
    Desk(simpang::desk::DeskArgs),
    /// The video wall's accounts: people (password) and devices (token, HTTP and RTSP).
    Wall(simpang::wall::cli::WallArgs),
    /// Serve recorded footage as the sites' RTSP cameras (loopback).
    Samples(simpang::ingest::samples::SamplesArgs),
    /// Replay footage as N cameras and measure real-time factor and stage latency.
    Bench(simpang::bench::BenchArgs),
    /// Play recorded clips through the rules as fast as possible; score against labels.
    Replay(simpang::app::ReplayArgs),
    /// Everything on embedded defaults: sample cameras, broker, pipeline, desk, wall.
    Demo(simpang::app::DemoArgs),
    /// Validate config, model and pipelines; print what is wrong.
    Check(simpang::app::CheckArgs),
    /// Write the MQTT users' passwords, signing keys, and Mosquitto password and ACL files.
    MqttCredentials(simpang::incident::credentials::CredentialsArgs),
    /// Run the detector on an image or video file.
    Detect(simpang::tools::detect::DetectArgs),
    /// Compare detector models: speed and agreement with a reference.
    Eval(simpang::tools::eval::EvalArgs),
}

fn main() -> ExitCode {
    simpang::app::init_tracing();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run(a) => simpang::app::run_main(a),
        Cmd::Desk(a) => simpang::desk::main(a),
        Cmd::Wall(a) => simpang::wall::cli::main(a),
        Cmd::Samples(a) => simpang::ingest::samples::main(a),
        Cmd::Bench(a) => simpang::bench::main(a),
        Cmd::Replay(a) => simpang::app::replay_main(a),
        Cmd::Demo(a) => simpang::app::demo_main(a),
        Cmd::Check(a) => simpang::app::check_main(a),
        Cmd::MqttCredentials(a) => simpang::incident::credentials::main(a),
        Cmd::Detect(a) => simpang::tools::detect::main(a),
        Cmd::Eval(a) => simpang::tools::eval::main(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
