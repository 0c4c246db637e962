//! Every rule the analytics know, and the one place that builds them from config.
//!
//! A zone's `kind` selects its rule ([`ZONE_RULES`]); camera rules ([`CAMERA_RULES`]) are built
//! for every site and decide themselves whether they are on. Adding a rule is, in the analytics,
//! a file with its state machine and its [`ZoneRule`] glue (a `build` function) and one line
//! here; outside them its config table, its kind's enum variants and its words (docs/rules.md,
//! "How to add a rule", lists every place).

use super::rule::{CameraRule, CameraSetup, ZoneRule, ZoneSetup};
use super::{crowd, garbage, jam, tamper, AnalyticsError};
use crate::model::ZoneKind;

/// Builds the rule of one zone from its config.
pub type BuildZoneRule = fn(&ZoneSetup<'_>) -> Result<Box<dyn ZoneRule>, AnalyticsError>;
/// Builds a camera rule of one site from its config; `None` when the site turned it off.
pub type BuildCameraRule =
    fn(&CameraSetup<'_>) -> Result<Option<Box<dyn CameraRule>>, AnalyticsError>;

/// A zone rule and the zone kind that selects it.
pub struct ZoneRuleEntry {
    pub kind: ZoneKind,
    pub build: BuildZoneRule,
    /// The rule reports figures per reporting interval ([`ZoneRule::take_interval`]), so a
    /// site with such a zone keeps intervals even without counting lines.
    pub per_interval: bool,
}

pub static ZONE_RULES: [ZoneRuleEntry; 3] = [
    ZoneRuleEntry {
        kind: ZoneKind::TrafficJam,
        build: jam::build,
        per_interval: true,
    },
    ZoneRuleEntry {
        kind: ZoneKind::Crowd,
        build: crowd::build,
        per_interval: false,
    },
    ZoneRuleEntry {
        kind: ZoneKind::Garbage,
        build: garbage::build,
        per_interval: false,
    },
];

pub static CAMERA_RULES: [BuildCameraRule; 1] = [tamper::build];

/// The entry of a zone kind.
pub fn zone_rule(kind: ZoneKind) -> Option<&'static ZoneRuleEntry> {
    ZONE_RULES.iter().find(|e| e.kind == kind)
}

/// Builds the rule of the zone `setup` describes, by its kind.
pub fn build_zone_rule(setup: &ZoneSetup<'_>) -> Result<Box<dyn ZoneRule>, AnalyticsError> {
    let kind = setup.config.kind;
    let entry = zone_rule(kind).ok_or_else(|| AnalyticsError::Invalid {
        site: setup.site.into(),
        field: format!("{}.kind", setup.path),
        message: format!("no rule watches zones of kind {:?}", kind.as_str()),
    })?;
    (entry.build)(setup)
}

/// Builds the camera rules of a site that are on.
pub fn build_camera_rules(
    setup: &CameraSetup<'_>,
) -> Result<Vec<Box<dyn CameraRule>>, AnalyticsError> {
    let mut out = Vec::new();
    for build in &CAMERA_RULES {
        out.extend(build(setup)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::analytics::geom::Polygon;
    use crate::analytics::rule::Zone;
    use crate::analytics::tests::coco;
    use crate::config::Config;
    use crate::model::{IncidentKind, ZoneId};

    fn site(zones: &str) -> crate::config::Site {
        let text = format!(
            "[city]\nname = \"P\"\n\n[[sites]]\nid = \"uji\"\nname = \"Uji\"\naddress = \"Jl. Uji\"\n\
             lat = -2.99\nlon = 104.76\nstream = \"rtsp://127.0.0.1:8554/uji\"\n{zones}"
        );
        Config::from_str_at(&text, Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .sites
            .remove(0)
    }

    fn zone_toml(kind: ZoneKind, table: &str) -> String {
        format!(
            "[[sites.zones]]\nid = \"z\"\nname = \"Z\"\nkind = \"{}\"\n\
             polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n{table}",
            kind.as_str()
        )
    }

    fn build(site: &crate::config::Site) -> Result<Box<dyn ZoneRule>, AnalyticsError> {
        let c = &site.zones[0];
        let zone = Zone {
            id: ZoneId::new(&c.id),
            name: c.name.clone(),
            kind: c.kind,
            poly: Polygon::new(&c.polygon),
            scale: None,
        };
        let labels = coco();
        build_zone_rule(&ZoneSetup {
            site: site.id.as_str(),
            config: c,
            path: "zones[0]".into(),
            zone: &zone,
            labels: &labels,
            intervals: 2,
        })
    }

    #[test]
    fn every_zone_kind_has_one_rule_and_builds_from_defaults() {
        for kind in ZoneKind::ALL {
            let n = ZONE_RULES.iter().filter(|e| e.kind == kind).count();
            assert_eq!(n, 1, "{kind:?}");
            let rule = build(&site(&zone_toml(kind, ""))).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(rule.kind(), IncidentKind::from(kind), "{kind:?}");
        }
        assert_eq!(ZONE_RULES.len(), ZoneKind::ALL.len());
    }

    #[test]
    fn unknown_class_in_a_rule_table_names_the_field() {
        let cases = [
            (
                ZoneKind::TrafficJam,
                "classes",
                "zones[0].traffic_jam.classes",
            ),
            (ZoneKind::Crowd, "classes", "zones[0].crowd.classes"),
            (
                ZoneKind::Garbage,
                "ignore_classes",
                "zones[0].garbage.ignore_classes",
            ),
            (
                ZoneKind::Garbage,
                "litter_classes",
                "zones[0].garbage.litter_classes",
            ),
        ];
        for (kind, key, field) in cases {
            let table = format!("[sites.zones.{}]\n{key} = [\"becak\"]\n", kind.as_str());
            let err = build(&site(&zone_toml(kind, &table)))
                .err()
                .unwrap_or_else(|| panic!("{field}: should fail"));
            assert_eq!(err.field(), field);
            let msg = err.to_string();
            assert!(
                msg.contains("\"becak\"") && msg.contains("\"uji\""),
                "{msg}"
            );
        }
    }

    #[test]
    fn camera_rules_follow_the_site_config() {
        let labels = coco();
        let mut s = site("");
        let on = build_camera_rules(&CameraSetup {
            site: &s,
            labels: &labels,
        })
        .unwrap();
        let kinds: Vec<_> = on.iter().map(|r| r.kind()).collect();
        assert_eq!(kinds, vec![IncidentKind::CameraTamper]);
        s.tamper.enabled = false;
        let off = build_camera_rules(&CameraSetup {
            site: &s,
            labels: &labels,
        })
        .unwrap();
        assert!(off.is_empty());
    }
}
