//! Who gets in: strangers refused wherever a picture or a count could leak, the page after
//! sign-in stays on the site, the SMS gateway needs its token beyond loopback, desk staff reach
//! the wall with a one-use token.

use super::*;

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
