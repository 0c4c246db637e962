//! API and workflow tests of `simpang desk`, each run twice: on a real SQLite file and on a
//! PostgreSQL 15 cluster started for the test. The PostgreSQL ones (`postgres::*`) fail when the
//! cluster cannot start; `SIMPANG_SKIP_POSTGRES=1 scripts/test.sh` leaves them out explicitly.

mod support;

use serde_json::{json, Value};
use simpang::desk::Role;
use support::desk::{file_report, password, Http, Kind, Opts, Part, Resp, TestDesk};

macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::Kind::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::Kind::Postgres) } )*
        }
    };
}

on_both_databases!(
    citizen_report_reaches_green,
    unsatisfied_reporter_sends_it_back,
    sla_due_overdue_and_compliance,
    duplicates_are_merged,
    reject_needs_reason_and_is_final,
    disposition_follows_routing_table,
    sms_webhook,
    deactivation_reassigns_open_items,
    login_is_rate_limited,
    csrf_and_session_cookies,
    html_forms_drive_the_workflow,
    dashboard_counts,
    listing_filters,
    status_messages_are_queued_per_change,
    published_status_messages_are_pruned_after_a_week,
    status_messages_are_claimed_by_one_desk_in_order_per_ticket,
);

/// A desk with the usual staff: an operator, two Dishub officers, one DLH officer, a viewer
/// and an admin.
fn desk(kind: Kind) -> TestDesk {
    let t = TestDesk::start(kind, Opts::default());
    t.user("admin", Role::Admin, None);
    t.user("operator", Role::Operator, None);
    t.user("dishub1", Role::Agency, Some("dishub"));
    t.user("dishub2", Role::Agency, Some("dishub"));
    t.user("dlh1", Role::Agency, Some("dlh"));
    t.user("viewer", Role::Viewer, None);
    t
}

