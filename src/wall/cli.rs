//! `simpang wall`: the wall's accounts (`[wall.auth] accounts`). People sign in at the wall's
//! `/login` with a password; devices (wall controllers, VMS) use a token over HTTP (Bearer or
//! Basic) and RTSP (Basic). A running wall picks up changes within a second.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use super::accounts::{self, By, Kind};
use crate::config::Config;

/// Arguments of `simpang wall`.
#[derive(clap::Args, Debug)]
pub struct WallArgs {
    #[arg(long, global = true, default_value_os_t = crate::config::default_path())]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: WallCommand,
}

/// `simpang wall ...`
#[derive(clap::Subcommand, Debug)]
pub enum WallCommand {
    /// People: a password for the sign-in page.
    User {
        #[command(subcommand)]
        cmd: UserCommand,
    },
    /// Devices (wall controllers, VMS): a token, printed once.
    Device {
        #[command(subcommand)]
        cmd: DeviceCommand,
    },
    /// List the accounts.
    List,
    /// Remove an account (its sessions end at its next request).
    Remove { name: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Add a person; the password (at least 10 characters) is read from standard input.
    Add { name: String },
}

#[derive(clap::Subcommand, Debug)]
pub enum DeviceCommand {
    /// Add a device and print its token (only its hash is kept: store it now).
    Add { name: String },
}

pub fn main(args: WallArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    let path = cfg.wall_accounts_path();
    match args.command {
        WallCommand::User {
            cmd: UserCommand::Add { name },
        } => {
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
            if password.chars().count() < 10 {
                eprintln!("error: password: at least 10 characters");
                return Ok(ExitCode::from(2));
            }
            let hash = crate::guard::secret::hash_password(password)?;
            match accounts::add_person(&path, &name, hash, By::Cli) {
                Ok(()) => {
                    println!("created wall user {name} in {}", path.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err(
                    e @ (accounts::AccountsError::BadName(_) | accounts::AccountsError::Exists(_)),
                ) => {
                    eprintln!("error: {e}");
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        WallCommand::Device {
            cmd: DeviceCommand::Add { name },
        } => match accounts::add_device(&path, &name, By::Cli) {
            Ok(token) => {
                eprintln!(
                    "created wall device {name} in {}; its token (shown once):",
                    path.display()
                );
                println!("{token}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ (accounts::AccountsError::BadName(_) | accounts::AccountsError::Exists(_))) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.into()),
        },
        WallCommand::List => {
            for a in accounts::list(&path)? {
                let kind = match a.kind {
                    Kind::Person => "user",
                    Kind::Device => "device",
                };
                println!(
                    "{:<24} {:<7} {:<5} {}",
                    a.name, kind, a.created_by, a.created_at
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WallCommand::Remove { name } => match accounts::remove(&path, &name) {
            Ok(()) => {
                println!("removed {name}");
                Ok(ExitCode::SUCCESS)
            }
            Err(e @ accounts::AccountsError::Missing(_)) => {
                eprintln!("error: {e}");
                Ok(ExitCode::from(2))
            }
            Err(e) => Err(e.into()),
        },
    }
}
