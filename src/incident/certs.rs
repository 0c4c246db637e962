//! The managed broker's TLS files when the operator brings none: a private CA (kept, ten years)
//! and a server certificate it signs for the names clients use (loopback always, plus
//! `mqtt.embedded_tls_names`), generated in Rust (rcgen, ECDSA P-256) so nothing outside is
//! needed. Clients trust `ca.pem` (`mqtt.ca_file` / `desk.mqtt.ca_file`).
//!
//! The server certificate is made again, by the same CA, when the names change or it is within
//! 30 days of its end; the CA stays, so clients keep trusting the broker.

use std::path::{Path, PathBuf};

use chrono::{Datelike, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

use super::secrets::write_private;

/// Days a server certificate is made for (the most browsers and Apple platforms accept).
const SERVER_DAYS: i64 = 825;
/// Made again this close to its end.
const RENEW_DAYS: i64 = 30;
const CA_YEARS: i32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("TLS files in {dir}: {error}")]
    Io { dir: PathBuf, error: std::io::Error },
    #[error("TLS files in {dir}: {error}")]
    Gen { dir: PathBuf, error: rcgen::Error },
}

/// Where the generated files are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The CA's certificate: what clients trust.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }
}

/// Makes sure `dir` holds a CA and a server certificate valid for `names` (DNS names or IP
/// addresses); generates what is missing or stale. True when the server certificate was made.
pub fn ensure(dir: &Path, names: &[String]) -> Result<(TlsFiles, bool), CertError> {
    let io = |error| CertError::Io {
        dir: dir.to_path_buf(),
        error,
    };
    let gen = |error| CertError::Gen {
        dir: dir.to_path_buf(),
        error,
    };
    super::secrets::private_dir(dir).map_err(io)?;
    let files = TlsFiles::in_dir(dir);
    let ca_key_path = dir.join("ca.key");
    let names_path = dir.join("server.names");

    // The CA: kept once made.
    let ca_key = match std::fs::read_to_string(&ca_key_path) {
        Ok(pem) if files.ca.exists() => KeyPair::from_pem(&pem).map_err(gen)?,
        _ => {
            let key = KeyPair::generate().map_err(gen)?;
            let cert = ca_params(&key).self_signed(&key).map_err(gen)?;
            write_private(&ca_key_path, key.serialize_pem().as_bytes()).map_err(io)?;
            std::fs::write(&files.ca, cert.pem()).map_err(io)?;
            // A new CA invalidates any server certificate of the old one.
            let _ = std::fs::remove_file(&names_path);
            key
        }
    };

    let stamp = names.join("\n");
    let fresh = std::fs::read_to_string(&names_path)
        .ok()
        .and_then(|t| {
            let (until, listed) = t.split_once('\n')?;
            let until: i64 = until.parse().ok()?;
            Some(listed == stamp && until - Utc::now().timestamp() > RENEW_DAYS * 86_400)
        })
        .unwrap_or(false);
    if fresh && files.cert.exists() && files.key.exists() {
        return Ok((files, false));
    }
    let key = KeyPair::generate().map_err(gen)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(gen)?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    let now = Utc::now();
    let until = now + chrono::Duration::days(SERVER_DAYS);
    let (y, m, d) = ymd(now - chrono::Duration::days(1));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = ymd(until);
    params.not_after = rcgen::date_time_ymd(y, m, d);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::new(ca_params(&ca_key), &ca_key);
    let cert = params.signed_by(&key, &issuer).map_err(gen)?;
    write_private(&files.key, key.serialize_pem().as_bytes()).map_err(io)?;
    std::fs::write(&files.cert, cert.pem()).map_err(io)?;
    std::fs::write(&names_path, format!("{}\n{stamp}", until.timestamp())).map_err(io)?;
    Ok((files, true))
}

/// The CA's parameters, the same every time for the same key (its name comes from the key), so
/// a server certificate made later chains to the CA certificate made first.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let id = hex::encode(&Sha256::digest(key.public_key_raw())[..4]);
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name
        .push(DnType::CommonName, format!("simpang MQTT CA {id}"));
    p.distinguished_name
        .push(DnType::OrganizationName, "simpang");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = Utc::now();
    let (y, m, d) = ymd(now - chrono::Duration::days(1));
    p.not_before = rcgen::date_time_ymd(y, m, d);
    p.not_after = rcgen::date_time_ymd(now.year() + CA_YEARS, 1, 1);
    p
}

/// (year, month, day) of `t`, as rcgen takes dates.
fn ymd(t: chrono::DateTime<Utc>) -> (i32, u8, u8) {
    (t.year(), t.month() as u8, t.day() as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_renewed_on_new_names_with_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let (f, made) = ensure(dir.path(), &names).unwrap();
        assert!(made);
        let ca = std::fs::read_to_string(&f.ca).unwrap();
        let cert = std::fs::read_to_string(&f.cert).unwrap();
        assert!(ca.contains("BEGIN CERTIFICATE") && cert.contains("BEGIN CERTIFICATE"));
        assert_eq!(super::super::secrets::loose_mode(&f.key), None);
        assert_eq!(
            super::super::secrets::loose_mode(&dir.path().join("ca.key")),
            None
        );
        // Again: nothing to do.
        let (_, made) = ensure(dir.path(), &names).unwrap();
        assert!(!made);
        assert_eq!(std::fs::read_to_string(&f.cert).unwrap(), cert);
        // Another name: a new server certificate, the same CA.
        let more = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "broker.kota.example".to_string(),
        ];
        let (_, made) = ensure(dir.path(), &more).unwrap();
        assert!(made);
        assert_ne!(std::fs::read_to_string(&f.cert).unwrap(), cert);
        assert_eq!(std::fs::read_to_string(&f.ca).unwrap(), ca);
        // Both server certificates chain to the one CA, for the names given.
        let verify = |cert: &Path| {
            std::process::Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(&f.ca)
                .arg(cert)
                .output()
                .expect("openssl runs")
        };
        let old = dir.path().join("old.pem");
        std::fs::write(&old, &cert).unwrap();
        for c in [&old, &f.cert] {
            let out = verify(c);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
            .arg(&f.cert)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(
            text.contains("DNS:broker.kota.example") && text.contains("IP Address:127.0.0.1"),
            "{text}"
        );
    }
}
