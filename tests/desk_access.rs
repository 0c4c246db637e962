//! Who may see and do what: sessions, agency scoping, the read-only viewer, and the public
//! tracker's privacy. Runs on a real SQLite file.

mod support;

use serde_json::json;
use simpang::desk::Role;
use support::desk::{file_report, jpeg, Http, Kind, Opts, Part, TestDesk};

fn desk() -> TestDesk {
    let t = TestDesk::start(Kind::Sqlite, Opts::default());
    t.user("admin", Role::Admin, None);
    t.user("operator", Role::Operator, None);
    t.user("dishub1", Role::Agency, Some("dishub"));
    t.user("dlh1", Role::Agency, Some("dlh"));
    t.user("viewer", Role::Viewer, None);
    t
}

#[test]
fn only_login_track_and_intake_work_without_a_session() {
    let t = desk();
    let (ticket, _) = file_report(
        &t.anon(),
        "Lampu jalan mati di Jl. Merdeka",
        "street_lights",
        None,
    );
    let h = t.anon();
    // Staff pages: the browser is sent to the login page, remembering where it wanted to go.
    for path in [
        "/dashboard",
        "/reports",
        &format!("/reports/{ticket}"),
        "/attachments/1",
        "/admin/users",
        "/audit",
        "/dead-letters",
        "/dashboard?period=7d",
    ] {
        let r = h.get(path);
        assert_eq!(r.status, 303, "{path}");
        let loc = r.header("location").unwrap();
        assert!(loc.starts_with("/login?next=%2F"), "{path} -> {loc}");
    }
    assert_eq!(h.get("/").header("location"), Some("/login"));
    // Staff API and form posts: 401 / login redirect, and nothing changes.
    let before = t.counts();
    for path in [
        "/api/me",
        "/api/dashboard",
        "/api/reports",
        &format!("/api/reports/{ticket}"),
        "/api/audit",
        "/api/dead-letters",
        "/api/users",
        "/api/events",
    ] {
        assert_eq!(h.get(path).status, 401, "GET {path}");
    }
    for action in [
        "verify",
        "reject",
        "merge",
        "disposition",
        "answer",
        "confirm",
        "messages",
        "claim",
    ] {
        assert_eq!(
            h.act(&ticket, action, json!({})).status,
            401,
            "POST {action}"
        );
        let r = h.post_form(&format!("/reports/{ticket}/{action}"), &[("csrf", "x")]);
        assert_eq!(r.status, 303, "form {action}");
    }
    for (path, body) in [
        (
            "/api/users",
            json!({ "username": "eve", "role": "admin", "password": "eve-eve-eve-eve" }),
        ),
        ("/api/users/operator/deactivate", json!({})),
        ("/api/logout", json!({})),
    ] {
        assert_eq!(h.post_json(path, &body).status, 401, "POST {path}");
    }
    assert_eq!(
        h.post_form("/admin/users", &[("username", "eve"), ("role", "admin")])
            .status,
        303
    );
    assert_eq!(t.counts(), before);

    // The public side works without one.
    for path in [
        "/login",
        "/lapor",
        "/track",
        &format!("/track/{ticket}"),
        &format!("/api/track/{ticket}"),
        "/healthz",
        "/assets/desk.css",
        "/assets/desk.js",
        "/assets/map.js",
        "/assets/logo.svg",
        "/assets/vendor/leaflet/leaflet.js",
        "/assets/vendor/leaflet/leaflet.css",
        "/assets/vendor/leaflet/images/marker-icon.png",
    ] {
        assert_eq!(h.get(path).status, 200, "{path}");
    }
    assert_eq!(
        h.get(&format!("/track?ticket={}", ticket.to_lowercase()))
            .header("location"),
        Some(format!("/track/{ticket}").as_str())
    );
    assert_eq!(h.get("/track/PLG-NOPE00").status, 404);
    // Assets come from a table compiled into the binary, never from a path on disk.
    for path in [
        "/assets/..%2f..%2fCargo.toml",
        "/assets/%2fetc%2fpasswd",
        "/assets/Cargo.toml",
        "/assets/",
    ] {
        assert_eq!(h.get(path).status, 404, "{path}");
    }
    assert_eq!(
        h.post_json(
            "/api/sms",
            &json!({ "from": "081211112222", "text": "LAPOR got mampet di Jl. Veteran" })
        )
        .status,
        201
    );
    assert_eq!(
        h.post_multipart(
            "/lapor",
            &[
                (
                    "title",
                    Part::Text("Pohon tumbang di Jl. Jenderal Sudirman")
                ),
                ("category", Part::Text("other")),
                (
                    "description",
                    Part::Text("Menutup separuh jalan sejak subuh.")
                ),
                ("address", Part::Text("Jl. Jend. Sudirman KM 3"))
            ]
        )
        .status,
        201
    );
    // Every response carries the security headers.
    let r = h.get("/login");
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));
}

