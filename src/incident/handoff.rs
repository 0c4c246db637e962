//! Open incidents that move with a site between cluster nodes (`simpang run --node`).
//!
//! A node serving a site under a lease saves the site's open incidents to a store the whole
//! cluster shares ([`OpenStore`], NATS JetStream KV in src/cluster/handoff.rs) **before** the
//! message that changes them goes to the outbox. The node that takes the site next adopts them
//! ([`super::Lifecycle::adopt`]): the condition its rules find again continues the same
//! incident, same id, `seq` going on, instead of opening a second one.
//!
//! Saving first means a crash between the two writes can only skip a `seq` on the next node
//! (the desk takes a later `seq`, or a first `update`, as it takes a missed `new`), never send
//! one `(id, seq)` twice with two contents.

use futures::future::BoxFuture;

use super::lifecycle::OpenIncident;
use super::message::Holder;
use crate::model::SiteId;

/// What a save came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    Ok,
    /// Another node saved the site since (it holds the site now): this node must not send
    /// anything more about the site's incidents; the new holder goes on with them.
    MovedOn,
    /// No answer or an error that says nothing about who holds the site.
    Failed(String),
}

/// The cluster's shared copy of each site's open incidents.
pub trait OpenStore: Send + Sync + 'static {
    /// Replaces the saved open incidents of `site` (served here under `holder`) with `open`.
    fn save(
        &self,
        site: &SiteId,
        holder: &Holder,
        open: Vec<OpenIncident>,
    ) -> BoxFuture<'static, Saved>;
}
