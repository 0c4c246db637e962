//! The desk's intake under attack: forged, replayed, malformed incidents go to dead letters.

use super::*;

/// Dead letters with their reasons, oldest first.
fn dead_letters(t: &TestDesk) -> Vec<String> {
    t.block_on(async {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT reason FROM dead_letters ORDER BY id")
            .fetch_all(t.desk.store().pool())
            .await
            .unwrap();
        rows.into_iter().map(|r| r.0).collect()
    })
}

/// The message as JSON (without its signature), to forge from.
fn json_of(payload: &[u8]) -> serde_json::Value {
    serde_json::from_slice(&support::mqtt::unsigned(payload)).unwrap()
}

fn signed(key: &SigningKey, v: &serde_json::Value) -> Vec<u8> {
    sign::sign(key, &serde_json::to_vec(v).unwrap()).unwrap()
}

/// A compromised site (its login and its signing key in the attacker's hands) and a broken
/// one send forged messages; each goes to the dead letters with its reason, none changes the
/// report, and the genuine update and `end` still apply.
#[test]
fn forged_incidents_go_to_dead_letters_and_the_genuine_end_closes_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg = stage_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"forge\""
        ),
    );
    let data = cfg.data_dir();
    // The producer's runtime: the stage and the test's clients run on it.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let svc = rt
        .block_on(IncidentService::start(&cfg, hub(), &Registry::new()))
        .expect("starts");
    let c = creds(&data);
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            broker: Some(format!("mqtt://127.0.0.1:{port}")),
            mqtt_toml: format!(
                "credentials_file = {:?}\nmax_message_bytes = {MAX_MESSAGE}\ndead_letter_keep_bytes = {KEEP_BYTES}\ndead_letter_max_rows = {MAX_ROWS}\n",
                data.join("mqtt/clients/desk.toml")
            ),
            ..Default::default()
        },
    );
    assert!(
        poll(WAIT, || t.desk.intake_subscribed().then_some(())).is_some(),
        "the desk logs in with its generated login"
    );
    assert_eq!(
        t.desk.intake.signing_keys(),
        2,
        "and checks both sites' signatures"
    );
    let sub = rt.block_on(async {
        let s = Subscriber::viewer(port, "forge-viewer", &data);
        assert!(s.wait_subscribed(WAIT).await);
        s
    });

    // The genuine `new`.
    let start = Utc::now() - chrono::Duration::seconds(60);
    let id = incident_id("ampera", Some("lajur"), IncidentKind::TrafficJam, start);
    svc.sender()
        .rule_event(jam("ampera", RulePhase::Start, "padat", start));
    assert!(
        poll(WAIT, || report_of(&t, &id).filter(|r| r.0 == 1)).is_some(),
        "the genuine new became a report"
    );
    let genuine_new = rt
        .block_on(async {
            sub.wait_for(WAIT, |m| {
                m.iter().any(|r| r.topic.ends_with("ampera/incidents"))
            })
            .await;
            sub.messages()
        })
        .into_iter()
        .find(|r| r.topic.ends_with("ampera/incidents"))
        .unwrap();
    assert!(is_signed(&genuine_new.payload));

    let key_a = c.signing_key("ampera").unwrap().unwrap();
    let key_b = c.signing_key("bkb").unwrap().unwrap();
    let pa = password(&c, "site-ampera");
    let base = json_of(&genuine_new.payload);
    let mut forged: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    // Holding only the login (a wrong or no key):
    let mut v = base.clone();
    v["incident"]["title"] = "Jembatan Ampera ditutup".into();
    let mut tampered = genuine_new.payload.clone();
    let at = tampered.windows(5).position(|w| w == b"title").unwrap();
    tampered[at + 9] ^= 0x01; // a byte of the signed title changed, the signature kept
    forged.push((
        "a byte changed under the signature",
        tampered,
        "does not match",
    ));
    forged.push((
        "no signature",
        serde_json::to_vec(&v).unwrap(),
        "not signed",
    ));
    forged.push((
        "signed with another site's key",
        signed(&key_b, &v),
        "does not match",
    ));
    // Holding the key too (a stolen site box):
    let mut jump = base.clone();
    jump["event"] = "update".into();
    jump["incident"]["seq"] = 4_294_967_295u32.into();
    forged.push(("seq 4294967295", signed(&key_a, &jump), "max_seq_jump"));
    let mut fake = base.clone();
    fake["incident"]["site"] = "palsu".into();
    fake["incident"]["id"] = "palsu-traffic_jam-1".into();
    forged.push((
        "a site that does not exist",
        signed(&key_a, &fake),
        "differs from incident.site",
    ));
    let mut old = base.clone();
    old["incident"]["id"] = "ampera-old-1".into();
    old["incident"]["updated_at"] = "2025-01-01T10:00:00+07:00".into();
    old["incident"]["started_at"] = "2025-01-01T09:00:00+07:00".into();
    forged.push(("a month-old message", signed(&key_a, &old), "max_age_s"));

    // The desk's store is read on the desk's own runtime, so the waits run outside `rt`.
    let mut attacker = rt.block_on(async {
        Conn::new(port, "forge-attacker")
            .login("site-ampera", &pa)
            .connect()
            .await
            .unwrap()
    });
    for (what, payload, _) in &forged {
        let before = dead_letters(&t).len();
        rt.block_on(attacker.publish("simpang/v1/sites/ampera/incidents", payload.clone(), false));
        assert!(
            poll(WAIT, || (dead_letters(&t).len() > before).then_some(())).is_some(),
            "{what}: not dead-lettered"
        );
    }
    rt.block_on(async {
        // On the fake site's own topic the broker drops it before the desk.
        attacker
            .publish(
                "simpang/v1/sites/palsu/incidents",
                signed(&key_a, &fake),
                false,
            )
            .await;
        // A replay of the genuine new, byte for byte: a repeat, nothing changes.
        attacker
            .publish(
                "simpang/v1/sites/ampera/incidents",
                genuine_new.payload.clone(),
                false,
            )
            .await;
    });
    let reasons = dead_letters(&t);
    assert_eq!(reasons.len(), forged.len(), "{reasons:#?}");
    for ((what, _, why), reason) in forged.iter().zip(&reasons) {
        assert!(reason.contains(why), "{what}: {reason}");
    }
    assert_eq!(
        report_of(&t, &id),
        Some((1, false)),
        "no forged message changed the report"
    );
    assert_eq!(
        t.counts().reports,
        1,
        "no report for a forged site or incident"
    );

    // The genuine update and end still apply.
    svc.sender()
        .rule_event(jam("ampera", RulePhase::Update, "macet", start));
    assert!(
        poll(WAIT, || report_of(&t, &id).filter(|r| r.0 == 2)).is_some(),
        "the genuine update applied after the forged seq"
    );
    svc.sender()
        .rule_event(jam("ampera", RulePhase::End, "macet", start));
    assert!(
        poll(WAIT, || report_of(&t, &id).filter(|r| *r == (3, true))).is_some(),
        "the genuine end closed the report: {:?}",
        report_of(&t, &id)
    );
    assert_eq!(
        dead_letters(&t).len(),
        forged.len(),
        "nothing genuine was dead-lettered"
    );
    let actions = t.audit_actions(&t.block_on(async {
        let (tk,): (String,) = sqlx::query_as("SELECT ticket FROM reports WHERE incident_id = $1")
            .bind(&id)
            .fetch_one(t.desk.store().pool())
            .await
            .unwrap();
        tk
    }));
    assert!(
        actions.ends_with(&["incident_update".to_string(), "incident_end".to_string()]),
        "{actions:?}"
    );
    eprintln!(
        "intake: {} forged messages + 1 dropped by the broker + 1 replay; {} dead letters, 1 report, 0 genuine lost",
        forged.len(),
        reasons.len()
    );

    // Oversized, signed with the right key: dead-lettered (the desk takes it off the broker
    // rather than looping on it), and only its first KEEP_BYTES are kept.
    let mut big = base.clone();
    big["incident"]["id"] = "ampera-big-1".into();
    big["incident"]["description"] = "x".repeat(4 * MAX_MESSAGE).into();
    let big = signed(&key_a, &big);
    // A fresh connection: the first one's keep-alive went unserved while the test waited.
    let mut attacker = rt.block_on(async {
        Conn::new(port, "forge-attacker-2")
            .login("site-ampera", &pa)
            .connect()
            .await
            .unwrap()
    });
    let before = dead_letters(&t).len();
    rt.block_on(attacker.publish("simpang/v1/sites/ampera/incidents", big.clone(), false));
    assert!(
        poll(WAIT, || (dead_letters(&t).len() > before).then_some(())).is_some(),
        "the oversized message was not dead-lettered"
    );
    let (reason, kept, size) = last_dead_letter(&t);
    assert!(
        reason.contains(&format!("exceeds {MAX_MESSAGE}")),
        "{reason}"
    );
    assert!(reason.contains("payload cut"), "{reason}");
    assert_eq!((kept, size), (KEEP_BYTES, big.len()));

    // A flood of junk: the table keeps the newest MAX_ROWS, intake keeps up, and the genuine
    // incident that follows becomes a report.
    const FLOOD: usize = 400;
    for n in 0..FLOOD {
        let junk = format!("flood {n} {}", "z".repeat(900)).into_bytes();
        rt.block_on(attacker.publish("simpang/v1/sites/ampera/incidents", junk, false));
    }
    assert!(
        poll(WAIT, || last_dead_letter(&t)
            .0
            .contains("malformed JSON")
            .then(|| dead_letters_preview(&t))
            .filter(|p| p.starts_with(&format!("flood {}", FLOOD - 1))))
        .is_some(),
        "the flood's last message was not dead-lettered"
    );
    assert_eq!(dead_letters(&t).len(), MAX_ROWS, "dead letters bounded");
    let start2 = Utc::now() - chrono::Duration::seconds(5);
    let id2 = incident_id("ampera", Some("lajur"), IncidentKind::TrafficJam, start2);
    svc.sender()
        .rule_event(jam("ampera", RulePhase::Start, "padat", start2));
    assert!(
        poll(WAIT, || report_of(&t, &id2)).is_some(),
        "a genuine incident after the flood became a report"
    );
    eprintln!(
        "intake: 1 oversized ({} bytes, {KEEP_BYTES} kept) + {FLOOD} junk messages: {} dead letters kept, genuine incident after the flood stored",
        big.len(),
        dead_letters(&t).len()
    );
    rt.block_on(async {
        sub.stop().await;
        svc.stop().await;
    });
    drop(t);
}

const MAX_MESSAGE: usize = 65_536;
const KEEP_BYTES: usize = 4096;
const MAX_ROWS: usize = 50;

/// (reason, bytes kept, size) of the newest dead letter.
fn last_dead_letter(t: &TestDesk) -> (String, usize, usize) {
    t.block_on(async {
        let (reason, payload, size): (String, Vec<u8>, i64) = sqlx::query_as(
            "SELECT reason, payload, size FROM dead_letters ORDER BY id DESC LIMIT 1",
        )
        .fetch_one(t.desk.store().pool())
        .await
        .unwrap();
        (reason, payload.len(), size as usize)
    })
}

/// The newest dead letter's payload as text.
fn dead_letters_preview(t: &TestDesk) -> String {
    t.block_on(async {
        let (payload,): (Vec<u8>,) =
            sqlx::query_as("SELECT payload FROM dead_letters ORDER BY id DESC LIMIT 1")
                .fetch_one(t.desk.store().pool())
                .await
                .unwrap();
        String::from_utf8_lossy(&payload).into_owned()
    })
}
