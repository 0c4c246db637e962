//! `simpang mqtt-credentials`: the broker's users for an external Mosquitto, and the one writer
//! of credential bundles that the managed broker uses too.
//!
//! ```text
//! simpang mqtt-credentials --config config/palembang.toml --out /etc/simpang/mqtt
//!   credentials.toml       every password and signing key (0600): keep it safe
//!   clients/<user>.toml    what one client needs (0600): give each machine its own
//!   passwd, acl            Mosquitto's password_file (hashes only) and acl_file
//!   mosquitto.conf         a broker config that uses them (edit the listener and TLS lines)
//!   nats-users.conf        the same users and rights for a NATS broker cluster (0600; the
//!                          nodes `scripts/nats-cluster.sh init --users` writes include it),
//!                          plus `simpang-nodes`, the cluster nodes' login for their leases
//! ```
//!
//! Running it again keeps existing passwords and keys and adds what new sites need;
//! `--rotate` makes new ones for every user.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::access::{self, BrokerUser};
use super::broker::BrokerError;
use super::secrets::{self, Credentials};
use crate::config::Config;

/// Arguments of `simpang mqtt-credentials`.
#[derive(clap::Args, Debug)]
pub struct CredentialsArgs {
    #[arg(long, default_value_os_t = crate::config::default_path())]
    pub config: PathBuf,
    /// Folder to write the files to (made 0700 if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// New passwords and signing keys for every user (clients need their new files).
    #[arg(long)]
    pub rotate: bool,
}

/// Keeps or completes the credentials at `credentials` for `users`, writes them, each client's
/// file into `clients`, and the password and ACL files into `dir`. Returns the credentials.
pub fn write_bundle(
    users: &[BrokerUser],
    dir: &Path,
    credentials: &Path,
    clients: &Path,
    rotate: bool,
    what: &str,
) -> Result<Credentials, BrokerError> {
    let files = |e: String| BrokerError::Files(e);
    let mut creds = Credentials::load_or_empty(credentials).map_err(|e| files(e.to_string()))?;
    let header = format!(
        "simpang MQTT credentials {what}. SECRET: readable by its owner only.\nPasswords of the broker's users and the sites' message signing keys (docs/security.md)."
    );
    if creds.ensure(users, rotate) || !credentials.exists() {
        creds
            .save(credentials, &header)
            .map_err(|e| files(e.to_string()))?;
    }
    secrets::private_dir(clients)
        .map_err(|e| files(format!("cannot make {}: {e}", clients.display())))?;
    for u in users {
        let path = clients.join(format!("{}.toml", u.name));
        let header = format!(
            "MQTT login of user {} ({}), {what}. SECRET: readable by its owner only.",
            u.name,
            u.role()
        );
        creds
            .for_client(u)
            .save(&path, &header)
            .map_err(|e| files(e.to_string()))?;
    }
    // Mosquitto's files: the MQTT users (the nodes' user is NATS's only).
    let mqtt: Vec<BrokerUser> = users
        .iter()
        .filter(|u| u.kind != access::UserKind::Nodes)
        .cloned()
        .collect();
    let passwd = access::passwd_file(&mqtt, &creds).map_err(|e| files(e.to_string()))?;
    let acl = access::acl_file(
        &mqtt,
        &format!("Mosquitto acl_file written by simpang {what}.\nEach user may publish its `write` topics and receive its `read` topics, nothing else."),
    )
    .map_err(|e| files(e.to_string()))?;
    for (name, text) in [("passwd", passwd), ("acl", acl)] {
        let p = dir.join(name);
        secrets::write_private(&p, text.as_bytes())
            .map_err(|e| files(format!("cannot write {}: {e}", p.display())))?;
    }
    Ok(creds)
}

/// `simpang mqtt-credentials`.
pub fn main(args: CredentialsArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    let out = &args.out;
    secrets::private_dir(out).with_context(|| format!("cannot make {}", out.display()))?;
    let mut users = access::broker_users(&cfg, false);
    users.push(access::nodes_user());
    let what = format!("for {}", args.config.display());
    let creds = write_bundle(
        &users,
        out,
        &out.join("credentials.toml"),
        &out.join("clients"),
        args.rotate,
        &what,
    )?;
    let nats = out.join("nats-users.conf");
    let text = access::nats_authorization(&users, &creds)?;
    secrets::write_private(&nats, text.as_bytes())
        .with_context(|| format!("cannot write {}", nats.display()))?;
    let conf = out.join("mosquitto.conf");
    secrets::write_private(&conf, example_conf(out).as_bytes())
        .with_context(|| format!("cannot write {}", conf.display()))?;
    println!(
        "MQTT users for {} sites, written to {}:",
        cfg.sites.len(),
        out.display()
    );
    for u in &users {
        println!("  {:<24} {}", u.name, u.role());
    }
    println!();
    println!(
        "  {}  every password and signing key (keep it safe)",
        out.join("credentials.toml").display()
    );
    println!(
        "  {}  one file per client: give each machine its own",
        out.join("clients/").display()
    );
    println!(
        "  {}, {}  Mosquitto's password_file and acl_file",
        out.join("passwd").display(),
        out.join("acl").display()
    );
    println!(
        "  {}  a Mosquitto config using them (set the listener and TLS files)",
        conf.display()
    );
    println!(
        "  {}  the same users for a NATS broker cluster (scripts/nats-cluster.sh init --users)",
        nats.display()
    );
    println!();
    println!("simpang run (a site):  [mqtt] broker = \"mqtts://BROKER:8883\", ca_file = ..., credentials_file = \"clients/site-<id>.toml\"");
    println!("simpang desk:          [desk.mqtt] broker = \"mqtts://BROKER:8883\", ca_file = ..., credentials_file = \"clients/desk.toml\"");
    Ok(ExitCode::SUCCESS)
}

/// A Mosquitto config for an external broker with these files.
fn example_conf(dir: &Path) -> String {
    format!(
        "# Mosquitto 2 config for simpang's users (written by simpang mqtt-credentials).\n\
         # Copy passwd and acl to the broker host; reload the broker (SIGHUP) after re-running.\n\
         per_listener_settings false\nallow_anonymous false\n\
         password_file {dir}/passwd\nacl_file {dir}/acl\n\
         persistence true\npersistence_location /var/lib/mosquitto/\nmax_queued_messages 10000\n\
         max_packet_size 16778240\n\n\
         # plain MQTT, loopback only\nlistener 1883 127.0.0.1\n\n\
         # MQTT over TLS for the other machines\nlistener 8883 0.0.0.0\n\
         certfile /etc/mosquitto/certs/server.pem\nkeyfile /etc/mosquitto/certs/server.key\ntls_version tlsv1.2\n",
        dir = dir.display()
    )
}
