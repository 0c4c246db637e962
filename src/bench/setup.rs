//! The configuration a bench run hands to `app::run`: the given config's sites, detector, rules
//! and wall settings, with N file cameras on the footage, a fresh data dir, and the embedded
//! broker, the wall and RTSP out on free loopback ports.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use super::BenchError;
use crate::config::{Config, CrowdRule, Zone};
use crate::model::{SiteId, ZoneKind};

/// A free TCP port on the loopback interface (bound and released: another process could take it
/// in between, which on a test machine is rare enough to just fail the run with the bind error).
pub fn free_port() -> Result<u16, BenchError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| BenchError::Io {
        what: "cannot find a free port".into(),
        error: e,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| BenchError::Io {
            what: "cannot find a free port".into(),
            error: e,
        })
}

/// Site ids of `streams` cameras built from `base` sites: the sites in order, then again with a
/// `-2`, `-3`, ... suffix.
pub fn site_ids(base: &[SiteId], streams: usize) -> Vec<SiteId> {
    (0..streams)
        .filter_map(|i| {
            let id = base.get(i % base.len().max(1))?;
            let round = i / base.len().max(1);
            Some(if round == 0 {
                id.clone()
            } else {
                SiteId::new(format!("{id}-{}", round + 1))
            })
        })
        .collect()
}

/// Id of the zone [`bench_zone`] adds.
pub const BENCH_ZONE: &str = "bench-crowd";

/// A crowd zone over the whole picture that opens an incident when two or more people are in
/// view for two seconds and ends it when they have been gone for three. The city's thresholds
/// (six to ten people for ten seconds) are not met by the bench footage, whose street has one
/// to six passers-by: without this zone a bench run files no incident at all, and the incident
/// path (snapshot, outbox, MQTT, PUBACK) would go unmeasured. It is an ordinary rule of the
/// ordinary code, just a low threshold.
pub fn bench_zone() -> Zone {
    Zone {
        id: BENCH_ZONE.into(),
        name: "Bench: people in view".into(),
        kind: ZoneKind::Crowd,
        polygon: vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]],
        area_m2: None,
        metres_per_pixel: None,
        homography: None,
        traffic_jam: None,
        crowd: Some(CrowdRule {
            min_persons: 2,
            smoothing_s: 1.0,
            dwell_s: 2.0,
            clear_s: 3.0,
            cooldown_s: 0.0,
            ..CrowdRule::default()
        }),
        garbage: None,
    }
}

/// `cfg` (a [`bench_config`]) with every camera's `detect_stream` on `detect_footage`, and
/// room on the wall for one browser tile per camera from the harness.
pub fn with_substreams(mut cfg: Config, detect_footage: &Path) -> Result<Config, BenchError> {
    for s in &mut cfg.sites {
        s.detect_stream = Some(detect_footage.display().to_string());
    }
    let n = cfg.sites.len() as u32;
    cfg.wall.live_max_viewers = cfg.wall.live_max_viewers.max(n + 8);
    cfg.wall.auth.max_streams_per_client = cfg.wall.auth.max_streams_per_client.max(n + 8);
    let problems = cfg.validate();
    if let Some((f, m)) = problems.first() {
        return Err(BenchError::Usage(format!(
            "the bench's substream config is invalid: {f}: {m}"
        )));
    }
    Ok(cfg)
}

/// Site id of the clock camera ([`super::clockcam`]) in a `--browsers` run.
pub const CLOCK_SITE: &str = "bench-clock";

/// `cfg` with room on the wall for `browsers` browser pages (one passthrough WebSocket per tile
/// each) and, where `clock_url` is given, one more camera: the bench's clock camera at that RTSP
/// URL, without zones, lines or tamper checks (its picture is a test pattern and a time code).
pub fn with_browsers(
    mut cfg: Config,
    browsers: usize,
    clock_url: Option<&str>,
) -> Result<Config, BenchError> {
    if let Some(url) = clock_url {
        let mut s = cfg
            .sites
            .first()
            .cloned()
            .ok_or_else(|| BenchError::Usage("the bench config has no sites".into()))?;
        s.id = SiteId::new(CLOCK_SITE);
        s.name = "Bench: clock camera".into();
        s.camera = None;
        s.stream = url.to_string();
        s.detect_stream = None;
        s.zones.clear();
        s.lines.clear();
        s.tamper.enabled = false;
        cfg.sites.push(s);
    }
    let want = (cfg.sites.len() * browsers.max(1) + 8) as u32;
    cfg.wall.live_max_viewers = cfg.wall.live_max_viewers.max(want);
    cfg.wall.auth.max_streams_per_client = cfg.wall.auth.max_streams_per_client.max(want);
    let problems = cfg.validate();
    if let Some((f, m)) = problems.first() {
        return Err(BenchError::Usage(format!(
            "the bench's browser-viewer config is invalid: {f}: {m}"
        )));
    }
    Ok(cfg)
}

