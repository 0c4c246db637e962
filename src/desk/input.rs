//! What people type, checked and put in normal form: text lengths, tickets, phone numbers.

use super::error::{invalid, DeskError};

/// `v` trimmed, when it has `min..=max` characters; else why not, for `field` ("Judul wajib
/// diisi", "... harus 5 sampai 150 karakter (sekarang 3)").
pub(crate) fn bounded(
    field: &'static str,
    v: &str,
    min: usize,
    max: usize,
    what: &str,
) -> Result<String, DeskError> {
    let v = v.trim();
    let n = v.chars().count();
    if n == 0 {
        return Err(invalid(field, format!("{what} wajib diisi")));
    }
    if n < min || n > max {
        return Err(invalid(
            field,
            format!("{what} harus {min} sampai {max} karakter (sekarang {n})"),
        ));
    }
    Ok(v.to_string())
}

/// Tickets are matched upper-case and trimmed, as people type them.
pub fn normalise_ticket(t: &str) -> String {
    t.trim().to_uppercase()
}

/// `+62 812-3456-7890` → `+6281234567890`; None unless 8 to 15 digits (with an optional +).
pub fn normalise_phone(p: &str) -> Option<String> {
    let p = p.trim();
    if p.is_empty() {
        return None;
    }
    let (plus, rest) = match p.strip_prefix('+') {
        Some(r) => ("+", r),
        None => ("", p),
    };
    let digits: String = rest
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    (digits.chars().all(|c| c.is_ascii_digit()) && (8..=15).contains(&digits.len()))
        .then(|| format!("{plus}{digits}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        let cases = [
            ("081234567890", Some("081234567890")),
            ("+62 812-3456-7890", Some("+6281234567890")),
            ("(0711) 352.000", Some("0711352000")),
            ("1234567", None),
            ("1234567890123456", None),
            ("12345678", Some("12345678")),
            ("", None),
            ("   ", None),
            ("0812abc4567", None),
            ("++62812345678", None),
            ("'; DROP TABLE reports; --", None),
        ];
        for (p, want) in cases {
            assert_eq!(normalise_phone(p).as_deref(), want, "{p:?}");
        }
    }

    #[test]
    fn tickets_normalise() {
        assert_eq!(normalise_ticket("  plg-abc  "), "PLG-ABC");
        assert_eq!(normalise_ticket(""), "");
    }

    #[test]
    fn bounded_text() {
        let cases = [
            ("  abcde  ", Ok("abcde")),
            ("abcd", Err("harus 5 sampai 10 karakter (sekarang 4)")),
            ("", Err("wajib diisi")),
            ("   ", Err("wajib diisi")),
            ("abcdefghijk", Err("(sekarang 11)")),
            ("ééééé", Ok("ééééé")),
        ];
        for (v, want) in cases {
            match (bounded("f", v, 5, 10, "Isi"), want) {
                (Ok(got), Ok(w)) => assert_eq!(got, w, "{v:?}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{v:?}: {e}"),
                (got, _) => panic!("{v:?}: {got:?}"),
            }
        }
    }
}
