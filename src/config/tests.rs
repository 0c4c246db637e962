use std::path::Path;

use super::*;

const GOOD: &str = r#"
[city]
name = "Palembang"

[[sites]]
id = "bkb"
name = "BKB"
address = "Jl. X"
lat = -2.99
lon = 104.76
stream = "rtsp://127.0.0.1:8554/bkb"

[[sites.zones]]
id = "plaza"
name = "Plaza"
kind = "crowd"
polygon = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]
[sites.zones.crowd]
min_persons = 5

[[sites.lines]]
id = "l1"
name = "Line"
points = [[0.0, 0.5], [1.0, 0.5]]
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_str_at(text, Path::new("/etc/simpang/test.toml"))
}

fn only_problem(text: &str) -> Problem {
    let err = load(text).expect_err("config should be rejected");
    let p = err.problems();
    assert_eq!(p.len(), 1, "{err}");
    p[0].clone()
}

#[test]
fn good_config_loads_with_defaults() {
    let c = load(GOOD).unwrap();
    assert_eq!(c.sites[0].zones[0].crowd.as_ref().unwrap().min_persons, 5);
    assert_eq!(c.detect.fps, 5.0);
    assert_eq!(c.mqtt.broker, "embedded");
    assert_eq!(c.city.timezone, "Asia/Jakarta");
    assert_eq!(c.sites[0].lines[0].intervals_s, vec![60, 900]);
    assert_eq!(c.sites[0].camera_id(), "bkb");
    assert_eq!(c.wall.grid(), Some((3, 2)));
    assert_eq!(
        c.resolve(Path::new("../models/m.toml")),
        Path::new("/etc/simpang/../models/m.toml")
    );
}

#[test]
fn shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/palembang.toml");
    let c = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = c.sites.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "bkb",
            "ampera",
            "charitas",
            "masjid-agung",
            "simpang-lima",
            "kapten-rivai"
        ]
    );
    assert!(c.sites.iter().all(|s| s.location_approximate));
}

#[test]
fn bad_configs_name_file_line_and_field() {
    // duplicate site id
    let dup = format!(
        "{GOOD}\n[[sites]]\nid = \"bkb\"\nname = \"Again\"\naddress = \"a\"\nlat = 0.0\nlon = 0.0\nstream = \"rtsp://h/x\"\n"
    );
    let p = only_problem(&dup);
    assert_eq!(p.field, "sites[1].id");
    assert!(p.message.contains("duplicate site id"), "{p}");
    assert_eq!(
        p.line,
        dup.lines().position(|l| l == "name = \"Again\"").unwrap()
    );

    // 2-point polygon
    let two = GOOD.replace(
        "polygon = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]",
        "polygon = [[0.1, 0.1], [0.9, 0.1]]",
    );
    let p = only_problem(&two);
    assert_eq!(p.field, "sites[0].zones[0].polygon");
    assert!(p.message.contains("at least 3 points"), "{p}");
    assert_eq!(
        p.line,
        1 + two.lines().position(|l| l.starts_with("polygon")).unwrap()
    );

    // point outside [0,1]
    let out = GOOD.replace("[0.5, 0.9]]", "[0.5, 1.9]]");
    let p = only_problem(&out);
    assert_eq!(p.field, "sites[0].zones[0].polygon[2]");

    // unknown key
    let unk = GOOD.replace("min_persons = 5", "min_persons = 5\ncolour = \"red\"");
    let p = only_problem(&unk);
    assert!(p.message.contains("unknown field `colour`"), "{p}");
    assert_eq!(p.field, "sites[0].zones[0].crowd.colour");
    assert_eq!(
        p.line,
        1 + unk.lines().position(|l| l.starts_with("colour")).unwrap()
    );

    // invalid URL
    let url = GOOD.replace("rtsp://127.0.0.1:8554/bkb", "rtsp://");
    let p = only_problem(&url);
    assert_eq!(p.field, "sites[0].stream");
    let url = GOOD.replace("rtsp://127.0.0.1:8554/bkb", "gopher://x/y");
    assert!(only_problem(&url).message.contains("unsupported scheme"));

    // detect_stream: not a URL, or the main stream again
    let sub = GOOD.replace(
        "stream = \"rtsp://127.0.0.1:8554/bkb\"",
        "stream = \"rtsp://127.0.0.1:8554/bkb\"\ndetect_stream = \"rtsp://\"",
    );
    let p = only_problem(&sub);
    assert_eq!(p.field, "sites[0].detect_stream");
    assert_eq!(
        p.line,
        1 + sub
            .lines()
            .position(|l| l.starts_with("detect_stream"))
            .unwrap()
    );
    let same = sub.replace(
        "detect_stream = \"rtsp://\"",
        "detect_stream = \"rtsp://127.0.0.1:8554/bkb\"",
    );
    let p = only_problem(&same);
    assert_eq!(p.field, "sites[0].detect_stream");
    assert!(p.message.contains("`stream` itself"), "{p}");
    let ok = sub.replace(
        "detect_stream = \"rtsp://\"",
        "detect_stream = \"rtsp://127.0.0.1:8554/bkb/sub\"",
    );
    assert_eq!(
        load(&ok).unwrap().sites[0].detect_stream.as_deref(),
        Some("rtsp://127.0.0.1:8554/bkb/sub")
    );

    // broken TOML
    let broken = GOOD.replace("name = \"Plaza\"", "name = \"Plaza");
    let p = only_problem(&broken);
    assert_eq!(
        p.line,
        1 + broken
            .lines()
            .position(|l| l.starts_with("name = \"Plaza"))
            .unwrap()
    );
    assert!(p.to_string().starts_with("/etc/simpang/test.toml:"), "{p}");

    // unknown zone kind
    let kind = GOOD.replace("kind = \"crowd\"", "kind = \"fire\"");
    let p = only_problem(&kind);
    assert_eq!(p.field, "sites[0].zones[0].kind");
    assert!(p.message.contains("unknown variant"), "{p}");

    // rule table that does not match the kind
    let mism = GOOD
        .replace("[sites.zones.crowd]", "[sites.zones.garbage]")
        .replace("min_persons = 5", "dwell_s = 5.0");
    let p = only_problem(&mism);
    assert_eq!(p.field, "sites[0].zones[0].garbage");
}