#[test]
fn agency_officers_see_and_change_only_their_agency() {
    let t = desk();
    let op = t.login("operator");
    let photo = jpeg(160, 90, 7);
    let r = t.anon().post_multipart(
        "/api/reports",
        &[
            ("title", Part::Text("Traffic light mati di Simpang Polda")),
            ("category", Part::Text("traffic")),
            (
                "description",
                Part::Text("Lampu mati total sejak pukul 06.00."),
            ),
            ("address", Part::Text("Simpang Polda, Jl. Jend. Sudirman")),
            (
                "photo",
                Part::File {
                    name: "polda.jpg",
                    content_type: "image/jpeg",
                    bytes: &photo,
                },
            ),
        ],
    );
    let traffic = r.json()["ticket"].as_str().unwrap().to_string();
    let (garbage, _) = file_report(
        &t.anon(),
        "Sampah di bawah Jembatan Ampera",
        "garbage",
        None,
    );
    let (waiting, _) = file_report(
        &t.anon(),
        "Lampu jalan redup di Jl. Rajawali",
        "street_lights",
        None,
    );
    op.act(&traffic, "disposition", json!({ "agency": "dishub" }));
    op.act(&garbage, "disposition", json!({ "agency": "dlh" }));
    let attachment = op.get(&format!("/api/reports/{traffic}")).json()["attachments"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();

    let dlh = t.login("dlh1");
    let dishub = t.login("dishub1");
    let listed = |h: &Http| -> Vec<String> {
        h.get("/api/reports").json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["ticket"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(&dlh), vec![garbage.clone()]);
    assert_eq!(listed(&dishub), vec![traffic.clone()]);
    assert_eq!(listed(&op).len(), 3);
    assert!(!dlh.get("/reports").text().contains(&traffic));

    // Another agency's report, or one not yet sent anywhere: as if it did not exist.
    let before = t.counts();
    for (who, tk) in [
        (&dlh, &traffic),
        (&dlh, &waiting),
        (&dishub, &garbage),
        (&dishub, &waiting),
    ] {
        assert_eq!(who.get(&format!("/api/reports/{tk}")).status, 404, "{tk}");
        assert_eq!(who.get(&format!("/reports/{tk}")).status, 404, "{tk}");
        for (action, body) in [
            ("answer", json!({ "text": "jawaban dari OPD lain" })),
            ("messages", json!({ "text": "halo" })),
            ("claim", json!({})),
        ] {
            assert_eq!(who.act(tk, action, body).status, 404, "{action} {tk}");
        }
    }
    assert_eq!(dlh.get(&attachment).status, 404);
    assert_eq!(dishub.get(&attachment).status, 200);
    assert_eq!(
        dlh.get("/api/reports?agency=dishub").json()["total"],
        0,
        "the scope wins over a filter"
    );
    // Their own report: they answer, but sorting and routing stay with the operators.
    for (action, body) in [
        ("verify", json!({})),
        ("reject", json!({ "reason": "bukan urusan kami" })),
        ("disposition", json!({ "agency": "satlantas" })),
        ("merge", json!({ "into": garbage })),
        ("confirm", json!({ "satisfied": true })),
    ] {
        assert_eq!(dishub.act(&traffic, action, body).status, 403, "{action}");
    }
    assert_eq!(t.counts(), before, "refused requests change nothing");
    assert_eq!(
        dishub
            .act(
                &traffic,
                "answer",
                json!({ "text": "Lampu sudah menyala kembali." })
            )
            .status,
        200
    );
    // Admin-only places.
    for path in ["/admin/users", "/audit", "/dead-letters"] {
        assert_eq!(dishub.get(path).status, 403, "{path}");
    }
    // After re-routing to another agency, the first one loses sight of it.
    op.act(&garbage, "disposition", json!({ "agency": "dlh" }));
    let (flood, _) = file_report(&t.anon(), "Genangan di Jl. Kol. H. Burlian", "flood", None);
    op.act(&flood, "disposition", json!({ "agency": "pupr" }));
    op.act(&flood, "disposition", json!({ "agency": "bpbd" }));
    t.user("pupr1", Role::Agency, Some("pupr"));
    assert_eq!(
        t.login("pupr1")
            .get(&format!("/api/reports/{flood}"))
            .status,
        404
    );
}

#[test]
fn viewers_read_but_change_nothing() {
    let t = desk();
    let op = t.login("operator");
    let (a, _) = file_report(
        &t.anon(),
        "Jalan berlubang di Jl. Basuki Rahmat",
        "roads",
        Some("081255556666"),
    );
    op.act(&a, "disposition", json!({ "agency": "pupr" }));
    let v = t.login("viewer");
    for path in [
        "/dashboard",
        "/reports",
        &format!("/reports/{a}"),
        "/api/dashboard",
        "/api/reports",
        &format!("/api/reports/{a}"),
    ] {
        let r = v.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.text().contains("55556666"),
            "{path} shows no phone number to a viewer"
        );
    }
    let page = v.get(&format!("/reports/{a}")).text();
    assert!(page.contains("akses baca saja"));
    assert!(
        !page.contains("action=\"/reports/"),
        "no action forms for a viewer"
    );
    let before = t.counts();
    for (action, body) in [
        ("verify", json!({})),
        ("reject", json!({ "reason": "pemantau menolak" })),
        ("merge", json!({ "into": a })),
        ("disposition", json!({ "agency": "pupr" })),
        ("answer", json!({ "text": "pemantau menjawab" })),
        ("confirm", json!({ "satisfied": true })),
        ("messages", json!({ "text": "pemantau menulis" })),
        ("messages", json!({ "text": "catatan", "internal": true })),
        ("claim", json!({})),
    ] {
        assert_eq!(v.act(&a, action, body).status, 403, "{action}");
    }
    let dash = v.get("/dashboard").text();
    let csrf = dash
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    for action in ["verify", "disposition", "messages", "claim"] {
        let r = v.post_form(
            &format!("/reports/{a}/{action}"),
            &[("csrf", &csrf), ("agency", "pupr"), ("text", "x")],
        );
        assert_eq!(r.status, 403, "form {action}");
    }
    assert_eq!(
        v.post_json(
            "/api/users",
            &json!({ "username": "eve", "role": "admin", "password": "eve-eve-eve-eve" })
        )
        .status,
        403
    );
    assert_eq!(
        v.post_json("/api/users/operator/deactivate", &json!({}))
            .status,
        403
    );
    for path in [
        "/api/users",
        "/api/audit",
        "/api/dead-letters",
        "/admin/users",
        "/audit",
    ] {
        assert_eq!(v.get(path).status, 403, "{path}");
    }
    assert_eq!(t.counts(), before);
}

#[test]
fn the_public_tracker_never_shows_personal_data() {
    let t = desk();
    let phone_web = "0812-9876-5432";
    let r = t.anon().post_multipart(
        "/api/reports",
        &[
            ("title", Part::Text("Drainase tersumbat di Lorong Sukarela")),
            ("category", Part::Text("flood")),
            (
                "description",
                Part::Text("Saya Budi Santoso, rumah no. 12 RT 03, air masuk ke rumah."),
            ),
            ("address", Part::Text("Lorong Sukarela, Sukarami")),
            ("phone", Part::Text(phone_web)),
        ],
    );
    let web = r.json()["ticket"].as_str().unwrap().to_string();
    let sms = t.anon().post_json("/api/sms", &json!({ "from": "+6281377778888", "text": "LAPOR lampu jalan mati di Jl. Sukabangun" })).json()["ticket"].as_str().unwrap().to_string();
    let op = t.login("operator");
    op.act(
        &web,
        "disposition",
        json!({ "agency": "pupr", "note": "hubungi pelapor di 081298765432" }),
    );
    t.user("pupr1", Role::Agency, Some("pupr"));
    t.login("pupr1").act(
        &web,
        "answer",
        json!({ "text": "Saluran sudah dinormalisasi." }),
    );
    for tk in [&web, &sms] {
        for path in [format!("/track/{tk}"), format!("/api/track/{tk}")] {
            let body = t.anon().get(&path).text();
            for secret in [
                "98765432",
                "9876-5432",
                "77778888",
                "Budi Santoso",
                "argon2",
                "pupr1",
                "operator (uji)",
                "hubungi pelapor",
            ] {
                assert!(!body.contains(secret), "{path} leaks {secret:?}");
            }
        }
    }
    let j = t.anon().get(&format!("/api/track/{web}")).json();
    let keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "phone",
        "pin",
        "pin_hash",
        "description",
        "operator",
        "officer",
        "lat",
        "lon",
    ] {
        assert!(!keys.contains(&k), "public JSON has {k}");
    }
    assert_eq!(
        j["thread"][0]["from"], "Dinas Pekerjaan Umum dan Penataan Ruang",
        "the agency, not the person"
    );
}

