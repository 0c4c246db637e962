//! The command line of `simpang eval` and the plan it resolves to: models, footage, fixtures and
//! detector options after defaults and the config are applied.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::config::{Config, DetectConfig, OptimizationLevel};
use crate::detect::DetectOptions;

/// Arguments of `simpang eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Comma-separated model manifests to compare. Options may follow a manifest, each after an
    /// `@`: `opt=disable|basic|extended|layout|all` (graph optimisation), `spin` (intra-op
    /// threads spin), `size=WxH` (input size, for a manifest with `dynamic = true`), `amx=off`
    /// (load the manifest's `onnx`, not its `onnx_amx`, on a CPU with AMX-INT8); e.g.
    /// `models/nanodet-m-int8/manifest.toml@opt=basic`.
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<String>,
    /// The model the others are compared with, same syntax (default: the fp32 416 original,
    /// models/nanodet-m-416/manifest.toml). It is always measured as well.
    #[arg(long)]
    pub reference: Option<String>,
    /// Footage files, comma-separated (default: samples/vtest.mp4,samples/sample.mp4).
    #[arg(long, value_delimiter = ',')]
    pub footage: Vec<PathBuf>,
    /// Frames compared, split equally between the footage files and spread evenly over each.
    #[arg(long, default_value_t = 200)]
    pub frames: usize,
    /// Intra-op thread counts each model is timed at (the first is also used for the
    /// agreement runs and for the speed ratio).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Timed inferences per model and thread count.
    #[arg(long, default_value_t = 60)]
    pub runs: usize,
    /// Hand-checked person counts on vtest frames (default:
    /// tests/fixtures/detect/vtest-persons.toml; its frames are read from samples/vtest.mp4).
    #[arg(long)]
    pub fixtures: Option<PathBuf>,
    /// Also write the results as JSON to this file (the same numbers as the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Config whose `[detect]` gives the ONNX Runtime library, optimisation level and spinning
    /// (default: config/palembang.toml if it exists, else built-in defaults).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// One model as asked for on the command line: a manifest and how to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub manifest: PathBuf,
    pub optimization: Option<OptimizationLevel>,
    pub spinning: bool,
    pub size: Option<(u32, u32)>,
    /// May load the manifest's `onnx_amx` file (`amx=off` says no).
    pub amx: bool,
}

impl ModelSpec {
    /// Parses `PATH[@opt=LEVEL][@spin][@size=WxH][@amx=off]`.
    pub fn parse(text: &str) -> Result<ModelSpec, String> {
        let mut parts = text.split('@');
        let path = parts.next().unwrap_or_default().trim();
        if path.is_empty() {
            return Err(format!("{text:?}: no manifest path"));
        }
        let mut spec = ModelSpec {
            manifest: PathBuf::from(path),
            optimization: None,
            spinning: false,
            size: None,
            amx: true,
        };
        for opt in parts {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (opt.trim(), None),
            };
            match (key, value) {
                ("opt", Some(v)) => {
                    spec.optimization = Some(match v {
                        "disable" => OptimizationLevel::Disable,
                        "basic" => OptimizationLevel::Basic,
                        "extended" => OptimizationLevel::Extended,
                        "layout" => OptimizationLevel::Layout,
                        "all" => OptimizationLevel::All,
                        _ => {
                            return Err(format!(
                            "{text:?}: opt={v}: expected disable, basic, extended, layout or all"
                        ))
                        }
                    })
                }
                ("spin", None) => spec.spinning = true,
                ("amx", Some("off")) => spec.amx = false,
                ("amx", Some(v)) => {
                    return Err(format!(
                        "{text:?}: amx={v}: only amx=off is an option (the AMX file is used where the CPU has AMX-INT8)"
                    ))
                }
                ("size", Some(v)) => {
                    let parsed = v
                        .split_once('x')
                        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)));
                    match parsed {
                        Some((w, h)) if w > 0 && h > 0 => spec.size = Some((w, h)),
                        _ => {
                            return Err(format!(
                                "{text:?}: size={v}: expected WIDTHxHEIGHT, e.g. 352x352"
                            ))
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "{text:?}: unknown option {opt:?} (known: opt=LEVEL, spin, size=WxH, amx=off)"
                    ))
                }
            }
        }
        Ok(spec)
    }

    /// The options part, as written after the model's name in the table.
    pub(super) fn options_text(&self) -> String {
        let mut o = Vec::new();
        if let Some(l) = self.optimization {
            o.push(format!("opt={}", level_name(l)));
        }
        if self.spinning {
            o.push("spin".to_string());
        }
        if let Some((w, h)) = self.size {
            o.push(format!("size={w}x{h}"));
        }
        if !self.amx {
            o.push("amx=off".to_string());
        }
        o.join(" ")
    }
}

