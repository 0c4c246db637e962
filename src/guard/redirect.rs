//! Where a browser may be sent after signing in: only a path on the same site.
//!
//! `next=/%09/evil.example` decodes to `/\t/evil.example`, which browsers read as
//! `//evil.example` (they drop tabs and newlines from URLs): a path is accepted only when it is
//! plain printable ASCII without backslashes, starts with one `/`, and still names this site
//! when resolved as a URL.

/// `next` when it is a same-site path, else `None`.
pub fn same_site_path(next: &str) -> Option<&str> {
    let plain = next.len() <= 2048
        && next.starts_with('/')
        && !next.starts_with("//")
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if !plain {
        return None;
    }
    let base = url::Url::parse("http://same.invalid/").ok()?;
    let joined = base.join(next).ok()?;
    (joined.scheme() == "http"
        && joined.host_str() == Some("same.invalid")
        && joined.port().is_none()
        && joined.username().is_empty())
    .then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_same_site_paths() {
        let cases = [
            ("/reports/PLG-1", true),
            ("/", true),
            ("/dashboard?period=7d", true),
            ("", false),
            ("//evil.example", false),
            ("/\\evil.example", false),
            ("/\t/evil.example", false),
            ("/\n/evil.example", false),
            ("/ /evil.example", false),
            ("https://evil.example", false),
            ("javascript:alert(1)", false),
            ("/%09/evil.example", true), // stays percent-encoded: a path on this site
            ("\\/evil.example", false),
            ("/ü", false),
        ];
        for (n, ok) in cases {
            assert_eq!(same_site_path(n).is_some(), ok, "{n:?}");
        }
    }

    proptest! {
        /// Whatever comes in, what is let through resolves to this site, and nothing panics.
        #[test]
        fn never_leaves_the_site(next in any::<String>()) {
            if let Some(p) = same_site_path(&next) {
                let other = url::Url::parse("https://desk.example/").unwrap().join(p).unwrap();
                prop_assert_eq!(other.host_str(), Some("desk.example"));
            }
        }

        #[test]
        fn never_leaves_the_site_with_url_tricks(next in "[/\\\\\\t\\n :@.a-z%0-9?#]{0,24}") {
            if let Some(p) = same_site_path(&next) {
                let other = url::Url::parse("https://desk.example/").unwrap().join(p).unwrap();
                prop_assert_eq!(other.host_str(), Some("desk.example"));
            }
        }
    }
}
