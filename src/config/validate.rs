//! Meaning checks of a parsed config, each problem tied to the field path it is about (the
//! loader turns paths into file:line:column).

use std::collections::HashSet;

use super::locate::FieldPath;
use super::Config;
use crate::model::ZoneKind;
use crate::time::Timezone;

impl Config {
    /// Checks meaning; returns every problem with the field it is about.
    pub fn validate(&self) -> Vec<(FieldPath, String)> {
        let mut out = Vec::new();
        let root = FieldPath::root();
        let mut bad = |p: FieldPath, m: String| out.push((p, m));

        if self.city.name.trim().is_empty() {
            bad(root.key("city").key("name"), "must not be empty".into());
        }
        if let Err(e) = Timezone::parse(&self.city.timezone) {
            bad(root.key("city").key("timezone"), e.to_string());
        }
        let d = root.key("detect");
        if !(self.detect.fps > 0.0 && self.detect.fps <= 60.0) {
            bad(
                d.key("fps"),
                format!("must be in (0, 60], got {}", self.detect.fps),
            );
        }
        if self.detect.threads == 0 || self.detect.threads > 64 {
            bad(d.key("threads"), "must be between 1 and 64".into());
        }
        if self.detect.sessions == 0 || self.detect.sessions > 32 {
            bad(d.key("sessions"), "must be between 1 and 32".into());
        }
        if self.detect.max_batch == 0 || self.detect.max_batch > 32 {
            bad(d.key("max_batch"), "must be between 1 and 32".into());
        }
        if let Some([w, h]) = self.detect.input_size {
            if !(32..=4096).contains(&w) || !(32..=4096).contains(&h) {
                bad(
                    d.key("input_size"),
                    format!("sides must be in 32..=4096, got [{w}, {h}]"),
                );
            }
        }
        let ing = root.key("ingest");
        if self.ingest.silence_timeout_s <= 0.0 {
            bad(ing.key("silence_timeout_s"), "must be positive".into());
        }
        if !(self.ingest.backoff_initial_s > 0.0
            && self.ingest.backoff_initial_s <= self.ingest.backoff_max_s)
        {
            bad(
                ing.key("backoff_initial_s"),
                "must be positive and not above backoff_max_s".into(),
            );
        }
        if self.ingest.decoder_threads > 64 {
            bad(
                ing.key("decoder_threads"),
                format!(
                    "must be 0 (by pacing) to 64, got {}",
                    self.ingest.decoder_threads
                ),
            );
        }
        self.validate_mqtt(&root, &mut bad);
        self.cluster.validate(&root, &mut bad);
        let inc = root.key("incidents");
        for (name, v) in [
            ("update_interval_s", self.incidents.update_interval_s),
            ("offline_grace_s", self.incidents.offline_grace_s),
            ("restore_confirm_s", self.incidents.restore_confirm_s),
        ] {
            if v.is_nan() || v <= 0.0 {
                bad(inc.key(name), format!("must be positive, got {v}"));
            }
        }
        if !(1..=100).contains(&self.incidents.snapshot_quality) {
            bad(inc.key("snapshot_quality"), "must be 1..=100".into());
        }
        if !(16..=3840).contains(&self.incidents.snapshot_width) {
            bad(inc.key("snapshot_width"), "must be in 16..=3840".into());
        }
        if self.incidents.outbox_max_messages < 100 {
            bad(
                inc.key("outbox_max_messages"),
                format!(
                    "must be at least 100, got {}",
                    self.incidents.outbox_max_messages
                ),
            );
        }
        let w = root.key("wall");
        if self.wall.grid().is_none() {
            bad(
                w.key("layout"),
                format!(
                    "must look like \"3x2\" (columns x rows), got {:?}",
                    self.wall.layout
                ),
            );
        }
        for (name, v) in [
            ("tile_width", self.wall.tile_width),
            ("tile_height", self.wall.tile_height),
        ] {
            if !(16..=3840).contains(&v) || v % 2 != 0 {
                bad(
                    w.key(name),
                    format!("must be even and in 16..=3840, got {v}"),
                );
            }
        }
        if !(self.wall.mjpeg_fps > 0.0 && self.wall.mjpeg_fps <= 60.0) {
            bad(w.key("mjpeg_fps"), "must be in (0, 60]".into());
        }
        if !(1..=100).contains(&self.wall.jpeg_quality) {
            bad(w.key("jpeg_quality"), "must be 1..=100".into());
        }
        if !(self.wall.mosaic_fps > 0.0 && self.wall.mosaic_fps <= 60.0) {
            bad(w.key("mosaic_fps"), "must be in (0, 60]".into());
        }
        for (name, v) in [
            ("rtsp_bitrate_kbps", self.wall.rtsp_bitrate_kbps),
            ("mosaic_bitrate_kbps", self.wall.mosaic_bitrate_kbps),
        ] {
            if !(100..=100_000).contains(&v) {
                bad(
                    w.key(name),
                    format!("must be in 100..=100000 kbit/s, got {v}"),
                );
            }
        }
        if self.wall.live_delay_ms > 2000 {
            bad(
                w.key("live_delay_ms"),
                format!("must be in 0..=2000, got {}", self.wall.live_delay_ms),
            );
        }
        if !(1..=10_000).contains(&self.wall.live_max_viewers) {
            bad(
                w.key("live_max_viewers"),
                format!("must be in 1..=10000, got {}", self.wall.live_max_viewers),
            );
        }
        if let Some(u) = &self.wall.public_url {
            match url::Url::parse(u) {
                Ok(url)
                    if matches!(url.scheme(), "http" | "https")
                        && url.host_str().is_some_and(|h| !h.is_empty())
                        && (url.path() == "/" || url.path().is_empty())
                        && url.query().is_none() => {}
                _ => bad(
                    w.key("public_url"),
                    format!(
                        "{u:?} is not an http:// or https:// URL of a host (no path, no query)"
                    ),
                ),
            }
        }
        if self.wall.rtsp_port != 0 && self.wall.rtsp_port == self.wall.listen.port() {
            bad(
                w.key("rtsp_port"),
                format!(
                    "{} is also the HTTP port of `listen`; use another port (or 0 to disable RTSP out)",
                    self.wall.rtsp_port
                ),
            );
        }

        if self.sites.is_empty() {
            bad(root.key("sites"), "at least one [[sites]] is needed".into());
        }
        let mut ids = HashSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            let sp = root.key("sites").index(i);
            if !is_slug(site.id.as_str()) {
                bad(
                    sp.key("id"),
                    format!(
                        "{:?} is not a valid id (lower-case letters, digits and '-', 1-40 chars)",
                        site.id
                    ),
                );
            } else if !ids.insert(site.id.as_str()) {
                bad(sp.key("id"), format!("duplicate site id {:?}", site.id));
            }
            if site.name.trim().is_empty() {
                bad(sp.key("name"), "must not be empty".into());
            }
            if !(-90.0..=90.0).contains(&site.lat) {
                bad(sp.key("lat"), format!("{} is not a latitude", site.lat));
            }
            if !(-180.0..=180.0).contains(&site.lon) {
                bad(sp.key("lon"), format!("{} is not a longitude", site.lon));
            }
            if let Err(m) = check_stream(&site.stream) {
                bad(sp.key("stream"), m);
            }
            if let Some(d) = &site.detect_stream {
                if let Err(m) = check_stream(d) {
                    bad(sp.key("detect_stream"), m);
                } else if d.trim() == site.stream.trim() {
                    bad(
                        sp.key("detect_stream"),
                        format!(
                            "{d:?} is the site's `stream` itself; name the camera's second \
                             (smaller) stream, or leave detect_stream out"
                        ),
                    );
                }
            }
            let mut zone_ids = HashSet::new();
            for (j, z) in site.zones.iter().enumerate() {
                let zp = sp.key("zones").index(j);
                if !is_slug(&z.id) {
                    bad(zp.key("id"), format!("{:?} is not a valid id", z.id));
                } else if !zone_ids.insert(z.id.as_str()) {
                    bad(
                        zp.key("id"),
                        format!("duplicate zone id {:?} in site {:?}", z.id, site.id),
                    );
                }
                check_polygon(&z.polygon, &zp.key("polygon"), &mut bad);
                if let Some(a) = z.area_m2 {
                    if a.is_nan() || a <= 0.0 {
                        bad(zp.key("area_m2"), "must be positive".into());
                    }
                }
                if let Some(m) = z.metres_per_pixel {
                    if m.is_nan() || m <= 0.0 {
                        bad(zp.key("metres_per_pixel"), "must be positive".into());
                    }
                }
                if let Some(h) = &z.homography {
                    for (k, p) in h.image.iter().enumerate() {
                        if !in_unit(p) {
                            bad(
                                zp.key("homography").key("image").index(k),
                                format!("point {p:?} is outside [0, 1]"),
                            );
                        }
                    }
                }
                let rule_tables = [
                    (ZoneKind::TrafficJam, "traffic_jam", z.traffic_jam.is_some()),
                    (ZoneKind::Crowd, "crowd", z.crowd.is_some()),
                    (ZoneKind::Garbage, "garbage", z.garbage.is_some()),
                ];
                for (kind, name, present) in rule_tables {
                    if present && kind != z.kind {
                        bad(
                            zp.key(name),
                            format!(
                                "zone kind is {:?} but it has [{name}] settings",
                                z.kind.as_str()
                            ),
                        );
                    }
                }
                if let Some(r) = &z.traffic_jam {
                    r.validate(&zp.key("traffic_jam"), &mut bad);
                }
                if let Some(r) = &z.crowd {
                    r.validate(&zp.key("crowd"), z.area_m2, &mut bad);
                }
                if let Some(r) = &z.garbage {
                    r.validate(&zp.key("garbage"), &mut bad);
                }
            }
            let mut line_ids = HashSet::new();
            for (j, l) in site.lines.iter().enumerate() {
                let lp = sp.key("lines").index(j);
                if !is_slug(&l.id) {
                    bad(lp.key("id"), format!("{:?} is not a valid id", l.id));
                } else if !line_ids.insert(l.id.as_str()) {
                    bad(
                        lp.key("id"),
                        format!("duplicate line id {:?} in site {:?}", l.id, site.id),
                    );
                }
                for (k, p) in l.points.iter().enumerate() {
                    if !in_unit(p) {
                        bad(
                            lp.key("points").index(k),
                            format!("point {p:?} is outside [0, 1]"),
                        );
                    }
                }
                if l.points[0] == l.points[1] {
                    bad(lp.key("points"), "the two points must differ".into());
                }
                if l.classes.is_empty() {
                    bad(lp.key("classes"), "must name at least one class".into());
                }
                if l.intervals_s.is_empty() || l.intervals_s.contains(&0) {
                    bad(lp.key("intervals_s"), "must list positive intervals".into());
                }
            }
            site.tamper.validate(&sp.key("tamper"), &mut bad);
        }
        self.wall.auth.validate(&w.key("auth"), &mut bad);
        self.wall.http.validate(&w.key("http"), &mut bad);
        self.metrics
            .http
            .validate(&root.key("metrics").key("http"), &mut bad);
        if self.metrics.listen.port() != 0
            && (self.metrics.listen.port() == self.wall.listen.port()
                || (self.wall.rtsp_port != 0 && self.metrics.listen.port() == self.wall.rtsp_port))
        {
            bad(
                root.key("metrics").key("listen"),
                format!(
                    "port {} is also a port of [wall]; the metrics listener needs its own",
                    self.metrics.listen.port()
                ),
            );
        }
        self.desk.validate(&root.key("desk"), &mut bad);
        out
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && !s.starts_with('-')
}

