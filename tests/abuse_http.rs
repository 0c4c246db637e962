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

/// The wall, MJPEG, snapshots, SSE, the API and RTSP out refuse a client without credentials
/// (and with wrong ones); with a device token they answer. `/metrics` is not on the wall's
/// listener but on its own, on loopback. A `sites=` list naming one site 10,000 times sends
/// what one copy sends, and the process does not grow.
#[test]
fn strangers_are_refused_and_repeated_sites_cost_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let sites = ["bkb"];
    let samples = Samples::start(&shipped_config(), &sites, None);
    let cfg = write_config(
        dir.path(),
        samples.port,
        &WallOpts {
            layout: "1x1",
            rtsp: true,
            ..Default::default()
        },
    );
    let run = Run::start(&cfg, &sites);
    let wall = run.anon.trim_start_matches("http://").to_string();
    let (device, token) = run.device.clone();
    let bearer = format!("Authorization: Bearer {token}\r\n");
    let short = Duration::from_secs(5);

    // No credentials: 401 with a Basic challenge for every route (a page request from a
    // browser goes to the sign-in page instead).
    let mut tried = 0;
    for path in [
        "/api/wall",
        "/stream/bkb.mjpg",
        "/tiles.mjpg?sites=bkb",
        "/snapshot/bkb.jpg",
        "/events",
        "/incidents/x/snapshot.jpg",
        "/wall.js",
        "/metrics",
        "/api/status",
        "/no-such-route",
    ] {
        for creds in [
            String::new(),
            "Authorization: Bearer not-a-token\r\n".to_string(),
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{device}:wrong"))
            ),
        ] {
            let (status, text) = get(&wall, path, &creds, short);
            assert_eq!(status, 401, "{path} with {creds:?}: {text}");
            assert!(
                header(&text, "www-authenticate").is_some_and(|v| v.starts_with("Basic")),
                "{path}: a challenge VMS software understands: {text}"
            );
            assert!(!text.contains("\r\n\r\n--"), "{path}: no stream part leaks");
            tried += 1;
        }
    }
    let (status, text) = get(&wall, "/", "Accept: text/html\r\n", short);
    assert_eq!(status, 303, "{text}");
    assert_eq!(header(&text, "location"), Some("/login?next=%2F"));
    let (status, text) = get(&wall, "/login?next=/", "", short);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("name=\"password\""),
        "the sign-in page: {text}"
    );

    // With the device token everything answers.
    eventually("a picture of bkb on the wall", HANG, || {
        let (status, text) = get(&wall, "/snapshot/bkb.jpg", &bearer, short);
        (status == 200 && header(&text, "content-type") == Some("image/jpeg")).then_some(())
    });
    let (status, text) = get(&wall, "/api/wall", &bearer, short);
    assert_eq!(status, 200, "{text}");
    let (status, text) = get(&wall, "/events", &bearer, Duration::from_secs(2));
    assert_eq!(status, 200, "{text}");
    assert!(header(&text, "content-type").is_some_and(|c| c.starts_with("text/event-stream")));
    let (status, text) = get(&wall, "/stream/bkb.mjpg", &bearer, Duration::from_secs(3));
    assert_eq!(status, 200);
    assert!(text.contains("Content-Type: image/jpeg"), "MJPEG parts");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{device}:{token}"));
    let (status, _) = get(
        &wall,
        "/api/wall",
        &format!("Authorization: Basic {basic}\r\n"),
        short,
    );
    assert_eq!(status, 200, "HTTP Basic with the device name and token");

    // The metrics listener: loopback, no sign-in needed there, nothing of it on the wall.
    assert!(run.ops.starts_with("http://127.0.0.1:"), "{}", run.ops);
    let ops = run.ops.trim_start_matches("http://").to_string();
    let (status, text) = get(&ops, "/metrics", "", short);
    assert_eq!(status, 200);
    assert!(text.contains("simpang_wall_auth_refused_total"), "{text}");
    let refused = run
        .metrics()
        .sum("simpang_wall_auth_refused_total", &[])
        .unwrap_or(0.0);
    assert!(
        refused >= tried as f64,
        "every refusal counted: {refused} < {tried}"
    );

    // RTSP out: 401 without or with wrong credentials (gst-rtsp-server's own auth).
    let rtsp = run.rtsp_port();
    assert_eq!(rtsp_describe(rtsp, "/annotated/bkb", None), 401);
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{device}:nope"));
    assert_eq!(
        rtsp_describe(rtsp, "/annotated/wall", Some(&format!("Basic {wrong}"))),
        401
    );

    // `sites=` with 10,000 repeats: one copy's bytes. Both read at once, so the machine's
    // load weighs on both the same.
    let pid = run.proc.id();
    let rss_before = rss_kib(pid);
    let many = vec!["bkb"; 10_000].join(",");
    let secs = 6;
    let one = {
        let (a, p, t) = (
            wall.clone(),
            "/tiles.mjpg?sites=bkb".to_string(),
            token.clone(),
        );
        std::thread::spawn(move || bytes_in(a, p, t, secs))
    };
    let rep = {
        let (a, p, t) = (
            wall.clone(),
            format!("/tiles.mjpg?sites={many}"),
            token.clone(),
        );
        std::thread::spawn(move || bytes_in(a, p, t, secs))
    };
    let (s1, b1) = one.join().unwrap();
    let (s2, b2) = rep.join().unwrap();
    let rss_after = rss_kib(pid);
    eprintln!(
        "sites= attack: one copy {} B/s, 10,000 repeats {} B/s; RSS {} -> {} KiB",
        b1 / secs as usize,
        b2 / secs as usize,
        rss_before,
        rss_after
    );
    assert_eq!((s1, s2), (200, 200));
    assert!(b1 > 10_000, "the single stream sends pictures: {b1} B");
    assert!(
        (b2 as f64) < b1 as f64 * 1.6 + 200_000.0,
        "10,000 repeats sent {b2} B where one copy sent {b1} B"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    drop(samples);
}

