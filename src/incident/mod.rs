//! Incident lifecycle, snapshots, on-disk outbox and MQTT publishing.
//!
//! Entry point for `simpang run`: [`IncidentService::start`], fed through an [`IncidentSender`].
//!
//! ```text
//! frame loops ──RuleEvent/CountsReport (try_send)──▶ producer task
//!     producer: lifecycle (pure) ─▶ snapshot (blocking pool) ─▶ outbox insert (fsync'd)
//!               ─▶ hub.incidents (wall) ─▶ Link::offer
//! one Link per site: rumqttc event loop, drains the site's outbox rows in order, deletes a row
//!               on its PUBACK, retained status + last will on simpang/v1/sites/{site}/status
//! ```
//!
//! The pure parts ([`lifecycle`], [`watch`], [`text`], [`message`], [`topics`], [`sign`],
//! [`access`]) need no clock and no network; the edges ([`outbox`], [`link`], [`broker`],
//! [`mosquitto`], [`secrets`], [`certs`]) hold all the I/O.
//!
//! Security of the broker (docs/security.md): every client logs in; each site's producer may
//! publish only its own topics ([`access`]); with `mqtt.broker = "embedded"` simpang runs
//! Mosquitto as a supervised child with those rights and an optional TLS listener
//! ([`mosquitto`]); each site's messages carry an HMAC signature the desk checks ([`sign`]).

pub mod access;
pub mod broker;
pub mod certs;
pub mod credentials;
pub mod handoff;
pub mod lifecycle;
pub mod link;
pub mod message;
mod metrics;
pub mod mosquitto;
pub mod outbox;
mod producer;
pub mod secrets;
pub mod sign;
pub mod snapshot;
pub mod text;
// The topic names live in the neutral `crate::topics` (the config's defaults use them too); the
// old path stays so stage code reads `incident::topics` as before.
pub use crate::topics;
pub mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use prometheus::IntCounter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::{Config, Site};
use crate::hub::{Hub, Registry, SiteHub};
use crate::model::{
    CountsReport, Evidence, IncidentEvent, IncidentKind, Level, RuleEvent, Severity, SiteId,
};

pub use broker::{BrokerError, BrokerTarget, ProducerAuth};
pub use handoff::{OpenStore, Saved};
pub use lifecycle::{incident_id, Lifecycle, LifecycleConfig, OpenIncident};
pub use link::Link;
pub use message::{CountsMessage, Holder, SiteInfo, StatusMessage};
pub use metrics::IncidentMetrics;
pub use mosquitto::{EmbeddedFiles, ManagedBroker};
pub use outbox::{Outbox, OutboxError};

