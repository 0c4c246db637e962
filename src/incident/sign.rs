//! Per-site message signatures: HMAC-SHA256 carried inside the JSON payload, because MQTT 3.1.1
//! has no headers.
//!
//! The producer serialises a message as usual (`{ ... }`, no `sig`), computes the HMAC over
//! exactly those bytes with the site's key, and appends the field before the final `}`:
//!
//! ```text
//! signed bytes:  {"schema":"simpang.incident/1",...}
//! on the wire:   {"schema":"simpang.incident/1",...,"sig":"hmac-sha256:<64 lowercase hex>"}
//! ```
//!
//! The verifier takes the wire bytes, finds the `,"sig":"hmac-sha256:` field that must end the
//! object, puts back the `}` to get the signed bytes, and recomputes. No JSON canonicalisation is
//! involved: whatever bytes the producer wrote are the bytes that are checked, and a JSON parser
//! on the consumer's side never sees an unchecked message. The key is chosen by the site in the
//! topic; a message copied onto another site's topic is checked with that site's key and fails.
//!
//! Pure: no I/O, no clock. Keys come from the credentials file (`access`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Tag in front of the hex MAC: the algorithm, so another can follow without ambiguity.
pub const ALGORITHM: &str = "hmac-sha256";
/// The field the signature travels in (after a `,`, or right after the `{` of an empty object).
const FIELD: &[u8] = b"\"sig\":\"hmac-sha256:";
/// Hex digits of an HMAC-SHA256.
const MAC_HEX: usize = 64;
/// Shortest key accepted (bytes): 128 bits.
pub const MIN_KEY_BYTES: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// A site's signing key (raw bytes; written as hex in credential files).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key itself.
        write!(f, "SigningKey({} bytes)", self.0.len())
    }
}

/// Why a key text is not a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("signing key is not hex (expected {} or more hex digits)", MIN_KEY_BYTES * 2)]
    NotHex,
    #[error("signing key is {0} bytes; at least {MIN_KEY_BYTES} are needed")]
    TooShort(usize),
}

impl SigningKey {
    /// From its hex text (as credential files write it).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(text.trim()).map_err(|_| KeyError::NotHex)?;
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A fresh random 256-bit key.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut k = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }
}

/// Why a message did not pass.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigError {
    #[error("message is not signed (no trailing \"sig\" field)")]
    Unsigned,
    #[error("malformed \"sig\" field (expected \"{ALGORITHM}:\" and {MAC_HEX} hex digits as the last field)")]
    Malformed,
    #[error("signature does not match the message and the site's key")]
    Mismatch,
    #[error("message is not a JSON object ending in '}}'")]
    NotAnObject,
}

/// `msg` (a serialised JSON object, ending in `}`) with its signature field appended.
pub fn sign(key: &SigningKey, msg: &[u8]) -> Result<Vec<u8>, SigError> {
    let body = trim_end_ws(msg.strip_suffix(b"}").ok_or(SigError::NotAnObject)?);
    if !body.starts_with(b"{") {
        return Err(SigError::NotAnObject);
    }
    let mut mac = key.mac();
    mac.update(msg);
    let tag = hex::encode(mac.finalize().into_bytes());
    let mut out = Vec::with_capacity(msg.len() + FIELD.len() + MAC_HEX + 2);
    out.extend_from_slice(body);
    if body != b"{" {
        out.push(b',');
    }
    out.extend_from_slice(FIELD);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(b"\"}");
    Ok(out)
}

/// `msg` as JSON, signed with `key` when there is one; without a key exactly what
/// `serde_json::to_vec` writes.
pub fn encode<T: serde::Serialize>(msg: &T, key: Option<&SigningKey>) -> Result<Vec<u8>, String> {
    let bytes = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
    match key {
        None => Ok(bytes),
        Some(k) => sign(k, &bytes).map_err(|e| e.to_string()),
    }
}

/// A wire message taken apart: the signed bytes and the hex MAC, if it carries one.
#[derive(Debug, PartialEq, Eq)]
pub struct Split<'a> {
    /// The message without its `sig` field: what was signed (or the whole payload if unsigned).
    pub signed: std::borrow::Cow<'a, [u8]>,
    /// The hex MAC, when the payload ends in a well-formed `sig` field.
    pub mac_hex: Option<&'a [u8]>,
}

