//! Pipeline templates (`pipelines/*.pipeline`): GStreamer launch lines with `{placeholders}`,
//! built into the binary and overridable from a folder, so a city can swap a decoder or add a
//! hardware element without rebuilding.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::IngestError;

/// Which template opens a camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Rtsp,
    File,
    Uri,
}

impl SourceKind {
    pub fn template_name(&self) -> &'static str {
        match self {
            SourceKind::Rtsp => "rtsp",
            SourceKind::File => "file",
            SourceKind::Uri => "uri",
        }
    }
}

/// A camera's `stream` setting, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub kind: SourceKind,
    /// The URI for `rtsp`/`uri`, the local path for `file`.
    pub target: String,
}

impl Source {
    pub fn parse(stream: &str) -> Source {
        let lower = stream.to_ascii_lowercase();
        if lower.starts_with("rtsp://")
            || lower.starts_with("rtsps://")
            || lower.starts_with("rtspt://")
        {
            Source {
                kind: SourceKind::Rtsp,
                target: stream.to_string(),
            }
        } else if let Some(path) = stream.strip_prefix("file://") {
            Source {
                kind: SourceKind::File,
                target: path.to_string(),
            }
        } else if stream.contains("://") {
            Source {
                kind: SourceKind::Uri,
                target: stream.to_string(),
            }
        } else {
            Source {
                kind: SourceKind::File,
                target: stream.to_string(),
            }
        }
    }

    pub fn is_live(&self) -> bool {
        self.kind != SourceKind::File
    }
}

const NAMES: [&str; 4] = ["rtsp", "file", "uri", "branches"];

/// The set of templates in use.
#[derive(Clone, Debug)]
pub struct Templates {
    texts: BTreeMap<&'static str, (String, String)>, // name -> (origin, text)
}

impl Templates {
    /// The templates compiled into the binary (the repository's `pipelines/`).
    pub fn builtin() -> Self {
        let mut texts = BTreeMap::new();
        for (name, text) in [
            ("rtsp", include_str!("../../pipelines/rtsp.pipeline")),
            ("file", include_str!("../../pipelines/file.pipeline")),
            ("uri", include_str!("../../pipelines/uri.pipeline")),
            (
                "branches",
                include_str!("../../pipelines/branches.pipeline"),
            ),
        ] {
            texts.insert(
                name,
                (format!("built-in {name}.pipeline"), text.to_string()),
            );
        }
        Self { texts }
    }

    /// Built-ins, with any `<name>.pipeline` found in `dir` taking their place.
    pub fn load(dir: Option<&Path>) -> Result<Self, IngestError> {
        let mut t = Self::builtin();
        let Some(dir) = dir else { return Ok(t) };
        if !dir.is_dir() {
            return Err(IngestError::Template {
                file: dir.to_path_buf(),
                message: "pipelines folder does not exist".into(),
            });
        }
        for name in NAMES {
            let path = dir.join(format!("{name}.pipeline"));
            if path.exists() {
                let text = std::fs::read_to_string(&path).map_err(|e| IngestError::Template {
                    file: path.clone(),
                    message: e.to_string(),
                })?;
                t.texts.insert(name, (path.display().to_string(), text));
            }
        }
        Ok(t)
    }

    fn get(&self, name: &str) -> Result<&(String, String), IngestError> {
        self.texts.get(name).ok_or_else(|| IngestError::Template {
            file: PathBuf::from(format!("{name}.pipeline")),
            message: "no such template".into(),
        })
    }

    /// The full launch line for a source kind with `params` filled in.
    pub fn render(
        &self,
        kind: SourceKind,
        params: &BTreeMap<&str, String>,
    ) -> Result<String, IngestError> {
        let (origin, head) = self.get(kind.template_name())?;
        let (b_origin, branches) = self.get("branches")?;
        let branches = substitute(&strip_comments(branches), params, b_origin)?;
        let mut all = params.clone();
        all.insert("branches", branches);
        substitute(&strip_comments(head), &all, origin)
    }

    /// The source template of `kind` (source and parser, `parse`) followed by `branches`
    /// instead of the camera's: the bench reads the compressed video exactly as the cameras
    /// do, into its own decoder and sink.
    pub fn render_with_branches(
        &self,
        kind: SourceKind,
        params: &BTreeMap<&str, String>,
        branches: &str,
    ) -> Result<String, IngestError> {
        let (origin, head) = self.get(kind.template_name())?;
        let mut all = params.clone();
        all.insert("branches", branches.to_string());
        substitute(&strip_comments(head), &all, origin)
    }

