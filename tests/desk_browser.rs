//! The desk in real browsers: headless Chromium, driven over WebDriver (Debian's chromedriver;
//! a small client over ureq), and headless Firefox ESR, driven over Marionette (Debian has no
//! geckodriver; tests/support/browser.rs). In each, on a desk of its own: signs in through the
//! login form, opens the dashboard (and watches a camera incident arrive on the live feed), a
//! camera report, the list, and the citizen pages; dispositions a report with the page's own
//! form; the admin deactivates an account. Full-page screenshots go to
//! target/screenshots/desk-*.png (Chromium) and desk-firefox-*.png and must not be blank.

mod support;

use std::cell::RefCell;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use simpang::desk::Role;
use simpang::model::{BBox, IncidentEvent, IncidentKind, Point, Severity, SnapshotBox};
use support::browser::{chromium_args, ChromeDriver, Firefox, Marionette, ELEMENT};
use support::desk::{file_report, incident, screenshot_dir, to_bytes, Kind, Opts, TestDesk};
use support::wait::poll;

/// A Chromium session of the scenario.
fn chromium(d: &ChromeDriver) -> Browser<'_> {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut args = chromium_args(profile.path(), 1440, 900);
    args.extend(["--hide-scrollbars".into(), "--lang=id-ID".into()]);
    let id = d.session(&args, json!({}));
    Browser {
        remote: Box::new(ChromiumSession {
            d,
            id,
            _profile: profile,
        }),
        prefix: "desk",
    }
}

/// The WebDriver commands the scenario uses, whichever protocol carries them.
trait Remote {
    fn navigate(&self, url: &str);
    fn current_url(&self) -> String;
    /// The element's reference, or `None` when nothing matches.
    fn find(&self, css: &str) -> Option<String>;
    fn clear(&self, el: &str);
    fn send_keys(&self, el: &str, text: &str);
    fn click(&self, el: &str);
    fn script(&self, js: &str) -> Value;
    fn set_size(&self, width: i64, height: i64);
    fn screenshot_png(&self) -> Vec<u8>;
}

/// Chromium over chromedriver's HTTP WebDriver.
struct ChromiumSession<'a> {
    d: &'a ChromeDriver,
    id: String,
    _profile: tempfile::TempDir,
}

impl ChromiumSession<'_> {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.d
            .call(method, &format!("/session/{}{path}", self.id), body)
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"))
    }
}

impl Remote for ChromiumSession<'_> {
    fn navigate(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }
    fn current_url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    fn find(&self, css: &str) -> Option<String> {
        self.d
            .call(
                "POST",
                &format!("/session/{}/element", self.id),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .ok()
            .and_then(|v| v[ELEMENT].as_str().map(str::to_string))
    }
    fn clear(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})));
    }
    fn send_keys(&self, el: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        );
    }
    fn click(&self, el: &str) {
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})));
    }
    fn script(&self, js: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": js, "args": [] })),
        )
    }
    fn set_size(&self, width: i64, height: i64) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        );
    }
    fn screenshot_png(&self) -> Vec<u8> {
        let b64 = self.cmd("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("screenshot"))
            .expect("base64 png")
    }
}

impl Drop for ChromiumSession<'_> {
    fn drop(&mut self) {
        let _ = self
            .d
            .call("DELETE", &format!("/session/{}", self.id), None);
    }
}

/// Firefox ESR over Marionette (tests/support/browser.rs).
struct FirefoxSession {
    m: RefCell<Marionette>,
    _firefox: Firefox,
    _profile: tempfile::TempDir,
}

impl FirefoxSession {
    fn start() -> Browser<'static> {
        let profile = tempfile::tempdir().expect("profile dir");
        let (firefox, m) = Firefox::start(
            profile.path(),
            1440,
            900,
            // Like Chromium's --lang=id-ID: the pages' dates and numbers in Indonesian.
            &[("intl.accept_languages", "\"id-ID, id\"")],
        );
        Browser {
            remote: Box::new(FirefoxSession {
                m: RefCell::new(m),
                _firefox: firefox,
                _profile: profile,
            }),
            prefix: "desk-firefox",
        }
    }
    fn call(&self, name: &str, params: Value) -> Value {
        self.m.borrow_mut().call(name, params)
    }
}

