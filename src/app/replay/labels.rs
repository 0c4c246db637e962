//! Labels of recordings: the real conditions an operator saw, against which `simpang replay`
//! scores the incidents (docs/rules.md, "Scoring rules on recordings").
//!
//! A labels file is JSON Lines, one condition per line:
//!
//! ```text
//! {"site": "crowd-16", "kind": "crowd", "zone": "plaza", "start_s": 18.2, "end_s": 78.3, "persons": 16}
//! ```
//!
//! `site` is a site id of the config, `kind` an incident kind, `zone` the zone's id (null or
//! absent for camera-wide kinds: `camera_tamper`), `start_s` / `end_s` media seconds from the
//! recording's start. `persons` (crowds) and `note` are optional and only reported. Blank lines
//! are skipped. A file named `<site>.labels.jsonl` labels that site even when it is empty:
//! "nothing should be raised here". Every error names the file and line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::Config;
use crate::model::{IncidentKind, ZoneKind};

/// A labels problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{}: no *.labels.jsonl file in this folder", path.display())]
    EmptyFolder { path: PathBuf },
}

/// One labelled condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub site: String,
    pub kind: IncidentKind,
    pub zone: Option<String>,
    pub start_s: f64,
    pub end_s: f64,
    pub persons: Option<u32>,
    pub note: Option<String>,
    /// Where it was written: `file:line`.
    pub source: String,
}

/// The labels of a scoring run, and which sites they cover.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    pub labels: Vec<Label>,
    /// Sites whose incidents are scored: named by a label or by a file's name.
    pub sites: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLabel {
    site: String,
    kind: String,
    #[serde(default)]
    zone: Option<String>,
    start_s: f64,
    end_s: f64,
    #[serde(default)]
    persons: Option<u32>,
    #[serde(default)]
    note: Option<String>,
}