fn in_unit(p: &[f64; 2]) -> bool {
    p.iter().all(|v| (0.0..=1.0).contains(v))
}

fn check_polygon(poly: &[[f64; 2]], path: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
    if poly.len() < 3 {
        bad(
            path.clone(),
            format!(
                "a polygon needs at least 3 points, this one has {}",
                poly.len()
            ),
        );
        return;
    }
    for (k, p) in poly.iter().enumerate() {
        if !in_unit(p) {
            bad(
                path.index(k),
                format!("point {p:?} is outside [0, 1] (coordinates are normalised)"),
            );
        }
    }
    // Shoelace area: a zero-area polygon (all points on a line) can contain nothing.
    let mut a = 0.0;
    for k in 0..poly.len() {
        let (p, q) = (poly[k], poly[(k + 1) % poly.len()]);
        a += p[0] * q[1] - q[0] * p[1];
    }
    if (a * 0.5).abs() < 1e-6 {
        bad(path.clone(), "the polygon has no area".into());
    }
}

/// Checks a camera stream location.
pub fn check_stream(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if !s.contains("://") {
        // A local path; existence is checked at run time (a camera may be a file that appears later).
        return Ok(());
    }
    let u = url::Url::parse(s).map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    match u.scheme() {
        "rtsp" | "rtsps" | "rtspt" | "http" | "https" | "udp" | "srt" => {
            if u.host_str().is_none_or(|h| h.is_empty()) {
                return Err(format!("{s:?} is not a usable camera URL: it has no host"));
            }
            Ok(())
        }
        "file" => Ok(()),
        other => Err(format!(
            "unsupported scheme {other:?} in {s:?} (use rtsp, rtsps, http, https, udp, srt or file)"
        )),
    }
}