#[test]
fn several_problems_reported_together() {
    let text = GOOD
        .replace("lat = -2.99", "lat = -200.0")
        .replace("[1.0, 0.5]]", "[0.0, 0.5]]")
        .replace(
            "name = \"Palembang\"",
            "name = \"Palembang\"\ntimezone = \"Mars/Olympus\"",
        );
    let err = load(&text).unwrap_err();
    let fields: Vec<_> = err.problems().iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["city.timezone", "sites[0].lat", "sites[0].lines[0].points"]
    );
    let shown = err.to_string();
    assert_eq!(shown.lines().count(), 3);
}

#[test]
fn broker_urls() {
    for ok in ["mqtt://127.0.0.1:1883", "mqtts://broker.example:8883"] {
        assert!(check_broker_url(ok).is_ok(), "{ok}");
    }
    for bad in ["", "127.0.0.1:1883", "http://x", "mqtt://"] {
        assert!(check_broker_url(bad).is_err(), "{bad}");
    }
}

// --- [mqtt] credentials, TLS and reconnect settings (incident stage) ---
#[test]
fn mqtt_security_settings() {
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_pem = dir.path().join("x.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let with = |mqtt: &str| format!("[mqtt]\n{mqtt}\n{GOOD}");
    let ok = load(&with(&format!(
        "broker = \"mqtts://b.example\"\nca_file = {pem:?}\nusername = \"u\"\npassword = \"p\""
    )))
    .unwrap();
    assert_eq!(ok.mqtt.reconnect_initial_s, 0.5);
    assert!(broker_uses_tls(&ok.mqtt.broker));
    let cases = [
        ("password = \"p\"", "mqtt.password", "without mqtt.username"),
        (
            "broker = \"mqtt://b.example\"\nca_file = \"/x/ca.pem\"",
            "mqtt.ca_file",
            "not an mqtts:// URL",
        ),
        (
            "broker = \"mqtts://b.example\"\nca_file = \"/no/such/ca.pem\"",
            "mqtt.ca_file",
            "cannot read CA file",
        ),
        (
            &format!("broker = \"mqtts://b.example\"\nca_file = {not_pem:?}"),
            "mqtt.ca_file",
            "no PEM certificate",
        ),
        (
            "reconnect_initial_s = 5.0\nreconnect_max_s = 1.0",
            "mqtt.reconnect_initial_s",
            "not above reconnect_max_s",
        ),
        ("keep_alive_s = 1", "mqtt.keep_alive_s", "5..=3600"),
    ];
    for (mqtt, field, msg) in cases {
        let p = only_problem(&with(mqtt));
        assert_eq!(p.field, field, "{mqtt}");
        assert!(p.message.contains(msg), "{mqtt}: {}", p.message);
        assert!(p.line >= 2, "{mqtt}: located at line {}", p.line);
    }
    let p = only_problem(&format!("[incidents]\noutbox_max_messages = 10\n{GOOD}"));
    assert_eq!(p.field, "incidents.outbox_max_messages");
    let p = only_problem(&format!("[ingest]\ndecoder_threads = 65\n{GOOD}"));
    assert_eq!(p.field, "ingest.decoder_threads");
    assert!(p.message.contains("got 65"), "{}", p.message);
    assert_eq!(p.line, 2);
}

#[test]
fn wall_settings_are_checked() {
    let with_wall = |wall: &str| format!("[wall]\n{wall}\n{GOOD}");
    let cases = [
        ("mosaic_fps = 0.0", "wall.mosaic_fps", "(0, 60]"),
        (
            "rtsp_bitrate_kbps = 10",
            "wall.rtsp_bitrate_kbps",
            "100..=100000",
        ),
        (
            "mosaic_bitrate_kbps = 1000000",
            "wall.mosaic_bitrate_kbps",
            "100..=100000",
        ),
        (
            "listen = \"127.0.0.1:8555\"\nrtsp_port = 8555",
            "wall.rtsp_port",
            "also the HTTP port",
        ),
        (
            "rtsp_address = \"not-an-ip\"",
            "wall.rtsp_address",
            "invalid IP address",
        ),
        ("live_delay_ms = 5000", "wall.live_delay_ms", "0..=2000"),
        ("live_max_viewers = 0", "wall.live_max_viewers", "1..=10000"),
        ("live = \"yes\"", "wall.live", "bool"),
    ];
    for (wall, field, msg) in cases {
        let text = with_wall(wall);
        let p = only_problem(&text);
        assert_eq!(p.field, field, "{wall}: {p}");
        assert!(p.message.contains(msg), "{wall}: {p}");
        let key = field.trim_start_matches("wall.");
        assert_eq!(
            p.line,
            1 + text.lines().position(|l| l.starts_with(key)).unwrap(),
            "{wall}: {p}"
        );
    }
    let ok = load(&with_wall(
        "rtsp_port = 0\nrtsp_address = \"0.0.0.0\"\ntitle = \"Lawang Jabo\"",
    ))
    .unwrap();
    assert_eq!(
        (ok.wall.rtsp_port, ok.wall.title.as_str()),
        (0, "Lawang Jabo")
    );
    assert_eq!(
        (ok.wall.mosaic_fps, ok.wall.rtsp_bitrate_kbps),
        (15.0, 1500)
    );
}

proptest::proptest! {
    /// A config file is outside data too (an operator's typo, a damaged file): any text, and
    /// the shipped config with one byte changed, load or give an error, never a panic.
    #[test]
    fn any_text_loads_or_is_refused(text in "(?s).{0,300}") {
        let _ = Config::from_str_at(&text, Path::new("fuzz.toml"));
    }

    #[test]
    fn a_damaged_shipped_config_loads_or_is_refused(at in 0usize..20_000, byte in 0u8..128) {
        let shipped = include_str!("../../config/palembang.toml");
        let mut b = shipped.as_bytes().to_vec();
        let i = at % b.len();
        b[i] = byte;
        if let Ok(text) = String::from_utf8(b) {
            let _ = Config::from_str_at(&text, Path::new("palembang.toml"));
        }
    }
}

// --- [mqtt] of the managed broker, [desk.mqtt] bounds ---
#[test]
fn managed_broker_settings() {
    let with = |mqtt: &str| format!("[mqtt]\n{mqtt}\n{GOOD}");
    let ok = load(&with(
        "embedded_tls_listen = \"0.0.0.0:8883\"\nembedded_tls_names = [\"broker.kota.example\", \"10.0.0.5\"]",
    ))
    .unwrap();
    assert_eq!(ok.mqtt.embedded_tls_listen.map(|a| a.port()), Some(8883));
    assert!(ok.mqtt.sign_messages);
    let cases = [
        (
            "embedded_listen = \"0.0.0.0:1883\"",
            "mqtt.embedded_listen",
            "not a loopback address",
        ),
        (
            "embedded_listen = \"10.1.2.3:1883\"",
            "mqtt.embedded_listen",
            "mqtt.embedded_tls_listen",
        ),
        (
            "username = \"u\"\npassword = \"p\"",
            "mqtt.username",
            "its own login",
        ),
        (
            "embedded_tls_listen = \"127.0.0.1:1883\"",
            "mqtt.embedded_tls_listen",
            "port of mqtt.embedded_listen",
        ),
        (
            "embedded_tls_listen = \"127.0.0.1:8883\"\nembedded_tls_cert = \"/x.pem\"",
            "mqtt.embedded_tls_key",
            "is needed",
        ),
        (
            "embedded_tls_listen = \"127.0.0.1:8883\"\nembedded_tls_names = [\"a b\"]",
            "mqtt.embedded_tls_names[0]",
            "not a host name",
        ),
        (
            "credentials_file = \"/x.toml\"",
            "mqtt.credentials_file",
            "external broker",
        ),
        (
            "broker = \"mqtt://b.example\"\ncredentials_file = \"/no/such.toml\"",
            "mqtt.credentials_file",
            "simpang mqtt-credentials",
        ),
        (
            "broker = \"mqtt://b.example\"\nembedded_tls_listen = \"127.0.0.1:8883\"",
            "mqtt.embedded_tls_listen",
            "managed broker",
        ),
    ];
    for (mqtt, field, msg) in cases {
        let p = only_problem(&with(mqtt));
        assert_eq!(p.field, field, "{mqtt}");
        assert!(p.message.contains(msg), "{mqtt}: {}", p.message);
    }
    let desk = |t: &str| format!("{GOOD}\n[desk.mqtt]\n{t}\n");
    for (t, field) in [
        ("max_seq_jump = 0", "desk.mqtt.max_seq_jump"),
        ("max_age_s = 1", "desk.mqtt.max_age_s"),
        (
            "dead_letter_keep_bytes = 10",
            "desk.mqtt.dead_letter_keep_bytes",
        ),
        ("dead_letter_max_rows = 0", "desk.mqtt.dead_letter_max_rows"),
        (
            "broker = \"mqtt://x\"\nca_file = \"/ca.pem\"",
            "desk.mqtt.ca_file",
        ),
    ] {
        assert_eq!(only_problem(&desk(t)).field, field, "{t}");
    }
}

// --- broker lists (a cluster's nodes) ---
#[test]
fn broker_lists() {
    let with = |mqtt: &str, desk: &str| format!("[mqtt]\n{mqtt}\n{GOOD}\n[desk.mqtt]\n{desk}\n");
    let nodes = "brokers = [\"mqtt://n1:1883\", \"mqtt://n2:1883\", \"mqtt://n3:1883\"]";
    let c = load(&with(nodes, nodes)).unwrap();
    // `broker` is the first node, so whatever asks it sees an external broker.
    assert_eq!(c.mqtt.broker, "mqtt://n1:1883");
    assert_eq!(
        c.mqtt.broker_urls(),
        ["mqtt://n1:1883", "mqtt://n2:1883", "mqtt://n3:1883"]
    );
    assert_eq!(c.desk.mqtt.broker, "mqtt://n1:1883");
    assert_eq!(c.desk.mqtt.broker_urls().len(), 3);
    // A single broker is a list of one; a caller that sets `broker` after loading (the bench's
    // managed broker) means that broker, not the list.
    let mut single = load(&with("broker = \"mqtt://b:1883\"", "")).unwrap();
    assert_eq!(single.mqtt.broker_urls(), ["mqtt://b:1883"]);
    assert_eq!(single.desk.mqtt.broker_urls(), ["mqtt://127.0.0.1:1883"]);
    single.mqtt.brokers = vec!["mqtt://b:1883".into(), "mqtt://c:1883".into()];
    single.mqtt.broker = "embedded".into();
    assert_eq!(single.mqtt.broker_urls(), ["embedded"]);
    assert!(single.validate().is_empty(), "{:?}", single.validate());

    let cases = [
        (
            with(&format!("broker = \"mqtt://x:1883\"\n{nodes}"), ""),
            "mqtt.brokers",
            "set one of them",
        ),
        (
            with("brokers = [\"mqtt://a:1883\", \"http://b\"]", ""),
            "mqtt.brokers[1]",
            "unsupported scheme",
        ),
        (
            with("brokers = [\"mqtt://a:1883\", \"mqtt://a:1883\"]", ""),
            "mqtt.brokers[1]",
            "twice",
        ),
        (
            with("brokers = [\"mqtts://a:8883\", \"mqtt://b:1883\"]", ""),
            "mqtt.brokers",
            "mixes",
        ),
        (
            with("", "brokers = [\"mqtt://a:1883\", \"none\"]"),
            "desk.mqtt.brokers[1]",
            "not \"embedded\" nor a valid URL",
        ),
        (
            with("", "broker = \"none\"\nbrokers = [\"mqtt://a:1883\"]"),
            "desk.mqtt.brokers",
            "set one of them",
        ),
    ];
    for (text, field, msg) in cases {
        let p = only_problem(&text);
        assert_eq!(p.field, field, "{text}");
        assert!(p.message.contains(msg), "{text}: {}", p.message);
        assert!(p.line > 1, "the line of {field} in {text}");
    }
}