/// Takes the trailing `sig` field off `wire`. An unsigned payload comes back whole with no MAC;
/// a payload whose last field looks like a signature but is not well formed is an error.
pub fn split(wire: &[u8]) -> Result<Split<'_>, SigError> {
    let trimmed = trim_end_ws(wire);
    let Some(at) = rfind(trimmed, FIELD) else {
        return Ok(Split {
            signed: std::borrow::Cow::Borrowed(wire),
            mac_hex: None,
        });
    };
    // What follows the field's opening must be exactly the MAC, its closing quote and the
    // object's closing brace: the signature is the last field, nothing can hide after it.
    let tail = &trimmed[at + FIELD.len()..];
    let ok = tail.len() == MAC_HEX + 2
        && tail.ends_with(b"\"}")
        && tail[..MAC_HEX]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    if !ok {
        return Err(SigError::Malformed);
    }
    // The field follows a `,`, or the `{` of an object that has no other field.
    let before = match at.checked_sub(1).map(|i| trimmed[i]) {
        Some(b',') => at - 1,
        Some(b'{') => at,
        _ => return Err(SigError::Malformed),
    };
    let mut signed = Vec::with_capacity(before + 1);
    signed.extend_from_slice(&trimmed[..before]);
    signed.push(b'}');
    Ok(Split {
        signed: std::borrow::Cow::Owned(signed),
        mac_hex: Some(&tail[..MAC_HEX]),
    })
}

/// Checks `wire` against `key`; on success returns the signed bytes (the message without its
/// signature), which is what a consumer parses.
pub fn verify(key: &SigningKey, wire: &[u8]) -> Result<Vec<u8>, SigError> {
    let s = split(wire)?;
    let mac_hex = s.mac_hex.ok_or(SigError::Unsigned)?;
    let want = hex::decode(mac_hex).map_err(|_| SigError::Malformed)?;
    let mut mac = key.mac();
    mac.update(&s.signed);
    // Constant-time comparison.
    mac.verify_slice(&want).map_err(|_| SigError::Mismatch)?;
    Ok(s.signed.into_owned())
}