/// A desk with short header and request timeouts and a small per-address connection cap.
fn tight_desk() -> TestDesk {
    TestDesk::start(
        Kind::Sqlite,
        Opts {
            desk_toml: "[desk.http]\nheader_timeout_s = 2.0\nrequest_timeout_s = 5.0\n\
                        max_connections = 64\nmax_connections_per_ip = 8\n"
                .into(),
            ..Default::default()
        },
    )
}

/// Slowloris (one header byte a second) is cut off at the header timeout; a head past the
/// size limit and a body past the photo limit are refused; connections past the per-address
/// cap are closed unread while other addresses are still served.
#[test]
fn slow_oversized_and_flooding_clients_are_cut_off() {
    let desk = tight_desk();
    let addr = desk.addr;

    // One byte a second: cut off (EOF, reset or 408) well before the head could complete.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    let mut cut = false;
    for b in
        b"GET /lapor HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
    {
        if s.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 64];
        s.set_nonblocking(true).unwrap();
        let r = s.read(&mut probe);
        s.set_nonblocking(false).unwrap();
        match r {
            Ok(0) => {
                cut = true;
                break;
            }
            Ok(_) => {
                cut = String::from_utf8_lossy(&probe).starts_with("HTTP/1.1 408");
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        cut,
        "a head trickling one byte a second was not cut off in {:?}",
        started.elapsed()
    );

    // A 1 MiB header: refused, not buffered.
    let big = "a".repeat(1 << 20);
    let (status, text) = get(
        &addr.to_string(),
        "/lapor",
        &format!("X-Big: {big}\r\n"),
        Duration::from_secs(20),
    );
    assert!(
        status == 431 || status == 0,
        "a 1 MiB header: {}",
        &text[..text.len().min(200)]
    );
    // A body past the photo limit: 413 before it is stored.
    let limit = desk.desk.desk_config().max_photo_bytes;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST /api/reports HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        limit * 4
    )
    .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..(limit * 4 / chunk.len()) {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(
        out.starts_with("HTTP/1.1 413") || out.is_empty(),
        "an oversized body: {out}"
    );
    let before = desk.counts();

    // A flood of idle connections from one address: past the cap they are closed unread, and
    // another address is still served.
    let held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = get(&addr.to_string(), "/healthz", "", Duration::from_secs(10));
    assert_eq!(
        status, 0,
        "a ninth connection from 127.0.0.1 is not answered"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, text) = rt
        .block_on(raw_from(
            Ipv4Addr::new(127, 0, 0, 9),
            addr,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
        ))
        .unwrap();
    assert_eq!(status, 200, "another address during the flood: {text}");
    drop(held);
    eventually("127.0.0.1 served again", Duration::from_secs(30), || {
        (get(&addr.to_string(), "/healthz", "", Duration::from_secs(5)).0 == 200).then_some(())
    });
    assert_eq!(desk.counts(), before, "nothing stored by the attacks");
}

/// 200 parallel wrong passwords for one account from 40 addresses: each (account, address)
/// pair and the account as a whole back off, so argon2 runs a bounded number of times and the
/// rest are refused with 429 before any work; the real user, on the browser that signed in
/// before (its trusted-device cookie), still signs in during and right after the attack.
#[test]
fn parallel_wrong_passwords_are_bounded_and_the_real_user_gets_in() {
    let desk = TestDesk::start(Kind::Sqlite, Opts::default());
    desk.user("kasi", simpang::desk::Role::Operator, None);
    let addr = desk.addr;
    let password = support::desk::password("kasi");
    let login = |pw: &str, cookie: &str| {
        let body = serde_json::json!({ "username": "kasi", "password": pw }).to_string();
        format!(
            "POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n{cookie}Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The real user signs in once from the office: the browser becomes a trusted device.
    let (status, text) = rt
        .block_on(raw_from(
            Ipv4Addr::new(127, 0, 0, 1),
            addr,
            login(&password, ""),
        ))
        .unwrap();
    assert_eq!(status, 200, "{text}");
    let device = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .find(|c| c.starts_with("simpang_desk_device="))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("a trusted-device cookie: {text}"))
        .to_string();

    // The attack.
    let statuses: Vec<u16> = rt.block_on(async {
        let tries = (0..200u32).map(|i| {
            let src = Ipv4Addr::new(127, 0, 1, 10 + (i % 40) as u8);
            let req = login(&format!("tebakan-{i}"), "");
            tokio::spawn(async move { raw_from(src, addr, req).await.map(|r| r.0).unwrap_or(0) })
        });
        let mut out = Vec::new();
        for t in tries.collect::<Vec<_>>() {
            out.push(t.await.unwrap());
        }
        out
    });
    let mut by: BTreeMap<u16, usize> = BTreeMap::new();
    for s in &statuses {
        *by.entry(*s).or_default() += 1;
    }
    eprintln!("200 parallel wrong passwords from 40 addresses: {by:?}");
    assert_eq!(by.get(&200), None, "no wrong password signs in");
    let checked = by.get(&422).copied().unwrap_or(0);
    let refused = by.get(&429).copied().unwrap_or(0) + by.get(&503).copied().unwrap_or(0);
    assert_eq!(checked + refused, 200, "every try answered: {by:?}");
    // The account takes 20 untrusted failures, then one untrusted try per 10 s.
    assert!(
        checked <= 26,
        "{checked} of 200 wrong passwords reached argon2: {by:?}"
    );

    // A stranger with the right password from a new address meets the account's slowdown
    // (unless its 10 s passed meanwhile on a loaded machine): printed, not asserted.
    let (stranger, _) = rt
        .block_on(raw_from(
            Ipv4Addr::new(127, 0, 2, 1),
            addr,
            login(&password, ""),
        ))
        .unwrap();
    eprintln!("the right password from a new address right after the attack: {stranger}");
    // The real user's browser gets in.
    let cookie = format!("Cookie: {device}\r\n");
    let (status, text) = rt
        .block_on(raw_from(
            Ipv4Addr::new(127, 0, 0, 1),
            addr,
            login(&password, &cookie),
        ))
        .unwrap();
    assert_eq!(status, 200, "the trusted device signs in: {text}");
}

/// After sign-in the desk and the wall go only to a path of their own site, whatever `next`
/// says.
#[test]
fn no_open_redirect_after_sign_in() {
    let desk = TestDesk::start(Kind::Sqlite, Opts::default());
    desk.user("kasi", simpang::desk::Role::Operator, None);
    let password = support::desk::password("kasi");
    let addr = desk.addr.to_string();
    for next in [
        "/%09/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "/%2F%2Fevil.example",
        "%2F%2Fevil.example",
        "/ /evil.example",
        "javascript:alert(1)",
    ] {
        let enc: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let (status, page) = get(
            &addr,
            &format!("/login?next={enc}"),
            "",
            Duration::from_secs(10),
        );
        assert_eq!(status, 200);
        // The form's CSRF token and cookie, then the post as the form sends it.
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string();
        let cookies: Vec<String> = page
            .lines()
            .filter_map(|l| {
                l.strip_prefix("set-cookie: ")
                    .or(l.strip_prefix("Set-Cookie: "))
            })
            .filter_map(|c| c.split(';').next().map(str::to_string))
            .collect();
        let body = format!(
            "username=kasi&password={}&next={enc}&csrf={csrf}",
            url::form_urlencoded::byte_serialize(password.as_bytes()).collect::<String>()
        );
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let cookie = if cookies.is_empty() {
            String::new()
        } else {
            format!("Cookie: {}\r\n", cookies.join("; "))
        };
        write!(
            s,
            "POST /login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n{cookie}Connection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert_eq!(status_of(&out), 303, "sign-in with next={next:?}: {out}");
        let to = header(&out, "location").unwrap_or_default();
        assert!(
            to.starts_with('/') && !to.starts_with("//") && !to.starts_with("/\\"),
            "next={next:?} sent the browser to {to:?}"
        );
        let resolved = url::Url::parse(&format!("http://{addr}/login"))
            .unwrap()
            .join(to)
            .unwrap();
        assert_eq!(
            resolved.host_str(),
            Some("127.0.0.1"),
            "next={next:?} -> {to:?} leaves the site"
        );
    }
}

/// A desk that listens beyond loopback without `sms_token` refuses to start (anyone on the
/// network could post SMS as any sender), naming the field, from the config file or from
/// `--listen`, before it opens anything.
#[test]
fn sms_token_is_required_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, desk: &str| {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "data_dir = \"data\"\n{}\n[desk]\n{desk}\n[desk.mqtt]\nbroker = \"none\"\n",
                support::desk::SITES
            ),
        )
        .unwrap();
        path
    };
    let db = format!("sqlite://{}", dir.path().join("desk.db").display());
    let check = |cfg: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(support::bin())
            .arg("desk")
            .arg("--config")
            .arg(cfg)
            .args(["--db", &db])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let lan = write("lan.toml", "listen = \"0.0.0.0:0\"");
    let (code, text) = check(&lan, &[]);
    assert_ne!(code, Some(0), "{text}");
    assert!(
        text.contains("lan.toml") && text.contains("sms_token") && text.contains("loopback"),
        "the error names the file and the field: {text}"
    );
    let local = write("local.toml", "listen = \"127.0.0.1:0\"");
    let (code, text) = check(&local, &["--listen", "0.0.0.0:0"]);
    assert_ne!(code, Some(0), "--listen beyond loopback: {text}");
    assert!(text.contains("sms_token"), "{text}");
    assert!(!dir.path().join("desk.db").exists(), "nothing opened");
}