#[test]
fn demo_accounts_sign_in_with_the_printed_passwords() {
    let t = TestDesk::start(Kind::Sqlite, Opts::default());
    let first = t
        .block_on(simpang::desk::ensure_demo_accounts(&t.desk))
        .expect("demo accounts");
    let roles: Vec<(&str, Role, Option<&str>)> = first
        .iter()
        .map(|a| (a.username.as_str(), a.role, a.agency.as_deref()))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("admin", Role::Admin, None),
            ("operator", Role::Operator, None),
            ("dishub", Role::Agency, Some("dishub")),
            ("dlh", Role::Agency, Some("dlh")),
            ("satpolpp", Role::Agency, Some("satpolpp")),
            ("pemantau", Role::Viewer, None),
        ]
    );
    for a in &first {
        let me = t.login_with(&a.username, &a.password).get("/api/me").json();
        assert_eq!(me["user"]["role"], a.role.as_str());
    }
    // A second start gives new passwords (printed again); the old ones stop working.
    let second = t
        .block_on(simpang::desk::ensure_demo_accounts(&t.desk))
        .expect("again");
    assert_eq!(second.len(), first.len());
    let old = t.anon().post_json(
        "/api/login",
        &json!({ "username": "admin", "password": first[0].password }),
    );
    assert_eq!(old.status, 422);
    assert_eq!(
        t.login_with("admin", &second[0].password)
            .get("/api/me")
            .status,
        200
    );
}

/// `simpang demo` pointed at a real desk's database (accounts it did not make) refuses, and
/// the real accounts keep their passwords; the demo's own database stays the demo's.
#[test]
fn demo_leaves_a_real_desks_accounts_alone() {
    let t = TestDesk::start(Kind::Sqlite, Opts::default());
    t.user("admin", Role::Admin, None);
    let err = t
        .block_on(simpang::desk::ensure_demo_accounts(&t.desk))
        .expect_err("a real desk's database");
    assert!(
        matches!(
            err,
            simpang::desk::DeskError::NotDemoDatabase { accounts: 1 }
        ),
        "{err}"
    );
    // The real admin's password still works; no demo account appeared.
    assert_eq!(t.login("admin").get("/api/me").status, 200);
    let r = t.anon().post_json(
        "/api/login",
        &json!({ "username": "operator", "password": "x" }),
    );
    assert_eq!(r.status, 422, "no demo operator: {}", r.text());
}
