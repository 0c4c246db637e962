//! The cluster's copy of each site's open incidents (src/incident/handoff.rs says why), in the
//! NATS JetStream KV bucket [`BUCKET`]: key `site.<id>`, value [`Record`] (the holder that
//! wrote it, its lease, the open incidents).
//!
//! Fencing is the same as for leases: every write is a compare-and-set on the key's revision.
//! A node that takes a site reads the record, then writes it back under its own lease
//! ([`OpenIncidents::take`]); from then on a save of the previous holder fails with
//! `wrong last sequence` ([`Saved::MovedOn`]), so a node that lost a site can never overwrite
//! what the new holder saved, and never sends a message the new holder may send too.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::{self, kv};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::ClusterError;
use crate::incident::{Holder, OpenIncident, OpenStore, Saved};
use crate::model::SiteId;

/// The bucket of open incidents per site.
pub const BUCKET: &str = "simpang-open-incidents";

/// What the bucket keeps of one site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub node: String,
    pub lease: u64,
    pub open: Vec<OpenIncident>,
}

/// The bucket, and the revision this node last wrote for each site it holds.
#[derive(Clone)]
pub struct OpenIncidents {
    kv: kv::Store,
    revs: Arc<Mutex<HashMap<SiteId, u64>>>,
}

fn key(site: &SiteId) -> String {
    format!("site.{site}")
}

impl OpenIncidents {
    /// Opens the bucket, creating it when missing (one value per key, R = `replicas`).
    pub async fn open(js: &jetstream::Context, replicas: usize) -> Result<Self, ClusterError> {
        let kv = super::lease::open_bucket(
            js,
            kv::Config {
                bucket: BUCKET.into(),
                description: "simpang open incidents per site (src/cluster/handoff.rs)".into(),
                history: 1,
                num_replicas: replicas,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            kv,
            revs: Arc::default(),
        })
    }

    /// Takes the site's record over for `holder` (a lease just won): returns the open
    /// incidents its last holder saved (none when the site never had a record). An error
    /// means the store could not be read or written; the caller starts the site without them.
    pub async fn take(&self, site: &SiteId, holder: &Holder) -> Result<Vec<OpenIncident>, String> {
        let key = key(site);
        for _ in 0..5 {
            let (rev, open) = match self.kv.entry(key.clone()).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => {
                    match serde_json::from_slice::<Record>(&e.value) {
                        Ok(r) if r.lease > holder.lease => {
                            return Err(format!(
                                "node {} saved it under lease {}, newer than ours ({})",
                                r.node, r.lease, holder.lease
                            ))
                        }
                        Ok(r) => (e.revision, r.open),
                        Err(err) => {
                            warn!(site = %site, error = %err, "unreadable open-incident record replaced");
                            (e.revision, Vec::new())
                        }
                    }
                }
                Ok(Some(e)) => (e.revision, Vec::new()),
                Ok(None) => (0, Vec::new()),
                Err(e) => return Err(e.to_string()),
            };
            let record = Record {
                node: holder.node.clone(),
                lease: holder.lease,
                open: open.clone(),
            };
            let value = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
            match self.kv.update(&key, value.into(), rev).await {
                Ok(new) => {
                    self.revs.lock().insert(site.clone(), new);
                    return Ok(open);
                }
                // The last holder saved meanwhile (its last message): read again.
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("the record kept changing (another node is still saving it)".into())
    }

    async fn save_now(&self, site: SiteId, holder: Holder, open: Vec<OpenIncident>) -> Saved {
        let known = self.revs.lock().get(&site).copied();
        let rev = match known {
            Some(rev) => rev,
            // Not taken when the site started (the store did not answer then): take the key
            // now unless a newer holder wrote it.
            None => match self.kv.entry(key(&site)).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => {
                    match serde_json::from_slice::<Record>(&e.value) {
                        Ok(r) if r.lease > holder.lease => return Saved::MovedOn,
                        _ => e.revision,
                    }
                }
                Ok(Some(e)) => e.revision,
                Ok(None) => 0,
                Err(e) => return Saved::Failed(e.to_string()),
            },
        };
        let record = Record {
            node: holder.node,
            lease: holder.lease,
            open,
        };
        let value = match serde_json::to_vec(&record) {
            Ok(v) => v,
            Err(e) => return Saved::Failed(e.to_string()),
        };
        match self.kv.update(key(&site), value.into(), rev).await {
            Ok(new) => {
                let mut revs = self.revs.lock();
                // Only move forward from the revision this write expected.
                if revs.get(&site).is_none_or(|r| *r == rev) {
                    revs.insert(site, new);
                }
                Saved::Ok
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                let mut revs = self.revs.lock();
                if revs.get(&site) == Some(&rev) {
                    revs.remove(&site);
                }
                // Written by another node since: it holds the site now (a write of a node that
                // took the site before us was fenced by our take; one that raced an untaken
                // key is read again at the next save).
                if known.is_some() {
                    Saved::MovedOn
                } else {
                    Saved::Failed("the record changed while it was being taken".into())
                }
            }
            Err(e) => Saved::Failed(e.to_string()),
        }
    }

    /// The site's record as stored (tests, tools).
    pub async fn get(&self, site: &SiteId) -> Result<Option<Record>, String> {
        match self.kv.entry(key(site)).await {
            Ok(Some(e)) if e.operation == kv::Operation::Put => serde_json::from_slice(&e.value)
                .map(Some)
                .map_err(|e| e.to_string()),
            Ok(_) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl OpenStore for OpenIncidents {
    fn save(
        &self,
        site: &SiteId,
        holder: &Holder,
        open: Vec<OpenIncident>,
    ) -> BoxFuture<'static, Saved> {
        let (me, site, holder) = (self.clone(), site.clone(), holder.clone());
        Box::pin(async move { me.save_now(site, holder, open).await })
    }
}