use message::{CameraHealth, LocalTime, SiteState};
use outbox::{Inserted, MsgKind, NewMessage, Row};
use producer::Producer;

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("data_dir: {path} cannot be used for the outbox and snapshots: {error} (setting `data_dir` in the config)")]
    DataDir {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("data_dir: {0}")]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("incident metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// Queue between the frame loops and the producer. Incidents are rare; a full queue means the
/// producer is stuck (disk), and the frame loops must not wait for it.
const INPUT_QUEUE: usize = 1024;
/// How often a site served under a cluster lease publishes its retained status again (see
/// `link::LinkSettings::status_refresh`).
const STATUS_REFRESH: Duration = Duration::from_secs(30);
/// How often camera health and restored incidents are looked at.
const TICK: Duration = Duration::from_secs(1);

enum Input {
    Rule(Box<RuleEvent>, DateTime<Utc>),
    Counts(Box<CountsReport>, DateTime<Utc>),
    /// A site that moved here: the open incidents its last holder saved; answered once the
    /// lifecycle and the local state have them.
    Adopt(SiteId, Vec<OpenIncident>, tokio::sync::oneshot::Sender<()>),
}

/// Cloneable handle the frame loop uses to hand over rule events and counts. Never blocks.
#[derive(Clone)]
pub struct IncidentSender {
    tx: mpsc::Sender<Input>,
    dropped: IntCounter,
}

impl IncidentSender {
    pub fn rule_event(&self, ev: RuleEvent) {
        // The time the event reached the service starts the publish latency (-> broker ack).
        if self
            .tx
            .try_send(Input::Rule(Box::new(ev), Utc::now()))
            .is_err()
        {
            self.dropped.inc();
            error!("incident queue full or closed: rule event lost");
        }
    }

    pub fn counts(&self, report: CountsReport) {
        if self
            .tx
            .try_send(Input::Counts(Box::new(report), Utc::now()))
            .is_err()
        {
            self.dropped.inc();
            warn!("incident queue full or closed: counts report lost");
        }
    }
}

/// The running incident stage.
pub struct IncidentService {
    tx: mpsc::Sender<Input>,
    dropped: IntCounter,
    cancel: CancellationToken,
    producer: tokio::task::JoinHandle<()>,
    sites: Arc<Registry<StageSite>>,
    links: LinkStarter,
    outbox: Outbox,
    /// The managed broker (`mqtt.broker = "embedded"`), stopped after the links.
    broker: Option<Arc<ManagedBroker>>,
    /// The cluster's shared open incidents (`simpang run --node`), set once the node connects.
    open_store: OpenStoreCell,
}

/// Where the producer finds the [`OpenStore`] once the cluster node has one.
type OpenStoreCell = Arc<std::sync::OnceLock<Arc<dyn OpenStore>>>;

/// What the stage keeps of one site it serves, by id: the facts its messages carry, its MQTT
/// connection, and the watch on its camera.
struct StageSite {
    info: SiteInfo,
    /// The cluster node's lease on the site (`simpang run --node`): its open incidents are
    /// saved to the cluster's [`OpenStore`] before each message.
    holder: Option<Holder>,
    /// Signs the site's messages (when the site has a key and `mqtt.sign_messages` is on).
    key: Option<sign::SigningKey>,
    link: Link,
    /// The camera's slots in the hub and the offline watch over them (a site without slots,
    /// which no camera feeds, has no camera incidents).
    camera: Option<(Arc<SiteHub>, Mutex<watch::OfflineWatch>)>,
}

/// Opens a site's MQTT connection: what start-up and [`IncidentService::add_site`] share.
struct LinkStarter {
    /// The broker, or the nodes of a broker cluster in failover order.
    targets: Vec<BrokerTarget>,
    /// Each site's login and signing key.
    auth: ProducerAuth,
    /// `mqtt.sign_messages`.
    sign: bool,
    outbox: Outbox,
    metrics: link::LinkMetrics,
    /// `mqtt.client_id`: each site connects as `{client_id}-{site}`.
    client_id: String,
    reconnect: (Duration, Duration),
    local: LocalTime,
    offline_grace: chrono::Duration,
    /// This process's wall URL, carried in every status message.
    wall: String,
}

impl LinkStarter {
    fn start(
        &self,
        info: SiteInfo,
        camera: Option<Arc<SiteHub>>,
        last_id: i64,
        holder: Option<Holder>,
    ) -> Result<StageSite, BrokerError> {
        let (login, key) = self.auth.for_site(info.id.as_str(), self.sign)?;
        self.metrics.pending.with_label_values(&[&info.id]);
        let client_id = format!("{}-{}", self.client_id, info.id);
        let held = holder.is_some();
        let status = status_fn(
            info.clone(),
            client_id.clone(),
            camera.clone(),
            self.local,
            holder.clone(),
            self.wall.clone(),
        );
        let link = Link::spawn(
            link::LinkSettings {
                site: info.id.clone(),
                client_id,
                login,
                key: key.clone(),
                last_id,
                reconnect: self.reconnect,
                status_refresh: held.then_some(STATUS_REFRESH),
            },
            &self.targets,
            self.outbox.clone(),
            Some(status),
            self.metrics.clone(),
        );
        Ok(StageSite {
            info,
            holder,
            key,
            link,
            camera: camera.map(|c| (c, Mutex::new(watch::OfflineWatch::new(self.offline_grace)))),
        })
    }
}

impl LinkStarter {
    /// A replay connection for a site this process does not serve (see [`Link::spawn`]):
    /// client id `{client_id}-{site}-replay`, so it never takes over the serving node's session.
    fn replay(&self, site: &SiteId, last_id: i64) -> Result<Link, BrokerError> {
        let (login, key) = self.auth.for_site(site.as_str(), self.sign)?;
        Ok(Link::spawn(
            link::LinkSettings {
                site: site.clone(),
                client_id: format!("{}-{site}-replay", self.client_id),
                login,
                key,
                last_id,
                reconnect: self.reconnect,
                status_refresh: None,
            },
            &self.targets,
            self.outbox.clone(),
            None,
            self.metrics.clone(),
        ))
    }
}

/// Creates the data directory and proves it is writable (`simpang check` and start-up).
pub fn check_data_dir(dir: &Path) -> Result<(), IncidentError> {
    let err = |error| IncidentError::DataDir {
        path: dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(dir.join("snapshots")).map_err(err)?;
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)?;
    Ok(())
}

impl IncidentService {
    /// Starts the stage: outbox, (embedded) broker, one MQTT connection per site, the producer.
    pub async fn start(
        cfg: &Config,
        hub: Arc<Hub>,
        registry: &prometheus::Registry,
    ) -> Result<Self, IncidentError> {
        let data_dir = cfg.data_dir();
        check_data_dir(&data_dir)?;
        let targets = BrokerTarget::from_config(cfg)?;
        let managed = if cfg.mqtt.broker == "embedded" {
            let metrics = mosquitto::BrokerMetrics::register(registry)?;
            let c = cfg.clone();
            let b = tokio::task::spawn_blocking(move || ManagedBroker::start(&c, metrics))
                .await
                .map_err(|e| BrokerError::Files(e.to_string()))??;
            Some(Arc::new(b))
        } else {
            None
        };
        let outbox = Outbox::open(
            &data_dir.join("outbox.db"),
            cfg.incidents.outbox_max_messages,
        )
        .await?;
        let m = IncidentMetrics::register(registry)?;
        let local = LocalTime { tz: cfg.city.tz() };
        let sites = SiteInfo::all(cfg);

        let mut last_ids: HashMap<SiteId, i64> = HashMap::new();
        for b in outbox.backlog().await? {
            if sites.contains_key(b.site.as_str()) {
                m.outbox_pending
                    .with_label_values(&[&b.site])
                    .set(b.pending);
                if b.pending > 0 {
                    info!(site = %b.site, pending = b.pending, "outbox holds messages from before; draining them first");
                }
            } else {
                warn!(site = %b.site, pending = b.pending, "the outbox holds messages of a site this run does not serve; they stay until a run that serves it");
            }
            last_ids.insert(SiteId::new(&b.site), b.max_id);
        }

        let reconnect = (
            Duration::from_secs_f64(cfg.mqtt.reconnect_initial_s),
            Duration::from_secs_f64(cfg.mqtt.reconnect_max_s),
        );
        let link_metrics = link::LinkMetrics {
            connected: m.mqtt_connected.clone(),
            pending: m.outbox_pending.clone(),
            latency: m.publish_latency.clone(),
            published: m.published.clone(),
            connect_failures: m.connect_failures.clone(),
        };
        let links = LinkStarter {
            targets,
            auth: ProducerAuth::from_config(cfg, managed.clone()),
            sign: cfg.mqtt.sign_messages,
            outbox: outbox.clone(),
            metrics: link_metrics,
            client_id: cfg.mqtt.client_id.clone(),
            reconnect,
            local,
            offline_grace: chrono::Duration::milliseconds(
                (cfg.incidents.offline_grace_s * 1000.0) as i64,
            ),
            wall: cfg.wall.advertised_url(),
        };
        let served: Arc<Registry<StageSite>> = Arc::new(Registry::default());
        for site_cfg in &cfg.sites {
            let Some(info) = sites.get(&site_cfg.id).cloned() else {
                continue;
            };
            let id = info.id.clone();
            let last_id = last_ids.get(&info.id).copied().unwrap_or(0);
            let site = match links.start(info, hub.site(id.as_str()), last_id, None) {
                Ok(s) => s,
                Err(e) => {
                    for s in served.all() {
                        s.link.stop().await;
                    }
                    if let Some(b) = &managed {
                        b.stop().await;
                    }
                    return Err(e.into());
                }
            };
            if let Err(dup) = served.insert(id, Arc::new(site)) {
                dup.link.stop().await;
            }
        }

        let mut lifecycle = Lifecycle::new(LifecycleConfig {
            update_interval: chrono::Duration::milliseconds(
                (cfg.incidents.update_interval_s * 1000.0) as i64,
            ),
            restore_confirm: chrono::Duration::milliseconds(
                (cfg.incidents.restore_confirm_s * 1000.0) as i64,
            ),
        });
        let restored: Vec<_> = outbox
            .open_incidents()
            .await?
            .into_iter()
            .filter(|inc| sites.contains_key(inc.key.site.as_str()))
            .collect();
        for inc in &restored {
            info!(site = %inc.key.site, id = %inc.id, kind = inc.key.kind.as_str(), "incident open before the restart; waiting for a rule to confirm it");
        }
        lifecycle.restore(restored, Utc::now());

        let (tx, rx) = mpsc::channel::<Input>(INPUT_QUEUE);
        let cancel = CancellationToken::new();
        let open_store = OpenStoreCell::default();
        let producer = Producer {
            open_store: open_store.clone(),
            lifecycle,
            sites: served.clone(),
            local,
            outbox: outbox.clone(),
            hub,
            data_dir,
            snapshot_width: cfg.incidents.snapshot_width,
            snapshot_quality: cfg.incidents.snapshot_quality,
            snapshot_keep_days: cfg.incidents.snapshot_keep_days,
            pruned_at: None,
            outbox_max: cfg.incidents.outbox_max_messages,
            metrics: m.clone(),
            cancel: cancel.clone(),
        };
        let producer = tokio::spawn(
            producer
                .run(rx)
                .instrument(tracing::info_span!("incidents")),
        );
        info!(broker = %broker::describe(&links.targets), sites = served.len(), outbox = %outbox.path().display(), signed = served.all().iter().any(|s| s.key.is_some()), "incident service started");
        Ok(Self {
            tx,
            dropped: m.input_dropped.clone(),
            cancel,
            producer,
            sites: served,
            links,
            outbox,
            broker: managed,
            open_store,
        })
    }

    /// The managed broker, when `mqtt.broker = "embedded"`.
    pub fn managed_broker(&self) -> Option<Arc<ManagedBroker>> {
        self.broker.clone()
    }

    /// Starts serving a site while running: its MQTT connection (draining any messages of it
    /// the outbox holds from before), its status, and incidents from its rule events and its
    /// camera (`camera`: its slots in the hub). A site already served is left as it is.
    pub async fn add_site(
        &self,
        site: &Site,
        camera: Option<Arc<SiteHub>>,
    ) -> Result<(), IncidentError> {
        self.add_site_held(site, camera, None, None).await
    }

    /// Saves each held site's open incidents to `store` from now on (`simpang run --node`).
    pub fn share_open_incidents(&self, store: Arc<dyn OpenStore>) {
        if self.open_store.set(store).is_err() {
            warn!("the open-incident store was set already; the first one stays");
        }
    }

    /// [`IncidentService::add_site`] for a site a cluster node serves under a lease: its status
    /// messages carry the node and the lease's fencing token, and `adopted` (the open incidents
    /// its last holder saved, when the store could be read) replace what this machine had of
    /// the site before any of its rule events arrive.
    pub async fn add_site_held(
        &self,
        site: &Site,
        camera: Option<Arc<SiteHub>>,
        holder: Option<Holder>,
        adopted: Option<Vec<OpenIncident>>,
    ) -> Result<(), IncidentError> {
        let id = site.id.clone();
        if self.sites.get(id.as_str()).is_some() {
            return Ok(());
        }
        if let Some(open) = adopted {
            let (done, wait) = tokio::sync::oneshot::channel();
            if self
                .tx
                .send(Input::Adopt(id.clone(), open, done))
                .await
                .is_ok()
            {
                let _ = wait.await;
            }
        }
        let backlog = self.outbox.backlog().await?;
        let own = backlog.iter().find(|b| site.id == b.site.as_str());
        let pending = own.map_or(0, |b| b.pending);
        self.links
            .metrics
            .pending
            .with_label_values(&[&site.id])
            .set(pending);
        if pending > 0 {
            info!(site = %id, pending, "outbox holds messages of this site from before; draining them first");
        }
        if let Some(b) = &self.broker {
            // The new site's user and rights, before its connection tries to log in.
            let (b, s) = (b.clone(), site.clone());
            tokio::task::spawn_blocking(move || b.add_site(&s))
                .await
                .map_err(|e| BrokerError::Files(e.to_string()))??;
        }
        let entry = self.links.start(
            SiteInfo::from_site(site),
            camera,
            own.map_or(0, |b| b.max_id),
            holder,
        )?;
        if let Err(dup) = self.sites.insert(id, Arc::new(entry)) {
            // Added meanwhile by another caller: that one serves it.
            dup.link.stop().await;
        }
        Ok(())
    }

    /// Stops serving a site while running: its connection publishes what the broker takes
    /// within a few seconds, then its retained status says offline (`shutdown`). What is not
    /// acknowledged stays in the outbox for whichever run serves the site next. Open incidents
    /// stay open in the outbox too. False when the site was not served.
    pub async fn remove_site(&self, id: &str) -> bool {
        match self.sites.remove(id) {
            Some(site) => {
                site.link.stop().await;
                true
            }
            None => false,
        }
    }

    /// Publishes the messages this machine's outbox still holds for sites it does not serve
    /// (a cluster node back after a crash: what it stored and could not send before), over
    /// replay connections, for at most `wait`. Call it before the node takes any site: a site
    /// served here drains its own rows. What is not sent in time stays in the outbox for the
    /// next start or for this node serving the site. Returns the messages sent.
    pub async fn replay_unserved(&self, wait: Duration) -> Result<u64, IncidentError> {
        let mut links = Vec::new();
        for b in self.outbox.backlog().await? {
            let site = SiteId::new(&b.site);
            if b.pending == 0 || self.sites.get(site.as_str()).is_some() {
                continue;
            }
            info!(site = %site, pending = b.pending, "the outbox holds messages of a site served elsewhere now; sending them");
            self.links
                .metrics
                .pending
                .with_label_values(&[site.as_str()])
                .set(b.pending);
            match self.links.replay(&site, b.max_id) {
                Ok(l) => links.push((l, b.pending)),
                Err(e) => {
                    warn!(site = %site, error = %e, "cannot replay the site's messages (no login); they stay in the outbox")
                }
            }
        }
        if links.is_empty() {
            return Ok(0);
        }
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline && !links.iter().all(|(l, _)| l.drained()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut sent = 0;
        for (l, pending) in &links {
            let done = l.drained();
            l.stop().await;
            if done {
                sent += u64::try_from(*pending).unwrap_or(0);
            } else {
                warn!(site = %l.site(), "replay not finished in time; the rest stays in the outbox");
            }
        }
        Ok(sent)
    }

    /// The ids of the sites served now.
    pub fn site_ids(&self) -> Vec<SiteId> {
        self.sites.ids()
    }

    pub fn sender(&self) -> IncidentSender {
        IncidentSender {
            tx: self.tx.clone(),
            dropped: self.dropped.clone(),
        }
    }

    /// Stops the stage: handles what is queued, publishes what the broker takes within a few
    /// seconds, marks every site offline (retained status), disconnects. What is not
    /// acknowledged stays in the outbox for the next start.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.producer.await {
            error!(error = %e, "incident producer ended abnormally");
        }
        let sites = self.sites.all();
        futures::future::join_all(sites.iter().map(|s| s.link.stop())).await;
        let left = self.outbox.pending();
        if left > 0 {
            info!(
                pending = left,
                "messages left in the outbox for the next start"
            );
        }
        self.outbox.close().await;
        // Last: the links' offline statuses went through it.
        if let Some(b) = &self.broker {
            b.stop().await;
        }
    }
}

/// Builds the status messages of one site (online/offline, with the camera's health).
fn status_fn(
    site: SiteInfo,
    client_id: String,
    hub: Option<Arc<SiteHub>>,
    local: LocalTime,
    holder: Option<Holder>,
    wall: String,
) -> link::StatusFn {
    Arc::new(move |state, reason| {
        let now = Utc::now();
        let camera_health = match (state, &hub) {
            (SiteState::Online, Some(h)) => {
                let st = h.status.load();
                Some(CameraHealth {
                    online: st.online,
                    since: local.at(st.since),
                    last_frame_at: st.last_frame_at.map(|t| local.at(t)),
                    last_error: st.last_error.clone(),
                })
            }
            _ => None,
        };
        StatusMessage {
            schema: message::STATUS_SCHEMA.to_string(),
            site: site.id.to_string(),
            site_name: site.name.clone(),
            camera: site.camera.clone(),
            client_id: client_id.clone(),
            state,
            reason,
            at: local.at(now),
            camera_health,
            node: holder.as_ref().map(|h| h.node.clone()),
            lease: holder.as_ref().map(|h| h.lease),
            wall: Some(wall.clone()),
        }
    })
}

#[cfg(test)]
mod tests;
