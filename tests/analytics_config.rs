//! Rule settings in the config file: bad values and unknown class names are reported with the
//! field they are about (and, for values, the file and line).

mod support;

use std::path::Path;

use simpang::analytics::SiteAnalytics;
use simpang::config::Config;
use support::analytics::coco;

fn config(tables: &str) -> String {
    format!(
        r#"[city]
name = "Palembang"

[[sites]]
id = "uji"
name = "Uji"
address = "Jl. Uji"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:8554/uji"
{tables}"#
    )
}

#[test]
fn bad_rule_values_name_file_line_and_field() {
    let cases = [
        (
            "[sites.tamper]\nflat_std = -1.0\n",
            "sites[0].tamper.flat_std",
            12,
        ),
        (
            "[sites.tamper]\nmax_view_distance = 1.5\n",
            "sites[0].tamper.max_view_distance",
            12,
        ),
        (
            // the key this field replaced
            "[sites.tamper]\nmax_histogram_distance = 0.6\n",
            "sites[0].tamper.max_histogram_distance",
            12,
        ),
        (
            "[[sites.zones]]\nid = \"z\"\nname = \"Z\"\nkind = \"crowd\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[sites.zones.crowd]\nrelease_ratio = 0.0\n",
            "sites[0].zones[0].crowd.release_ratio",
            17,
        ),
        (
            "[[sites.zones]]\nid = \"z\"\nname = \"Z\"\nkind = \"traffic_jam\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[sites.zones.traffic_jam]\npadat_ds = 0.9\nmacet_ds = 0.8\n",
            "sites[0].zones[0].traffic_jam.macet_ds",
            18,
        ),
        (
            "[[sites.zones]]\nid = \"z\"\nname = \"Z\"\nkind = \"garbage\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[sites.zones.garbage]\nlearning_rate = 1.0\n",
            "sites[0].zones[0].garbage.learning_rate",
            17,
        ),
    ];
    for (tables, field, line) in cases {
        let err = Config::from_str_at(&config(tables), Path::new("/etc/simpang/uji.toml"))
            .err()
            .unwrap_or_else(|| panic!("{field}: accepted"));
        let p = &err.problems()[0];
        assert_eq!(p.field, field, "{err}");
        assert_eq!(p.line, line, "{err}");
        assert!(
            err.to_string().starts_with("/etc/simpang/uji.toml:"),
            "{err}"
        );
    }
}

#[test]
fn unknown_class_names_are_errors_naming_the_field() {
    let cases = [
        (
            "[[sites.zones]]\nid = \"z\"\nname = \"Z\"\nkind = \"crowd\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[sites.zones.crowd]\nclasses = [\"people\"]\n",
            "zones[0].crowd.classes",
            "people",
        ),
        (
            "[[sites.lines]]\nid = \"l\"\nname = \"L\"\npoints = [[0.0, 0.5], [1.0, 0.5]]\nclasses = [\"car\", \"Motorcycle\"]\n",
            "lines[0].classes",
            "Motorcycle",
        ),
        (
            "[[sites.zones]]\nid = \"z\"\nname = \"Z\"\nkind = \"garbage\"\npolygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]\n[sites.zones.garbage]\nignore_classes = [\"person\", \"becak\"]\n",
            "zones[0].garbage.ignore_classes",
            "becak",
        ),
    ];
    for (tables, field, class) in cases {
        let cfg = Config::from_str_at(&config(tables), Path::new("uji.toml")).unwrap();
        let msg = SiteAnalytics::new(&cfg.sites[0], coco())
            .err()
            .unwrap_or_else(|| panic!("{field}: accepted"))
            .to_string();
        assert!(msg.contains(field), "{msg}");
        assert!(msg.contains(&format!("{class:?}")), "{msg}");
    }
    // the shipped config is fine with the shipped model's classes
    let cfg = Config::load(&support::root().join("config/palembang.toml")).unwrap();
    for site in &cfg.sites {
        SiteAnalytics::new(site, coco()).unwrap_or_else(|e| panic!("{e}"));
    }
}
