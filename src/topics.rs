//! MQTT topic names of the `simpang/v1` contract (docs/mqtt.md). Every topic simpang publishes
//! or a consumer subscribes to is built here, so the contract lives in one place. Neutral ground
//! (it imports nothing) so the config's defaults name the same topics as the stages.

/// Version root of every topic.
pub const ROOT: &str = "simpang/v1";
/// Per-site topics: `simpang/v1/sites/{site}/...`.
pub const SITES: &str = "simpang/v1/sites";
/// Leaf of the incident topic (QoS 1, not retained).
pub const INCIDENTS: &str = "incidents";
/// Leaf of the status topic (QoS 1, retained; the connection's last will sets it offline).
pub const STATUS: &str = "status";
/// Leaf of the counts topic (QoS 1, not retained).
pub const COUNTS: &str = "counts";
/// Everything simpang publishes.
pub const ALL: &str = "simpang/v1/#";
/// Incidents of every site.
pub const ALL_INCIDENTS: &str = "simpang/v1/sites/+/incidents";
/// Status of every site.
pub const ALL_STATUS: &str = "simpang/v1/sites/+/status";
/// Counts of every site.
pub const ALL_COUNTS: &str = "simpang/v1/sites/+/counts";
/// Default root of the complaint desk's per-report topics (`[desk.mqtt] status_topic_prefix`).
pub const DESK_REPORTS: &str = "simpang/v1/desk/reports";

/// `simpang/v1/sites/{site}/incidents`
pub fn incidents(site: &str) -> String {
    format!("{SITES}/{site}/{INCIDENTS}")
}

/// `simpang/v1/sites/{site}/status`
pub fn status(site: &str) -> String {
    format!("{SITES}/{site}/{STATUS}")
}

/// `simpang/v1/sites/{site}/counts`
pub fn counts(site: &str) -> String {
    format!("{SITES}/{site}/{COUNTS}")
}

/// `{prefix}/{ticket}/status`: the complaint desk's status message for one report (QoS 1, not
/// retained). `prefix` is `[desk.mqtt] status_topic_prefix`, [`DESK_REPORTS`] unless
/// configured (the config refuses wildcards and a trailing `/` in it).
pub fn desk_report_status(prefix: &str, ticket: &str) -> String {
    format!("{prefix}/{ticket}/{STATUS}")
}

/// The site id and leaf of a `simpang/v1/sites/{site}/{leaf}` topic.
pub fn parse(topic: &str) -> Option<(&str, &str)> {
    let rest = topic.strip_prefix(SITES)?.strip_prefix('/')?;
    let (site, leaf) = rest.split_once('/')?;
    (!site.is_empty() && !leaf.contains('/')).then_some((site, leaf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_parse() {
        assert_eq!(incidents("bkb"), "simpang/v1/sites/bkb/incidents");
        assert_eq!(status("bkb"), "simpang/v1/sites/bkb/status");
        assert_eq!(
            counts("kapten-rivai"),
            "simpang/v1/sites/kapten-rivai/counts"
        );
        let cases = [
            ("simpang/v1/sites/bkb/incidents", Some(("bkb", "incidents"))),
            ("simpang/v1/sites/bkb/status", Some(("bkb", "status"))),
            ("simpang/v1/sites//status", None),
            ("simpang/v1/sites/bkb", None),
            ("simpang/v1/sites/bkb/a/b", None),
            ("simpang/v2/sites/bkb/status", None),
            ("", None),
        ];
        for (t, want) in cases {
            assert_eq!(parse(t), want, "{t}");
        }
    }

    #[test]
    fn desk_report_status_topics() {
        let cases = [
            (
                DESK_REPORTS,
                "PLG-7K3QX9",
                "simpang/v1/desk/reports/PLG-7K3QX9/status",
            ),
            ("kota/pengaduan", "PLG-A", "kota/pengaduan/PLG-A/status"),
        ];
        for (prefix, ticket, want) in cases {
            assert_eq!(desk_report_status(prefix, ticket), want, "{prefix:?}");
        }
    }
}