impl Remote for FirefoxSession {
    fn navigate(&self, url: &str) {
        self.call("WebDriver:Navigate", json!({ "url": url }));
    }
    fn current_url(&self) -> String {
        self.call("WebDriver:GetCurrentURL", json!({}))["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    fn find(&self, css: &str) -> Option<String> {
        self.m
            .borrow_mut()
            .try_call(
                "WebDriver:FindElement",
                json!({ "using": "css selector", "value": css }),
            )
            .ok()
            .and_then(|v| v["value"][ELEMENT].as_str().map(str::to_string))
    }
    fn clear(&self, el: &str) {
        self.call("WebDriver:ElementClear", json!({ "id": el }));
    }
    fn send_keys(&self, el: &str, text: &str) {
        self.call(
            "WebDriver:ElementSendKeys",
            json!({ "id": el, "text": text }),
        );
    }
    fn click(&self, el: &str) {
        self.call("WebDriver:ElementClick", json!({ "id": el }));
    }
    fn script(&self, js: &str) -> Value {
        self.m.borrow_mut().script(js)
    }
    fn set_size(&self, width: i64, height: i64) {
        self.call(
            "WebDriver:SetWindowRect",
            json!({ "width": width, "height": height }),
        );
    }
    fn screenshot_png(&self) -> Vec<u8> {
        self.m.borrow_mut().screenshot_png()
    }
}

/// What the scenario does in a page, on top of either browser.
struct Browser<'a> {
    remote: Box<dyn Remote + 'a>,
    /// Screenshot names: `{prefix}-{name}.png`.
    prefix: &'static str,
}

