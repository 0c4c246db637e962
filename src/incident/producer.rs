//! The incident service's producer task: rule events and counts in, lifecycle, snapshots and
//! outbox rows out (the service in `mod.rs` starts it and owns its channel).

use super::*;

/// The task that turns inputs into stored messages.
pub(super) struct Producer {
    pub(super) lifecycle: Lifecycle,
    pub(super) open_store: OpenStoreCell,
    /// The sites served, shared with the service, which adds and removes them.
    pub(super) sites: Arc<Registry<StageSite>>,
    pub(super) local: LocalTime,
    pub(super) outbox: Outbox,
    pub(super) hub: Arc<Hub>,
    pub(super) data_dir: PathBuf,
    pub(super) snapshot_width: u32,
    pub(super) snapshot_quality: u8,
    pub(super) snapshot_keep_days: u32,
    /// When old snapshot day folders were last looked for (hourly is plenty: they are days).
    pub(super) pruned_at: Option<std::time::Instant>,
    pub(super) outbox_max: u64,
    pub(super) metrics: IncidentMetrics,
    pub(super) cancel: CancellationToken,
}

/// How long a save to the cluster's open-incident store may hold up the message.
const SAVE_WAIT: Duration = Duration::from_secs(2);

impl Producer {
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
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
            Input::Adopt(site, open, done) => {
                self.adopt(site, open).await;
                let _ = done.send(());
            }
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

    /// A site moved here: its last holder's open incidents replace this machine's, in memory
    /// and in the local state (so a restart of this node restores them too).
    async fn adopt(&mut self, site: SiteId, open: Vec<OpenIncident>) {
        let n = open.len();
        let now = self.lifecycle.adopt(&site, open, Utc::now());
        for inc in &now {
            info!(site = %site, id = %inc.id, kind = inc.key.kind.as_str(), seq = inc.seq, "incident open on the site's last node; waiting for a rule here to confirm it");
        }
        if let Err(e) = self.outbox.replace_site_open(site.as_str(), &now).await {
            error!(site = %site, error = %e, "cannot store the adopted open incidents locally (they are kept in memory)");
        }
        debug!(site = %site, saved = n, open = now.len(), "open incidents adopted");
    }

    /// Saves the site's open incidents (after the lifecycle's decision) to the cluster's store
    /// before the message goes to the outbox (src/incident/handoff.rs). False: the site has
    /// moved to another node, which goes on with its incidents; the message must not be sent.
    async fn save_open(&self, site: &SiteId, holder: Option<&Holder>) -> bool {
        let (Some(store), Some(holder)) = (self.open_store.get(), holder) else {
            return true;
        };
        let open = self.lifecycle.open_of(site);
        let saved = tokio::time::timeout(SAVE_WAIT, store.save(site, holder, open)).await;
        match saved {
            Ok(Saved::Ok) => true,
            Ok(Saved::MovedOn) => {
                self.metrics
                    .handoff_failures
                    .with_label_values(&["moved_on"])
                    .inc();
                warn!(site = %site, "another node holds the site now and goes on with its incidents: message not sent from here");
                false
            }
            Ok(Saved::Failed(e)) => {
                self.metrics
                    .handoff_failures
                    .with_label_values(&["failed"])
                    .inc();
                warn!(site = %site, error = %e, "open incidents not saved to the cluster (the message is sent anyway; a node taking the site now would open the incident again)");
                true
            }
            Err(_) => {
                self.metrics
                    .handoff_failures
                    .with_label_values(&["timeout"])
                    .inc();
                warn!(site = %site, wait_s = SAVE_WAIT.as_secs_f64(), "open incidents not saved to the cluster in time (the message is sent anyway)");
                true
            }
        }
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
        let Some((site, key, holder)) = self
            .sites
            .get(emit.key.site.as_str())
            .map(|s| (s.info.clone(), s.key.clone(), s.holder.clone()))
        else {
            return;
        };
        if !self.save_open(&site.id, holder.as_ref()).await {
            return;
        }
        let span = tracing::info_span!("incident", site = %site.id, id = %emit.id, event = emit.event.as_str(), seq = emit.seq);
        async {
            let ev = ev.filter(|_| emit.from_event);
            let evidence = ev.map(|e| e.evidence.clone()).unwrap_or_default();
            let snapshot = match ev.and_then(|e| e.frame.clone().map(|f| (f, e.boxes.clone()))) {
                Some((frame, boxes)) => self.snapshot(&emit, &site, frame, boxes).await,
                None => None,
            };
            let msg = message::incident_message(&emit, &evidence, &site, &self.local, snapshot);
            let payload = match sign::encode(&msg, key.as_ref()) {
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
        let payload = match sign::encode(&msg, served.key.as_ref()) {
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
