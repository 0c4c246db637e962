//! Incident lifecycle, snapshots, on-disk outbox and MQTT publishing.
//!
//! Entry point for `simpang run`: [`IncidentService::start`], fed through an [`IncidentSender`].

use std::sync::Arc;

use prometheus::Registry;
use tokio::sync::mpsc;
use tracing::info;

use crate::config::Config;
use crate::hub::Hub;
use crate::model::{CountsReport, RuleEvent};

#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("incident service: {0}")]
    Other(String),
}

enum Input {
    Rule(Box<RuleEvent>),
    Counts(Box<CountsReport>),
}

/// Cloneable handle the frame loop uses to hand over rule events and counts. Never blocks.
#[derive(Clone)]
pub struct IncidentSender {
    tx: mpsc::Sender<Input>,
}

impl IncidentSender {
    pub fn rule_event(&self, ev: RuleEvent) {
        if self.tx.try_send(Input::Rule(Box::new(ev))).is_err() {
            tracing::error!("incident queue full or closed: rule event lost");
        }
    }

    pub fn counts(&self, report: CountsReport) {
        let _ = self.tx.try_send(Input::Counts(Box::new(report)));
    }
}

/// The running incident stage.
pub struct IncidentService {
    tx: mpsc::Sender<Input>,
    task: tokio::task::JoinHandle<()>,
}

impl IncidentService {
    /// Starts the stage. Until the MQTT stage is built, rule events are logged.
    pub async fn start(
        _cfg: &Config,
        _hub: Arc<Hub>,
        _registry: &Registry,
    ) -> Result<Self, IncidentError> {
        let (tx, mut rx) = mpsc::channel::<Input>(1024);
        let task = tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                match input {
                    Input::Rule(ev) => info!(
                        site = %ev.site,
                        zone = ?ev.zone.as_ref().map(|z| z.as_str()),
                        kind = ev.kind.as_str(),
                        phase = ?ev.phase,
                        level = %ev.level,
                        "rule event"
                    ),
                    Input::Counts(r) => info!(site = %r.site, interval_s = r.interval_s, "counts"),
                }
            }
        });
        Ok(Self { tx, task })
    }

    pub fn sender(&self) -> IncidentSender {
        IncidentSender {
            tx: self.tx.clone(),
        }
    }

    pub async fn stop(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}
