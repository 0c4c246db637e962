//! The node's three tasks (see the diagram in [`super`]): the watchdog that stops a site whose
//! lease was not renewed in time, the actuator that starts and stops sites in order, and the
//! node loop that watches the bucket, places free sites, renews leases and beats its heartbeat.

use super::*;

/// Stops every site whose deadline passed. On its own task so that no blocked request can delay
/// it; after a freeze (SIGSTOP, a VM pause) it is the first thing to run.
pub(super) async fn watchdog(sh: Arc<Shared>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        let expired: Vec<(SiteId, u64)> = sh
            .held
            .lock()
            .iter()
            .filter(|(_, h)| now >= h.valid_until)
            .map(|(s, h)| (s.clone(), h.token))
            .collect();
        for (site, token) in expired {
            if sh.drop_lease(&site, token, Some("deadline")).is_some() {
                warn!(site = %site, lease = token, "lease not renewed in time: stopping the site before its lease can run out");
            }
        }
    }
}

/// Starts and stops sites in the order the leases changed.
pub(super) async fn actuator<C: SiteControl>(
    sh: Arc<Shared>,
    leases: Leases,
    control: Arc<C>,
    mut rx: mpsc::UnboundedReceiver<Action>,
) {
    while let Some(a) = rx.recv().await {
        match a {
            Action::Start(site, holder) => {
                // Lost again before its turn came: its Stop is queued behind.
                if !sh.holds(&site, holder.lease) {
                    continue;
                }
                let token = holder.lease;
                if let Err(e) = control.start_site(&site, holder).await {
                    error!(site = %site, error = %e, "site would not start on this node: giving its lease back (not tried here again for 60 s)");
                    sh.failed
                        .lock()
                        .insert(site.clone(), Instant::now() + Duration::from_secs(60));
                    if let Some(rev) = sh.drop_lease(&site, token, Some("failed")) {
                        leases.release(site.as_str(), rev).await;
                    }
                }
            }
            Action::Stop(site, flush) => {
                control.stop_site(&site, flush).await;
                info!(site = %site, "site stopped (lease gone)");
            }
            Action::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

/// The bucket as this node last saw it through its watch.
#[derive(Default)]
struct View {
    sites: HashMap<String, KeyState>,
    nodes: HashMap<String, NodeRecord>,
}

impl View {
    fn apply(&mut self, e: &kv::Entry) {
        let put = e.operation == kv::Operation::Put;
        if let Some(site) = e.key.strip_prefix("site.") {
            let st = if put {
                KeyState::Held(String::from_utf8_lossy(&e.value).into_owned(), e.revision)
            } else {
                KeyState::Free(e.revision)
            };
            self.sites.insert(site.to_string(), st);
        } else if let Some(node) = e.key.strip_prefix("node.") {
            match serde_json::from_slice::<NodeRecord>(&e.value) {
                Ok(r) if put => {
                    self.nodes.insert(node.to_string(), r);
                }
                Ok(_) | Err(_) => {
                    if put {
                        debug!(node, "unreadable node record ignored");
                    }
                    self.nodes.remove(node);
                }
            }
        }
    }
}

/// How often free sites are looked at when no delete marker says one just became free.
const SCAN: Duration = Duration::from_secs(1);
/// Every this many scans the sites the view says are held are read from the store too (a
/// missed watch message must not leave a site free forever).
const FULL_CHECK_EVERY: u32 = 3;
/// A free site the preferred node has not taken after this long goes to any node with room.
const GRACE: Duration = Duration::from_secs(3);

pub(super) struct NodeLoop {
    sh: Arc<Shared>,
    leases: Leases,
    view: View,
    free_since: HashMap<SiteId, Instant>,
    scans: u32,
}

impl NodeLoop {
    pub(super) fn new(sh: Arc<Shared>, leases: Leases) -> Self {
        NodeLoop {
            sh,
            leases,
            view: View::default(),
            free_since: HashMap::new(),
            scans: 0,
        }
    }

    pub(super) async fn run(mut self, cancel: CancellationToken) {
        self.heartbeat().await;
        let mut watch = self.watch().await;
        let mut renew = tokio::time::interval(self.sh.s.ttl / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut scan = tokio::time::interval(SCAN);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Let the watch deliver the bucket as it is (other nodes' records and leases) before
        // the first placement, so a node joining a running cluster sees its peers.
        let settle = tokio::time::sleep(Duration::from_millis(500));
        tokio::pin!(settle);
        let mut settled = false;
        loop {
            let mut place = false;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = renew.tick() => {
                    self.renew_all().await;
                    self.heartbeat().await;
                }
                _ = &mut settle, if !settled => { settled = true; place = true; }
                _ = scan.tick(), if settled => {
                    self.scans = self.scans.wrapping_add(1);
                    if self.scans.is_multiple_of(FULL_CHECK_EVERY) {
                        self.refresh().await;
                    }
                    if watch.is_none() {
                        watch = self.watch().await;
                    }
                    place = true;
                }
                e = next_entry(&mut watch) => match e {
                    Some(e) => {
                        self.view.apply(&e);
                        place = settled && e.key.starts_with("site.") && e.operation != kv::Operation::Put;
                    }
                    None => {
                        warn!("the bucket's watch ended; starting it again");
                        watch = None;
                    }
                },
            }
            if place && !self.sh.draining.load(Ordering::SeqCst) && self.place().await {
                self.heartbeat().await;
            }
        }
    }

    async fn watch(&self) -> Option<kv::Watch> {
        match self.leases.kv.watch_with_history(">").await {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the lease bucket (retried each second)");
                None
            }
        }
    }

    async fn heartbeat(&self) {
        if let Write::Failed(e) = self.leases.write_node(&self.sh.record()).await {
            debug!(error = %e, "node record not written");
        }
    }

    /// Reads every site's key the view says another node holds.
    async fn refresh(&mut self) {
        for site in &self.sh.s.sites {
            if let Some(KeyState::Held(..)) = self.view.sites.get(site.as_str()) {
                if let Ok(st) = self.leases.site_state(site.as_str()).await {
                    self.view.sites.insert(site.to_string(), st);
                }
            }
        }
    }

    /// Tries to take the free sites placement gives this node; true when it took one.
    async fn place(&mut self) -> bool {
        let now = Instant::now();
        let others: Vec<NodeLoad> = self
            .view
            .nodes
            .iter()
            .filter(|(name, r)| r.accepting && **name != self.sh.s.name)
            .map(|(name, r)| NodeLoad {
                name: name.clone(),
                capacity: r.capacity,
                held: r.held,
            })
            .collect();
        self.sh.failed.lock().retain(|_, until| *until > now);
        let mut took = false;
        for site in self.sh.s.sites.clone() {
            let mine = self.sh.held.lock().contains_key(&site);
            let free =
                !mine && !matches!(self.view.sites.get(site.as_str()), Some(KeyState::Held(..)));
            if !free {
                self.free_since.remove(&site);
                continue;
            }
            if self.sh.failed.lock().contains_key(&site) {
                continue;
            }
            let since = *self.free_since.entry(site.clone()).or_insert(now);
            let me = self.sh.me();
            if !me.has_room() {
                break;
            }
            if !placement::should_take(site.as_str(), &me, &others, now - since, GRACE) {
                continue;
            }
            took |= self.acquire(&site).await;
        }
        took
    }

    async fn acquire(&mut self, site: &SiteId) -> bool {
        let expected = match self.leases.site_state(site.as_str()).await {
            Ok(KeyState::Free(rev)) => rev,
            Ok(st) => {
                self.view.sites.insert(site.to_string(), st);
                return false;
            }
            Err(e) => {
                debug!(site = %site, error = %e, "lease not readable");
                return false;
            }
        };
        let sent = Instant::now();
        match self.leases.write_site(site.as_str(), expected).await {
            Write::Ok(rev) => {
                self.sh.won(site, rev, sent);
                self.free_since.remove(site);
                self.view.sites.insert(
                    site.to_string(),
                    KeyState::Held(self.sh.s.name.clone(), rev),
                );
                true
            }
            Write::Taken => false,
            Write::Failed(e) => {
                debug!(site = %site, error = %e, "acquire failed");
                false
            }
        }
    }

    /// Renews each held lease; a renewal never waits past that lease's deadline.
    async fn renew_all(&self) {
        let held: Vec<(SiteId, Held)> = self
            .sh
            .held
            .lock()
            .iter()
            .map(|(s, h)| (s.clone(), *h))
            .collect();
        for (site, h) in held {
            let sent = Instant::now();
            if sent >= h.valid_until {
                continue; // the watchdog stops it
            }
            let r = tokio::time::timeout(
                h.valid_until - sent,
                self.leases.write_site(site.as_str(), h.rev),
            )
            .await;
            match r {
                Ok(Write::Ok(new)) => {
                    let mut all = self.sh.held.lock();
                    if let Some(cur) = all.get_mut(&site) {
                        if cur.token == h.token && cur.rev == h.rev {
                            cur.rev = new;
                            cur.valid_until = sent + self.sh.s.ttl - self.sh.s.margin;
                        }
                    }
                }
                Ok(Write::Taken) => {
                    if self.sh.drop_lease(&site, h.token, Some("taken")).is_some() {
                        warn!(site = %site, lease = h.token, "lease lost (the key moved on): stopping the site at once");
                    }
                }
                Ok(Write::Failed(e)) => {
                    self.sh.m.renew_failures.inc();
                    warn!(site = %site, error = %e, "lease renewal failed (retried)");
                }
                Err(_) => {
                    self.sh.m.renew_failures.inc();
                    warn!(site = %site, "lease renewal got no answer before the deadline");
                }
            }
        }
    }
}

/// The watch's next entry; pending while there is no watch. `None`: it ended.
async fn next_entry(w: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match w {
        Some(w) => match w.next().await {
            Some(Ok(e)) => Some(e),
            Some(Err(e)) => {
                warn!(error = %e, "lease bucket watch error");
                None
            }
            None => None,
        },
        None => std::future::pending().await,
    }
}
