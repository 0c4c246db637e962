//! `simpang desk`: the complaint workflow service.
//!
//! Reports come in three ways: camera incidents over MQTT ([`intake`]), the citizen web form,
//! and the SMS gateway ([`workflow::citizens`]). Operators verify and disposition them to an
//! agency (OPD) from the routing table in config; the agency answers; the reporter (or, for
//! camera reports, the operator) confirms. Status red → yellow → green, with an SLA due time
//! per category ([`domain`]).
//!
//! A map for a first read:
//!
//! | file | concept |
//! |---|---|
//! | [`domain`] | statuses, colours, roles, which step may follow which: pure rules |
//! | [`core`] | [`DeskCore`], shared by every service: database, config, clock, live feed; the plumbing of every change (audit entry, status message in the outbox, guarded save) |
//! | [`workflow`] | the report lifecycle: one transition skeleton, the steps, citizens' reports and SMS |
//! | [`intake`] | camera incidents into reports, dead letters |
//! | [`accounts`], [`sessions`] | staff accounts; login, lockout, sessions |
//! | [`queries`], [`dashboard`] | what pages read: reports, lists, overdue, feed, dashboard, audit log |
//! | [`labels`], [`announce`] | how things are named for people; the status message and the live-feed event |
//! | [`store`] | the tables, one file each |
//! | [`web`], [`mqtt`], [`cli`] | the edges: pages and JSON API, broker connections, command line |
//! | [`peers`] | several desks on one PostgreSQL database: change notices between instances |
//!
//! [`Desk`] holds the services side by side; the web layer, the MQTT tasks and the command
//! line share it as `Arc<Desk>`. Entry points: [`cli::main`] for the command line; [`open`]
//! then [`run_until`] for `simpang demo` (with [`ensure_demo_accounts`] in between); [`serve`]
//! and [`spawn_mqtt`] separately for tests.

pub mod accounts;
pub mod announce;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod core;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod input;
pub mod intake;
pub mod labels;
pub mod mqtt;
pub mod peers;
pub mod photo;
pub mod queries;
pub mod sessions;
pub mod sms;
pub mod store;
pub mod web;
pub mod workflow;

use std::future::Future;
use std::sync::Arc;

pub use self::core::DeskCore;
pub use accounts::{Accounts, DemoAccount, StaffUser};
pub use cli::{database_url, main, redact, DeskArgs};
pub use clock::Clock;
pub use domain::{Colour, Role, Source, Status};
pub use error::{DeskError, FieldError};
pub use intake::{Intake, IntakeOutcome};
pub use labels::Labels;
pub use queries::Queries;
pub use sessions::Sessions;
pub use store::Store;
pub use workflow::Workflow;

use crate::config::{Config, DeskConfig};

/// The desk: its services side by side over one shared [`DeskCore`]. A handle, no logic of its
/// own; pages, the API, the MQTT tasks and the command line reach every operation through it
/// (`desk.workflow.verify(..)`, `desk.queries.list(..)`, `desk.labels.time(..)`).
pub struct Desk {
    /// Database, config, clock, live feed, shutdown: what the services share.
    pub(crate) core: Arc<DeskCore>,
    /// The desk's notion of now (the core's clock; tests move it forward).
    pub clock: Clock,
    /// Names and times as people read them.
    pub labels: Labels,
    /// The report lifecycle: staff steps, citizens' reports, SMS.
    pub workflow: Workflow,
    /// Camera incidents into reports.
    pub intake: Intake,
    /// Staff accounts.
    pub accounts: Accounts,
    /// Login, lockout, sessions.
    pub sessions: Sessions,
    /// What pages and the API read.
    pub queries: Queries,
}

impl Desk {
    /// A desk with keys that live as long as the process ([`auth::DeskKeys::ephemeral`]);
    /// [`open`] reads the key files.
    pub fn new(cfg: Arc<Config>, store: Store, clock: Clock) -> Self {
        Self::with_keys(cfg, store, clock, auth::DeskKeys::ephemeral())
    }

