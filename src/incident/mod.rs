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
//! The pure parts ([`lifecycle`], [`watch`], [`text`], [`message`], [`topics`]) need no clock
//! and no network; the edges ([`outbox`], [`link`], [`broker`]) hold all the I/O.

pub mod broker;
pub mod lifecycle;
pub mod link;
pub mod message;
mod metrics;
pub mod outbox;
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

pub use broker::{BrokerError, BrokerTarget};
pub use lifecycle::{incident_id, Lifecycle, LifecycleConfig};
pub use link::Link;
pub use message::{CountsMessage, SiteInfo, StatusMessage};
pub use metrics::IncidentMetrics;
pub use outbox::{Outbox, OutboxError};

use message::{CameraHealth, LocalTime, SiteState};
use outbox::{Inserted, MsgKind, NewMessage, Row};

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
/// How often camera health and restored incidents are looked at.
const TICK: Duration = Duration::from_secs(1);

enum Input {
    Rule(Box<RuleEvent>, DateTime<Utc>),
    Counts(Box<CountsReport>, DateTime<Utc>),
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
}

/// What the stage keeps of one site it serves, by id: the facts its messages carry, its MQTT
/// connection, and the watch on its camera.
struct StageSite {
    info: SiteInfo,
    link: Link,
    /// The camera's slots in the hub and the offline watch over them (a site without slots,
    /// which no camera feeds, has no camera incidents).
    camera: Option<(Arc<SiteHub>, Mutex<watch::OfflineWatch>)>,
}

/// Opens a site's MQTT connection: what start-up and [`IncidentService::add_site`] share.
struct LinkStarter {
    target: BrokerTarget,
    outbox: Outbox,
    metrics: link::LinkMetrics,
    /// `mqtt.client_id`: each site connects as `{client_id}-{site}`.
    client_id: String,
    reconnect: (Duration, Duration),
    local: LocalTime,
    offline_grace: chrono::Duration,
}

impl LinkStarter {
    fn start(&self, info: SiteInfo, camera: Option<Arc<SiteHub>>, last_id: i64) -> StageSite {
        self.metrics.pending.with_label_values(&[&info.id]);
        let client_id = format!("{}-{}", self.client_id, info.id);
        let status = status_fn(info.clone(), client_id.clone(), camera.clone(), self.local);
        let link = Link::spawn(
            link::LinkSettings {
                site: info.id.clone(),
                client_id,
                last_id,
                reconnect: self.reconnect,
            },
            &self.target,
            self.outbox.clone(),
            status,
            self.metrics.clone(),
        );
        StageSite {
            info,
            link,
            camera: camera.map(|c| (c, Mutex::new(watch::OfflineWatch::new(self.offline_grace)))),
        }
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
        let target = BrokerTarget::from_config(cfg)?;
        if cfg.mqtt.broker == "embedded" {
            let listen = cfg.mqtt.embedded_listen;
            tokio::task::spawn_blocking(move || broker::start_embedded(listen))
                .await
                .map_err(|e| BrokerError::EmbeddedListen {
                    addr: listen,
                    error: std::io::Error::other(e.to_string()),
                })??;
        }
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
            target,
            outbox: outbox.clone(),
            metrics: link_metrics,
            client_id: cfg.mqtt.client_id.clone(),
            reconnect,
            local,
            offline_grace: chrono::Duration::milliseconds(
                (cfg.incidents.offline_grace_s * 1000.0) as i64,
            ),
        };
        let served = Arc::new(Registry::default());
        for site_cfg in &cfg.sites {
            let Some(info) = sites.get(&site_cfg.id).cloned() else {
                continue;
            };
            let id = info.id.clone();
            let last_id = last_ids.get(&info.id).copied().unwrap_or(0);
            let site = links.start(info, hub.site(id.as_str()), last_id);
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
        let producer = Producer {
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
        info!(broker = %links.target.display, sites = served.len(), outbox = %outbox.path().display(), "incident service started");
        Ok(Self {
            tx,
            dropped: m.input_dropped.clone(),
            cancel,
            producer,
            sites: served,
            links,
            outbox,
        })
    }

    /// Starts serving a site while running: its MQTT connection (draining any messages of it
    /// the outbox holds from before), its status, and incidents from its rule events and its
    /// camera (`camera`: its slots in the hub). A site already served is left as it is.
    pub async fn add_site(
        &self,
        site: &Site,
        camera: Option<Arc<SiteHub>>,
    ) -> Result<(), IncidentError> {
        let id = site.id.clone();
        if self.sites.get(id.as_str()).is_some() {
            return Ok(());
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
        let entry = self.links.start(
            SiteInfo::from_site(site),
            camera,
            own.map_or(0, |b| b.max_id),
        );
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
    }
}

/// Builds the status messages of one site (online/offline, with the camera's health).
fn status_fn(
    site: SiteInfo,
    client_id: String,
    hub: Option<Arc<SiteHub>>,
    local: LocalTime,
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
        }
    })
}