impl Browser<'_> {
    fn goto(&self, url: &str) {
        self.remote.navigate(url);
    }
    fn url(&self) -> String {
        self.remote.current_url()
    }
    fn find(&self, css: &str) -> Option<String> {
        self.remote.find(css)
    }
    fn must(&self, css: &str) -> String {
        poll(Duration::from_secs(10), || self.find(css))
            .unwrap_or_else(|| panic!("no element {css} on {}", self.url()))
    }
    fn type_into(&self, css: &str, text: &str) {
        let el = self.must(css);
        self.remote.clear(&el);
        self.remote.send_keys(&el, text);
    }
    fn click(&self, css: &str) {
        let el = self.must(css);
        self.remote.click(&el);
    }
    fn js(&self, script: &str) -> Value {
        self.remote.script(script)
    }
    fn text(&self) -> String {
        self.js("return document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// Waits until the page's URL ends with `suffix`.
    fn wait_url(&self, suffix: &str) {
        let ok = poll(Duration::from_secs(10), || {
            self.url().contains(suffix).then_some(())
        });
        assert!(ok.is_some(), "expected {suffix}, at {}", self.url());
    }
    /// A full-page screenshot, saved and checked not to be blank.
    fn shot(&self, name: &str) -> std::path::PathBuf {
        let h = self
            .js("return Math.ceil(document.documentElement.scrollHeight)")
            .as_i64()
            .unwrap_or(900);
        self.remote.set_size(1440, h.clamp(700, 5000) + 120);
        self.js("if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0); return 0");
        std::thread::sleep(Duration::from_millis(400));
        let png = self.remote.screenshot_png();
        let path = screenshot_dir().join(format!("{}-{name}.png", self.prefix));
        std::fs::write(&path, &png).expect("save screenshot");
        assert_not_blank(&png, &path);
        self.remote.set_size(1440, 900);
        path
    }
}

/// Decodes the PNG and requires real content: a normal size and pixel variance well above a
/// flat page's (a blank white or an error-grey page has almost none).
fn assert_not_blank(png: &[u8], path: &Path) {
    use opencv::core::{Mat, Scalar, Vector};
    let buf = Vector::<u8>::from_slice(png);
    let img =
        opencv::imgcodecs::imdecode(&buf, opencv::imgcodecs::IMREAD_GRAYSCALE).expect("decode png");
    use opencv::prelude::MatTraitConst;
    assert!(
        img.cols() >= 1000 && img.rows() >= 600,
        "{}: {}x{}",
        path.display(),
        img.cols(),
        img.rows()
    );
    let (mut mean, mut dev) = (Mat::default(), Mat::default());
    opencv::core::mean_std_dev(&img, &mut mean, &mut dev, &opencv::core::no_array())
        .expect("stddev");
    let sd = *dev.at::<f64>(0).expect("sd");
    let m = *mean.at::<f64>(0).expect("mean");
    let _ = Scalar::default();
    assert!(
        sd > 12.0,
        "{} looks blank: mean {m:.1}, stddev {sd:.1}",
        path.display()
    );
}

/// A snapshot like the incident stage makes: a frame of the site's sample footage (made by
/// `scripts/setup.sh`) with a box and a caption.
fn snapshot(site: &str, frame_no: u64, caption: &str) -> Vec<u8> {
    use simpang::ingest::reader::{ReadOptions, VideoReader};
    let file = support::root()
        .join("samples/sites")
        .join(format!("{site}.mp4"));
    let opts = ReadOptions {
        size: Some((640, 360)),
        ..Default::default()
    };
    let mut reader = VideoReader::open(&file, &opts)
        .unwrap_or_else(|e| panic!("{e} (scripts/setup.sh makes the sample footage)"));
    let frame = Some(&mut reader).and_then(|r| {
        let mut last = None;
        while let Ok(Some(f)) = r.next_frame() {
            last = Some(f.image);
            if f.index >= frame_no {
                break;
            }
        }
        last
    });
    match frame {
        Some(img) => {
            let zone = [
                Point::new(0.25, 0.45),
                Point::new(0.75, 0.45),
                Point::new(0.95, 1.0),
                Point::new(0.05, 1.0),
            ];
            let boxes = [
                SnapshotBox {
                    bbox: BBox::new(0.35, 0.55, 0.5, 0.8),
                    label: "car".into(),
                },
                SnapshotBox {
                    bbox: BBox::new(0.55, 0.5, 0.68, 0.7),
                    label: "person".into(),
                },
            ];
            let snap = simpang::draw::overlay::render_snapshot(
                &img,
                Some(&zone),
                &boxes,
                Severity::Alert,
                caption,
                640,
            )
            .expect("render");
            simpang::draw::overlay::encode_jpeg(&snap, 80).expect("jpeg")
        }
        None => panic!("{} has no frames", file.display()),
    }
}

fn seed(t: &TestDesk) -> (String, String, String) {
    let topic = |s: &str| format!("simpang/v1/sites/{s}/incidents");
    let mut cctv = Vec::new();
    for (i, (site, kind, level)) in [
        ("ampera", IncidentKind::TrafficJam, "macet"),
        ("bkb", IncidentKind::Crowd, "tinggi"),
        ("ampera", IncidentKind::Garbage, "sedang"),
    ]
    .into_iter()
    .enumerate()
    {
        let snap = snapshot(site, 30 + 40 * i as u64, &format!("{site} {level}"));
        let m = incident(
            &format!("{site}-z{i}-{}", kind.as_str()),
            1,
            IncidentEvent::New,
            site,
            kind,
            level,
            Some(&snap),
        );
        let out = t
            .block_on(t.desk.intake.apply_incident(&topic(site), &to_bytes(&m)))
            .expect("apply");
        cctv.push(out.ticket().expect("ticket").to_string());
    }
    let op = t.login("operator");
    let h = t.anon();
    let (a, _) = file_report(
        &h,
        "Lampu lalu lintas mati di Simpang Charitas",
        "traffic",
        Some("081234567890"),
    );
    let (b, _) = file_report(
        &h,
        "Sampah menumpuk di bawah Jembatan Ampera",
        "garbage",
        None,
    );
    let (c, _) = file_report(
        &h,
        "Jalan berlubang di Jl. Demang Lebar Daun",
        "roads",
        None,
    );
    let (_d, _) = file_report(
        &h,
        "Genangan setinggi betis di Jl. Kol. H. Burlian",
        "flood",
        None,
    );
    let sms = h.post_json("/api/sms", &json!({ "from": "081277778888", "text": "LAPOR lampu PJU mati sepanjang Jl. Angkatan 45" }));
    assert_eq!(sms.status, 201);
    op.act(&cctv[0], "verify", json!({}));
    op.act(
        &cctv[0],
        "disposition",
        json!({ "agency": "dishub", "note": "Mohon kirim petugas ke ujung jembatan" }),
    );
    t.login("dishub1").act(&cctv[0], "answer", json!({ "text": "Dua petugas Dishub mengatur arus di ujung Jembatan Ampera sejak 17.20; antrean mulai terurai." }));
    op.act(&b, "disposition", json!({ "agency": "dlh" }));
    op.act(&c, "disposition", json!({ "agency": "pupr" }));
    op.act(&cctv[1], "disposition", json!({ "agency": "satpolpp" }));
    // A day and a half later: the crowd report (24 h SLA) is overdue, the road (72 h) is not.
    t.desk.clock.advance(30 * 3600);
    (cctv[0].clone(), a, cctv[1].clone())
}

/// The desk every browser run starts from: four accounts, the seeded reports (a camera report
/// answered by the agency, a citizen report, an overdue one) and one dead letter.
fn desk_with_reports() -> (TestDesk, String, String) {
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            // No tile server is reachable from a test: the map must fall back to the fields.
            desk_toml: "[desk.map]\ntile_url = \"http://127.0.0.1:9/{z}/{x}/{y}.png\"\n".into(),
            ..Default::default()
        },
    );
    t.user("operator", Role::Operator, None);
    t.user("dishub1", Role::Agency, Some("dishub"));
    t.user("dishub2", Role::Agency, Some("dishub"));
    t.user("admin", Role::Admin, None);
    let (cctv_answered, citizen, _overdue) = seed(&t);
    let bad = t.block_on(t.desk.intake.apply_incident(
        "simpang/v1/sites/bkb/incidents",
        b"{\"schema\":\"simpang.incident/1\",\"event\":\"new\"",
    ));
    assert!(matches!(
        bad,
        Ok(simpang::desk::IntakeOutcome::DeadLetter(_))
    ));
    (t, cctv_answered, citizen)
}

