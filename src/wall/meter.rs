//! Measuring the display frame rate: the check that the display keeps the source rate whatever
//! the detector does (a slow detector must drop analytics frames, never display frames).
//!
//! Two ways, for in-process and out-of-process callers: [`measure_hub`] counts the hub's
//! `display_frames` over a window; [`counter_value`] reads `simpang_display_frames_total` (or any
//! per-site counter) from a `/metrics` page, so a test can scrape twice and divide.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::hub::Hub;

/// Display frames per second of every site over `window` (blocks for that long).
pub fn measure_hub(hub: &Hub, window: Duration) -> BTreeMap<String, f64> {
    let sites = hub.sites();
    let count = || -> Vec<u64> {
        sites
            .iter()
            .map(|s| s.display_frames.load(Ordering::Relaxed))
            .collect()
    };
    let (t0, c0) = (Instant::now(), count());
    std::thread::sleep(window);
    let (dt, c1) = (t0.elapsed().as_secs_f64(), count());
    sites
        .iter()
        .zip(c0.iter().zip(&c1))
        .map(|(s, (a, b))| (s.id.to_string(), b.saturating_sub(*a) as f64 / dt))
        .collect()
}

/// The value of `name{site="SITE"}` in Prometheus text format, if present (the first such
/// series when others labels differ; see [`series_value`] to pick by every label).
pub fn counter_value(metrics_text: &str, name: &str, site: &str) -> Option<f64> {
    series_value(metrics_text, name, &[("site", site)])
}

/// The value of the first series of `name` carrying all of `labels`.
pub fn series_value(metrics_text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    metrics_text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, have) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let have: Vec<&str> = have.split(',').collect();
            (metric == name && want.iter().all(|w| have.contains(&w.as_str())))
                .then(|| value.parse().ok())?
        })
        .next()
}

/// Per-site rates between two scrapes of `/metrics` taken `seconds` apart.
pub fn rates(
    before: &str,
    after: &str,
    name: &str,
    sites: &[&str],
    seconds: f64,
) -> BTreeMap<String, f64> {
    sites
        .iter()
        .filter_map(|s| {
            let a = counter_value(before, name, s)?;
            let b = counter_value(after, name, s)?;
            Some((s.to_string(), (b - a) / seconds))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SiteId;

    const TEXT: &str = "# HELP simpang_display_frames_total x\n\
        # TYPE simpang_display_frames_total counter\n\
        simpang_display_frames_total{site=\"bkb\"} 100\n\
        simpang_display_frames_total{site=\"bkb-2\"} 7\n\
        simpang_wall_viewers{output=\"mjpeg\",site=\"bkb\"} 2\n";

    #[test]
    fn counter_cases() {
        let cases = [
            ("simpang_display_frames_total", "bkb", Some(100.0)),
            ("simpang_display_frames_total", "bkb-2", Some(7.0)),
            ("simpang_display_frames_total", "ampera", None),
            ("simpang_display_frames", "bkb", None),
            ("simpang_wall_viewers", "bkb", Some(2.0)),
        ];
        for (name, site, want) in cases {
            assert_eq!(counter_value(TEXT, name, site), want, "{name} {site}");
        }
        assert_eq!(
            series_value(
                TEXT,
                "simpang_wall_viewers",
                &[("site", "bkb"), ("output", "rtsp")]
            ),
            None
        );
        assert_eq!(
            series_value(TEXT, "simpang_wall_viewers", &[("output", "mjpeg")]),
            Some(2.0)
        );
        let after = TEXT.replace("} 100", "} 400");
        let r = rates(
            TEXT,
            &after,
            "simpang_display_frames_total",
            &["bkb", "x"],
            10.0,
        );
        assert_eq!(r.len(), 1);
        assert!((r["bkb"] - 30.0).abs() < 1e-9);
    }

    #[test]
    fn measure_hub_counts_frames() {
        let hub = Hub::new([SiteId::new("a")]);
        let h = hub.clone();
        let t = std::thread::spawn(move || {
            for _ in 0..20 {
                h.sites()[0].display_frames.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let r = measure_hub(&hub, Duration::from_millis(400));
        t.join().unwrap();
        assert!(r["a"] > 20.0 && r["a"] <= 60.0, "{r:?}");
    }
}
