//! Titles and descriptions of incident reports, in Indonesian (what operators and the public
//! read) and English (for engineers and visitors).

use chrono::{DateTime, FixedOffset};

use super::lifecycle::EndReason;
use crate::model::{Evidence, IncidentEvent, IncidentKind, Level};

/// Everything the wording depends on.
pub struct TextInput<'a> {
    pub kind: IncidentKind,
    pub event: IncidentEvent,
    pub level: Level,
    pub site_name: &'a str,
    pub camera: &'a str,
    pub zone_name: Option<&'a str>,
    pub evidence: &'a Evidence,
    pub started_at: DateTime<FixedOffset>,
    pub at: DateTime<FixedOffset>,
    /// Local zone abbreviation, e.g. "WIB".
    pub tz_abbrev: &'a str,
    pub end_reason: Option<EndReason>,
    pub resumed: bool,
}

/// Title and description in Indonesian and English.
#[derive(Clone, Debug, PartialEq)]
pub struct Texts {
    pub title: String,
    pub title_en: String,
    pub description: String,
    pub description_en: String,
}

/// Indonesian and English titles of a kind at a site.
pub fn titles(kind: IncidentKind, site: &str) -> (String, String) {
    match kind {
        IncidentKind::TrafficJam => (
            format!("Kemacetan di {site}"),
            format!("Traffic jam at {site}"),
        ),
        IncidentKind::Crowd => (format!("Kerumunan di {site}"), format!("Crowd at {site}")),
        IncidentKind::Garbage => (
            format!("Sampah menumpuk di {site}"),
            format!("Garbage piling up at {site}"),
        ),
        IncidentKind::CameraOffline => (
            format!("Kamera {site} tidak aktif"),
            format!("Camera at {site} is offline"),
        ),
        IncidentKind::CameraTamper => (
            format!("Kamera {site} terhalang/dirusak"),
            format!("Camera at {site} blocked or tampered with"),
        ),
    }
}

fn level_id(level: Level) -> &'static str {
    match level {
        Level::Macet => "macet",
        Level::Padat => "padat",
        Level::Lancar => "lancar",
        Level::Tinggi => "tinggi",
        Level::Sedang => "sedang",
    }
}

fn level_en(level: Level) -> &'static str {
    match level {
        Level::Macet => "jammed",
        Level::Padat => "dense",
        Level::Lancar => "free-flowing",
        Level::Tinggi => "high",
        Level::Sedang => "moderate",
    }
}

/// "12,5" style decimals for Indonesian text.
fn dec_id(v: f32, places: usize) -> String {
    format!("{v:.places$}").replace('.', ",")
}

fn duration_words(secs: i64) -> (String, String) {
    let secs = secs.max(0);
    if secs < 120 {
        (format!("{secs} detik"), format!("{secs} s"))
    } else if secs < 2 * 3600 {
        let m = secs / 60;
        (format!("{m} menit"), format!("{m} min"))
    } else {
        let h = secs / 3600;
        let m = (secs % 3600) / 60;
        (format!("{h} jam {m} menit"), format!("{h} h {m} min"))
    }
}

fn tamper_reason(reason: &str) -> (String, String) {
    match reason {
        "covered" => ("lensa tertutup".into(), "lens covered".into()),
        "defocused" => ("gambar tidak fokus".into(), "picture out of focus".into()),
        "turned_away" => ("arah kamera bergeser".into(), "camera turned away".into()),
        other => (other.to_string(), other.to_string()),
    }
}

/// The measured facts as two short clauses (Indonesian, English); empty when nothing applies.
fn evidence_clauses(kind: IncidentKind, e: &Evidence) -> (Vec<String>, Vec<String>) {
    let (mut id, mut en) = (Vec::new(), Vec::new());
    match kind {
        IncidentKind::TrafficJam => {
            if let Some(n) = e.vehicle_count {
                id.push(format!("{n} kendaraan di zona"));
                en.push(format!("{n} vehicles in the zone"));
            }
            if let Some(v) = e.median_speed_kmh {
                id.push(format!("kecepatan median {} km/jam", dec_id(v, 1)));
                en.push(format!("median speed {v:.1} km/h"));
            }
            if let Some(d) = e.degree_of_saturation {
                id.push(format!("derajat kejenuhan {}", dec_id(d, 2)));
                en.push(format!("degree of saturation {d:.2}"));
            }
        }
        IncidentKind::Crowd => {
            if let Some(n) = e.persons {
                id.push(format!("{n} orang di zona"));
                en.push(format!("{n} people in the zone"));
            }
            if let Some(d) = e.density_per_m2 {
                id.push(format!("kepadatan {} orang/m²", dec_id(d, 2)));
                en.push(format!("density {d:.2} people/m²"));
            }
        }
        IncidentKind::Garbage => {
            if let Some(n) = e.objects {
                id.push(format!("{n} benda diam"));
                en.push(format!("{n} static objects"));
            }
            if !e.classes.is_empty() {
                let c = e.classes.join(", ");
                id.push(format!("jenis: {c}"));
                en.push(format!("classes: {c}"));
            }
            if let Some(a) = e.static_area {
                id.push(format!("menutupi {}% zona", dec_id(a * 100.0, 0)));
                en.push(format!("covering {:.0}% of the zone", a * 100.0));
            }
        }
        // The cause of an outage is a sentence of its own (see `texts`).
        IncidentKind::CameraOffline => {}
        IncidentKind::CameraTamper => {
            if let Some(r) = &e.reason {
                let (a, b) = tamper_reason(r);
                id.push(a);
                en.push(b);
            }
        }
    }
    if let Some(d) = e.dwell_s {
        let (a, b) = duration_words(d.round() as i64);
        id.push(format!("berlangsung {a}"));
        en.push(format!("lasting {b}"));
    }
    (id, en)
}

