//! Prometheus families of the incident stage.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Registry};

use crate::metrics;

/// Prometheus families of the incident stage.
#[derive(Clone)]
pub struct IncidentMetrics {
    pub outbox_pending: IntGaugeVec,
    pub mqtt_connected: IntGaugeVec,
    pub publish_latency: HistogramVec,
    pub published: IntCounterVec,
    pub messages: IntCounterVec,
    pub outbox_dropped: IntCounterVec,
    pub outbox_over_limit: IntCounter,
    pub connect_failures: IntCounterVec,
    pub input_dropped: IntCounter,
    pub handoff_failures: IntCounterVec,
}

/// Publish latency buckets: the usual ones, then minutes, for messages that waited out an outage.
fn latency_buckets() -> Vec<f64> {
    let mut b = metrics::LATENCY_BUCKETS.to_vec();
    b.extend([30.0, 60.0, 300.0, 1800.0, 3600.0]);
    b
}

impl IncidentMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let publish_latency = HistogramVec::new(
            HistogramOpts::new(
                "simpang_publish_latency_seconds",
                "From a rule event (or counts report) reaching the incident service to the broker's PUBACK of its message",
            )
            .buckets(latency_buckets()),
            &["kind"],
        )?;
        r.register(Box::new(publish_latency.clone()))?;
        Ok(Self {
            outbox_pending: metrics::int_gauge_vec(
                r,
                "simpang_outbox_pending",
                "Messages in the on-disk outbox not yet acknowledged by the broker",
                &["site"],
            )?,
            mqtt_connected: metrics::int_gauge_vec(
                r,
                "simpang_mqtt_connected",
                "1 while the site's MQTT connection is up",
                &["site"],
            )?,
            publish_latency,
            published: metrics::int_counter_vec(
                r,
                "simpang_mqtt_published_total",
                "Messages acknowledged by the broker",
                &["site", "kind"],
            )?,
            messages: metrics::int_counter_vec(
                r,
                "simpang_incident_messages_total",
                "Incident messages committed to the outbox",
                &["site", "kind", "event"],
            )?,
            outbox_dropped: metrics::int_counter_vec(
                r,
                "simpang_outbox_dropped_total",
                "Counts messages dropped or evicted because the outbox was full (incidents are never dropped)",
                &["site", "kind"],
            )?,
            outbox_over_limit: metrics::int_counter(
                r,
                "simpang_outbox_over_limit_total",
                "Incident messages stored although the outbox was at its bound",
            )?,
            connect_failures: metrics::int_counter_vec(
                r,
                "simpang_mqtt_connect_failures_total",
                "Failed attempts to connect to the MQTT broker",
                &["site"],
            )?,
            input_dropped: metrics::int_counter(
                r,
                "simpang_incident_input_dropped_total",
                "Rule events or counts reports lost because the incident queue was full",
            )?,
            handoff_failures: metrics::int_counter_vec(
                r,
                "simpang_incident_handoff_failures_total",
                "Saves of a site's open incidents to the cluster's store that failed: `moved_on` (another node holds the site; the message was not sent), `failed`, `timeout` (the message was sent anyway)",
                &["reason"],
            )?,
        })
    }
}