    pub fn with_keys(cfg: Arc<Config>, store: Store, clock: Clock, keys: auth::DeskKeys) -> Self {
        let core = Arc::new(DeskCore::new(cfg, store, clock, keys));
        Self {
            clock: core.clock.clone(),
            labels: core.labels.clone(),
            workflow: Workflow::new(core.clone()),
            intake: Intake::new(core.clone()),
            accounts: Accounts::new(core.clone()),
            sessions: Sessions::new(core.clone()),
            queries: Queries::new(core.clone()),
            core,
        }
    }

    pub fn store(&self) -> &Store {
        &self.core.store
    }
    pub fn config(&self) -> &Config {
        &self.core.cfg
    }
    pub fn desk_config(&self) -> &DeskConfig {
        &self.core.cfg.desk
    }
    /// The live feed of committed changes (the dashboards' server-sent events).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<announce::FeedEvent> {
        self.core.subscribe()
    }
    /// Cancelled when the desk stops.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.core.shutdown.clone()
    }
    /// True while the desk is subscribed to incidents on a connected broker.
    pub fn intake_subscribed(&self) -> bool {
        self.intake.subscribed()
    }
}

/// Opens the database (migrating it), reads (or creates) the key files and builds the service.
pub async fn open(cfg: Arc<Config>, db_url: &str, clock: Clock) -> Result<Arc<Desk>, DeskError> {
    let keys = auth::DeskKeys::load(&cfg)?;
    let store = Store::open(db_url).await?;
    Ok(Arc::new(Desk::with_keys(cfg, store, clock, keys)))
}

/// Starts the background tasks: on PostgreSQL the listener for other desks' changes
/// ([`peers`]); the incident subscriber and the status publisher (unless `[desk.mqtt] broker`
/// is `none`). They stop when the desk's shutdown token is cancelled (by [`serve`] on
/// shutdown).
pub fn spawn_mqtt(desk: &Arc<Desk>) -> Vec<tokio::task::JoinHandle<()>> {
    let token = desk.shutdown_token();
    let mut tasks = Vec::new();
    if desk.store().backend() == store::Backend::Postgres {
        tasks.push(tokio::spawn(peers::run_listener(
            desk.core.clone(),
            token.clone(),
        )));
    }
    if desk.desk_config().mqtt.broker == "none" {
        tracing::info!("MQTT disabled ([desk.mqtt] broker = \"none\")");
        return tasks;
    }
    tasks.push(tokio::spawn(mqtt::run_intake(desk.clone(), token.clone())));
    tasks.push(tokio::spawn(mqtt::run_status_publisher(
        desk.clone(),
        token,
    )));
    tasks
}

/// Serves the desk on an already-bound listener until `shutdown` resolves; then ends the live
/// feeds and background tasks (through the desk's shutdown token) and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    desk: Arc<Desk>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let token = desk.shutdown_token();
    let limits = crate::guard::Limits::from(&desk.desk_config().http);
    let app = web::router(desk);
    crate::guard::serve(listener, app, limits, async move {
        shutdown.await;
        token.cancel();
    })
    .await
}

/// Runs an opened desk until `shutdown`: MQTT intake and status publishing, the HTTP server on
/// `listener`; then stops the background tasks and closes the database. What `simpang desk`
/// does after opening; `simpang demo` calls it the same way (after [`ensure_demo_accounts`]).
pub async fn run_until(
    desk: Arc<Desk>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tasks = spawn_mqtt(&desk);
    let served = serve(listener, desk.clone(), shutdown).await;
    desk.shutdown_token().cancel();
    for t in tasks {
        let _ = t.await;
    }
    desk.store().close().await;
    served
}

/// Makes sure the demo accounts exist, each with a fresh random password (so the printed
/// credentials always work), and returns them for printing.
pub async fn ensure_demo_accounts(desk: &Desk) -> Result<Vec<DemoAccount>, DeskError> {
    desk.accounts.ensure_demo().await
}
