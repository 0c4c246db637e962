//! The city's time zone. Messages, snapshots, the wall's clock and the desk all show local time
//! (WIB, +07:00, for Palembang); the zone is parsed once, from `city.timezone` when the config
//! loads ([`crate::config::City::tz`]), and handed to every stage as a [`Timezone`] value.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;

/// An IANA time zone, parsed and known to exist. Copy: pass it by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timezone(Tz);

impl Timezone {
    /// Palembang's zone, the default of `city.timezone`.
    pub const JAKARTA: Timezone = Timezone(Tz::Asia__Jakarta);
    pub const UTC: Timezone = Timezone(Tz::UTC);

    /// The zone of an IANA name (`Asia/Jakarta`); the error says what to write instead.
    pub fn parse(name: &str) -> Result<Timezone, UnknownZone> {
        name.parse::<Tz>()
            .map(Timezone)
            .map_err(|_| UnknownZone(name.to_string()))
    }

    /// The IANA name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The UTC offset in force at `at`.
    pub fn offset(self, at: DateTime<Utc>) -> FixedOffset {
        self.0.offset_from_utc_datetime(&at.naive_utc()).fix()
    }

    /// `at` in local time.
    pub fn local(self, at: DateTime<Utc>) -> DateTime<FixedOffset> {
        at.with_timezone(&self.offset(at))
    }

    /// The zone's letters as Indonesians write them (WIB, WITA, WIT: what the tz database has
    /// for Indonesia's zones) and the numeric offset elsewhere (`UTC+04:00`, `UTC+00:00`), so a
    /// reader never meets an abbreviation that is ambiguous or invented.
    pub fn abbrev(self, at: DateTime<Utc>) -> String {
        let letters = self.0.offset_from_utc_datetime(&at.naive_utc()).to_string();
        match letters.as_str() {
            "WIB" | "WITA" | "WIT" => letters,
            _ => format!("UTC{}", self.offset(at)),
        }
    }
}

impl Default for Timezone {
    fn default() -> Self {
        Timezone::JAKARTA
    }
}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Timezone {
    type Err = UnknownZone;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Timezone::parse(s)
    }
}

/// A name that is not an IANA time zone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown time zone {0:?} (use an IANA name such as \"Asia/Jakarta\")")]
pub struct UnknownZone(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jakarta_is_plus_seven() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let jakarta = Timezone::parse("Asia/Jakarta").unwrap();
        assert_eq!(jakarta.local(at).to_rfc3339(), "2026-11-23T17:00:00+07:00");
        assert_eq!(Timezone::UTC.local(at).offset().local_minus_utc(), 0);
        assert_eq!(Timezone::default().local(at), jakarta.local(at));
    }

    #[test]
    fn parse_name_and_letters() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        let cases = [
            ("Asia/Jakarta", "WIB", 7 * 3600),
            ("Asia/Pontianak", "WIB", 7 * 3600),
            ("Asia/Makassar", "WITA", 8 * 3600),
            ("Asia/Jayapura", "WIT", 9 * 3600),
            ("Asia/Dubai", "UTC+04:00", 4 * 3600),
            ("Asia/Singapore", "UTC+08:00", 8 * 3600),
            ("UTC", "UTC+00:00", 0),
            ("America/Sao_Paulo", "UTC-03:00", -3 * 3600),
        ];
        for (name, abbrev, offset) in cases {
            let z = Timezone::parse(name).unwrap();
            assert_eq!(z.name(), name);
            assert_eq!(z.to_string(), name);
            assert_eq!(z.abbrev(at), abbrev, "{name}");
            assert_eq!(z.offset(at).local_minus_utc(), offset, "{name}");
        }
        let e = Timezone::parse("Mars/Olympus").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown time zone \"Mars/Olympus\" (use an IANA name such as \"Asia/Jakarta\")"
        );
        assert!("".parse::<Timezone>().is_err());
    }
}