    /// Every element factory the templates name, with the template naming it.
    pub fn elements(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (origin, text) in self.texts.values() {
            for e in element_names(&strip_comments(text)) {
                out.push((origin.clone(), e));
            }
        }
        out
    }
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces `{name}` with `params[name]`; an unknown placeholder is an error naming it.
fn substitute(
    text: &str,
    params: &BTreeMap<&str, String>,
    origin: &str,
) -> Result<String, IngestError> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| IngestError::Template {
            file: PathBuf::from(origin),
            message: "unclosed '{'".into(),
        })?;
        let key = &after[..close];
        let val = params.get(key).ok_or_else(|| IngestError::Template {
            file: PathBuf::from(origin),
            message: format!(
                "unknown placeholder {{{key}}} (known: {})",
                params.keys().copied().collect::<Vec<_>>().join(", ")
            ),
        })?;
        out.push_str(val);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Element factory names in a launch line: the first word of each `!`-separated segment that
/// is neither caps (`video/x-raw,...`) nor a reference to a named element (`dec.`).
fn element_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        for seg in line.split('!') {
            let seg = seg.trim();
            let mut words = seg.split_whitespace();
            let Some(first) = words.next() else { continue };
            let word = if first.ends_with('.') {
                // "dec. ! ..." or "decoded. queue": the element follows the reference, if any
                match words.next() {
                    Some(w) => w,
                    None => continue,
                }
            } else {
                first
            };
            if word.contains('/') || word.contains('=') || word.contains('{') || word.contains('"')
            {
                continue;
            }
            if !out.iter().any(|e| e == word) {
                out.push(word.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<&'static str, String> {
        [
            ("uri", "rtsp://127.0.0.1:8554/bkb"),
            ("location", "/tmp/x.mp4"),
            ("latency_ms", "200"),
            ("analytics_width", "416"),
            ("analytics_height", "416"),
            ("pace_sync", "false"),
            ("decode_leaky", "downstream"),
            ("display_leaky", "downstream"),
            ("display_sync", "false"),
            ("display_drop", "true"),
            ("analytics_leaky", "downstream"),
            ("analytics_drop", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect()
    }

    #[test]
    fn classify_streams() {
        let cases = [
            ("rtsp://h/x", SourceKind::Rtsp, "rtsp://h/x"),
            ("RTSPS://h/x", SourceKind::Rtsp, "RTSPS://h/x"),
            ("file:///v/a.mp4", SourceKind::File, "/v/a.mp4"),
            ("/v/a.mp4", SourceKind::File, "/v/a.mp4"),
            ("http://h/a.mp4", SourceKind::Uri, "http://h/a.mp4"),
        ];
        for (s, kind, target) in cases {
            let src = Source::parse(s);
            assert_eq!((src.kind, src.target.as_str()), (kind, target), "{s}");
        }
    }

    #[test]
    fn renders_every_kind_without_leftover_placeholders() {
        let t = Templates::builtin();
        for kind in [SourceKind::Rtsp, SourceKind::File, SourceKind::Uri] {
            let line = t.render(kind, &params()).unwrap();
            assert!(!line.contains('{'), "{line}");
            assert!(line.contains("appsink name=analytics"));
            assert!(line.contains("appsink name=display"));
            for name in ["parse", "pace", "encoded", "display_gate", "analytics_gate"] {
                assert!(line.contains(&format!("name={name}")), "{name}: {line}");
            }
            assert!(!line.contains('#'));
        }
    }

    #[test]
    fn custom_branches_follow_the_source() {
        let line = Templates::builtin()
            .render_with_branches(SourceKind::File, &params(), "parse. ! fakesink name=sink")
            .unwrap();
        assert!(line.contains("filesrc"), "{line}");
        assert!(line.contains("parse. ! fakesink name=sink"), "{line}");
        assert!(!line.contains("appsink"), "{line}");
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let mut p = params();
        p.remove("latency_ms");
        let err = Templates::builtin()
            .render(SourceKind::Rtsp, &p)
            .unwrap_err()
            .to_string();
        assert!(err.contains("{latency_ms}"), "{err}");
        assert!(err.contains("rtsp.pipeline"), "{err}");
    }

    #[test]
    fn lists_elements() {
        let names: Vec<String> = Templates::builtin()
            .elements()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        for e in [
            "rtspsrc",
            "parsebin",
            "clocksync",
            "decodebin",
            "filesrc",
            "urisourcebin",
            "tee",
            "queue",
            "identity",
            "videoconvertscale",
            "capsfilter",
            "appsink",
        ] {
            assert!(names.iter().any(|n| n == e), "{e} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains('/') || n.ends_with('.')));
    }

    #[test]
    fn folder_overrides_builtin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("file.pipeline"),
            "filesrc location=\"{location}\" ! myparser name=parse\n{branches}\n",
        )
        .unwrap();
        let t = Templates::load(Some(dir.path())).unwrap();
        let line = t.render(SourceKind::File, &params()).unwrap();
        assert!(line.contains("myparser"));
        assert!(t
            .elements()
            .iter()
            .any(|(o, e)| e == "myparser" && o.contains("file.pipeline")));
        assert!(Templates::load(Some(&dir.path().join("nope"))).is_err());
    }
}
