//! The lease operations on NATS JetStream KV (nats-server >= 2.11: per-message TTL and the
//! delete markers the server writes when one runs out).
//!
//! One key per site, `site.<id>` in bucket [`BUCKET`], value = the holder's node name. A write
//! is a raw JetStream publish with `Nats-Expected-Last-Subject-Sequence` (compare-and-set on the
//! key's revision) and `Nats-TTL`: async-nats' `create_with_ttl` falls back to an `update`
//! *without* the TTL when the key's last entry is a delete marker (exactly the expired-lease
//! case) and would make a lease that never expires; `update` has no TTL variant. The PubAck's
//! sequence is the new revision: the fencing token.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind, kv};

use super::ClusterError;

/// The bucket of site leases and node records.
pub const BUCKET: &str = "simpang-leases";
/// How long the server keeps the delete marker of an expired lease: long enough for every
/// watcher to see it; the next acquire replaces it anyway.
const MARKER_TTL: Duration = Duration::from_secs(60);

pub fn site_key(site: &str) -> String {
    format!("site.{site}")
}

pub fn node_key(node: &str) -> String {
    format!("node.{node}")
}

/// Opens a KV bucket, creating it with `cfg` when missing (another node may create it at the
/// same moment: then it is opened).
pub(super) async fn open_bucket(
    js: &jetstream::Context,
    cfg: kv::Config,
) -> Result<kv::Store, ClusterError> {
    if let Ok(kv) = js.get_key_value(cfg.bucket.as_str()).await {
        return Ok(kv);
    }
    let name = cfg.bucket.clone();
    match js.create_key_value(cfg).await {
        Ok(kv) => Ok(kv),
        Err(e) => js
            .get_key_value(name.as_str())
            .await
            .map_err(|_| ClusterError::Bucket(format!("{name}: {e}"))),
    }
}

/// The outcome of one conditional write.
#[derive(Debug)]
pub enum Write {
    /// Stored: the new revision.
    Ok(u64),
    /// The key moved on: another node holds it, or it expired and was written since.
    Taken,
    /// No answer, or an error that says nothing about the key.
    Failed(String),
}

/// What the key of a site says now.
#[derive(Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Never written, or its lease ran out / was released: acquire with this expected revision.
    Free(u64),
    /// Held by this node name at this revision.
    Held(String, u64),
}

/// The bucket and the node's JetStream context.
#[derive(Clone)]
pub struct Leases {
    js: jetstream::Context,
    pub kv: kv::Store,
    node: String,
    ttl: Duration,
}

impl Leases {
    /// Opens the bucket, creating it when missing (R = `replicas`, per-message TTL allowed,
    /// delete markers kept [`MARKER_TTL`]).
    pub async fn open(
        js: jetstream::Context,
        node: &str,
        ttl: Duration,
        replicas: usize,
    ) -> Result<Self, ClusterError> {
        let kv = open_bucket(
            &js,
            kv::Config {
                bucket: BUCKET.into(),
                description: "simpang site leases (src/cluster)".into(),
                history: 1,
                num_replicas: replicas,
                limit_markers: Some(MARKER_TTL),
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            js,
            kv,
            node: node.to_string(),
            ttl,
        })
    }

    /// One conditional write of `key` with the TTL: the value is this node's name (a site) or
    /// its record (a node). `expected` None writes unconditionally (the node's own record).
    async fn write(&self, key: &str, expected: Option<u64>, value: bytes::Bytes) -> Write {
        let mut h = async_nats::HeaderMap::new();
        if let Some(e) = expected {
            h.insert(
                "Nats-Expected-Last-Subject-Sequence",
                e.to_string().as_str(),
            );
        }
        h.insert(
            "Nats-TTL",
            format!("{}s", self.ttl.as_secs().max(1)).as_str(),
        );
        let subject = format!("$KV.{BUCKET}.{key}");
        let ack = match self.js.publish_with_headers(subject, h, value).await {
            Ok(f) => f.await,
            Err(e) => return Write::Failed(e.to_string()),
        };
        match ack {
            Ok(a) => Write::Ok(a.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Write::Taken,
            Err(e) => Write::Failed(e.to_string()),
        }
    }

    /// Acquires (expected = the free key's revision) or renews (expected = our revision).
    pub async fn write_site(&self, site: &str, expected: u64) -> Write {
        self.write(
            &site_key(site),
            Some(expected),
            bytes::Bytes::from(self.node.clone()),
        )
        .await
    }

    /// This node's heartbeat record (capacity and load), TTL'd like a lease.
    pub async fn write_node(&self, record: &NodeRecord) -> Write {
        match serde_json::to_vec(record) {
            Ok(v) => self.write(&node_key(&self.node), None, v.into()).await,
            Err(e) => Write::Failed(e.to_string()),
        }
    }

    pub async fn site_state(&self, site: &str) -> Result<KeyState, String> {
        match self.kv.entry(site_key(site)).await {
            Ok(None) => Ok(KeyState::Free(0)),
            Ok(Some(e)) if e.operation != kv::Operation::Put => Ok(KeyState::Free(e.revision)),
            Ok(Some(e)) => Ok(KeyState::Held(
                String::from_utf8_lossy(&e.value).into_owned(),
                e.revision,
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Gives a site's lease up (its cameras already stopped): a delete that only succeeds while
    /// the key is still ours, so another node can take it at once rather than after the TTL.
    /// Retried with the key's current revision while it still names this node (a renewal that
    /// raced with this call moved the revision).
    pub async fn release(&self, site: &str, mut rev: u64) -> bool {
        for _ in 0..3 {
            let key = site_key(site);
            match self.kv.delete_expect_revision(&key, Some(rev)).await {
                Ok(()) => return true,
                Err(_) => match self.site_state(site).await {
                    Ok(KeyState::Held(node, now)) if node == self.node => rev = now,
                    _ => return false,
                },
            }
        }
        false
    }

    /// Removes this node's record (a drained node is no longer a candidate).
    pub async fn forget_node(&self) {
        let _ = self.kv.delete(node_key(&self.node)).await;
    }
}

/// A node's heartbeat record, `node.<name>` in the bucket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    /// `None`: no limit.
    pub capacity: Option<u32>,
    pub held: u32,
    /// False while the node drains: it takes no site.
    pub accepting: bool,
}
