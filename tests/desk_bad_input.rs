//! Bad input: every refusal is a clear 4xx (or, for MQTT, a dead-letter row with the reason)
//! and nothing is half-stored. Injection strings are stored as given and shown escaped.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use simpang::desk::{IntakeOutcome, Role};
use simpang::model::{IncidentEvent, IncidentKind};
use support::desk::{file_report, incident, jpeg, png, to_bytes, Kind, Opts, Part, TestDesk};

const MAX_PHOTO: usize = 40_000;

fn desk() -> TestDesk {
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            desk_toml: format!("max_photo_bytes = {MAX_PHOTO}"),
            ..Default::default()
        },
    );
    t.user("operator", Role::Operator, None);
    t.user("admin", Role::Admin, None);
    t
}

/// The fields of a valid report, as (name, value) pairs a case then edits.
fn good() -> Vec<(&'static str, String)> {
    vec![
        ("title", "Jalan berlubang di Jl. Demang Lebar Daun".into()),
        ("category", "roads".into()),
        (
            "description",
            "Lubang sedalam 20 cm di lajur kiri, sudah dua motor jatuh.".into(),
        ),
        ("address", "Jl. Demang Lebar Daun, Ilir Barat I".into()),
    ]
}

fn with(
    mut f: Vec<(&'static str, String)>,
    name: &'static str,
    v: Option<&str>,
) -> Vec<(&'static str, String)> {
    f.retain(|(k, _)| *k != name);
    if let Some(v) = v {
        f.push((name, v.to_string()));
    }
    f
}

#[test]
fn citizen_reports_with_bad_fields_or_photos_are_refused_whole() {
    let t = desk();
    let h = t.anon();
    let small_jpeg = jpeg(64, 48, 3);
    let small_png = png(32, 32);
    let big_jpeg = {
        let mut b = vec![0xFF, 0xD8, 0xFF];
        b.resize(MAX_PHOTO + 1, 0x55);
        b
    };
    let truncated = small_jpeg[..small_jpeg.len() - 40].to_vec();
    let exact = {
        // A valid JPEG of exactly the limit: padding inside a COM segment after SOI.
        let mut b = small_jpeg.clone();
        let pad = MAX_PHOTO - b.len() - 4;
        let mut seg = vec![0xFF, 0xFE, ((pad + 2) >> 8) as u8, ((pad + 2) & 0xFF) as u8];
        seg.extend(std::iter::repeat_n(b'x', pad));
        b.splice(2..2, seg);
        assert_eq!(b.len(), MAX_PHOTO);
        b
    };
    let long150 = "J".repeat(150);
    let long151 = "J".repeat(151);
    // (case, fields, photo (file name, declared type, bytes), status, field named in the error)
    type Photo<'a> = Option<(&'a str, &'a str, &'a [u8])>;
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, String)>,
        Photo<'a>,
        u16,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        ("valid", good(), None, 201, None),
        (
            "valid with jpeg",
            good(),
            Some(("a.jpg", "image/jpeg", &small_jpeg)),
            201,
            None,
        ),
        (
            "png declared as jpeg",
            good(),
            Some(("a.jpg", "image/jpeg", &small_png)),
            201,
            None,
        ),
        (
            "jpeg exactly at the limit",
            good(),
            Some(("a.jpg", "image/jpeg", &exact)),
            201,
            None,
        ),
        (
            "title of 150",
            with(good(), "title", Some(&long150)),
            None,
            201,
            None,
        ),
        (
            "coordinates at the edge",
            with(with(good(), "lat", Some("90")), "lon", Some("-180")),
            None,
            201,
            None,
        ),
        (
            "empty phone is no phone",
            with(good(), "phone", Some("  ")),
            None,
            201,
            None,
        ),
        (
            "no title",
            with(good(), "title", None),
            None,
            422,
            Some("title"),
        ),
        (
            "blank title",
            with(good(), "title", Some("   ")),
            None,
            422,
            Some("title"),
        ),
        (
            "short title",
            with(good(), "title", Some("abc")),
            None,
            422,
            Some("title"),
        ),
        (
            "title of 151",
            with(good(), "title", Some(&long151)),
            None,
            422,
            Some("title"),
        ),
        (
            "no description",
            with(good(), "description", None),
            None,
            422,
            Some("description"),
        ),
        (
            "no address",
            with(good(), "address", None),
            None,
            422,
            Some("address"),
        ),
        (
            "no category",
            with(good(), "category", None),
            None,
            422,
            Some("category"),
        ),
        (
            "unknown category",
            with(good(), "category", Some("ufo")),
            None,
            422,
            Some("category"),
        ),
        (
            "camera-only category",
            with(good(), "category", Some("camera_fault")),
            None,
            422,
            Some("category"),
        ),
        (
            "lat without lon",
            with(good(), "lat", Some("-2.97")),
            None,
            422,
            Some("lat"),
        ),
        (
            "lat not a number",
            with(with(good(), "lat", Some("abc")), "lon", Some("104.7")),
            None,
            422,
            Some("lat"),
        ),
        (
            "lat beyond 90",
            with(with(good(), "lat", Some("90.0001")), "lon", Some("104.7")),
            None,
            422,
            Some("lat"),
        ),
        (
            "lon beyond 180",
            with(with(good(), "lat", Some("-2.9")), "lon", Some("-180.5")),
            None,
            422,
            Some("lon"),
        ),
        (
            "lat NaN",
            with(with(good(), "lat", Some("NaN")), "lon", Some("104.7")),
            None,
            422,
            Some("lat"),
        ),
        (
            "bad phone",
            with(good(), "phone", Some("12345")),
            None,
            422,
            Some("phone"),
        ),
        (
            "text as photo",
            good(),
            Some(("foto.jpg", "image/jpeg", b"ini bukan gambar")),
            422,
            Some("photo"),
        ),
        (
            "html as photo",
            good(),
            Some((
                "x.png",
                "image/png",
                b"<html><script>alert(1)</script></html>",
            )),
            422,
            Some("photo"),
        ),
        (
            "gif",
            good(),
            Some(("a.gif", "image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")),
            422,
            Some("photo"),
        ),
        (
            "truncated jpeg",
            good(),
            Some(("a.jpg", "image/jpeg", &truncated)),
            422,
            Some("photo"),
        ),
        (
            "empty file",
            good(),
            Some(("a.jpg", "image/jpeg", b"")),
            422,
            Some("photo"),
        ),
        (
            "photo one byte over",
            good(),
            Some(("a.jpg", "image/jpeg", &big_jpeg)),
            413,
            None,
        ),
    ];
    for (name, fields, photo, status, field) in cases {
        let before = t.counts();
        let mut parts: Vec<(&str, Part)> = fields
            .iter()
            .map(|(k, v)| (*k, Part::Text(v.as_str())))
            .collect();
        if let Some((file, ct, bytes)) = photo {
            parts.push((
                "photo",
                Part::File {
                    name: file,
                    content_type: ct,
                    bytes,
                },
            ));
        }
        let r = h.post_multipart("/api/reports", &parts);
        assert_eq!(r.status, status, "{name}: {}", r.text());
        let j = r.json();
        let after = t.counts();
        if status == 201 {
            assert_eq!(after.reports, before.reports + 1, "{name}");
            assert_eq!(
                after.attachments,
                before.attachments + i64::from(photo.is_some()),
                "{name}"
            );
        } else {
            assert!(
                j["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{name}: {j}"
            );
            assert_eq!(after, before, "{name}: nothing stored");
        }
        if let Some(f) = field {
            let named: Vec<&str> = j["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap())
                .collect();
            assert!(named.contains(&f), "{name}: {j}");
        }
    }
    // A body far over the limit is cut off by the server before it is all read: the answer
    // comes while the client is still sending, so read it from a raw socket as it arrives.
    let before = t.counts();
    let huge = vec![0x42u8; MAX_PHOTO * 5];
    let fields = good();
    let mut parts: Vec<(&str, Part)> = fields
        .iter()
        .map(|(k, v)| (*k, Part::Text(v.as_str())))
        .collect();
    parts.push((
        "photo",
        Part::File {
            name: "big.jpg",
            content_type: "image/jpeg",
            bytes: &huge,
        },
    ));
    let (ct, body) = support::desk::multipart(&parts);
    assert_eq!(
        status_while_sending(t.addr, "/api/reports", &ct, body),
        Some(413)
    );
    // Not multipart at all.
    assert_eq!(
        h.post_json("/api/reports", &json!({ "title": "x" })).status,
        400
    );
    assert_eq!(t.counts(), before);
}

/// Sends a POST on a raw connection, writing the body from another thread, and returns the
/// status of the response (read as soon as it arrives).
fn status_while_sending(
    addr: std::net::SocketAddr,
    path: &str,
    ct: &str,
    body: Vec<u8>,
) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok()?;
    let head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let mut w = s.try_clone().ok()?;
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(head.as_bytes());
        for chunk in body.chunks(4096) {
            if w.write_all(chunk).is_err() {
                break;
            }
        }
    });
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let _ = writer.join();
    let line = String::from_utf8_lossy(&got);
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn the_html_form_shows_errors_and_keeps_what_was_typed() {
    let t = desk();
    let h = t.anon();
    let before = t.counts();
    let r = h.post_multipart(
        "/lapor",
        &[
            ("title", Part::Text("Lampu mati <b>tebal</b>")),
            ("category", Part::Text("street_lights")),
            ("description", Part::Text("pendek")),
            ("address", Part::Text("")),
            ("phone", Part::Text("0812")),
        ],
    );
    assert_eq!(r.status, 422);
    let page = r.text();
    for msg in [
        "Isi laporan harus 10 sampai 5000 karakter",
        "Alamat wajib diisi",
        "Nomor HP tidak valid",
    ] {
        assert!(page.contains(msg), "{msg}");
    }
    assert!(
        page.contains("value=\"Lampu mati &lt;b&gt;tebal&lt;/b&gt;\""),
        "typed title kept, escaped"
    );
    assert!(page.contains("<option value=\"street_lights\" selected>"));
    let r = h.post_multipart(
        "/lapor",
        &[
            ("title", Part::Text("Lampu jalan mati total")),
            ("category", Part::Text("street_lights")),
            ("description", Part::Text("Sudah seminggu gelap gulita.")),
            ("address", Part::Text("Jl. Rajawali")),
            (
                "photo",
                Part::File {
                    name: "a.jpg",
                    content_type: "image/jpeg",
                    bytes: &vec![0xFF; MAX_PHOTO + 10],
                },
            ),
        ],
    );
    assert_eq!(r.status, 413);
    assert!(r.text().contains("Foto terlalu besar"));
    assert!(
        r.text().contains("value=\"Lampu jalan mati total\""),
        "typed fields kept"
    );
    assert_eq!(t.counts(), before);
    let ok = h.post_multipart(
        "/lapor",
        &[
            ("title", Part::Text("Lampu jalan mati total")),
            ("category", Part::Text("street_lights")),
            ("description", Part::Text("Sudah seminggu gelap gulita.")),
            ("address", Part::Text("Jl. Rajawali")),
            (
                "photo",
                Part::File {
                    name: "",
                    content_type: "application/octet-stream",
                    bytes: b"",
                },
            ),
        ],
    );
    assert_eq!(ok.status, 201, "an empty file input is no photo");
    assert!(ok.text().contains("PIN pelapor"));
}

