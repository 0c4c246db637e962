//! The command line of `simpang desk`: serve, and manage staff accounts (`user add`,
//! `user list`). Only parsing and printing here; the work is the desk's services.

use std::io::{IsTerminal, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{open, run_until, store, Clock, DeskError, Role};
use crate::config::Config;

/// Arguments of `simpang desk`.
#[derive(clap::Args, Debug)]
pub struct DeskArgs {
    #[arg(long, global = true, default_value = "config/palembang.toml")]
    pub config: PathBuf,
    /// Listen address (overrides `[desk] listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Database URL: `sqlite://PATH` or `postgres://USER:PASS@HOST:PORT/DB` (overrides
    /// `[desk] database`; default `data_dir/desk.db`). From the environment as
    /// `SIMPANG_DESK_DB`, a URL with a password stays out of the process list.
    #[arg(long, global = true, env = "SIMPANG_DESK_DB", hide_env_values = true)]
    pub db: Option<String>,
    /// This desk's name when several serve one PostgreSQL database (active-active, e.g. the
    /// host name): its MQTT client ids become `{client_id}-{NAME}`, so each instance keeps its
    /// own persistent session on the broker. Letters, digits, '-', '_' and '.'.
    #[arg(long)]
    pub instance: Option<String>,
    #[command(subcommand)]
    pub command: Option<DeskCommand>,
}

/// What `simpang desk` does besides serving.
#[derive(clap::Subcommand, Debug)]
pub enum DeskCommand {
    /// Staff accounts.
    User {
        #[command(subcommand)]
        cmd: UserCommand,
    },
}

/// `simpang desk user ...`
#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; the password is read from standard input.
    Add {
        /// Account name: lower-case letters, digits, '.', '-', '_'.
        name: String,
        /// admin, operator, agency (an agency's liaison officer) or viewer.
        #[arg(long)]
        role: String,
        /// Agency id from `[[desk.agencies]]` (agency officers only).
        #[arg(long)]
        agency: Option<String>,
        /// Full name shown on pages (defaults to the account name).
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List accounts.
    List,
}

/// The database URL: `--db`, else `[desk] database` (a relative SQLite path is relative to the
/// config file), else `data_dir/desk.db`.
pub fn database_url(cfg: &Config, cli: Option<&str>) -> String {
    if let Some(u) = cli {
        // A relative SQLite path on the command line is relative to the working directory.
        return match u
            .strip_prefix("sqlite://")
            .or_else(|| u.strip_prefix("sqlite:"))
        {
            Some(rest) => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                let abs = absolute(Path::new(path));
                if query.is_empty() {
                    format!("sqlite://{}", abs.display())
                } else {
                    format!("sqlite://{}?{query}", abs.display())
                }
            }
            None => u.to_string(),
        };
    }
    match &cfg.desk.database {
        Some(u) if u.starts_with("sqlite:") => {
            let rest = u
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            let resolved = absolute(&cfg.resolve(Path::new(path)));
            match query {
                Some(q) => format!("sqlite://{}?{q}", resolved.display()),
                None => format!("sqlite://{}", resolved.display()),
            }
        }
        Some(u) => u.clone(),
        None => format!(
            "sqlite://{}",
            absolute(&cfg.data_dir().join("desk.db")).display()
        ),
    }
}

/// sqlx's `Any` driver reads `sqlite://config/../data/desk.db` as a URL whose host is `config`,
/// so SQLite paths must be absolute before they go into a URL.
fn absolute(p: &Path) -> std::path::PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `simpang desk`: runs the service, or the account subcommand.
pub fn main(args: DeskArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = Config::load(&args.config)?;
    if let Some(name) = &args.instance {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            anyhow::bail!(
                "--instance {name:?}: use 1-64 letters, digits, '-', '_' or '.' (it becomes part of the MQTT client id)"
            );
        }
        cfg.desk.mqtt.client_id = format!("{}-{name}", cfg.desk.mqtt.client_id);
    }
    let url = database_url(&cfg, args.db.as_deref());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        match args.command {
            None => serve_main(cfg, &url, args.listen).await,
            Some(DeskCommand::User { cmd }) => user_main(cfg, &url, cmd).await,
        }
    })
}

