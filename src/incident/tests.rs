//! The incident stage's pieces together, without a broker.

use std::path::Path;

use chrono::TimeZone;

use super::*;
use crate::model::{RulePhase, SiteId};

/// The zone is parsed once from the config and reaches every local time an incident shows:
/// the message's times and words, the snapshot's caption and its day folder.
#[test]
fn zone_from_config_reaches_text_and_snapshot() {
    let cfg = Config::from_str_at(
        r#"
[city]
name = "Makassar"
timezone = "Asia/Makassar"

[[sites]]
id = "losari"
name = "Pantai Losari"
address = "Jl. Penghibur"
lat = -5.14
lon = 119.41
stream = "rtsp://127.0.0.1:8554/losari"
"#,
        Path::new("makassar.toml"),
    )
    .unwrap();
    assert_eq!(cfg.city.tz().name(), "Asia/Makassar");
    let local = LocalTime { tz: cfg.city.tz() };
    let site = SiteInfo::from_site(&cfg.sites[0]);
    // 23:58 WITA on the 23rd; decided 00:00:30 WITA on the 24th (still the 23rd in UTC).
    let started_at = Utc.with_ymd_and_hms(2026, 11, 23, 15, 58, 0).unwrap();
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 16, 0, 30).unwrap();
    let ev = RuleEvent {
        site: SiteId::new("losari"),
        zone: None,
        kind: IncidentKind::CameraOffline,
        phase: RulePhase::Start,
        level: crate::model::Level::Tinggi,
        started_at,
        at,
        evidence: Evidence {
            offline_s: Some(150.0),
            ..Default::default()
        },
        frame: None,
        boxes: Vec::new(),
    };
    let mut lifecycle = Lifecycle::new(LifecycleConfig {
        update_interval: chrono::Duration::seconds(30),
        restore_confirm: chrono::Duration::seconds(600),
    });
    let emits = lifecycle.on_event(&ev);
    assert_eq!(emits.len(), 1);
    let emit = &emits[0];
    let msg = message::incident_message(emit, &ev.evidence, &site, &local, None);
    let inc = &msg.incident;
    assert_eq!(inc.started_at.to_rfc3339(), "2026-11-23T23:58:00+08:00");
    assert_eq!(inc.updated_at.to_rfc3339(), "2026-11-24T00:00:30+08:00");
    for d in [&inc.description, &inc.description_en] {
        assert!(d.contains("23:58 WITA (23-11-2026)"), "{d}");
        assert!(!d.contains("WIB"), "{d}");
    }

    let caption = snapshot::caption(
        emit.key.kind,
        emit.event,
        &site.name,
        at,
        started_at,
        &local,
    );
    assert!(caption.starts_with("23:58:00 WITA - "), "{caption}");
    let end = snapshot::caption(
        IncidentKind::Crowd,
        IncidentEvent::End,
        &site.name,
        at,
        started_at,
        &local,
    );
    assert!(end.starts_with("00:00:30 WITA - selesai"), "{end}");
    let rel = snapshot::relative_path(&emit.id, emit.seq, local.at(at));
    assert!(
        rel.starts_with("snapshots/2026-11-24"),
        "the local date names the folder: {}",
        rel.display()
    );
}