/// One browser at a time: two on two cores make the scenario's waits a matter of luck.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

#[test]
fn staff_and_citizens_use_the_desk_in_chromium() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (t, cctv_answered, citizen) = desk_with_reports();
    let driver = ChromeDriver::start();
    scenario(&t, &chromium(&driver), &cctv_answered, &citizen);
}

#[test]
fn staff_and_citizens_use_the_desk_in_firefox() {
    let _one = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let (t, cctv_answered, citizen) = desk_with_reports();
    scenario(&t, &FirefoxSession::start(), &cctv_answered, &citizen);
}

/// Staff and citizens through the pages, as in the module doc.
fn scenario(t: &TestDesk, b: &Browser, cctv_answered: &str, citizen: &str) {
    let base = &t.base;

    // Signing in through the form (login CSRF cookie, session cookie, redirect back).
    b.goto(&format!("{base}/reports/{cctv_answered}"));
    b.wait_url("/login?next=");
    b.shot("login");
    b.type_into("#username", "operator");
    b.type_into("#password", "salah-sekali");
    b.click("button[type=submit]");
    assert!(poll(Duration::from_secs(10), || b
        .text()
        .contains("kata sandi salah")
        .then_some(()))
    .is_some());
    b.type_into("#username", "operator");
    b.type_into("#password", &support::desk::password("operator"));
    b.click("button[type=submit]");
    b.wait_url(&format!("/reports/{cctv_answered}"));

    // The camera report: snapshots, evidence, answer, actions.
    let text = b.text();
    for s in [
        "Kemacetan di Jembatan Ampera",
        "Cuplikan kamera",
        "Bukti terukur dari kamera",
        "Dijawab OPD",
        "Konfirmasi penyelesaian",
        "Riwayat perubahan",
    ] {
        assert!(
            text.to_lowercase().contains(&s.to_lowercase()),
            "report page shows {s:?}"
        );
    }
    let loaded = b.js("return Array.from(document.querySelectorAll('.gallery img')).every(i => i.complete && i.naturalWidth > 0)");
    assert_eq!(loaded, json!(true), "the snapshot images load");
    b.shot("report-cctv");

    // The dashboard, then a new camera incident arrives on the live feed without a reload.
    b.goto(&format!("{base}/dashboard"));
    b.wait_url("/dashboard");
    let live = poll(Duration::from_secs(10), || {
        (b.js("return document.getElementById('live-status').dataset.state") == json!("open"))
            .then_some(())
    });
    assert!(
        live.is_some(),
        "the live feed connects: state {}",
        b.js("return document.getElementById('live-status').dataset.state")
    );
    // innerText follows CSS (the labels are upper-cased): compare without case.
    let text = b.text().to_lowercase();
    for s in [
        "Laporan masuk",
        "Kepatuhan SLA",
        "Papan status",
        "Per kategori",
        "Per OPD",
        "Lewat tenggat",
        "Insiden CCTV terbaru",
    ] {
        assert!(text.contains(&s.to_lowercase()), "dashboard shows {s:?}");
    }
    let snap = snapshot("bkb", 200, "bkb padat");
    let m = incident(
        "bkb-z9-crowd",
        1,
        IncidentEvent::New,
        "bkb",
        IncidentKind::Crowd,
        "sedang",
        Some(&snap),
    );
    let out = t
        .block_on(
            t.desk
                .intake
                .apply_incident("simpang/v1/sites/bkb/incidents", &to_bytes(&m)),
        )
        .unwrap();
    let fresh = out.ticket().unwrap().to_string();
    let arrived = poll(Duration::from_secs(10), || {
        b.find(&format!("#feed [data-ticket=\"{fresh}\"]"))
    });
    assert!(
        arrived.is_some(),
        "the new incident appears on the open dashboard"
    );
    let first = b.js("return document.querySelector('#feed .feed-item').dataset.ticket");
    assert_eq!(first, json!(fresh), "newest first");
    let total = poll(Duration::from_secs(10), || {
        let v = b.js("return document.querySelector('[data-kpi=total]').textContent");
        (v == json!("9")).then_some(v)
    });
    assert!(total.is_some(), "the counters follow the feed");
    let overdue = b.js("return document.querySelector('[data-kpi=overdue]').textContent");
    assert_eq!(overdue, json!("1"));
    b.shot("dashboard");

    // The list, and a disposition made with the report page's own form.
    b.goto(&format!("{base}/reports"));
    b.shot("reports");
    b.goto(&format!("{base}/reports/{citizen}"));
    assert!(
        b.text().contains("081234567890"),
        "operators see the reporter's number"
    );
    b.click("form[action$='/disposition'] button[type=submit]");
    b.wait_url("?ok=disposition");
    assert!(b.text().contains("Laporan didisposisikan"));
    assert!(b.text().contains("Dinas Perhubungan"));
    b.shot("report-citizen");

    // Citizens: the form (map offline → coordinate fields), the receipt, the tracker.
    b.click("form[action='/logout'] button");
    b.wait_url("/login");
    b.goto(&format!("{base}/lapor"));
    let offline = poll(Duration::from_secs(15), || {
        (b.js("return !document.querySelector('.map-offline-note').hidden") == json!(true))
            .then_some(())
    });
    assert!(
        offline.is_some(),
        "without tiles the map gives way to the coordinate fields"
    );
    b.type_into("#title", "Pohon tumbang menutup Jl. Jenderal Sudirman");
    b.js("document.getElementById('category').value = 'other'");
    b.type_into(
        "#description",
        "Pohon besar tumbang setelah hujan deras, menutup dua lajur.",
    );
    b.type_into("#address", "Jl. Jend. Sudirman dekat Masjid Agung");
    b.type_into("#lat", "-2.98870");
    b.type_into("#lon", "104.76130");
    b.type_into("#phone", "081355556666");
    b.shot("lapor");
    b.click("form[action='/lapor'] button[type=submit]");
    assert!(poll(Duration::from_secs(10), || b
        .text()
        .contains("Laporan diterima")
        .then_some(()))
    .is_some());
    let text = b.text();
    let ticket = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("PLG-"))
        .expect("ticket on the receipt")
        .to_string();
    assert!(text.contains("PIN pelapor"));
    b.shot("receipt");
    b.goto(&format!("{base}/track/{cctv_answered}"));
    let text = b.text();
    assert!(text.contains("Dijawab OPD") && text.contains("Dinas Perhubungan"));
    b.shot("track");
    b.goto(&format!("{base}/track/{ticket}"));
    assert!(
        !b.text().contains("081355556666"),
        "the tracker never shows the phone number"
    );

    // The admin: accounts (deactivate one and hand its reports over, with the page's form),
    // the audit log and the dead letters.
    b.goto(&format!("{base}/login"));
    b.type_into("#username", "admin");
    b.type_into("#password", &support::desk::password("admin"));
    b.click("button[type=submit]");
    b.wait_url("/dashboard");
    b.goto(&format!("{base}/admin/users"));
    let text = b.text();
    assert!(text.contains("dishub1 (uji)") && text.contains("Petugas penghubung OPD"));
    b.shot("users");
    b.js("document.querySelector(\"form[action='/admin/users/dishub1/deactivate'] select\").value = 'dishub2'; return 0");
    b.click("form[action='/admin/users/dishub1/deactivate'] button[type=submit]");
    b.wait_url("?ok=deactivate");
    assert!(b.text().contains("Akun dinonaktifkan"));
    let v = t
        .login("operator")
        .get(&format!("/api/reports/{cctv_answered}"))
        .json();
    assert_eq!(
        v["officer"], "dishub2 (uji)",
        "the open report went to the colleague"
    );
    b.goto(&format!("{base}/audit"));
    let text = b.text();
    assert!(
        text.contains("Akun dinonaktifkan") && text.contains("Dialihkan"),
        "audit shows the change"
    );
    b.shot("audit");
    b.goto(&format!("{base}/dead-letters"));
    assert!(b.text().contains("malformed JSON"));
    b.shot("dead-letters");
}
