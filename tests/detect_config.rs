//! The detector loaded the way `simpang run` loads it: from the config file, with its paths
//! relative to the config; and the `[detect]` settings this stage added.

mod support;

use simpang::config::{Config, OptimizationLevel};
use simpang::detect::Detector;

#[test]
fn loads_from_the_shipped_config() {
    let cfg = Config::load(&support::root().join("config/palembang.toml")).unwrap();
    let d = Detector::load(&cfg).unwrap();
    assert_eq!(d.input_size(), (416, 416));
    assert_eq!(d.sessions(), cfg.detect.sessions);
    assert_eq!(d.labels().len(), 80);
}

const BASE: &str = "[city]\nname = \"x\"\n\n[detect]\n";

#[test]
fn detect_settings_are_validated_with_their_line() {
    let ok = Config::from_str_at(
        &format!("{BASE}spinning = true\noptimization = \"basic\"\ninput_size = [320, 320]\n\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"-\"\nlat = 0.0\nlon = 0.0\nstream = \"x.mp4\"\n"),
        "t.toml".as_ref(),
    )
    .unwrap();
    assert!(ok.detect.spinning);
    assert_eq!(ok.detect.optimization, OptimizationLevel::Basic);
    assert_eq!(ok.detect.input_size, Some([320, 320]));
    let defaults = Config::from_str_at(
        &format!("{BASE}\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"-\"\nlat = 0.0\nlon = 0.0\nstream = \"x.mp4\"\n"),
        "t.toml".as_ref(),
    )
    .unwrap();
    assert!(!defaults.detect.spinning);
    assert_eq!(defaults.detect.optimization, OptimizationLevel::All);
    assert_eq!(defaults.detect.input_size, None);
    for (line, field, msg) in [
        ("input_size = [8, 320]", "detect.input_size", "32..=4096"),
        (
            "optimization = \"max\"",
            "detect.optimization",
            "unknown variant",
        ),
    ] {
        let e = Config::from_str_at(
            &format!("{BASE}{line}\n\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"-\"\nlat = 0.0\nlon = 0.0\nstream = \"x.mp4\"\n"),
            "t.toml".as_ref(),
        )
        .unwrap_err();
        let p = e
            .problems()
            .iter()
            .find(|p| p.field == field)
            .unwrap_or_else(|| panic!("{e}"));
        assert_eq!(p.line, 5, "{e}");
        assert!(p.message.contains(msg), "{e}");
    }
}