#[test]
fn injection_strings_are_stored_as_given_and_shown_escaped() {
    let t = desk();
    let title = "<script>alert(\"x\")</script> Sampah'); DROP TABLE reports;--";
    let desc = "<img src=x onerror=alert(1)> ' OR '1'='1 -- \"quoted\" & more";
    let addr = "Jl. Merdeka'; DELETE FROM users; --";
    let r = t.anon().post_multipart(
        "/api/reports",
        &[
            ("title", Part::Text(title)),
            ("category", Part::Text("garbage")),
            ("description", Part::Text(desc)),
            ("address", Part::Text(addr)),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let ticket = r.json()["ticket"].as_str().unwrap().to_string();
    let sms = t.anon().post_json(
        "/api/sms",
        &json!({ "from": "081211112222", "text": "LAPOR <b onmouseover=alert(2)>banjir</b>" }),
    );
    assert_eq!(sms.status, 201);
    let op = t.login("operator");
    let v = op.get(&format!("/api/reports/{ticket}")).json();
    assert_eq!(
        (
            v["title"].as_str(),
            v["description"].as_str(),
            v["address"].as_str()
        ),
        (Some(title), Some(desc), Some(addr))
    );
    op.act(
        &ticket,
        "messages",
        json!({ "text": "<iframe src=//evil></iframe>" }),
    );
    op.act(
        &ticket,
        "disposition",
        json!({ "agency": "dlh", "note": "<svg onload=alert(3)>" }),
    );
    // Every table is still there and whole.
    assert!(t.counts().reports >= 2);
    assert_eq!(op.get("/api/me").status, 200);
    for (who, path) in [
        (&op, format!("/reports/{ticket}")),
        (&op, "/reports".to_string()),
        (&op, "/dashboard".to_string()),
        (&op, "/audit".to_string()),
        (&t.anon(), format!("/track/{ticket}")),
    ] {
        let page = who.get(&path).text();
        for raw in [
            "<script>alert",
            "<img src=x",
            "<iframe",
            "<svg onload",
            "<b onmouseover",
        ] {
            assert!(!page.contains(raw), "{path} contains raw {raw:?}");
        }
        assert!(
            page.contains("&lt;script&gt;") || !page.contains("alert(&quot;x&quot;)"),
            "{path}"
        );
    }
    let detail = op.get(&format!("/reports/{ticket}")).text();
    for escaped in [
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;",
        "&lt;img src=x onerror=alert(1)&gt;",
        "&lt;iframe src=//evil&gt;&lt;/iframe&gt;",
        "DROP TABLE reports;--",
    ] {
        assert!(detail.contains(escaped), "{escaped}");
    }
    // Searching with SQL in the words is just a search.
    let hits = op
        .get("/api/reports?q=%27%29%3B%20DROP%20TABLE%20reports%3B--")
        .json();
    assert_eq!(hits["total"], 1);
}

#[test]
fn malformed_json_gets_a_clear_4xx_and_changes_nothing() {
    let t = desk();
    let (ticket, _) = file_report(&t.anon(), "Got mampet di Jl. Veteran", "flood", None);
    let op = t.login("operator");
    let before = t.counts();
    let audit_before = t.audit_actions(&ticket);
    // (path, content type, body, status)
    let cases: Vec<(String, &str, &str, u16)> = vec![
        (
            "/api/login".into(),
            "application/json",
            "{\"username\":",
            400,
        ),
        ("/api/login".into(), "application/json", "[]", 422),
        ("/api/login".into(), "text/plain", "{}", 415),
        (
            "/api/login".into(),
            "application/json",
            "{\"username\":\"operator\"}",
            422,
        ),
        (
            "/api/login".into(),
            "application/json",
            "{\"username\":\"operator\",\"password\":\"x\",\"admin\":true}",
            422,
        ),
        (
            format!("/api/reports/{ticket}/disposition"),
            "application/json",
            "{agency: dlh}",
            400,
        ),
        (
            format!("/api/reports/{ticket}/disposition"),
            "application/json",
            "",
            400,
        ),
        (
            format!("/api/reports/{ticket}/disposition"),
            "application/json",
            "{\"agency\": 5}",
            422,
        ),
        (
            format!("/api/reports/{ticket}/disposition"),
            "application/json",
            "{\"agency\": \"pupr\", \"sql\": \"1\"}",
            422,
        ),
        (
            format!("/api/reports/{ticket}/disposition"),
            "application/x-www-form-urlencoded",
            "agency=pupr",
            415,
        ),
        (
            format!("/api/reports/{ticket}/confirm"),
            "application/json",
            "{\"satisfied\": \"ya\"}",
            422,
        ),
        (
            format!("/api/track/{ticket}/confirm"),
            "application/json",
            "{\"pin\": 123456, \"satisfied\": true}",
            422,
        ),
        (
            format!("/api/track/{ticket}/confirm"),
            "application/json",
            "{\"pin\": \"123456\"}",
            422,
        ),
        (
            format!("/api/track/{ticket}/messages"),
            "application/json",
            "\"just a string\"",
            422,
        ),
        (
            "/api/users".into(),
            "application/json",
            "{\"username\": \"x\"",
            400,
        ),
        (
            "/api/sms".into(),
            "application/json",
            "{\"from\": null, \"text\": \"LAPOR x\"}",
            422,
        ),
    ];
    for (path, ct, body, status) in cases {
        let r = op.post_raw(&path, ct, body.as_bytes());
        assert_eq!(r.status, status, "{path} {body:?}: {}", r.text());
        let j: Value = r.json();
        assert!(
            j["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {j}"
        );
    }
    assert_eq!(t.counts().reports, before.reports);
    assert_eq!(
        t.audit_actions(&ticket),
        audit_before,
        "no change on the report"
    );
}

#[test]
fn malformed_incident_messages_go_to_the_dead_letter_table() {
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            desk_toml: String::new(),
            ..Default::default()
        },
    );
    t.user("operator", Role::Operator, None);
    let topic = "simpang/v1/sites/ampera/incidents";
    let snap = jpeg(320, 180, 1);
    let good = incident(
        "ampera-lajur-traffic_jam-1",
        1,
        IncidentEvent::New,
        "ampera",
        IncidentKind::TrafficJam,
        "macet",
        Some(&snap),
    );
    let good_json: Value = serde_json::to_value(&good).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = good_json.clone();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let text_b64 = b64(b"not a picture at all");
    let text_sha = support::desk::sha256_hex(b"not a picture at all");
    // (case, topic, payload, words the reason must contain)
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        ("empty", topic, Vec::new(), "malformed JSON"),
        (
            "truncated",
            topic,
            b"{\"schema\":\"simpang.incident/1\",\"event\":\"new\"".to_vec(),
            "malformed JSON",
        ),
        ("not utf-8", topic, vec![0xFF, 0xFE, 0x00], "malformed JSON"),
        (
            "array",
            topic,
            b"[1,2,3]".to_vec(),
            "not a simpang.incident/1 message",
        ),
        (
            "other schema",
            topic,
            edit(&|v| v["schema"] = json!("simpang.incident/2")),
            "unknown schema",
        ),
        (
            "no incident",
            topic,
            edit(&|v| {
                v.as_object_mut().unwrap().remove("incident");
            }),
            "missing field `incident`",
        ),
        (
            "unknown top-level field",
            topic,
            edit(&|v| v["extra"] = json!(1)),
            "unknown field",
        ),
        (
            "unknown event",
            topic,
            edit(&|v| v["event"] = json!("started")),
            "unknown variant",
        ),
        (
            "unknown kind",
            topic,
            edit(&|v| v["incident"]["kind"] = json!("fire")),
            "unknown variant",
        ),
        (
            "seq negative",
            topic,
            edit(&|v| v["incident"]["seq"] = json!(-1)),
            "not a simpang.incident/1",
        ),
        (
            "bad time",
            topic,
            edit(&|v| v["incident"]["started_at"] = json!("kemarin")),
            "not a simpang.incident/1",
        ),
        (
            "empty id",
            topic,
            edit(&|v| v["incident"]["id"] = json!("")),
            "incident id",
        ),
        (
            "id too long",
            topic,
            edit(&|v| v["incident"]["id"] = json!("x".repeat(201))),
            "incident id",
        ),
        (
            "empty title",
            topic,
            edit(&|v| v["incident"]["title"] = json!(" ")),
            "title is empty",
        ),
        (
            "site differs from topic",
            "simpang/v1/sites/bkb/incidents",
            to_bytes(&good),
            "differs from incident.site",
        ),
        (
            "latitude",
            topic,
            edit(&|v| v["incident"]["lat"] = json!(123.0)),
            "out of range",
        ),
        (
            "snapshot not base64",
            topic,
            edit(&|v| v["incident"]["snapshot"]["data_base64"] = json!("@@@ not base64 @@@")),
            "not base64",
        ),
        (
            "snapshot sha mismatch",
            topic,
            edit(&|v| v["incident"]["snapshot"]["sha256"] = json!("00".repeat(32))),
            "does not match",
        ),
        (
            "snapshot not an image",
            topic,
            edit(&|v| {
                v["incident"]["snapshot"]["data_base64"] = json!(text_b64);
                v["incident"]["snapshot"]["sha256"] = json!(text_sha);
            }),
            "snapshot: berkas bukan gambar",
        ),
        (
            "too large",
            topic,
            {
                let mut b = to_bytes(&good);
                b.resize(8 * 1024 * 1024 + 1, b' ');
                b
            },
            "exceeds",
        ),
    ];
    for (name, topic, payload, why) in cases {
        let before = t.counts();
        let out = t
            .block_on(t.desk.intake.apply_incident(topic, &payload))
            .expect("storage works");
        match out {
            IntakeOutcome::DeadLetter(reason) => assert!(reason.contains(why), "{name}: {reason}"),
            other => panic!("{name}: expected a dead letter, got {other:?}"),
        }
        let after = t.counts();
        assert_eq!(after.dead_letters, before.dead_letters + 1, "{name}");
        assert_eq!(
            (
                after.reports,
                after.attachments,
                after.audit,
                after.messages
            ),
            (
                before.reports,
                before.attachments,
                before.audit,
                before.messages
            ),
            "{name}: nothing half-stored"
        );
    }
    // The good message still goes through, and the operators see the dead letters with reasons.
    let out = t
        .block_on(t.desk.intake.apply_incident(topic, &to_bytes(&good)))
        .unwrap();
    assert!(matches!(out, IntakeOutcome::Created(_)), "{out:?}");
    let op = t.login("operator");
    let dl = op.get("/api/dead-letters").json();
    assert_eq!(dl["items"].as_array().unwrap().len(), 20);
    assert!(dl["items"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("exceeds"));
    let page = op.get("/dead-letters").text();
    assert!(page.contains("unknown schema") && page.contains("simpang/v1/sites/bkb/incidents"));
}