/// The bench's config: `streams` file cameras on `footage` (an absolute path), each with the
/// zones, lines and tamper settings of the base config's site it copies (plus [`bench_zone`]
/// when `with_bench_zone`).
pub fn bench_config(
    base: &Config,
    streams: usize,
    footage: &Path,
    realtime: bool,
    with_bench_zone: bool,
    data_dir: &Path,
) -> Result<Config, BenchError> {
    if base.sites.is_empty() {
        return Err(BenchError::Usage(
            "the config has no [[sites]] to copy zones and rules from".into(),
        ));
    }
    if streams == 0 {
        return Err(BenchError::Usage("--streams must be at least 1".into()));
    }
    let mut cfg = base.clone();
    let ids = site_ids(
        &base.sites.iter().map(|s| s.id.clone()).collect::<Vec<_>>(),
        streams,
    );
    cfg.sites = ids
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let mut s = base.sites[i % base.sites.len()].clone();
            if i >= base.sites.len() {
                s.name = format!("{} ({})", s.name, i / base.sites.len() + 1);
                // A copy must not share the original's camera id (incident ids derive from it).
                s.camera = None;
            }
            s.id = id;
            s.stream = footage.display().to_string();
            if with_bench_zone {
                s.zones.push(bench_zone());
            }
            s
        })
        .collect();
    cfg.data_dir = data_dir.to_path_buf();
    cfg.ingest.files_realtime = realtime;
    // Footage shorter than the run plays again, like a camera that never stops.
    cfg.ingest.files_loop = true;
    cfg.mqtt.broker = "embedded".into();
    cfg.mqtt.embedded_listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    cfg.mqtt.client_id = "simpang-bench".into();
    cfg.wall.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.wall.rtsp_address = [127, 0, 0, 1].into();
    cfg.wall.rtsp_port = free_port()?;
    // Two benches (or a bench beside a running system) must not fight over the default port.
    cfg.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let problems = cfg.validate();
    if !problems.is_empty() {
        return Err(BenchError::Usage(format!(
            "the bench config derived from {} is invalid: {}",
            base.source
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            problems
                .iter()
                .map(|(f, m)| format!("{f}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cycle_with_suffixes() {
        let base: Vec<SiteId> = ["a", "b", "c"].into_iter().map(SiteId::new).collect();
        let cases: [(usize, &[&str]); 4] = [
            (0, &[]),
            (2, &["a", "b"]),
            (3, &["a", "b", "c"]),
            (7, &["a", "b", "c", "a-2", "b-2", "c-2", "a-3"]),
        ];
        for (n, want) in cases {
            assert_eq!(site_ids(&base, n), want, "{n}");
        }
        assert!(site_ids(&[], 3).is_empty());
    }

    #[test]
    fn config_has_n_file_cameras_on_free_ports() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/palembang.toml");
        let base = Config::load(&path).unwrap();
        let footage = Path::new("/footage/x.mp4");
        let cfg =
            bench_config(&base, 8, footage, true, true, Path::new("/tmp/bench-data")).unwrap();
        assert_eq!(cfg.sites.len(), 8);
        assert_eq!(cfg.sites[6].id.as_str(), format!("{}-2", base.sites[0].id));
        assert_eq!(cfg.sites[6].zones.len(), base.sites[0].zones.len() + 1);
        assert!(cfg
            .sites
            .iter()
            .all(|s| s.zones.iter().any(|z| z.id == BENCH_ZONE)));
        assert!(cfg.sites.iter().all(|s| s.stream == "/footage/x.mp4"));
        assert!(cfg.ingest.files_realtime && cfg.ingest.files_loop);
        assert_eq!(cfg.mqtt.broker, "embedded");
        assert_ne!(cfg.mqtt.embedded_listen.port(), 1883);
        assert_eq!(cfg.wall.listen.port(), 0);
        assert_ne!(cfg.wall.rtsp_port, 0);
        assert_eq!(cfg.data_dir(), Path::new("/tmp/bench-data"));
        // the model still resolves against the original config's folder
        assert_eq!(
            cfg.resolve(&cfg.detect.model),
            base.resolve(&base.detect.model)
        );
        let max = bench_config(&base, 1, footage, false, false, Path::new("/tmp/x")).unwrap();
        assert!(!max.ingest.files_realtime);
        assert_eq!(max.sites[0].zones.len(), base.sites[0].zones.len());
        assert!(bench_config(&base, 0, footage, true, true, Path::new("/tmp/x")).is_err());
    }
}