async fn serve_main(
    cfg: Config,
    url: &str,
    listen: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let addr = listen.unwrap_or(cfg.desk.listen);
    if let Some(why) = cfg.desk.needs_sms_token(addr) {
        anyhow::bail!("[desk] sms_token {why}");
    }
    let desk = open(Arc::new(cfg), url, Clock::default())
        .await
        .with_context(|| format!("opening the desk database {}", redact(url)))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    {
        let mut c = desk.store().pool().acquire().await?;
        if store::users(&mut c).await?.is_empty() {
            tracing::warn!("no staff accounts yet: create one with `simpang desk user add NAME --role admin` (password on stdin)");
        }
    }
    tracing::info!(url = %format!("http://{local}"), db = %redact(url), "simpang desk listening");
    // Machine-readable, like `run`'s `wall: http://ADDR/`: with `--listen 127.0.0.1:0` this is
    // how a supervisor (or a test) learns the port.
    println!("desk: http://{local}/");
    run_until(desk, listener, crate::shutdown::signal()).await?;
    tracing::info!("simpang desk stopped");
    Ok(ExitCode::SUCCESS)
}

async fn user_main(cfg: Config, url: &str, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let desk = open(Arc::new(cfg), url, Clock::default())
        .await
        .with_context(|| format!("opening the desk database {}", redact(url)))?;
    match cmd {
        UserCommand::Add {
            name,
            role,
            agency,
            display_name,
        } => {
            let role: Role = role
                .parse()
                .map_err(|e| anyhow::anyhow!("{e} (use admin, operator, agency or viewer)"))?;
            if std::io::stdin().is_terminal() {
                eprint!("Kata sandi untuk {name} (minimal 10 karakter, terlihat saat diketik): ");
            }
            let mut password = String::new();
            if std::io::stdin().is_terminal() {
                std::io::stdin().read_line(&mut password)?;
            } else {
                std::io::stdin().read_to_string(&mut password)?;
            }
            let password = password.trim_end_matches(['\n', '\r']);
            match desk
                .accounts
                .create_user(
                    None,
                    &name,
                    display_name.as_deref().unwrap_or(""),
                    role,
                    agency.as_deref(),
                    password,
                )
                .await
            {
                Ok(u) => {
                    println!(
                        "created {} ({}{})",
                        u.username,
                        u.role,
                        u.agency_id.map(|a| format!(", {a}")).unwrap_or_default()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(DeskError::Invalid(errs)) => {
                    for e in errs {
                        eprintln!("error: {}: {}", e.field, e.message);
                    }
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::List => {
            let mut c = desk.store().pool().acquire().await?;
            for u in store::users(&mut c).await? {
                println!(
                    "{:<20} {:<9} {:<12} {}{}",
                    u.username,
                    u.role,
                    u.agency_id.as_deref().unwrap_or("-"),
                    u.display_name,
                    if u.active == 1 { "" } else { "  (nonaktif)" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A database URL with any password hidden, for logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://desk:geheim@db:5432/desk"),
            "postgres://desk:***@db:5432/desk"
        );
        assert_eq!(redact("sqlite:///x/desk.db"), "sqlite:///x/desk.db");
    }

    #[test]
    fn database_urls() {
        let text = r#"
data_dir = "../data"
[city]
name = "P"
[[sites]]
id = "a"
name = "A"
address = "x"
lat = 0.0
lon = 0.0
stream = "rtsp://h/a"
"#;
        let mut cfg = Config::from_str_at(text, Path::new("/etc/simpang/c.toml")).unwrap();
        assert_eq!(
            database_url(&cfg, None),
            "sqlite:///etc/simpang/../data/desk.db"
        );
        assert_eq!(database_url(&cfg, Some("postgres://x/y")), "postgres://x/y");
        cfg.desk.database = Some("sqlite://db/desk.db?mode=rwc".into());
        assert_eq!(
            database_url(&cfg, None),
            "sqlite:///etc/simpang/db/desk.db?mode=rwc"
        );
        cfg.desk.database = Some("postgres://h/d".into());
        assert_eq!(database_url(&cfg, None), "postgres://h/d");

        // Relative config path and relative --db: the URL still carries an absolute path
        // (sqlx would read a leading relative segment as a host name).
        let cwd = std::env::current_dir().unwrap();
        let rel = Config::from_str_at(text, Path::new("config/c.toml")).unwrap();
        assert_eq!(
            database_url(&rel, None),
            format!("sqlite://{}/config/../data/desk.db", cwd.display())
        );
        assert_eq!(
            database_url(&rel, Some("sqlite://x/d.db?mode=rwc")),
            format!("sqlite://{}/x/d.db?mode=rwc", cwd.display())
        );
    }
}
