//! The HTTP side read as an attacker on the city network would (issue 16): against a real
//! `simpang run` (wall, RTSP out, metrics listener) and a real desk on loopback, each test
//! starting what it needs. Strangers are refused everywhere a picture or a count could leak; a
//! `sites=` list repeating one id 10,000 times costs what one copy costs; slow, oversized and
//! flooding clients are cut off; 200 parallel wrong passwords from 40 addresses reach argon2
//! a bounded number of times while the real user, on the browser that signed in before, still
//! gets in; the page after sign-in never leaves the site.
//!
//! Other addresses than 127.0.0.1 are real: Linux routes all of 127.0.0.0/8 to loopback, so a
//! client socket bound to 127.0.0.N is a different client to the server.

#[path = "../support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use support::desk::{Kind, Opts, TestDesk};
use support::simpang::{Run, Samples};
use support::wait::eventually;
use support::wall::{shipped_config, write_config, WallOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HANG: Duration = Duration::from_secs(180);

/// One raw HTTP/1.1 request (`Connection: close`) from `src`; the status and the whole answer.
async fn raw_from(src: Ipv4Addr, addr: SocketAddr, req: String) -> std::io::Result<(u16, String)> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((src, 0)))?;
    let mut s = sock.connect(addr).await?;
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), s.read_to_end(&mut out))
        .await
        .map_err(|_| std::io::Error::other("no answer in 120 s"))??;
    let text = String::from_utf8_lossy(&out).into_owned();
    Ok((status_of(&text), text))
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `GET path` with extra header lines, over a fresh connection; status and whole answer (a
/// stream is read for at most `read_for`).
fn get(addr: &str, path: &str, headers: &str, read_for: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(read_for)).unwrap();
    // A server that refuses the request (a head too large, a connection past the cap) may
    // close before it is all written: then the answer is whatever came, status 0 for none.
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n"
    );
    let mut out = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 16384];
    while start.elapsed() < read_for {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.len() > 4 << 20 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    (status_of(&text), text)
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Bytes an MJPEG `path` sends in `secs`, read with a bearer token.
fn bytes_in(addr: String, path: String, token: String, secs: u64) -> (u16, usize) {
    let (status, text) = get(
        &addr,
        &path,
        &format!("Authorization: Bearer {token}\r\n"),
        Duration::from_secs(secs),
    );
    (status, text.len())
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// An RTSP `DESCRIBE` with an optional `Authorization` value; the status code.
fn rtsp_describe(port: u16, path: &str, auth: Option<&str>) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("RTSP out accepts connections");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "DESCRIBE rtsp://127.0.0.1:{port}{path} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n{auth}\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.starts_with("RTSP/1.0 "),
        "not an RTSP answer: {text:?}"
    );
    status_of(&text)
}

mod access;
mod floods;