fn trim_end_ws(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &b[..end]
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .rev()
        .find(|&i| &hay[i..i + needle.len()] == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey(vec![b; 32])
    }

    #[test]
    fn sign_then_verify_round_trips_and_parses() {
        let msg = br#"{"schema":"simpang.incident/1","event":"new","incident":{"id":"x","seq":1}}"#;
        let wire = sign(&key(1), msg).unwrap();
        let text = String::from_utf8(wire.clone()).unwrap();
        assert!(text.starts_with(r#"{"schema":"simpang.incident/1""#));
        assert!(text.contains(r#","sig":"hmac-sha256:"#), "{text}");
        // Still one JSON object, with the sig as a plain string field.
        let v: serde_json::Value = serde_json::from_slice(&wire).unwrap();
        assert!(v["sig"].as_str().unwrap().starts_with("hmac-sha256:"));
        assert_eq!(verify(&key(1), &wire).unwrap(), msg.to_vec());
        // Trailing whitespace (a line-oriented tool) does not matter.
        let mut spaced = wire.clone();
        spaced.extend_from_slice(b" \n");
        assert_eq!(verify(&key(1), &spaced).unwrap(), msg.to_vec());
    }

    /// Known answers: HMAC-SHA256 with key 32 x 0x0b, from `printf '{"a":1}' | openssl
    /// dgst -sha256 -mac HMAC -macopt hexkey:0b0b...0b`.
    #[test]
    fn known_answer() {
        let cases: [(&[u8], &str); 2] = [
            (
                b"{\"a\":1}",
                "{\"a\":1,\"sig\":\"hmac-sha256:248bdfd7b67b706001ebaee4f3ca559a7295a1e2ba4068bea0abc034492994d9\"}",
            ),
            (
                b"{}",
                "{\"sig\":\"hmac-sha256:fa29380faac1fde617f57047c66ac7f41bc76a06f14822661f4f16369d684578\"}",
            ),
        ];
        for (msg, want) in cases {
            let wire = sign(&key(0x0b), msg).unwrap();
            assert_eq!(String::from_utf8(wire.clone()).unwrap(), want);
            assert_eq!(verify(&key(0x0b), &wire).unwrap(), msg.to_vec());
        }
    }

    #[test]
    fn rejections() {
        let msg = br#"{"a":1,"b":"x"}"#;
        let wire = sign(&key(1), msg).unwrap();
        // Another site's key.
        assert_eq!(verify(&key(2), &wire), Err(SigError::Mismatch));
        // One byte of the body changed.
        let mut bad = wire.clone();
        bad[5] = b'2';
        assert_eq!(verify(&key(1), &bad), Err(SigError::Mismatch));
        // A field added after the signature.
        let mut after = wire[..wire.len() - 1].to_vec();
        after.extend_from_slice(br#","c":3}"#);
        assert_eq!(verify(&key(1), &after), Err(SigError::Malformed));
        // Upper-case hex, short MAC.
        let upper = String::from_utf8(wire.clone()).unwrap().to_uppercase();
        assert!(verify(&key(1), upper.as_bytes()).is_err());
        let short = format!(
            "{}\"}}",
            &String::from_utf8(wire.clone()).unwrap()[..wire.len() - 4]
        );
        assert_eq!(verify(&key(1), short.as_bytes()), Err(SigError::Malformed));
        // No signature at all.
        assert_eq!(verify(&key(1), msg), Err(SigError::Unsigned));
        // Not an object.
        assert_eq!(sign(&key(1), b"[1]"), Err(SigError::NotAnObject));
        assert_eq!(verify(&key(1), b""), Err(SigError::Unsigned));
    }

    #[test]
    fn a_sig_like_text_inside_a_string_is_not_the_field() {
        // JSON escapes quotes inside strings, so the field's bytes cannot appear there.
        let msg = serde_json::to_vec(&serde_json::json!({
            "title": ",\"sig\":\"hmac-sha256:00"
        }))
        .unwrap();
        let s = split(&msg).unwrap();
        assert_eq!(s.mac_hex, None);
        assert_eq!(&*s.signed, &msg[..]);
        let wire = sign(&key(3), &msg).unwrap();
        assert_eq!(verify(&key(3), &wire).unwrap(), msg);
    }

    #[test]
    fn keys() {
        assert_eq!(SigningKey::from_hex("zz"), Err(KeyError::NotHex));
        assert_eq!(SigningKey::from_hex("00ff"), Err(KeyError::TooShort(2)));
        let k = SigningKey::generate();
        assert_eq!(SigningKey::from_hex(&k.to_hex()).unwrap(), k);
        assert_ne!(SigningKey::generate(), k);
        assert_eq!(format!("{k:?}"), "SigningKey(32 bytes)");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// `split` and `verify` on any bytes: an answer, never a panic.
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = split(&b);
            let _ = verify(&SigningKey(vec![7; 32]), &b);
        }

        /// Bytes ending in a signature-like field: never a panic either.
        #[test]
        fn sig_like_tails_never_panic(head in ".{0,40}", tail in "[0-9a-fA-F\"}, ]{0,80}") {
            let b = format!("{{{head},\"sig\":\"hmac-sha256:{tail}");
            let _ = verify(&SigningKey(vec![7; 32]), b.as_bytes());
        }

        /// Any JSON object signs and verifies back to itself, and one changed byte of it fails.
        #[test]
        fn round_trip_and_any_change_fails(
            fields in proptest::collection::btree_map("[a-z]{1,8}", ".{0,30}", 0..6),
            key in proptest::collection::vec(any::<u8>(), 16..48),
            pos in any::<usize>(),
            flip in 1u8..=255,
        ) {
            let k = SigningKey(key);
            let msg = serde_json::to_vec(&fields).unwrap();
            let wire = sign(&k, &msg).unwrap();
            prop_assert_eq!(verify(&k, &wire).unwrap(), msg.clone());
            let mut bad = wire.clone();
            let i = pos % bad.len();
            bad[i] ^= flip;
            prop_assert!(verify(&k, &bad).is_err());
        }
    }
}