/// PIN guesses do not stall the desk's writes: while 40 wrong-PIN posts from 20 addresses keep
/// the password checks busy (each check held 400 ms longer than argon2 takes), an incident from
/// a camera is stored within 2 s. The checks run outside any write transaction, on a bounded
/// pool; a check held inside `BEGIN IMMEDIATE` would queue the incident behind all of them.
#[test]
fn pin_guesses_do_not_stall_incident_intake() {
    use simpang::model::{IncidentEvent, IncidentKind};
    let desk = TestDesk::start(
        Kind::Sqlite,
        Opts {
            desk_toml: "debug_password_check_delay_ms = 400\n".into(),
            ..Default::default()
        },
    );
    let (ticket, _pin) =
        support::desk::file_report(&desk.anon(), "Lampu jalan mati", "street_lights", None);
    let addr = desk.addr;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flood: Vec<_> = (0..40u32)
        .map(|i| {
            let body = serde_json::json!({ "pin": format!("{:06}", i), "satisfied": true })
                .to_string();
            let req = format!(
                "POST /api/track/{ticket}/confirm HTTP/1.1\r\nHost: x\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let src = Ipv4Addr::new(127, 0, 3, 10 + (i % 20) as u8);
            let done = done.clone();
            rt.spawn(async move {
                let r = raw_from(src, addr, req).await.map(|r| r.0).unwrap_or(0);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                r
            })
        })
        .collect();
    // Let the guesses fill the check pool.
    std::thread::sleep(Duration::from_millis(600));
    let msg = support::desk::incident(
        "bkb-lajur-traffic_jam-9",
        1,
        IncidentEvent::New,
        "bkb",
        IncidentKind::TrafficJam,
        "macet",
        None,
    );
    let started = Instant::now();
    desk.block_on(desk.desk.intake.apply_incident(
        "simpang/v1/sites/bkb/incidents",
        &support::desk::to_bytes(&msg),
    ))
    .expect("the incident is stored");
    let took = started.elapsed();
    let answered = done.load(std::sync::atomic::Ordering::SeqCst);
    let statuses: Vec<u16> = flood.into_iter().map(|t| rt.block_on(t).unwrap()).collect();
    eprintln!("incident stored in {took:?} during the PIN flood ({answered}/40 guesses answered by then); statuses {statuses:?}");
    assert!(
        answered < 40,
        "the flood was over before the incident came: nothing was measured"
    );
    assert!(
        took < Duration::from_secs(2),
        "an incident waited {took:?} behind PIN checks"
    );
    assert!(
        !statuses.contains(&200),
        "no wrong PIN confirms the report: {statuses:?}"
    );
}

/// The public side's rate limits as shipped: citizen reports from one address past the burst
/// get 429 with `Retry-After` before anything is stored, while another address still files;
/// one phone number past its own burst is refused from any address.
#[test]
fn public_endpoints_are_rate_limited_per_address_and_phone() {
    let desk = TestDesk::start(
        Kind::Sqlite,
        Opts {
            desk_toml: "[desk.limits]\nreports_per_ip = { per_hour = 30, burst = 3 }\n\
                        per_phone = { per_hour = 20, burst = 2 }\n"
                .into(),
            ..Default::default()
        },
    );
    let addr = desk.addr;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = |src: Ipv4Addr, phone: Option<&str>| {
        use support::desk::Part;
        let mut fields = vec![
            ("title", Part::Text("Jalan berlubang besar")),
            ("category", Part::Text("roads")),
            (
                "description",
                Part::Text("Sudah tiga hari belum ada penanganan."),
            ),
            ("address", Part::Text("Jl. Merdeka, Palembang")),
            ("lat", Part::Text("-2.9875")),
            ("lon", Part::Text("104.7570")),
        ];
        if let Some(p) = phone {
            fields.push(("phone", Part::Text(p)));
        }
        let (ct, body) = support::desk::multipart(&fields);
        let mut req = format!(
            "POST /api/reports HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let req = String::from_utf8(req).expect("a text-only form");
        rt.block_on(raw_from(src, addr, req)).unwrap()
    };
    let a = Ipv4Addr::new(127, 0, 4, 1);
    for i in 0..3 {
        let (status, text) = report(a, None);
        assert_eq!(status, 201, "report {i}: {text}");
    }
    let before = desk.counts();
    let (status, text) = report(a, None);
    assert_eq!(status, 429, "{text}");
    assert!(header(&text, "retry-after").is_some_and(|v| v.parse::<u32>().unwrap_or(0) >= 1));
    assert_eq!(desk.counts(), before, "nothing stored past the limit");
    // Another address files; one phone number is limited across addresses.
    let phone = "081234567890";
    for i in 0..2 {
        let (status, text) = report(Ipv4Addr::new(127, 0, 4, 10 + i), Some(phone));
        assert_eq!(status, 201, "phone report {i}: {text}");
    }
    let (status, text) = report(Ipv4Addr::new(127, 0, 4, 20), Some(phone));
    assert_eq!(
        status, 429,
        "a phone past its burst, from a new address: {text}"
    );
}

/// Desk staff reach the wall through the desk's "Video wall" link: a one-minute, one-use token
/// signed with the wall's key becomes a wall session for the roles the wall lets in; the same
/// token again, a forged one and a role the wall does not let in are refused.
#[test]
fn desk_staff_reach_the_wall_with_a_one_use_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        9,
        &WallOpts {
            layout: "1x1",
            ..Default::default()
        },
    );
    let run = Run::start(&cfg, &["bkb"]);
    let wall = run.anon.trim_start_matches("http://").to_string();
    let key = dir.path().join("data").join("wall.key");
    assert!(key.exists(), "the wall made its key at start");
    let desk = TestDesk::start(
        Kind::Sqlite,
        Opts {
            desk_toml: format!(
                "wall_url = \"{}\"\n\n[wall.auth]\nkey_file = {:?}\n",
                run.anon,
                key.display().to_string()
            ),
            ..Default::default()
        },
    );
    desk.user("kasi", simpang::desk::Role::Operator, None);
    desk.user("dinas", simpang::desk::Role::Agency, Some("dishub"));
    let short = Duration::from_secs(10);

    let hand_off = |who: &str| -> String {
        let r = desk.login(who).get("/wall");
        assert_eq!(r.status, 303, "{who}: {}", r.text());
        let to = r.header("location").unwrap_or_default().to_string();
        assert!(
            to.starts_with(&format!("{}/auth/desk?token=", run.anon)),
            "{to}"
        );
        to.trim_start_matches(&run.anon).to_string()
    };
    // A session cookie with a value, if the answer set one.
    let session = |answer: &str| -> Option<String> {
        let head = answer.split("\r\n\r\n").next().unwrap_or_default();
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case("set-cookie"))
            .filter_map(|(_, v)| v.trim().strip_prefix("simpang_wall_session="))
            .map(|v| v.split(';').next().unwrap_or_default().to_string())
            .find(|v| !v.is_empty())
    };
    let path = hand_off("kasi");
    let (status, text) = get(&wall, &path, "", short);
    assert_eq!(status, 303, "{text}");
    let cookie = session(&text).expect("a wall session cookie");
    let (status, text) = get(
        &wall,
        "/api/wall",
        &format!("Cookie: simpang_wall_session={cookie}\r\n"),
        short,
    );
    assert_eq!(status, 200, "signed in through the desk: {text}");
    // One use only.
    let (_, text) = get(&wall, &path, "", short);
    assert_eq!(session(&text), None, "a used token again: {text}");
    // A token with one character changed.
    let mut forged = path.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let (_, text) = get(&wall, &forged, "", short);
    assert_eq!(session(&text), None, "a forged token: {text}");
    // A fresh token works once more (the refusals did not lock anything).
    let (_, text) = get(&wall, &hand_off("kasi"), "", short);
    assert!(session(&text).is_some(), "{text}");
    // An agency's staff: the desk offers no way to the wall.
    let r = desk.login("dinas").get("/wall");
    assert_eq!(r.status, 403, "{}", r.text());
}
