//! The SMS keyword format of the 1708 services: `LAPOR <isi aduan>` files a report;
//! `CEK <tiket>` asks its status; `PUAS <tiket>` / `TIDAK PUAS <tiket> <alasan>` confirm an
//! answer from the phone that filed the report. Replies fit one SMS (160 characters).

/// Longest reply, one GSM-7 SMS.
pub const MAX_REPLY: usize = 160;

/// What an incoming SMS asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmsCommand {
    /// File a report with this text.
    Lapor(String),
    /// Status of a ticket.
    Cek(String),
    /// The reporter is satisfied with the answer.
    Puas(String),
    /// The reporter is not satisfied: back to the agency, with the reason.
    TidakPuas { ticket: String, reason: String },
    /// Anything else: answered with the usage text, nothing stored.
    Unknown,
}

/// Splits off the first word (ASCII whitespace separated), upper-cased, and the trimmed rest.
fn keyword(text: &str) -> (String, &str) {
    let t = text.trim();
    match t.find(|c: char| c.is_whitespace()) {
        Some(i) => (t[..i].to_uppercase(), t[i..].trim()),
        None => (t.to_uppercase(), ""),
    }
}

fn ticket_word(rest: &str) -> Option<(String, &str)> {
    let (t, more) = keyword(rest);
    (!t.is_empty()).then_some((t, more))
}

pub fn parse(text: &str) -> SmsCommand {
    let (kw, rest) = keyword(text);
    match kw.as_str() {
        "LAPOR" if !rest.is_empty() => SmsCommand::Lapor(rest.to_string()),
        "CEK" => match ticket_word(rest) {
            Some((t, _)) => SmsCommand::Cek(t),
            None => SmsCommand::Unknown,
        },
        "PUAS" => match ticket_word(rest) {
            Some((t, _)) => SmsCommand::Puas(t),
            None => SmsCommand::Unknown,
        },
        "TIDAK" => {
            let (kw2, rest2) = keyword(rest);
            match (kw2.as_str(), ticket_word(rest2)) {
                ("PUAS", Some((ticket, reason))) => SmsCommand::TidakPuas {
                    ticket,
                    reason: reason.to_string(),
                },
                _ => SmsCommand::Unknown,
            }
        }
        _ => SmsCommand::Unknown,
    }
}

/// Cuts to one SMS on a character boundary.
pub fn fit(s: &str) -> String {
    if s.chars().count() <= MAX_REPLY {
        return s.to_string();
    }
    let mut out: String = s.chars().take(MAX_REPLY - 3).collect();
    out.push_str("...");
    out
}

pub const USAGE: &str = "Format salah. Kirim LAPOR <isi laporan>, contoh: LAPOR Lampu jalan mati di Jl. Merdeka. Cek status: CEK <no tiket>.";

/// The reply to a filed report: names the ticket, and the tracking page when it fits.
pub fn receipt(ticket: &str, track_url: Option<&str>) -> String {
    let base = format!("Laporan diterima, no. tiket {ticket}.");
    if let Some(url) = track_url {
        let with_url = format!("{base} Pantau di {url}");
        if with_url.chars().count() <= MAX_REPLY {
            return with_url;
        }
    }
    fit(&format!(
        "{base} Cek status: kirim CEK {ticket} ke nomor ini."
    ))
}

/// A short title from a free text: the first line, cut at a word boundary.
pub fn title_from(text: &str, max_chars: usize) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    // SMS are often typed all lower-case; a title starts with a capital.
    let mut chars = line.chars();
    let first: String = match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    };
    let first = first.as_str();
    if first.chars().count() <= max_chars {
        return first.to_string();
    }
    let cut: String = first.chars().take(max_chars.saturating_sub(1)).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max_chars / 2 => cut[..i].to_string(),
        _ => cut,
    };
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        use SmsCommand::*;
        let cases = [
            (
                "LAPOR jalan rusak di Jl. Merdeka",
                Lapor("jalan rusak di Jl. Merdeka".into()),
            ),
            ("lapor sampah menumpuk", Lapor("sampah menumpuk".into())),
            ("  LaPoR   banjir  ", Lapor("banjir".into())),
            ("LAPOR\nbaris dua", Lapor("baris dua".into())),
            ("LAPOR", Unknown),
            ("LAPOR    ", Unknown),
            ("LAPORAN jalan rusak", Unknown),
            ("LAPOR:jalan rusak", Unknown),
            ("", Unknown),
            ("halo", Unknown),
            ("CEK plg-7k3qx9", Cek("PLG-7K3QX9".into())),
            ("cek", Unknown),
            ("PUAS PLG-ABC", Puas("PLG-ABC".into())),
            ("puas", Unknown),
            (
                "tidak puas PLG-ABC masih macet",
                TidakPuas {
                    ticket: "PLG-ABC".into(),
                    reason: "masih macet".into(),
                },
            ),
            (
                "TIDAK PUAS PLG-ABC",
                TidakPuas {
                    ticket: "PLG-ABC".into(),
                    reason: String::new(),
                },
            ),
            ("TIDAK PUAS", Unknown),
            ("TIDAK tahu", Unknown),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn replies_fit_one_sms() {
        assert!(USAGE.chars().count() <= MAX_REPLY, "{}", USAGE.len());
        let short = receipt("PLG-7K3QX9", Some("http://127.0.0.1:8090/track/PLG-7K3QX9"));
        assert!(
            short.contains("PLG-7K3QX9") && short.contains("/track/"),
            "{short}"
        );
        let long_url = format!("https://{}/track/PLG-7K3QX9", "x".repeat(200));
        let r = receipt("PLG-7K3QX9", Some(&long_url));
        assert!(
            r.chars().count() <= MAX_REPLY && r.contains("PLG-7K3QX9"),
            "{r}"
        );
        let r = receipt("PLG-7K3QX9", None);
        assert!(
            r.chars().count() <= MAX_REPLY && r.contains("CEK PLG-7K3QX9"),
            "{r}"
        );
        assert_eq!(fit(&"é".repeat(200)).chars().count(), MAX_REPLY);
        assert_eq!(fit(""), "");
    }

    #[test]
    fn titles() {
        let cases = [
            ("Lampu mati", 80, "Lampu mati"),
            ("lampu mati", 80, "Lampu mati"),
            ("élan", 80, "Élan"),
            ("", 80, ""),
            ("baris satu\nbaris dua", 80, "Baris satu"),
            ("satu dua tiga empat lima", 15, "Satu dua tiga…"),
            ("abcdefghijklmnopqrstuvwxyz", 10, "Abcdefghi…"),
        ];
        for (text, max, want) in cases {
            assert_eq!(title_from(text, max), want, "{text:?}");
        }
    }

    proptest::proptest! {
        /// An SMS is outside data: any text parses to some command, and replies and titles
        /// made from it stay within their length, without panicking.
        #[test]
        fn any_text_parses_and_fits(text in "(?s).{0,400}", max in 1usize..200) {
            let _ = parse(&text);
            proptest::prop_assert!(fit(&text).chars().count() <= MAX_REPLY);
            proptest::prop_assert!(title_from(&text, max).chars().count() <= max);
        }

        #[test]
        fn command_like_text_parses(
            text in "(?i)(lapor|cek|puas|tidak|info)?[ #:]{0,3}[A-Z0-9-]{0,12}[ \n]{0,2}.{0,40}"
        ) {
            let _ = parse(&text);
        }
    }
}