/// The task that turns inputs into stored messages.
struct Producer {
    lifecycle: Lifecycle,
    /// The sites served, shared with the service, which adds and removes them.
    sites: Arc<Registry<StageSite>>,
    local: LocalTime,
    outbox: Outbox,
    hub: Arc<Hub>,
    data_dir: PathBuf,
    snapshot_width: u32,
    snapshot_quality: u8,
    snapshot_keep_days: u32,
    /// When old snapshot day folders were last looked for (hourly is plenty: they are days).
    pruned_at: Option<std::time::Instant>,
    outbox_max: u64,
    metrics: IncidentMetrics,
    cancel: CancellationToken,
}

impl Producer {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                input = rx.recv() => match input {
                    Some(i) => self.handle(i).await,
                    None => break,
                },
                _ = tick.tick() => self.on_tick(Utc::now()).await,
            }
        }
        // Whatever the frame loops handed over before the stop is still stored.
        rx.close();
        while let Ok(i) = rx.try_recv() {
            self.handle(i).await;
        }
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Rule(ev, received) => self.rule_event(*ev, received).await,
            Input::Counts(r, received) => self.counts(*r, received).await,
        }
    }

    async fn on_tick(&mut self, now: DateTime<Utc>) {
        self.prune_snapshots(now);
        for emit in self.lifecycle.tick(now) {
            self.emit(emit, None, now).await;
        }
        let mut events = Vec::new();
        let mut changed = Vec::new();
        for served in self.sites.all() {
            let Some((site, w)) = &served.camera else {
                continue;
            };
            let st = site.status.load_full();
            let obs = w.lock().observe(&st, now);
            if obs.health_changed {
                changed.push(served.clone());
            }
            let Some((phase, started_at)) = obs.phase else {
                continue;
            };
            events.push(RuleEvent {
                site: site.id.clone(),
                zone: None,
                kind: IncidentKind::CameraOffline,
                phase,
                level: Level::Tinggi,
                started_at,
                at: now,
                evidence: Evidence {
                    offline_s: obs.offline_s,
                    reason: st.last_error.clone(),
                    ..Default::default()
                },
                // The last picture analytics saw before the loss, if the camera ever
                // delivered one.
                frame: site
                    .picture
                    .load_full()
                    .and_then(|p| snapshot::picture_image(&p).ok())
                    .map(Arc::new),
                boxes: Vec::new(),
            });
        }
        for ev in events {
            self.rule_event(ev, now).await;
        }
        for site in changed {
            site.link.status_changed();
        }
    }

    /// Deletes local snapshot day folders past `incidents.snapshot_keep_days`, at start and
    /// then hourly, off the async threads (a month of pictures can take a while to delete).
    fn prune_snapshots(&mut self, now: DateTime<Utc>) {
        if self.snapshot_keep_days == 0
            || self
                .pruned_at
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(3600))
        {
            return;
        }
        self.pruned_at = Some(std::time::Instant::now());
        let (dir, today, keep) = (
            self.data_dir.clone(),
            self.local.at(now).date_naive(),
            self.snapshot_keep_days,
        );
        tokio::task::spawn_blocking(move || match snapshot::prune(&dir, today, keep) {
            Ok(removed) => {
                for p in removed {
                    info!(folder = %p.display(), keep_days = keep, "old snapshots deleted");
                }
            }
            Err(e) => warn!(error = %e, dir = %dir.display(), "cannot delete old snapshots"),
        });
    }

    async fn rule_event(&mut self, ev: RuleEvent, received: DateTime<Utc>) {
        if self.sites.get(ev.site.as_str()).is_none() {
            warn!(site = %ev.site, "rule event for a site that is not served; ignored");
            return;
        }
        let emits = self.lifecycle.on_event(&ev);
        if emits.is_empty() {
            debug!(site = %ev.site, kind = ev.kind.as_str(), phase = ?ev.phase, "rule event needs no message (rate limit or nothing open)");
        }
        for emit in emits {
            self.emit(emit, Some(&ev), received).await;
        }
    }

    async fn emit(
        &mut self,
        emit: lifecycle::Emit,
        ev: Option<&RuleEvent>,
        received: DateTime<Utc>,
    ) {
        let Some(site) = self
            .sites
            .get(emit.key.site.as_str())
            .map(|s| s.info.clone())
        else {
            return;
        };
        let span = tracing::info_span!("incident", site = %site.id, id = %emit.id, event = emit.event.as_str(), seq = emit.seq);
        async {
            let ev = ev.filter(|_| emit.from_event);
            let evidence = ev.map(|e| e.evidence.clone()).unwrap_or_default();
            let snapshot = match ev.and_then(|e| e.frame.clone().map(|f| (f, e.boxes.clone()))) {
                Some((frame, boxes)) => self.snapshot(&emit, &site, frame, boxes).await,
                None => None,
            };
            let msg = message::incident_message(&emit, &evidence, &site, &self.local, snapshot);
            let payload = match serde_json::to_vec(&msg) {
                Ok(p) => p,
                Err(e) => {
                    error!(error = %e, "cannot serialise the incident message; not stored");
                    return;
                }
            };
            let nm = NewMessage {
                site: site.id.to_string(),
                kind: MsgKind::Incident,
                topic: topics::incidents(site.id.as_str()),
                payload,
                retain: false,
                created_ms: received.timestamp_millis(),
                label: format!("{} {} #{}", emit.id, emit.event.as_str(), emit.seq),
            };
            let persist = [emit.persist.clone()];
            // An incident is never dropped: a failing disk is retried until it works or the
            // service stops (then it is lost, and said so).
            let mut wait = Duration::from_millis(200);
            let inserted = loop {
                match self.outbox.insert(&nm, &persist).await {
                    Ok(i) => break i,
                    Err(e) => {
                        error!(error = %e, retry_in_s = wait.as_secs_f64(), "cannot store the incident message in the outbox");
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.cancel.cancelled() => {
                                error!("stopping: incident message NOT stored");
                                return;
                            }
                        }
                        wait = (wait * 2).min(Duration::from_secs(10));
                    }
                }
            };
            self.metrics
                .messages
                .with_label_values(&[site.id.as_str(), emit.key.kind.as_str(), emit.event.as_str()])
                .inc();
            info!(title = %msg.incident.title, level = %emit.level, "incident {}", emit.event.as_str());
            // The wall shows it at once, whether or not the broker is reachable.
            let _ = self.hub.incidents.send(msg);
            self.stored(inserted, nm);
        }
        .instrument(span)
        .await
    }

    async fn counts(&mut self, r: CountsReport, received: DateTime<Utc>) {
        let Some(served) = self.sites.get(r.site.as_str()) else {
            warn!(site = %r.site, "counts for a site that is not served; ignored");
            return;
        };
        let site = &served.info;
        let msg = message::counts_message(&r, site, &self.local);
        let payload = match serde_json::to_vec(&msg) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot serialise counts");
                return;
            }
        };
        let nm = NewMessage {
            site: site.id.to_string(),
            kind: MsgKind::Counts,
            topic: topics::counts(site.id.as_str()),
            payload,
            retain: false,
            created_ms: received.timestamp_millis(),
            label: format!("counts {} {}s", msg.end.to_rfc3339(), r.interval_s),
        };
        match self.outbox.insert(&nm, &[]).await {
            Ok(i) => self.stored(i, nm),
            // Counts may be lost under a failing disk; incidents may not (see emit).
            Err(e) => error!(site = %r.site, error = %e, "cannot store counts; dropped"),
        }
    }

    /// Bookkeeping after an insert, and the hand-over to the site's connection.
    fn stored(&self, inserted: Inserted, nm: NewMessage) {
        let site = nm.site.clone();
        match inserted {
            Inserted::Dropped => {
                self.metrics
                    .outbox_dropped
                    .with_label_values(&[&site, nm.kind.as_str()])
                    .inc();
                warn!(site = %site, max = self.outbox_max, "outbox full of incidents: counts message dropped");
            }
            Inserted::Stored {
                id,
                evicted,
                over_limit,
            } => {
                if let Some((_, evicted_site)) = &evicted {
                    self.metrics
                        .outbox_dropped
                        .with_label_values(&[evicted_site, MsgKind::Counts.as_str()])
                        .inc();
                    self.metrics
                        .outbox_pending
                        .with_label_values(&[evicted_site])
                        .dec();
                    debug!(site = %evicted_site, "outbox full: oldest counts message evicted");
                }
                if over_limit {
                    self.metrics.outbox_over_limit.inc();
                    error!(site = %site, max = self.outbox_max, pending = self.outbox.pending(), "outbox above its bound: the broker has been unreachable for long; incident kept");
                }
                self.metrics
                    .outbox_pending
                    .with_label_values(&[&site])
                    .inc();
                if let Some(served) = self.sites.get(&site) {
                    served.link.offer(Row {
                        id,
                        site: nm.site,
                        kind: nm.kind,
                        topic: nm.topic,
                        payload: nm.payload,
                        retain: nm.retain,
                        created_ms: nm.created_ms,
                        label: nm.label,
                    });
                }
            }
        }
    }

    async fn snapshot(
        &self,
        emit: &lifecycle::Emit,
        site: &SiteInfo,
        frame: Arc<crate::model::Image>,
        boxes: Vec<crate::model::SnapshotBox>,
    ) -> Option<crate::model::Snapshot> {
        let zone = emit
            .key
            .zone
            .as_ref()
            .and_then(|z| site.zones.get(z.as_str()))
            .map(|(_, poly)| poly.clone());
        let severity = if emit.event == IncidentEvent::End {
            Severity::Normal
        } else {
            Severity::Alert
        };
        let caption = snapshot::caption(
            emit.key.kind,
            emit.event,
            &site.name,
            emit.at,
            emit.started_at,
            &self.local,
        );
        let rel = snapshot::relative_path(&emit.id, emit.seq, self.local.at(emit.at));
        let data_dir = self.data_dir.clone();
        let (width, quality) = (self.snapshot_width, self.snapshot_quality);
        let job = tokio::task::spawn_blocking(move || {
            let (jpeg, w, h) = snapshot::render_jpeg(
                &frame,
                zone.as_deref(),
                &boxes,
                severity,
                &caption,
                width,
                quality,
            )
            .map_err(|e| e.to_string())?;
            snapshot::store(&data_dir, &rel, &jpeg, w, h).map_err(|e| e.to_string())
        });
        match job.await {
            Ok(Ok(s)) => Some(s),
            // The report matters more than its picture: it goes out without one.
            Ok(Err(e)) => {
                warn!(error = %e, "snapshot failed; message sent without it");
                None
            }
            Err(e) => {
                warn!(error = %e, "snapshot task failed; message sent without it");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
