//! Incident lifecycle, snapshots, on-disk outbox and MQTT publishing.
