//! Time helpers: messages carry the city's local offset (WIB, +07:00 for Palembang).

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};

/// The UTC offset of `tz` (an IANA name) at `at`; UTC when the name is unknown (config
/// validation rejects unknown names before this is reached).
pub fn offset_of(tz: &str, at: DateTime<Utc>) -> FixedOffset {
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => z.offset_from_utc_datetime(&at.naive_utc()).fix(),
        Err(_) => FixedOffset::east_opt(0).unwrap_or_else(|| Utc.fix()),
    }
}

/// `at` in the city's local time.
pub fn local(tz: &str, at: DateTime<Utc>) -> DateTime<FixedOffset> {
    at.with_timezone(&offset_of(tz, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jakarta_is_plus_seven() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
        assert_eq!(
            local("Asia/Jakarta", at).to_rfc3339(),
            "2026-11-23T17:00:00+07:00"
        );
        assert_eq!(local("Nowhere/Else", at).offset().local_minus_utc(), 0);
    }
}
