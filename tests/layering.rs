//! The house's layering, checked on the source: neutral modules import no stage, stages never
//! import the wiring (`app`) or the tools (`tools`, `bench`). A newcomer adding such an import
//! learns here where the shared piece belongs instead (README, "Around them").

use std::path::{Path, PathBuf};

const STAGES: &[&str] = &[
    "ingest",
    "detect",
    "track",
    "analytics",
    "incident",
    "wall",
    "desk",
    "cluster",
];
const ABOVE: &[&str] = &["app", "tools", "bench"];
const NEUTRAL: &[&str] = &[
    "model.rs",
    "config",
    "hub.rs",
    "draw",
    "guard",
    "time.rs",
    "clock.rs",
    "topics.rs",
    "metrics.rs",
    "timing.rs",
    "shutdown.rs",
    "procfs.rs",
];

fn rust_files(p: &Path, out: &mut Vec<PathBuf>) {
    if p.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for e in entries {
            rust_files(&e, out);
        }
    } else if p.extension().is_some_and(|e| e == "rs") {
        out.push(p.to_path_buf());
    }
}

/// `file:line: crate::module` for every use of one of `modules` in the code (not comments) of
/// the files under `roots`.
fn uses_of(roots: &[&str], modules: &[&str]) -> Vec<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for r in roots {
        rust_files(&src.join(r), &mut files);
    }
    assert!(!files.is_empty(), "no sources under {roots:?}");
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for m in modules {
                let needle = format!("crate::{m}");
                let hit = code.match_indices(&needle).any(|(i, _)| {
                    let next = code[i + needle.len()..].chars().next();
                    !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    found.push(format!("{}:{}: {needle}", f.display(), n + 1));
                }
            }
        }
    }
    found
}

#[test]
fn neutral_modules_import_no_stage() {
    let mut above_and_stages = STAGES.to_vec();
    above_and_stages.extend(ABOVE);
    let found = uses_of(NEUTRAL, &above_and_stages);
    assert!(
        found.is_empty(),
        "neutral modules import stages:\n{}",
        found.join("\n")
    );
}

#[test]
fn stages_never_import_app_or_tools() {
    let found = uses_of(STAGES, ABOVE);
    assert!(
        found.is_empty(),
        "stages import the layer above:\n{}",
        found.join("\n")
    );
}

/// The check itself sees an import where there is one.
#[test]
fn the_check_finds_imports() {
    assert!(!uses_of(&["app"], &["ingest"]).is_empty());
    assert!(uses_of(&["app"], &["ingestion"]).is_empty());
}
