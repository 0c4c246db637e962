//! The words the wall shows: zone states ("macet", "14 orang", "sampah 3 mnt"), class names and
//! times in Indonesian. Analytics hands over typed facts ([`ZoneState`]); they become words here,
//! for the burned-in tiles (scene.rs) and the status feed the browser wall reads (feed.rs).

use chrono::{DateTime, Timelike, Utc};

use crate::model::{Labels, Level, ZoneKind, ZoneState, ZoneWatch};
use crate::time::Timezone;

/// A zone's state in words, as the tile shows it after the zone's name; empty while the rule
/// has measured nothing yet.
pub fn zone_label(s: &ZoneState) -> String {
    match s.watch {
        ZoneWatch::Waiting => String::new(),
        ZoneWatch::CameraOffline => "kamera offline".into(),
        ZoneWatch::Live => match s.kind {
            ZoneKind::TrafficJam => s.level.map(level_word).unwrap_or_default().into(),
            ZoneKind::Crowd => format!("{} orang", s.count),
            ZoneKind::Garbage => match s.oldest_static_s {
                Some(t) if s.count > 0 => format!("sampah {} mnt", (t / 60.0).floor() as u32),
                _ => "bersih".into(),
            },
        },
    }
}

/// A level as the wall writes it.
pub fn level_word(l: Level) -> &'static str {
    match l {
        Level::Lancar => "lancar",
        Level::Padat => "padat",
        Level::Macet => "macet",
        Level::Sedang => "sedang",
        Level::Tinggi => "tinggi",
    }
}

/// The detector's class name in Indonesian where we know it (COCO names), else as given;
/// `kelas N` before the detector's labels are known.
pub fn class_name(labels: &Labels, id: u16) -> String {
    let Some(en) = labels.get(id as usize) else {
        return format!("kelas {id}");
    };
    let id_name = match en.as_str() {
        "person" => "orang",
        "bicycle" => "sepeda",
        "car" => "mobil",
        "motorcycle" | "motorbike" => "motor",
        "bus" => "bus",
        "truck" => "truk",
        "train" => "kereta",
        "boat" => "perahu",
        "traffic light" => "lampu lalin",
        "dog" => "anjing",
        "cat" => "kucing",
        "backpack" => "ransel",
        "umbrella" => "payung",
        "handbag" => "tas",
        "suitcase" => "koper",
        "bottle" => "botol",
        "cup" => "gelas",
        "chair" => "kursi",
        other => other,
    };
    id_name.to_string()
}

/// `23/11/2026 17:05:09 WIB`.
pub fn clock_text(tz: Timezone, now: DateTime<Utc>) -> String {
    let t = tz.local(now);
    format!("{} {}", t.format("%d/%m/%Y %H:%M:%S"), tz.abbrev(now))
}

/// `17:05:09 WIB`.
pub fn time_text(tz: Timezone, now: DateTime<Utc>) -> String {
    format!("{} {}", tz.local(now).format("%H:%M:%S"), tz.abbrev(now))
}

/// `14:32 WIB` today, `22/11 14:32 WIB` on another day.
pub fn since_text(tz: Timezone, at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let (t, n) = (tz.local(at), tz.local(now));
    let abbr = tz.abbrev(at);
    if t.date_naive() == n.date_naive() {
        format!("{:02}:{:02} {abbr}", t.hour(), t.minute())
    } else {
        format!("{} {abbr}", t.format("%d/%m %H:%M"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::{Severity, ZoneId};

    fn state(kind: ZoneKind, watch: ZoneWatch) -> ZoneState {
        ZoneState {
            watch,
            severity: Severity::Elevated,
            ..ZoneState::new(ZoneId::new("z"), kind)
        }
    }

    #[test]
    fn zone_labels_of_every_kind() {
        let live = ZoneWatch::Live;
        let cases = [
            (state(ZoneKind::Crowd, ZoneWatch::Waiting), ""),
            (state(ZoneKind::Garbage, ZoneWatch::Waiting), ""),
            (state(ZoneKind::TrafficJam, ZoneWatch::Waiting), ""),
            (
                ZoneState {
                    level: Some(Level::Macet),
                    ..state(ZoneKind::TrafficJam, ZoneWatch::CameraOffline)
                },
                "kamera offline",
            ),
            (
                ZoneState {
                    level: Some(Level::Macet),
                    count: 25,
                    ..state(ZoneKind::TrafficJam, live)
                },
                "macet",
            ),
            (
                ZoneState {
                    level: Some(Level::Lancar),
                    ..state(ZoneKind::TrafficJam, live)
                },
                "lancar",
            ),
            (
                ZoneState {
                    level: Some(Level::Padat),
                    ..state(ZoneKind::TrafficJam, live)
                },
                "padat",
            ),
            (state(ZoneKind::Crowd, live), "0 orang"),
            (
                ZoneState {
                    count: 14,
                    ..state(ZoneKind::Crowd, live)
                },
                "14 orang",
            ),
            (state(ZoneKind::Garbage, live), "bersih"),
            (
                ZoneState {
                    count: 2,
                    oldest_static_s: Some(239.9),
                    ..state(ZoneKind::Garbage, live)
                },
                "sampah 3 mnt",
            ),
            (
                ZoneState {
                    count: 1,
                    oldest_static_s: Some(20.0),
                    ..state(ZoneKind::Garbage, live)
                },
                "sampah 0 mnt",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(zone_label(&s), want, "{s:?}");
        }
    }

    #[test]
    fn level_words_are_the_indonesian_words() {
        for l in Level::ALL {
            assert_eq!(level_word(l), l.as_str());
        }
    }

    #[test]
    fn clock_and_since_in_wib() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 5, 9).unwrap();
        assert_eq!(clock_text(Timezone::JAKARTA, at), "23/11/2026 17:05:09 WIB");
        assert_eq!(
            clock_text(Timezone::parse("Asia/Makassar").unwrap(), at),
            "23/11/2026 18:05:09 WITA"
        );
        assert_eq!(
            since_text(Timezone::JAKARTA, at, at + chrono::Duration::hours(1)),
            "17:05 WIB"
        );
        assert_eq!(
            since_text(Timezone::JAKARTA, at, at + chrono::Duration::days(1)),
            "23/11 17:05 WIB"
        );
        assert_eq!(
            clock_text(Timezone::UTC, at),
            "23/11/2026 10:05:09 UTC+00:00"
        );
    }
}