fn sentence(head: String, clauses: &[String]) -> String {
    if clauses.is_empty() {
        format!("{head}.")
    } else {
        format!("{head}: {}.", clauses.join(", "))
    }
}

/// The report's wording.
pub fn texts(t: &TextInput<'_>) -> Texts {
    let (title, title_en) = titles(t.kind, t.site_name);
    let place_id = match t.zone_name {
        Some(z) => format!("{z}, {}", t.site_name),
        None => t.site_name.to_string(),
    };
    let since = format!("{} {}", t.started_at.format("%H:%M"), t.tz_abbrev);
    let since_day = t.started_at.format("%d-%m-%Y").to_string();
    let (ev_id, ev_en) = evidence_clauses(t.kind, t.evidence);
    let lvl = level_id(t.level);
    let lvl_en = level_en(t.level);

    if t.event == IncidentEvent::End {
        let (dur_id, dur_en) = duration_words((t.at - t.started_at).num_seconds());
        let (why_id, why_en) = match t.end_reason {
            Some(EndReason::Superseded) => (
                " (digantikan kejadian baru)",
                " (replaced by a newer incident)",
            ),
            Some(EndReason::NotConfirmed) => (
                " (tidak terkonfirmasi lagi setelah sistem dinyalakan ulang)",
                " (not confirmed again after a restart)",
            ),
            _ => ("", ""),
        };
        let end = format!("{} {}", t.at.format("%H:%M"), t.tz_abbrev);
        let (d, d_en) = match t.kind {
            IncidentKind::CameraOffline => (
                format!(
                    "Kamera {} di {} aktif kembali pukul {end} setelah tidak aktif {dur_id}{why_id}.",
                    t.camera, t.site_name
                ),
                format!(
                    "Camera {} at {} is back online at {end} after {dur_en} offline{why_en}.",
                    t.camera, t.site_name
                ),
            ),
            _ => (
                format!("{title} telah berakhir pukul {end}, berlangsung {dur_id}{why_id}."),
                format!("{title_en} has ended at {end}, after {dur_en}{why_en}."),
            ),
        };
        return Texts {
            title,
            title_en,
            description: d,
            description_en: d_en,
        };
    }

    let resumed_id = if t.resumed {
        " Kejadian masih berlangsung setelah sistem dinyalakan ulang."
    } else {
        ""
    };
    let resumed_en = if t.resumed {
        " Still ongoing after a restart."
    } else {
        ""
    };
    let (head_id, head_en) = match t.kind {
        IncidentKind::TrafficJam => (
            format!("Lalu lintas {lvl} di {place_id} sejak {since} ({since_day})"),
            format!("Traffic is {lvl_en} at {place_id} since {since} ({since_day})"),
        ),
        IncidentKind::Crowd => (
            format!("Kerumunan (tingkat {lvl}) di {place_id} sejak {since} ({since_day})"),
            format!("Crowd ({lvl_en} level) at {place_id} since {since} ({since_day})"),
        ),
        IncidentKind::Garbage => (
            format!(
                "Sampah terdeteksi di zona bebas sampah {place_id} sejak {since} ({since_day})"
            ),
            format!(
                "Garbage detected in the no-dumping zone {place_id} since {since} ({since_day})"
            ),
        ),
        IncidentKind::CameraOffline => {
            let dur = t
                .evidence
                .offline_s
                .map(|s| duration_words(s.round() as i64));
            let (a, b) = match dur {
                Some((a, b)) => (format!(" selama {a}"), format!(" for {b}")),
                None => (String::new(), String::new()),
            };
            (
                format!(
                    "Kamera {} di {} tidak mengirim gambar sejak {since} ({since_day}){a}",
                    t.camera, t.site_name
                ),
                format!(
                    "Camera {} at {} has sent no picture since {since} ({since_day}){b}",
                    t.camera, t.site_name
                ),
            )
        }
        IncidentKind::CameraTamper => (
            format!(
                "Pandangan kamera {} di {} terganggu sejak {since} ({since_day})",
                t.camera, t.site_name
            ),
            format!(
                "The view of camera {} at {} is disturbed since {since} ({since_day})",
                t.camera, t.site_name
            ),
        ),
    };
    let (cause_id, cause_en) = match (t.kind, &t.evidence.reason) {
        (IncidentKind::CameraOffline, Some(r)) => {
            (format!(" Penyebab: {r}."), format!(" Cause: {r}."))
        }
        _ => (String::new(), String::new()),
    };
    Texts {
        title,
        title_en,
        description: format!("{}{cause_id}{resumed_id}", sentence(head_id, &ev_id)),
        description_en: format!("{}{cause_en}{resumed_en}", sentence(head_en, &ev_en)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn wib(h: u32, m: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(7 * 3600)
            .unwrap()
            .with_ymd_and_hms(2026, 11, 23, h, m, 0)
            .unwrap()
    }

    fn input<'a>(kind: IncidentKind, event: IncidentEvent, e: &'a Evidence) -> TextInput<'a> {
        TextInput {
            kind,
            event,
            level: Level::Macet,
            site_name: "Simpang Charitas",
            camera: "charitas",
            zone_name: Some("Jl. Jend. Sudirman"),
            evidence: e,
            started_at: wib(17, 3),
            at: wib(17, 15),
            tz_abbrev: "WIB",
            end_reason: None,
            resumed: false,
        }
    }

    #[test]
    fn titles_of_every_kind() {
        let want = [
            (IncidentKind::TrafficJam, "Kemacetan di Simpang Charitas"),
            (IncidentKind::Crowd, "Kerumunan di Simpang Charitas"),
            (IncidentKind::Garbage, "Sampah menumpuk di Simpang Charitas"),
            (
                IncidentKind::CameraOffline,
                "Kamera Simpang Charitas tidak aktif",
            ),
            (
                IncidentKind::CameraTamper,
                "Kamera Simpang Charitas terhalang/dirusak",
            ),
        ];
        for (k, t) in want {
            let (id, en) = titles(k, "Simpang Charitas");
            assert_eq!(id, t);
            assert!(en.contains("Simpang Charitas"));
        }
    }

    #[test]
    fn jam_description_carries_evidence() {
        let e = Evidence {
            vehicle_count: Some(23),
            median_speed_kmh: Some(4.25),
            ..Default::default()
        };
        let t = texts(&input(IncidentKind::TrafficJam, IncidentEvent::New, &e));
        assert_eq!(
            t.description,
            "Lalu lintas macet di Jl. Jend. Sudirman, Simpang Charitas sejak 17:03 WIB (23-11-2026): 23 kendaraan di zona, kecepatan median 4,2 km/jam."
        );
        assert!(
            t.description_en.contains("23 vehicles"),
            "{}",
            t.description_en
        );
    }

    #[test]
    fn end_says_how_long() {
        let e = Evidence::default();
        let t = texts(&input(IncidentKind::Crowd, IncidentEvent::End, &e));
        assert_eq!(
            t.description,
            "Kerumunan di Simpang Charitas telah berakhir pukul 17:15 WIB, berlangsung 12 menit."
        );
        let mut i = input(IncidentKind::CameraOffline, IncidentEvent::End, &e);
        i.end_reason = Some(EndReason::NotConfirmed);
        let t = texts(&i);
        assert!(t
            .description
            .starts_with("Kamera charitas di Simpang Charitas aktif kembali"));
        assert!(t.description.contains("dinyalakan ulang"));
    }

    #[test]
    fn camera_offline_says_since_when_and_why() {
        let e = Evidence {
            offline_s: Some(150.0),
            reason: Some("no frames for 5.0 s".into()),
            ..Default::default()
        };
        let mut i = input(IncidentKind::CameraOffline, IncidentEvent::New, &e);
        i.zone_name = None;
        let t = texts(&i);
        assert_eq!(
            t.description,
            "Kamera charitas di Simpang Charitas tidak mengirim gambar sejak 17:03 WIB (23-11-2026) selama 2 menit. Penyebab: no frames for 5.0 s."
        );
        assert_eq!(
            t.description_en,
            "Camera charitas at Simpang Charitas has sent no picture since 17:03 WIB (23-11-2026) for 2 min. Cause: no frames for 5.0 s."
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_words(-5).0, "0 detik");
        assert_eq!(duration_words(119).0, "119 detik");
        assert_eq!(duration_words(120).0, "2 menit");
        assert_eq!(duration_words(7200 + 180).0, "2 jam 3 menit");
    }
}