/// The files `paths` name: a file as it is, a folder as its `*.labels.jsonl` files (sorted).
pub fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, LabelsError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|error| LabelsError::Read {
                path: p.clone(),
                error,
            })?;
            let mut found: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.to_string_lossy().ends_with(".labels.jsonl"))
                .collect();
            if found.is_empty() {
                return Err(LabelsError::EmptyFolder { path: p.clone() });
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads and checks the labels of `paths` (files or folders) against the config.
pub fn load(paths: &[PathBuf], cfg: &Config) -> Result<Labels, LabelsError> {
    let mut all = Labels::default();
    for f in files(paths)? {
        let text = std::fs::read_to_string(&f).map_err(|error| LabelsError::Read {
            path: f.clone(),
            error,
        })?;
        let one = parse(&text, &f, cfg)?;
        all.labels.extend(one.labels);
        all.sites.extend(one.sites);
    }
    Ok(all)
}

/// Parses one labels file's text (`path` for errors and for the site its name gives).
pub fn parse(text: &str, path: &Path, cfg: &Config) -> Result<Labels, LabelsError> {
    let mut out = Labels::default();
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    if let Some(site) = name
        .as_deref()
        .and_then(|n| n.strip_suffix(".labels.jsonl"))
        .filter(|s| cfg.site(s).is_some())
    {
        out.sites.insert(site.to_string());
    }
    for (i, raw_line) in text.lines().enumerate() {
        let line = i + 1;
        let bad = |message: String| LabelsError::Line {
            path: path.to_path_buf(),
            line,
            message,
        };
        if raw_line.trim().is_empty() {
            continue;
        }
        let raw: RawLabel = serde_json::from_str(raw_line).map_err(|e| {
            bad(format!(
                "not a label: {e} (want {{\"site\", \"kind\", \"zone\", \"start_s\", \"end_s\"}})"
            ))
        })?;
        let Some(site) = cfg.site(&raw.site) else {
            let known: Vec<&str> = cfg.sites.iter().map(|s| s.id.as_str()).collect();
            return Err(bad(format!(
                "unknown site {:?}; the config's sites are: {}",
                raw.site,
                known.join(", ")
            )));
        };
        let kind: IncidentKind = serde_json::from_value(serde_json::Value::String(raw.kind.clone()))
            .map_err(|_| {
                bad(format!(
                    "unknown kind {:?}; kinds are: traffic_jam, crowd, garbage, camera_tamper, camera_offline",
                    raw.kind
                ))
            })?;
        let zone_kind = ZoneKind::ALL
            .into_iter()
            .find(|z| IncidentKind::from(*z) == kind);
        match (&raw.zone, zone_kind) {
            (Some(z), Some(zk)) => match site.zones.iter().find(|c| c.id == *z) {
                None => {
                    let known: Vec<&str> = site.zones.iter().map(|c| c.id.as_str()).collect();
                    return Err(bad(format!(
                        "site {:?} has no zone {z:?} (its zones: {})",
                        raw.site,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
                Some(c) if c.kind != zk => {
                    return Err(bad(format!(
                        "zone {z:?} of site {:?} is a {} zone, not {}",
                        raw.site,
                        c.kind.as_str(),
                        zk.as_str()
                    )))
                }
                Some(_) => {}
            },
            (None, Some(_)) => {
                return Err(bad(format!(
                    "a {} label needs the zone it happened in (\"zone\")",
                    kind.as_str()
                )))
            }
            (Some(z), None) => {
                return Err(bad(format!(
                    "{} is camera-wide: zone must be null, got {z:?}",
                    kind.as_str()
                )))
            }
            (None, None) => {}
        }
        if !(raw.start_s.is_finite() && raw.start_s >= 0.0) {
            return Err(bad(format!(
                "start_s must be a time from the recording's start, in seconds (>= 0), got {}",
                raw.start_s
            )));
        }
        if !raw.end_s.is_finite() || raw.end_s < raw.start_s {
            return Err(bad(format!(
                "end_s ({}) is before start_s ({})",
                raw.end_s, raw.start_s
            )));
        }
        out.sites.insert(raw.site.clone());
        out.labels.push(Label {
            site: raw.site,
            kind,
            zone: raw.zone,
            start_s: raw.start_s,
            end_s: raw.end_s,
            persons: raw.persons,
            note: raw.note,
            source: format!("{}:{line}", path.display()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        let text = r#"
[city]
name = "P"

[[sites]]
id = "plaza"
name = "Plaza"
address = "Jl. Uji"
lat = -2.99
lon = 104.76
stream = "a.mp4"

[[sites.zones]]
id = "tengah"
name = "Tengah"
kind = "crowd"
polygon = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
"#;
        Config::from_str_at(text, Path::new("t.toml")).unwrap()
    }

    fn err(text: &str) -> String {
        parse(text, Path::new("x/a.labels.jsonl"), &cfg())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_labels_and_the_site_a_file_name_gives() {
        let text = "{\"site\": \"plaza\", \"kind\": \"crowd\", \"zone\": \"tengah\", \"start_s\": 1.5, \"end_s\": 9, \"persons\": 16}\n\n\
                    {\"site\": \"plaza\", \"kind\": \"camera_tamper\", \"zone\": null, \"start_s\": 20, \"end_s\": 35}\n";
        let l = parse(text, Path::new("d/plaza.labels.jsonl"), &cfg()).unwrap();
        assert_eq!(l.labels.len(), 2);
        assert_eq!(l.labels[0].persons, Some(16));
        assert_eq!(l.labels[1].kind, IncidentKind::CameraTamper);
        assert_eq!(l.labels[1].source, "d/plaza.labels.jsonl:3");
        let empty = parse("", Path::new("d/plaza.labels.jsonl"), &cfg()).unwrap();
        assert!(empty.labels.is_empty());
        assert!(
            empty.sites.contains("plaza"),
            "an empty file labels its site"
        );
        let other = parse("", Path::new("d/nope.labels.jsonl"), &cfg()).unwrap();
        assert!(other.sites.is_empty());
    }

    #[test]
    fn errors_name_file_line_and_what() {
        let ok = "{\"site\": \"plaza\", \"kind\": \"crowd\", \"zone\": \"tengah\", \"start_s\": 1, \"end_s\": 9}\n";
        let cases = [
            (
                format!("{ok}{{\"site\": \"bkb\", \"kind\": \"crowd\", \"zone\": \"tengah\", \"start_s\": 1, \"end_s\": 9}}"),
                "x/a.labels.jsonl:2: unknown site \"bkb\"; the config's sites are: plaza",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"crowd\", \"zone\": \"tengah\", \"start_s\": 10, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: end_s (9) is before start_s (10)",
            ),
            (
                format!("{ok}\n{ok}{{\"site\": \"plaza\", \"kind\": "),
                "x/a.labels.jsonl:4: not a label: EOF",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"riot\", \"zone\": \"tengah\", \"start_s\": 1, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: unknown kind \"riot\"",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"crowd\", \"zone\": \"pinggir\", \"start_s\": 1, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: site \"plaza\" has no zone \"pinggir\" (its zones: tengah)",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"traffic_jam\", \"zone\": \"tengah\", \"start_s\": 1, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: zone \"tengah\" of site \"plaza\" is a crowd zone, not traffic_jam",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"crowd\", \"start_s\": 1, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: a crowd label needs the zone",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"camera_tamper\", \"zone\": \"tengah\", \"start_s\": 1, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: camera_tamper is camera-wide",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"crowd\", \"zone\": \"tengah\", \"start_s\": -1, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: start_s must be",
            ),
            (
                "{\"site\": \"plaza\", \"kind\": \"crowd\", \"zone\": \"tengah\", \"begin\": 1, \"start_s\": 1, \"end_s\": 9}".to_string(),
                "x/a.labels.jsonl:1: not a label: unknown field `begin`",
            ),
        ];
        for (text, want) in cases {
            let e = err(&text);
            assert!(e.starts_with(want), "{e}\nwant: {want}");
        }
    }

    #[test]
    fn a_folder_gives_its_labels_files_and_a_missing_file_is_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("plaza.labels.jsonl"), "").unwrap();
        std::fs::write(d.path().join("notes.txt"), "x").unwrap();
        let f = files(&[d.path().to_path_buf()]).unwrap();
        assert_eq!(f, vec![d.path().join("plaza.labels.jsonl")]);
        let missing = d.path().join("nope.labels.jsonl");
        let e = load(std::slice::from_ref(&missing), &cfg())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        let empty = tempfile::tempdir().unwrap();
        let e = files(&[empty.path().to_path_buf()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no *.labels.jsonl"), "{e}");
    }

    proptest::proptest! {
        /// Labels files are outside data (hand-written, exported from other tools): any text,
        /// and a good line with one byte changed, load or give an error naming the file and
        /// line, never a panic.
        #[test]
        fn any_text_loads_or_is_refused(text in "(?s).{0,400}") {
            if let Err(e) = parse(&text, Path::new("p/plaza.labels.jsonl"), &cfg()) {
                proptest::prop_assert!(e.to_string().starts_with("p/plaza.labels.jsonl:"), "{e}");
            }
        }

        #[test]
        fn a_damaged_label_loads_or_is_refused(at in 0usize..200, byte in 0u8..128) {
            let good = "{\"site\": \"plaza\", \"kind\": \"crowd\", \"zone\": \"tengah\", \"start_s\": 1.5, \"end_s\": 9, \"persons\": 16}";
            let mut b = good.as_bytes().to_vec();
            let i = at % b.len();
            b[i] = byte;
            if let Ok(text) = String::from_utf8(b) {
                let _ = parse(&text, Path::new("p/plaza.labels.jsonl"), &cfg());
            }
        }
    }
}