fn track(t: &TestDesk, ticket: &str) -> Value {
    let r = t.anon().get(&format!("/api/track/{ticket}"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn ok(r: support::desk::Resp) -> Value {
    assert!(
        r.status < 300,
        "expected success, got {}: {}",
        r.status,
        r.text()
    );
    r.json()
}

fn citizen_report_reaches_green(kind: Kind) {
    let t = desk(kind);
    let photo = support::desk::png(64, 48);
    let r = t.anon().post_multipart(
        "/api/reports",
        &[
            (
                "title",
                Part::Text("Lampu lalu lintas mati di Simpang Charitas"),
            ),
            ("category", Part::Text("traffic")),
            (
                "description",
                Part::Text("Sejak pagi lampu merah mati, kendaraan saling serobot."),
            ),
            (
                "address",
                Part::Text("Simpang Charitas, Jl. Jend. Sudirman"),
            ),
            ("lat", Part::Text("-2.9748")),
            ("lon", Part::Text("104,7508")),
            ("phone", Part::Text("0812-3456-7890")),
            (
                "photo",
                Part::File {
                    name: "lampu.png",
                    content_type: "image/png",
                    bytes: &photo,
                },
            ),
        ],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let ticket = created["ticket"].as_str().unwrap().to_string();
    let pin = created["pin"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("PLG-") && ticket.len() == 10, "{ticket}");
    assert_eq!(pin.len(), 6);

    let tr = track(&t, &ticket);
    assert_eq!(
        (tr["status"].as_str(), tr["colour"].as_str()),
        (Some("received"), Some("red"))
    );

    let op = t.login("operator");
    let v = ok(op.get(&format!("/api/reports/{ticket}")));
    assert_eq!(
        v["phone"], "081234567890",
        "operators see the reporter's number"
    );
    assert_eq!(v["lon"], 104.7508, "a decimal comma is read as a point");
    let att = &v["attachments"][0];
    assert_eq!(
        (att["kind"].as_str(), att["width"].as_i64()),
        (Some("photo"), Some(64))
    );
    let img = op.get(att["url"].as_str().unwrap());
    assert_eq!(img.status, 200);
    assert_eq!(img.header("content-type"), Some("image/png"));
    assert_eq!(img.body, photo, "the stored photo is the uploaded one");

    ok(op.act(&ticket, "verify", json!({})));
    let v = ok(op.act(
        &ticket,
        "disposition",
        json!({ "agency": "dishub", "note": "Mohon segera" }),
    ));
    assert_eq!(v["status"], "dispositioned");
    assert_eq!(v["sla_hours"], 24);
    assert_eq!(v["colour"], "red", "red until the agency answers");

    let officer = t.login("dishub1");
    let v = ok(officer.act(
        &ticket,
        "answer",
        json!({ "text": "Teknisi Dishub sudah memperbaiki lampu pukul 14.00." }),
    ));
    assert_eq!(
        (v["status"].as_str(), v["colour"].as_str()),
        (Some("answered"), Some("yellow"))
    );
    assert_eq!(
        v["phone"],
        Value::Null,
        "officers do not see the reporter's number"
    );

    // The reporter confirms with the PIN from the receipt; a wrong PIN changes nothing.
    let bad = t.anon().post_json(
        &format!("/api/track/{ticket}/confirm"),
        &json!({ "pin": "000000", "satisfied": true }),
    );
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert_eq!(track(&t, &ticket)["status"], "answered");
    let done = t.anon().post_json(
        &format!("/api/track/{ticket}/confirm"),
        &json!({ "pin": pin, "satisfied": true, "text": "Terima kasih, sudah menyala." }),
    );
    assert_eq!(done.status, 200, "{}", done.text());
    let tr = track(&t, &ticket);
    assert_eq!(
        (tr["status"].as_str(), tr["colour"].as_str()),
        (Some("done"), Some("green"))
    );
    assert_eq!(tr["agency_name"], "Dinas Perhubungan");
    let thread: Vec<&str> = tr["thread"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["from"].as_str().unwrap())
        .collect();
    assert_eq!(
        thread,
        vec!["Dinas Perhubungan", "Pelapor"],
        "notes stay internal: {tr}"
    );
    assert!(!tr.to_string().contains("081234567890") && !tr.to_string().contains("3456"));

    assert_eq!(
        t.audit_actions(&ticket),
        vec![
            "create",
            "verify",
            "disposition",
            "answer",
            "confirm_satisfied"
        ]
    );
    // A second confirmation of a finished report is refused.
    let again = t.anon().post_json(
        &format!("/api/track/{ticket}/confirm"),
        &json!({ "pin": pin, "satisfied": false }),
    );
    assert_eq!(again.status, 409, "{}", again.text());
}

fn unsatisfied_reporter_sends_it_back(kind: Kind) {
    let t = desk(kind);
    let (ticket, pin) = file_report(
        &t.anon(),
        "Sampah menumpuk di Pasar 16 Ilir",
        "garbage",
        None,
    );
    let op = t.login("operator");
    ok(op.act(&ticket, "disposition", json!({ "agency": "dlh" })));
    let dlh = t.login("dlh1");
    ok(dlh.act(
        &ticket,
        "answer",
        json!({ "text": "Sudah diangkut truk DLHK." }),
    ));
    let first_due = ok(op.get(&format!("/api/reports/{ticket}")))["due_at"].clone();

    t.desk.clock.advance(3600);
    let r = t.anon().post_json(
        &format!("/api/track/{ticket}/confirm"),
        &json!({ "pin": pin, "satisfied": false, "text": "Masih ada tumpukan di sisi timur." }),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = ok(op.get(&format!("/api/reports/{ticket}")));
    assert_eq!(
        (v["status"].as_str(), v["colour"].as_str()),
        (Some("reopened"), Some("red"))
    );
    assert_ne!(
        v["due_at"], first_due,
        "a reopened report gets a fresh due time"
    );
    assert_eq!(v["answered_at"], Value::Null);

    // The chat thread: the reporter writes with the PIN, the agency replies on the thread.
    let r = t.anon().post_json(
        &format!("/api/track/{ticket}/messages"),
        &json!({ "pin": pin, "text": "Foto terbaru sudah saya kirim ke kelurahan." }),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = t.anon().post_json(
        &format!("/api/track/{ticket}/messages"),
        &json!({ "pin": "999999", "text": "palsu" }),
    );
    assert_eq!(r.status, 422);
    ok(dlh.act(
        &ticket,
        "messages",
        json!({ "text": "Baik, tim kembali sore ini." }),
    ));
    ok(dlh.act(
        &ticket,
        "messages",
        json!({ "text": "Catatan: armada terbatas.", "internal": true }),
    ));
    ok(dlh.act(
        &ticket,
        "answer",
        json!({ "text": "Sisi timur sudah bersih pukul 16.00." }),
    ));
    let r = t.anon().post_json(
        &format!("/api/track/{ticket}/confirm"),
        &json!({ "pin": pin, "satisfied": true }),
    );
    assert_eq!(r.status, 200);
    let tr = track(&t, &ticket);
    assert_eq!(tr["colour"], "green");
    let bodies: Vec<&str> = tr["thread"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert!(
        bodies.iter().any(|b| b.contains("sisi timur")),
        "{bodies:?}"
    );
    assert!(
        bodies.iter().any(|b| b.contains("tim kembali")),
        "{bodies:?}"
    );
    assert!(
        !bodies.iter().any(|b| b.contains("armada terbatas")),
        "internal notes never reach the tracker"
    );
    assert_eq!(
        t.audit_actions(&ticket),
        vec![
            "create",
            "disposition",
            "answer",
            "confirm_unsatisfied",
            "message",
            "message",
            "message",
            "answer",
            "confirm_satisfied"
        ]
    );
}

fn sla_due_overdue_and_compliance(kind: Kind) {
    let t = desk(kind);
    let op = t.login("operator");
    let dishub = t.login("dishub1");
    // traffic: 24 h, roads: 72 h (config defaults).
    let (a, _) = file_report(
        &t.anon(),
        "Macet parah di Jl. Kapten A. Rivai",
        "traffic",
        None,
    );
    let (b, _) = file_report(
        &t.anon(),
        "Lampu penerangan padam di Jl. Sudirman",
        "street_lights",
        None,
    );
    let (c, _) = file_report(
        &t.anon(),
        "Traffic light rusak di Simpang Lima",
        "traffic",
        None,
    );
    for tk in [&a, &b, &c] {
        ok(op.act(tk, "disposition", json!({ "agency": "dishub" })));
    }
    let due_a = ok(op.get(&format!("/api/reports/{a}")));
    let due_b = ok(op.get(&format!("/api/reports/{b}")));
    let hours = |v: &Value| {
        let d = chrono::DateTime::parse_from_rfc3339(v["due_at"].as_str().unwrap()).unwrap();
        let s =
            chrono::DateTime::parse_from_rfc3339(v["dispositioned_at"].as_str().unwrap()).unwrap();
        (d - s).num_hours()
    };
    assert_eq!((hours(&due_a), hours(&due_b)), (24, 72));
    assert!(
        due_a["due_at"].as_str().unwrap().ends_with("+07:00"),
        "times in WIB"
    );

    // A answered in time; then 25 h pass: C is overdue, B (72 h) is not.
    ok(dishub.act(
        &a,
        "answer",
        json!({ "text": "Petugas sudah mengurai kemacetan." }),
    ));
    t.desk.clock.advance(25 * 3600);
    // A day later the morning shift signs in afresh (sessions last one 12-hour shift).
    let (op, dishub) = (t.login("operator"), t.login("dishub1"));
    let d = ok(op.get("/api/dashboard"));
    assert_eq!(d["overdue"], 1, "{d}");
    let overdue: Vec<&str> = d["overdue_reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ticket"].as_str().unwrap())
        .collect();
    assert_eq!(overdue, vec![c.as_str()]);
    // Judged: A on time, C overdue -> 50 %.
    assert_eq!(d["sla_on_time"], 1);
    assert_eq!(d["sla_judged"], 2);
    assert_eq!(d["sla_compliance"], 50.0);
    let list = ok(op.get("/api/reports?overdue=1"));
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["overdue"], true);
    // Answered late counts against compliance too.
    ok(dishub.act(
        &c,
        "answer",
        json!({ "text": "Lampu sudah diganti (terlambat)." }),
    ));
    let d = ok(op.get("/api/dashboard"));
    assert_eq!(
        (
            d["overdue"].as_i64(),
            d["sla_on_time"].as_i64(),
            d["sla_judged"].as_i64()
        ),
        (Some(0), Some(1), Some(2))
    );
    let agency = &d["by_agency"][0];
    assert_eq!(
        (
            agency["id"].as_str(),
            agency["total"].as_i64(),
            agency["answered"].as_i64()
        ),
        (Some("dishub"), Some(3), Some(2))
    );
}

fn duplicates_are_merged(kind: Kind) {
    let t = desk(kind);
    let op = t.login("operator");
    let (a, _) = file_report(&t.anon(), "Banjir di depan Pasar Cinde", "flood", None);
    let (b, _) = file_report(
        &t.anon(),
        "Genangan air tinggi di Pasar Cinde",
        "flood",
        None,
    );
    let cases = [
        (json!({ "into": a }), 422, "into itself"),
        (json!({ "into": "PLG-NOPE99" }), 422, "unknown ticket"),
        (json!({ "into": "" }), 422, "empty"),
        (json!({}), 422, "missing"),
    ];
    for (body, status, why) in cases {
        let r = op.act(&a, "merge", body);
        assert_eq!(r.status, status, "{why}: {}", r.text());
    }
    let before = t.counts();
    let v = ok(op.act(&b, "merge", json!({ "into": a.to_lowercase() })));
    assert_eq!(
        (v["status"].as_str(), v["colour"].as_str()),
        (Some("merged"), Some("grey"))
    );
    assert_eq!(v["merged_into"], a);
    let target = ok(op.get(&format!("/api/reports/{a}")));
    assert_eq!(target["merged"], json!([b]));
    assert!(target["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["body"].as_str().unwrap().contains(&b)));
    assert_eq!(track(&t, &b)["merged_into"], a);
    assert_eq!(
        t.counts().reports,
        before.reports,
        "merging creates no report"
    );
    // Into a merged report, or merging again: refused.
    let (c, _) = file_report(&t.anon(), "Air meluap di Cinde", "flood", None);
    assert_eq!(op.act(&c, "merge", json!({ "into": b })).status, 422);
    assert_eq!(op.act(&b, "merge", json!({ "into": c })).status, 409);
    assert_eq!(t.audit_actions(&a), vec!["create", "merge_in"]);
}

fn reject_needs_reason_and_is_final(kind: Kind) {
    let t = desk(kind);
    let op = t.login("operator");
    let (a, _) = file_report(&t.anon(), "Tetangga menyetel musik keras", "other", None);
    for reason in ["", "   ", "abc"] {
        let r = op.act(&a, "reject", json!({ "reason": reason }));
        assert_eq!(r.status, 422, "{reason:?}: {}", r.text());
    }
    let v = ok(op.act(
        &a,
        "reject",
        json!({ "reason": "Bukan kewenangan Command Center; hubungi RT setempat." }),
    ));
    assert_eq!(
        (v["status"].as_str(), v["colour"].as_str()),
        (Some("rejected"), Some("grey"))
    );
    for (action, body) in [
        ("disposition", json!({ "agency": "diskominfo" })),
        ("verify", json!({})),
        ("reject", json!({ "reason": "sekali lagi ditolak" })),
        ("messages", json!({ "text": "halo" })),
    ] {
        assert_eq!(
            op.act(&a, action, body).status,
            409,
            "{action} after reject"
        );
    }
    let tr = track(&t, &a);
    assert!(tr["thread"][0]["body"]
        .as_str()
        .unwrap()
        .contains("Bukan kewenangan"));
}

fn disposition_follows_routing_table(kind: Kind) {
    let t = desk(kind);
    let op = t.login("operator");
    let (a, _) = file_report(&t.anon(), "Sampah dibakar di lahan kosong", "garbage", None);
    let cases = [
        (
            json!({ "agency": "dishub" }),
            422,
            "garbage does not route to Dishub",
        ),
        (json!({ "agency": "nowhere" }), 422, "unknown agency"),
        (json!({ "agency": "" }), 422, "empty agency"),
        (
            json!({ "agency": "dlh", "category": "nope" }),
            422,
            "unknown category",
        ),
        (json!({ "agency": "dlh", "extra": 1 }), 422, "unknown field"),
    ];
    for (body, status, why) in cases {
        let r = op.act(&a, "disposition", body);
        assert_eq!(r.status, status, "{why}: {}", r.text());
    }
    assert_eq!(
        t.audit_actions(&a),
        vec!["create"],
        "refused steps leave no trace"
    );
    // Recategorised on the way: traffic routes to Dishub or Satlantas.
    let v = ok(op.act(
        &a,
        "disposition",
        json!({ "agency": "satlantas", "category": "traffic" }),
    ));
    assert_eq!(
        (v["category"].as_str(), v["agency"].as_str()),
        (Some("traffic"), Some("satlantas"))
    );
    // Re-routed before an answer: the new agency's officers take over.
    let v = ok(op.act(&a, "disposition", json!({ "agency": "dishub" })));
    assert_eq!(v["agency"], "dishub");
    assert_eq!(
        t.login("dishub1")
            .act(&a, "answer", json!({ "text": "Ditangani Dishub." }))
            .status,
        200
    );
    assert_eq!(
        op.act(&a, "disposition", json!({ "agency": "satlantas" }))
            .status,
        409,
        "not after the answer"
    );
}

fn sms_webhook(kind: Kind) {
    let t = desk(kind);
    let h = t.anon();
    let sms =
        |from: &str, text: &str| h.post_json("/api/sms", &json!({ "from": from, "text": text }));
    // (text, filed?)
    let cases = [
        (
            "LAPOR Jalan berlubang di Jl. Demang Lebar Daun dekat simpang",
            true,
        ),
        ("lapor lampu jalan mati di lorong Sei Tawar", true),
        ("  LaPoR   sampah menumpuk  ", true),
        ("LAPOR", false),
        ("LAPOR   ", false),
        ("LAPORAN jalan rusak", false),
        ("halo admin", false),
        ("", false),
        ("CEK", false),
    ];
    for (text, filed) in cases {
        let before = t.counts().reports;
        let r = sms("+62 812 1111 2222", text);
        let j = r.json();
        let reply = j["reply"].as_str().unwrap();
        assert!(
            reply.chars().count() <= 160,
            "{text:?}: reply of {} chars",
            reply.len()
        );
        if filed {
            assert_eq!(r.status, 201, "{text:?}");
            let ticket = j["ticket"].as_str().unwrap();
            assert!(reply.contains(ticket), "{reply}");
            assert_eq!(t.counts().reports, before + 1);
        } else {
            assert_eq!(r.status, 200, "{text:?}");
            assert_eq!(j["ticket"], Value::Null);
            assert!(reply.starts_with("Format salah"), "{reply}");
            assert_eq!(t.counts().reports, before, "{text:?} filed nothing");
        }
    }
    // Bad requests: a clear 4xx, nothing stored.
    let before = t.counts();
    for (body, status) in [
        (r#"{"from":"0812","text":"LAPOR x"}"#.to_string(), 422),
        (r#"{"from":"","text":"LAPOR jalan rusak"}"#.to_string(), 422),
        (r#"{"text":"LAPOR jalan rusak"}"#.to_string(), 422),
        (r#"{"from":"081211112222"}"#.to_string(), 422),
        (
            r#"{"from":"081211112222","text":"LAPOR x""#.to_string(),
            400,
        ),
        ("not json".to_string(), 400),
        (
            format!(
                r#"{{"from":"081211112222","text":"LAPOR {}"}}"#,
                "x".repeat(2001)
            ),
            422,
        ),
    ] {
        let r = h.post_raw("/api/sms", "application/json", body.as_bytes());
        assert_eq!(r.status, status, "{body:.60}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    assert_eq!(h.post_raw("/api/sms", "text/plain", b"LAPOR x").status, 415);
    assert_eq!(t.counts(), before);

    // CEK, then PUAS from the reporting phone once the agency has answered.
    let r = sms(
        "081233334444",
        "LAPOR Pohon tumbang menutup Jl. Angkatan 45",
    )
    .json();
    let ticket = r["ticket"].as_str().unwrap().to_string();
    let v = ok(t.login("operator").get(&format!("/api/reports/{ticket}")));
    assert_eq!(
        (
            v["source"].as_str(),
            v["category"].as_str(),
            v["phone"].as_str()
        ),
        (Some("sms"), Some("other"), Some("081233334444"))
    );
    assert_eq!(v["title"], "Pohon tumbang menutup Jl. Angkatan 45");
    let cek = sms("081299990000", &format!("cek {}", ticket.to_lowercase())).json();
    assert!(cek["reply"].as_str().unwrap().contains("Diterima"), "{cek}");
    ok(t.login("operator")
        .act(&ticket, "disposition", json!({ "agency": "diskominfo" })));
    let officer = t.user("kominfo1", Role::Agency, Some("diskominfo"));
    assert_eq!(officer.agency_id.as_deref(), Some("diskominfo"));
    ok(t.login("kominfo1").act(
        &ticket,
        "answer",
        json!({ "text": "Diteruskan ke DLHK dan sudah dipotong." }),
    ));
    let other_phone = sms("081299990000", &format!("PUAS {ticket}")).json();
    assert!(other_phone["reply"]
        .as_str()
        .unwrap()
        .contains("tidak ditemukan"));
    assert_eq!(
        track(&t, &ticket)["status"],
        "answered",
        "only the reporting phone confirms"
    );
    let puas = sms("0812 3333 4444", &format!("PUAS {ticket}")).json();
    assert!(
        puas["reply"].as_str().unwrap().contains("selesai"),
        "{puas}"
    );
    assert_eq!(track(&t, &ticket)["colour"], "green");
    assert!(!t
        .anon()
        .get(&format!("/track/{ticket}"))
        .text()
        .contains("3333"));
}

fn deactivation_reassigns_open_items(kind: Kind) {
    let t = desk(kind);
    let admin = t.login("admin");
    let op = t.login("operator");
    let d1 = t.login("dishub1");
    let (a, _) = file_report(
        &t.anon(),
        "Parkir liar di bahu Jl. Sudirman",
        "traffic",
        None,
    );
    let (b, _) = file_report(&t.anon(), "Macet di Simpang Polda", "traffic", None);
    for tk in [&a, &b] {
        ok(op.act(tk, "disposition", json!({ "agency": "dishub" })));
        ok(d1.act(tk, "claim", json!({})));
    }
    let items = |u: &str| {
        ok(admin.get("/api/users"))["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["username"] == u)
            .cloned()
            .unwrap()
    };
    assert_eq!(items("dishub1")["active"], 1);

    // Refused targets change nothing: another agency's officer, an unknown name, oneself.
    for (who, body, status) in [
        ("dishub1", json!({ "reassign_to": "dlh1" }), 422),
        ("dishub1", json!({ "reassign_to": "ghost" }), 422),
        ("admin", json!({}), 422),
        ("ghost", json!({}), 404),
    ] {
        let r = admin.post_json(&format!("/api/users/{who}/deactivate"), &body);
        assert_eq!(r.status, status, "{who} {body}: {}", r.text());
    }
    assert_eq!(items("dishub1")["active"], 1);
    assert_eq!(d1.get("/api/me").status, 200);
    // Only an admin deactivates.
    assert_eq!(
        op.post_json("/api/users/dishub1/deactivate", &json!({}))
            .status,
        403
    );

    let r = ok(admin.post_json(
        "/api/users/dishub1/deactivate",
        &json!({ "reassign_to": "dishub2" }),
    ));
    assert_eq!(r["reassigned"], 2);
    assert_eq!(items("dishub1")["active"], 0);
    assert_eq!(d1.get("/api/me").status, 401, "the session ends at once");
    let relogin = t.anon().post_json(
        "/api/login",
        &json!({ "username": "dishub1", "password": password("dishub1") }),
    );
    assert_eq!(relogin.status, 422);
    for tk in [&a, &b] {
        let v = ok(op.get(&format!("/api/reports/{tk}")));
        assert_eq!(v["officer"], "dishub2 (uji)");
        assert_eq!(
            t.audit_actions(tk).last().map(String::as_str),
            Some("reassign")
        );
    }
    // The successor answers; accounts are per person, nobody shared a password.
    ok(t.login("dishub2").act(
        &a,
        "answer",
        json!({ "text": "Ditertibkan bersama Satlantas." }),
    ));

    // New accounts through the API: validation table.
    let cases = [
        (
            json!({ "username": "budi.dishub", "role": "agency", "agency": "dishub", "password": "panjang-sekali-1" }),
            201,
        ),
        (
            json!({ "username": "budi.dishub", "role": "agency", "agency": "dishub", "password": "panjang-sekali-1" }),
            422,
        ),
        (
            json!({ "username": "x", "role": "operator", "password": "panjang-sekali-1" }),
            422,
        ),
        (
            json!({ "username": "siti", "role": "agency", "password": "panjang-sekali-1" }),
            422,
        ),
        (
            json!({ "username": "siti", "role": "operator", "agency": "dlh", "password": "panjang-sekali-1" }),
            422,
        ),
        (
            json!({ "username": "siti", "role": "superuser", "password": "panjang-sekali-1" }),
            422,
        ),
        (
            json!({ "username": "siti", "role": "operator", "password": "pendek" }),
            422,
        ),
        (json!({ "username": "siti", "role": "operator" }), 422),
    ];
    for (body, status) in cases {
        let r = admin.post_json("/api/users", &body);
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    let budi = t.login_with("budi.dishub", "panjang-sekali-1");
    assert_eq!(budi.get("/api/me").json()["user"]["agency_id"], "dishub");
}

fn login_is_rate_limited(kind: Kind) {
    let t = desk(kind);
    let h = t.anon();
    let post = |name: &str, pw: &str| {
        h.post_json("/api/login", &json!({ "username": name, "password": pw }))
    };
    for i in 0..5 {
        assert_eq!(post("operator", "salah").status, 422, "failure {i}");
    }
    // Then 1, 2, 4 ... s between tries. Tries sent at once (each counted before its password
    // is checked, however slow the check): one at most is let through in a backoff step.
    let burst = |tries: Vec<(String, String)>| -> Vec<Resp> {
        std::thread::scope(|s| {
            let handles: Vec<_> = tries
                .iter()
                .map(|(n, p)| s.spawn(move || post(n, p)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    };
    let tries = (0..3)
        .map(|_| ("operator".to_string(), "salah".to_string()))
        .collect();
    let answers = burst(tries);
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    assert!(
        refused.len() >= 2,
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let retry: i64 = refused[0].header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    // The backoff is per (account, address): the same address still signs in to another
    // account (a whole office behind one address is not locked out by one person's typos) ...
    assert_eq!(post("viewer", &password("viewer")).status, 200);
    // ... until the address has failed on many accounts (30): then it backs off as a whole.
    for i in 0..22 {
        // (within the address's rate of sign-in posts: one per 6 s after a burst of 30)
        t.desk.clock.advance(6);
        assert_eq!(post(&format!("tebak{i}"), "salah").status, 422, "spray {i}");
    }
    t.desk.clock.advance(60);
    let tries = (22..26)
        .map(|i| (format!("tebak{i}"), "salah".to_string()))
        .collect();
    let statuses: Vec<u16> = burst(tries).iter().map(|r| r.status).collect();
    assert!(
        statuses.contains(&429),
        "a spraying address backs off: {statuses:?}"
    );
    t.desk.clock.advance(901);
    assert_eq!(post("operator", &password("operator")).status, 200);
}

fn csrf_and_session_cookies(kind: Kind) {
    let t = desk(kind);
    let (a, _) = file_report(&t.anon(), "Trotoar rusak di Jl. Merdeka", "roads", None);
    let r = t.anon().post_json(
        "/api/login",
        &json!({ "username": "operator", "password": password("operator") }),
    );
    let cookie = r.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{attr} in {cookie}");
    }
    let mut op = t.login("operator");
    let token = op.csrf.clone();
    // (csrf header, expected status)
    for (csrf, status) in [
        (None, 403),
        (Some("0".repeat(64)), 403),
        (Some(String::new()), 403),
        (token.clone(), 200),
    ] {
        op.csrf = csrf;
        let r = op.act(&a, "verify", json!({}));
        assert_eq!(r.status, status, "{}", r.text());
    }
    op.csrf = token;
    // Forms need the token as well.
    let form = op.post_form(&format!("/reports/{a}/disposition"), &[("agency", "pupr")]);
    assert_eq!(form.status, 403);
    // Logging out ends the session on the server, not only in the browser.
    let saved = op.cookie.clone();
    assert_eq!(op.post_json("/api/logout", &json!({})).status, 204);
    let mut stale = Http::new(&t.base);
    stale.cookie = saved;
    assert_eq!(stale.get("/api/me").status, 401);
    assert_eq!(stale.get("/dashboard").status, 303);
    // Garbage cookies are just "not signed in".
    for c in [
        "simpang_desk_session=",
        "simpang_desk_session=zz",
        "simpang_desk_session=' OR 1=1 --",
    ] {
        let mut h = Http::new(&t.base);
        h.cookie = Some(c.into());
        assert_eq!(h.get("/api/me").status, 401, "{c}");
    }
    // A session expires after session_hours.
    let later = t.login("viewer");
    t.desk.clock.advance(12 * 3600 + 1);
    assert_eq!(later.get("/api/me").status, 401);
}

fn html_forms_drive_the_workflow(kind: Kind) {
    let t = desk(kind);
    // Browser-style login through the form, with the login page's CSRF cookie.
    let page = t.anon().get("/login?next=/reports");
    assert_eq!(page.status, 200);
    let pre = page
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let body = page.text();
    let token = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let mut h = Http::new(&t.base);
    h.cookie = Some(pre.clone());
    let wrong = h.post_form(
        "/login",
        &[
            ("username", "operator"),
            ("password", "salah"),
            ("csrf", &token),
            ("next", "/reports"),
        ],
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("salah"));
    let forged = h.post_form(
        "/login",
        &[
            ("username", "operator"),
            ("password", &password("operator")),
            ("csrf", "forged"),
            ("next", "/reports"),
        ],
    );
    assert_eq!(forged.status, 403);
    let r = h.post_form(
        "/login",
        &[
            ("username", "operator"),
            ("password", &password("operator")),
            ("csrf", &token),
            ("next", "//evil.example/"),
        ],
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/dashboard"), "no open redirect");
    h.take_cookie(&r);
    let dash = h.get("/dashboard").text();
    let csrf = dash
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();

    let (a, _) = file_report(
        &t.anon(),
        "Lampu jalan berkedip di Jl. Rajawali",
        "street_lights",
        None,
    );
    let r = h.post_form(
        &format!("/reports/{a}/verify"),
        &[("csrf", &csrf), ("category", "street_lights")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some(format!("/reports/{a}?ok=verify").as_str())
    );
    assert!(h
        .get(r.header("location").unwrap())
        .text()
        .contains("Laporan diverifikasi."));
    // A refused step shows the page again with the reason and a 4xx.
    let r = h.post_form(
        &format!("/reports/{a}/disposition"),
        &[("csrf", &csrf), ("agency", "dlh")],
    );
    assert_eq!(r.status, 422);
    assert!(
        r.text().contains("Penerangan jalan didisposisikan ke"),
        "{}",
        r.text()
    );
    let r = h.post_form(
        &format!("/reports/{a}/disposition"),
        &[("csrf", &csrf), ("agency", "perkim"), ("note", "Cek kabel")],
    );
    assert_eq!(r.status, 303);
    let r = h.post_form(
        &format!("/reports/{a}/answer"),
        &[("csrf", &csrf), ("text", "operator tidak menjawab")],
    );
    assert_eq!(r.status, 403, "operators do not answer for the agency");
    let r = h.post_form(&format!("/reports/{a}/fly"), &[("csrf", &csrf)]);
    assert_eq!(r.status, 404);
    let v = ok(t.login("operator").get(&format!("/api/reports/{a}")));
    assert_eq!(
        (v["status"].as_str(), v["agency"].as_str()),
        (Some("dispositioned"), Some("perkim"))
    );
    // Logout through the form.
    let r = h.post_form("/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
}

fn dashboard_counts(kind: Kind) {
    let t = desk(kind);
    let op = t.login("operator");
    let empty = ok(op.get("/api/dashboard"));
    assert_eq!(
        (empty["total"].as_i64(), empty["sla_compliance"].clone()),
        (Some(0), Value::Null)
    );
    let (a, pin_a) = file_report(&t.anon(), "Sampah di Sungai Sekanak", "garbage", None);
    let (b, _) = file_report(&t.anon(), "Sampah di Jl. Veteran", "garbage", None);
    let (c, _) = file_report(&t.anon(), "Jalan amblas di Plaju", "roads", None);
    let (_d, _) = file_report(&t.anon(), "Lubang di Jl. Basuki Rahmat", "roads", None);
    ok(op.act(&a, "disposition", json!({ "agency": "dlh" })));
    ok(op.act(&b, "disposition", json!({ "agency": "dlh" })));
    ok(op.act(
        &c,
        "reject",
        json!({ "reason": "Jalan nasional, diteruskan ke BBPJN." }),
    ));
    let dlh = t.login("dlh1");
    ok(dlh.act(
        &a,
        "answer",
        json!({ "text": "Sudah dibersihkan pasukan kuning." }),
    ));
    let r = t.anon().post_json(
        &format!("/api/track/{a}/confirm"),
        &json!({ "pin": pin_a, "satisfied": true }),
    );
    assert_eq!(r.status, 200);
    let d = ok(op.get("/api/dashboard"));
    assert_eq!(
        [
            &d["total"],
            &d["open"],
            &d["done"],
            &d["closed_other"],
            &d["red"],
            &d["yellow"],
            &d["green"],
            &d["grey"]
        ]
        .map(|v| v.as_i64().unwrap()),
        [4, 2, 1, 1, 2, 0, 1, 1]
    );
    let cat = |id: &str| {
        d["by_category"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            cat("garbage")["total"].as_i64(),
            cat("garbage")["done"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(cat("garbage")["name"], "Sampah dan kebersihan");
    assert_eq!(cat("roads")["open"], 1);
    // An officer's dashboard counts only what was sent to their agency.
    let mine = ok(dlh.get("/api/dashboard"));
    assert_eq!(
        (mine["total"].as_i64(), mine["done"].as_i64()),
        (Some(2), Some(1))
    );
    assert_eq!(ok(t.login("dishub1").get("/api/dashboard"))["total"], 0);
    // Periods: everything was filed today; nothing in a period that ended before.
    assert_eq!(ok(op.get("/api/dashboard?period=today"))["total"], 4);
    t.desk.clock.advance(31 * 86_400);
    let op = t.login("operator");
    assert_eq!(ok(op.get("/api/dashboard?period=30d"))["total"], 0);
    assert_eq!(ok(op.get("/api/dashboard?period=all"))["total"], 4);
}

fn listing_filters(kind: Kind) {
    let t = desk(kind);
    let op = t.login("operator");
    let (a, _) = file_report(
        &t.anon(),
        "Sampah di Jl. Kolonel Atmo",
        "garbage",
        Some("081200001111"),
    );
    let (_b, _) = file_report(
        &t.anon(),
        "Jalan berlubang di Jl. Kolonel Atmo",
        "roads",
        None,
    );
    let sms = t.anon().post_json(
        "/api/sms",
        &json!({ "from": "081277778888", "text": "LAPOR banjir setinggi lutut di Perumnas" }),
    );
    assert_eq!(sms.status, 201);
    ok(op.act(&a, "disposition", json!({ "agency": "dlh" })));
    // (query, expected total)
    let cases = [
        ("", 3),
        ("?category=garbage", 1),
        ("?source=sms", 1),
        ("?source=web", 2),
        ("?status=dispositioned", 1),
        ("?status=red", 3),
        ("?status=open", 3),
        ("?status=green", 0),
        ("?agency=dlh", 1),
        ("?q=kolonel", 2),
        ("?q=KOLONEL%20ATMO", 2),
        ("?q=perumnas", 1),
        ("?q=%25", 0),
        ("?q=%27%20OR%201%3D1%20--", 0),
        ("?limit=1", 3),
        ("?limit=1&page=3", 3),
    ];
    for (q, total) in cases {
        let r = ok(op.get(&format!("/api/reports{q}")));
        assert_eq!(r["total"], total, "{q}: {r}");
    }
    assert_eq!(
        ok(op.get("/api/reports?limit=1&page=3"))["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        ok(op.get("/api/reports?limit=1&page=4"))["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    for bad in [
        "?status=purple",
        "?category=nope",
        "?source=fax",
        "?agency=nasa",
    ] {
        assert_eq!(op.get(&format!("/api/reports{bad}")).status, 422, "{bad}");
    }
    // Phones: operators see them in listings, viewers never.
    let has_phone = |h: &Http| {
        h.get("/api/reports?category=garbage")
            .text()
            .contains("081200001111")
    };
    assert!(has_phone(&op));
    assert!(!has_phone(&t.login("viewer")));
}

fn status_messages_are_queued_per_change(kind: Kind) {
    let t = desk(kind);
    let op = t.login("operator");
    let (a, pin) = file_report(
        &t.anon(),
        "Lampu PJU mati di Jl. Radial",
        "street_lights",
        None,
    );
    ok(op.act(&a, "verify", json!({})));
    ok(op.act(&a, "messages", json!({ "text": "menunggu jadwal" })));
    ok(op.act(&a, "disposition", json!({ "agency": "perkim" })));
    t.user("perkim1", Role::Agency, Some("perkim"));
    ok(t.login("perkim1")
        .act(&a, "answer", json!({ "text": "Lampu sudah diganti." })));
    assert_eq!(
        t.anon()
            .post_json(
                &format!("/api/track/{a}/confirm"),
                &json!({ "pin": pin, "satisfied": true })
            )
            .status,
        200
    );
    let rows: Vec<(String, String)> = t.block_on(async {
        sqlx::query_as("SELECT topic, payload FROM status_outbox ORDER BY id")
            .fetch_all(t.desk.store().pool())
            .await
            .unwrap()
    });
    let topic = format!("simpang/v1/desk/reports/{a}/status");
    assert!(rows.iter().all(|(tp, _)| tp == &topic), "{rows:?}");
    let seen: Vec<(String, String)> = rows
        .iter()
        .map(|(_, p)| {
            let v: Value = serde_json::from_str(p).unwrap();
            assert_eq!(v["schema"], "simpang.desk.status/1");
            assert_eq!(v["ticket"], a);
            assert!(!p.contains("phone") && !p.contains("pin"));
            (
                v["status"].as_str().unwrap().into(),
                v["colour"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("received", "red"),
        ("verified", "red"),
        ("dispositioned", "red"),
        ("answered", "yellow"),
        ("done", "green"),
    ]
    .iter()
    .map(|(s, c)| (s.to_string(), c.to_string()))
    .collect();
    assert_eq!(
        seen, want,
        "one message per status change; chat messages change no status"
    );
}

fn published_status_messages_are_pruned_after_a_week(kind: Kind) {
    use simpang::desk::store;
    let t = desk(kind);
    let pool = t.desk.store().pool().clone();
    t.block_on(async {
        let mut c = pool.acquire().await.unwrap();
        for (id, at) in [(1, 1_000), (2, 1_000), (3, 2_000)] {
            store::insert_outbox(&mut c, at, &format!("t/{id}"), "{}")
                .await
                .unwrap();
        }
        drop(c);
        // (row, published at): 1 published long ago, 2 pending, 3 published recently.
        store::outbox_done(&pool, 1, 1_000).await.unwrap();
        store::outbox_done(&pool, 3, 900_000).await.unwrap();
        assert_eq!(
            store::outbox_prune(&pool, 1_000).await.unwrap(),
            0,
            "the boundary is kept"
        );
        assert_eq!(store::outbox_prune(&pool, 1_001).await.unwrap(), 1);
        let left: Vec<(String,)> = sqlx::query_as("SELECT topic FROM status_outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            left,
            vec![("t/2".to_string(),), ("t/3".to_string(),)],
            "pending and recent rows stay"
        );
        let pending = store::outbox_claim(t.desk.store(), "d", 5, 35, 10)
            .await
            .unwrap();
        assert_eq!(
            pending.iter().map(|r| r.topic.as_str()).collect::<Vec<_>>(),
            vec!["t/2"]
        );
    });
}

/// Several desks drain one outbox: a claim is exclusive until it is released, acknowledged or
/// expires, and a ticket's next message waits for the one before it.
fn status_messages_are_claimed_by_one_desk_in_order_per_ticket(kind: Kind) {
    use simpang::desk::store;
    let t = desk(kind);
    let s = t.desk.store().clone();
    t.block_on(async {
        let mut c = s.pool().acquire().await.unwrap();
        for topic in ["t/a", "t/b", "t/a"] {
            store::insert_outbox(&mut c, 1, topic, "{}").await.unwrap();
        }
        drop(c);
        let ids = |rows: Vec<store::OutboxRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
        // d1 takes the first message of each ticket; t/a's second waits for its first.
        let d1 = store::outbox_claim(&s, "d1", 100, 130, 10).await.unwrap();
        assert_eq!(ids(d1), vec![1, 2]);
        assert_eq!(
            ids(store::outbox_claim(&s, "d2", 100, 130, 10).await.unwrap()),
            Vec::<i64>::new(),
            "claimed rows and the rows behind them are not for d2"
        );
        store::outbox_done(s.pool(), 1, 101).await.unwrap();
        assert_eq!(
            ids(store::outbox_claim(&s, "d2", 101, 131, 10).await.unwrap()),
            vec![3],
            "t/a's second message, once the first is published"
        );
        // d1's connection ends: what it did not get acknowledged is free again.
        assert_eq!(
            store::outbox_release(s.pool(), "d1", None).await.unwrap(),
            1
        );
        assert_eq!(
            ids(store::outbox_claim(&s, "d2", 102, 132, 10).await.unwrap()),
            vec![2]
        );
        // A desk that died leaves its claims to expire; renewing keeps them.
        assert_eq!(store::outbox_renew(s.pool(), "d2", 200).await.unwrap(), 2);
        assert!(store::outbox_claim(&s, "d3", 199, 229, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            ids(store::outbox_claim(&s, "d3", 201, 231, 10).await.unwrap()),
            vec![2, 3]
        );
    });
}