fn level_name(l: OptimizationLevel) -> &'static str {
    match l {
        OptimizationLevel::Disable => "disable",
        OptimizationLevel::Basic => "basic",
        OptimizationLevel::Extended => "extended",
        OptimizationLevel::Layout => "layout",
        OptimizationLevel::All => "all",
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct FixtureFile {
    pub tolerance: usize,
    /// The pixel size of the frames' `ignore` regions (needed when a frame has one).
    #[serde(default)]
    pub frame_size: Option<[f32; 2]>,
    pub frames: Vec<FixtureSpec>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FixtureSpec {
    pub index: u64,
    pub visible: usize,
    /// Regions (x1, y1, x2, y2 in pixels of `frame_size`) of things that are not persons but
    /// that models score as one: a person box whose centre lies in one is not counted.
    #[serde(default)]
    pub ignore: Vec<[f32; 4]>,
}

impl FixtureFile {
    /// The fixtures file `path` holds `text`; an `ignore` region needs the file's `frame_size`.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<FixtureFile> {
        let fixtures: FixtureFile =
            toml::from_str(text).with_context(|| format!("fixtures file {}", path.display()))?;
        if let Some(f) = fixtures.frames.iter().find(|f| !f.ignore.is_empty()) {
            if !fixtures.frame_size.is_some_and(|[w, h]| w > 0.0 && h > 0.0) {
                bail!(
                    "fixtures file {}: frame {} has `ignore` regions but the file has no \
                     positive `frame_size = [width, height]` (the pixel size they are given in)",
                    path.display(),
                    f.index
                );
            }
        }
        Ok(fixtures)
    }

    /// The ignore regions of `spec` as fractions of the frame.
    pub fn ignore_of(&self, spec: &FixtureSpec) -> Vec<[f32; 4]> {
        // `parse` made sure a file with ignore regions has a frame size
        crate::tools::agreement::fractions_of(&spec.ignore, self.frame_size.unwrap_or([1.0, 1.0]))
    }
}

/// Where everything comes from, after defaults and the config are applied.
pub(super) struct Plan {
    pub base: DetectOptions,
    pub reference: ModelSpec,
    pub models: Vec<ModelSpec>,
    pub footage: Vec<PathBuf>,
    pub fixtures_path: PathBuf,
    pub fixture_footage: PathBuf,
    pub fixtures: FixtureFile,
}

pub(super) fn plan(args: &EvalArgs) -> anyhow::Result<Plan> {
    if args.frames == 0 {
        bail!("--frames must be at least 1");
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.threads.is_empty() || args.threads.contains(&0) {
        bail!("--threads must list thread counts of at least 1");
    }
    let default_cfg = crate::config::default_path();
    let cfg_path = match &args.config {
        Some(p) => Some(p.clone()),
        None if default_cfg.is_file() => Some(default_cfg),
        None => None,
    };
    // Repository files the defaults name, from the config's folder like its own paths, or
    // from the working directory without a config.
    type RepoPath = Box<dyn Fn(&str) -> PathBuf>;
    let (base, repo): (DetectOptions, RepoPath) = match cfg_path {
        Some(p) => {
            let cfg = Config::load(&p).with_context(|| format!("config {}", p.display()))?;
            let opts = DetectOptions::from_config(&cfg);
            (
                opts,
                Box::new(move |rel| tidy(&cfg.resolve(&Path::new("..").join(rel)))),
            )
        }
        None => {
            let d = DetectConfig::default();
            let lib = d
                .ort_library
                .strip_prefix("..")
                .map(Path::to_path_buf)
                .unwrap_or(d.ort_library);
            let opts = DetectOptions {
                ort_library: Some(lib),
                optimization: d.optimization,
                spinning: d.spinning,
                ..DetectOptions::default()
            };
            (opts, Box::new(|rel| PathBuf::from(rel)))
        }
    };
    let base = DetectOptions {
        sessions: 1,
        max_batch: 1,
        // eval measures the model, not an artificial delay
        debug_delay: Duration::ZERO,
        input_size: None,
        score_threshold: None,
        ..base
    };
    let reference = match &args.reference {
        Some(r) => ModelSpec::parse(r).map_err(anyhow::Error::msg)?,
        None => ModelSpec {
            manifest: repo("models/nanodet-m-416/manifest.toml"),
            optimization: None,
            spinning: false,
            size: None,
            amx: true,
        },
    };
    let models = args
        .models
        .iter()
        .filter(|m| !m.trim().is_empty())
        .map(|m| ModelSpec::parse(m).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if models.is_empty() {
        bail!("--models names no model");
    }
    for m in std::iter::once(&reference).chain(&models) {
        if !m.manifest.is_file() {
            bail!("model manifest {} does not exist", m.manifest.display());
        }
    }
    let footage = if args.footage.is_empty() {
        vec![repo("samples/vtest.mp4"), repo("samples/sample.mp4")]
    } else {
        args.footage.clone()
    };
    for f in &footage {
        if !f.is_file() {
            bail!("footage {} does not exist", f.display());
        }
    }
    if args.frames < footage.len() {
        bail!(
            "--frames {} is fewer than the {} footage files (at least one frame each)",
            args.frames,
            footage.len()
        );
    }
    let fixtures_path = args
        .fixtures
        .clone()
        .unwrap_or_else(|| repo("tests/fixtures/detect/vtest-persons.toml"));
    let text = std::fs::read_to_string(&fixtures_path)
        .with_context(|| format!("cannot read fixtures file {}", fixtures_path.display()))?;
    let fixtures = FixtureFile::parse(&text, &fixtures_path)?;
    let fixture_footage = repo("samples/vtest.mp4");
    if !fixtures.frames.is_empty() && !fixture_footage.is_file() {
        bail!(
            "footage {} (the frames of {}) does not exist",
            fixture_footage.display(),
            fixtures_path.display()
        );
    }
    Ok(Plan {
        base,
        reference,
        models,
        footage,
        fixtures_path,
        fixture_footage,
        fixtures,
    })
}

/// `config/../samples/x.mp4` → `samples/x.mp4` (lexically; for readable paths in the report).
fn tidy(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_specs() {
        let ok = |text: &str, opt, spin, size| {
            assert_eq!(
                ModelSpec::parse(text).unwrap(),
                ModelSpec {
                    manifest: PathBuf::from("m/x.toml"),
                    optimization: opt,
                    spinning: spin,
                    size,
                    amx: true,
                },
                "{text}"
            )
        };
        ok("m/x.toml", None, false, None);
        ok(
            "m/x.toml@opt=basic",
            Some(OptimizationLevel::Basic),
            false,
            None,
        );
        ok("m/x.toml@spin", None, true, None);
        assert!(!ModelSpec::parse("m/x.toml@amx=off").unwrap().amx);
        ok("m/x.toml@size=352x320", None, false, Some((352, 320)));
        ok(
            "m/x.toml@opt=disable@spin@size=32x32",
            Some(OptimizationLevel::Disable),
            true,
            Some((32, 32)),
        );
        for (bad, says) in [
            ("", "no manifest path"),
            ("@spin", "no manifest path"),
            ("m/x.toml@opt=max", "opt=max"),
            ("m/x.toml@opt", "unknown option"),
            ("m/x.toml@spin=yes", "unknown option"),
            ("m/x.toml@size=352", "size=352"),
            ("m/x.toml@size=0x320", "size=0x320"),
            ("m/x.toml@fast", "unknown option \"fast\""),
            ("m/x.toml@amx=on", "only amx=off"),
        ] {
            let e = ModelSpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn options_text_round_trips() {
        for text in [
            "m.toml",
            "m.toml@opt=basic",
            "m.toml@spin",
            "m.toml@opt=all@spin@size=320x320",
            "m.toml@amx=off",
            "m.toml@spin@amx=off",
        ] {
            let s = ModelSpec::parse(text).unwrap();
            let again = if s.options_text().is_empty() {
                "m.toml".to_string()
            } else {
                format!("m.toml@{}", s.options_text().replace(' ', "@"))
            };
            assert_eq!(ModelSpec::parse(&again).unwrap(), s, "{text}");
        }
    }

    #[test]
    fn fixture_ignore_regions_are_fractions_of_the_frame() {
        let p = Path::new("fx.toml");
        let f = FixtureFile::parse(
            "tolerance = 1\nframe_size = [800, 400]\n[[frames]]\nindex = 3\nvisible = 2\n\
             ignore = [[80, 40, 160, 200]]\n[[frames]]\nindex = 4\nvisible = 1\n",
            p,
        )
        .unwrap();
        assert_eq!(f.ignore_of(&f.frames[0]), vec![[0.1, 0.1, 0.2, 0.5]]);
        assert!(f.ignore_of(&f.frames[1]).is_empty());
        let e = FixtureFile::parse(
            "tolerance = 1\n[[frames]]\nindex = 3\nvisible = 2\nignore = [[1, 2, 3, 4]]\n",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("fx.toml") && e.contains("frame 3") && e.contains("frame_size"),
            "{e}"
        );
        // the shipped fixture parses, with its ignore region
        let shipped =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detect/vtest-persons.toml");
        let text = std::fs::read_to_string(&shipped).unwrap();
        let f = FixtureFile::parse(&text, &shipped).unwrap();
        assert!(f.frames.iter().any(|s| !f.ignore_of(s).is_empty()));
    }

    #[test]
    fn tidy_paths() {
        for (p, want) in [
            ("config/../samples/v.mp4", "samples/v.mp4"),
            ("/r/config/../models/m.toml", "/r/models/m.toml"),
            ("../samples/v.mp4", "../samples/v.mp4"),
            ("a/./b/../../c", "c"),
            ("a/..", "."),
        ] {
            assert_eq!(tidy(Path::new(p)), PathBuf::from(want), "{p}");
        }
    }
}
