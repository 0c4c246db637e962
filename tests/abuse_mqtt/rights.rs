//! Logins and topic rights: who may connect, publish, subscribe, leave a will, on the managed
//! broker and on an external Mosquitto with the generated files.

use super::*;

/// The attacks on logins and topic rights, on a broker at `port` whose users are in `c`. The
/// viewer subscription `sub` (simpang/v1/#) watches. Returns (attacks tried, refused).
async fn rights_attacks(port: u16, c: &Credentials, sub: &Subscriber, tag: &str) -> (usize, usize) {
    let (pa, pb) = (password(c, "site-ampera"), password(c, "site-bkb"));
    let (pd, pv) = (password(c, "desk"), password(c, "viewer"));
    let mut tried = 0;
    let mut refused_n = 0;
    let mut ampera = Conn::new(port, &format!("{tag}-ampera"))
        .login("site-ampera", &pa)
        .connect()
        .await
        .expect("site-ampera logs in");

    // 1-3. Logins: none, a wrong password, a made-up user.
    for (what, login) in [
        ("anonymous", None),
        ("wrong password", Some(("viewer", "not-the-password"))),
        ("unknown user", Some(("mallory", "x"))),
    ] {
        tried += 1;
        let id = format!("{tag}-login-{tried}");
        let mut conn = Conn::new(port, &id);
        if let Some((u, p)) = login {
            conn = conn.login(u, p);
        }
        match conn.connect().await {
            Err(e) if refused(&e) => refused_n += 1,
            Err(e) => panic!("{what}: refused with an unexpected error {e:?}"),
            Ok(_) => panic!("{what}: the broker let it in"),
        }
    }

    // 4-8. Publishes outside the user's rights: never delivered.
    let forged = |n: usize| format!("{{\"forged\":{n}}}").into_bytes();
    let cases: Vec<(&str, &str, &str, &str, bool)> = vec![
        (
            "site-ampera",
            &pa,
            "simpang/v1/sites/bkb/incidents",
            "a site writes another's incidents",
            false,
        ),
        (
            "site-ampera",
            &pa,
            "simpang/v1/sites/bkb/status",
            "a site overwrites another's retained status",
            true,
        ),
        (
            "site-ampera",
            &pa,
            "simpang/v1/desk/reports/PLG-X/status",
            "a site writes the desk's topics",
            false,
        ),
        (
            "site-ampera",
            &pa,
            "simpang/v1/sites/ampera/other",
            "a site writes outside its three topics",
            false,
        ),
        (
            "desk",
            &pd,
            "simpang/v1/sites/ampera/incidents",
            "the desk forges a site's incident",
            false,
        ),
        (
            "viewer",
            &pv,
            "simpang/v1/sites/ampera/incidents",
            "a read-only client publishes",
            false,
        ),
        (
            "simpang-health",
            c.password("simpang-health").unwrap_or("none"),
            "simpang/v1/sites/ampera/status",
            "the health probe publishes",
            false,
        ),
    ];
    for (user, pw, topic, what, retain) in cases {
        if user == "simpang-health" && c.password(user).is_none() {
            continue; // an external broker has no health user
        }
        tried += 1;
        let payload = forged(tried);
        let mut attacker = Conn::new(port, &format!("{tag}-attack-{tried}"))
            .login(user, pw)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{user} logs in: {e:?}"));
        attacker.publish(topic, payload.clone(), retain).await;
        // The PUBACK came: the broker has handled it. A marker sent after it must arrive, and
        // the forged message, had it been let through, before it.
        let m = marker(&mut ampera, "ampera", tried).await;
        assert!(seen(sub, &m).await, "{what}: the marker never arrived");
        let text = String::from_utf8(payload).unwrap();
        assert!(
            !arrived(sub, &text),
            "{what}: {user} published on {topic} and it was delivered"
        );
        refused_n += 1;
    }

    // 9. A will on another site's status: never published.
    tried += 1;
    let will_text = format!("{{\"forged-will\":{tried}}}");
    match Conn::new(port, &format!("{tag}-will"))
        .login("site-ampera", &pa)
        .will(LastWill::new(
            "simpang/v1/sites/bkb/status",
            will_text.clone(),
            QoS::AtLeastOnce,
            true,
        ))
        .connect()
        .await
    {
        Err(e) if refused(&e) => refused_n += 1,
        Err(e) => panic!("will: unexpected error {e:?}"),
        Ok(c) => {
            // Gone without a DISCONNECT: the broker would publish the will now.
            drop(c);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let m = marker(&mut ampera, "ampera", tried).await;
            assert!(seen(sub, &m).await);
            assert!(!arrived(sub, &will_text), "a forged will was published");
            refused_n += 1;
        }
    }

    // 10. A producer reads nothing: subscribed to everything, it gets none of another site's
    // messages (delivered to the viewer meanwhile).
    tried += 1;
    let mut nosy = Conn::new(port, &format!("{tag}-nosy"))
        .login("site-ampera", &pa)
        .connect()
        .await
        .unwrap();
    nosy.subscribe("simpang/v1/#").await;
    let mut bkb = Conn::new(port, &format!("{tag}-bkb"))
        .login("site-bkb", &pb)
        .connect()
        .await
        .unwrap();
    let m = marker(&mut bkb, "bkb", tried).await;
    assert!(seen(sub, &m).await, "site-bkb may publish its own counts");
    let got = nosy.collect(Duration::from_millis(500)).await;
    assert!(got.is_empty(), "a producer read {got:?}");
    refused_n += 1;
    (tried, refused_n)
}

/// The managed broker refuses strangers and keeps every user to its topics, and the messages of
/// the real producer still all arrive, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_managed_broker_refuses_strangers_and_keeps_each_user_to_its_topics() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg = stage_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"abuse\""
        ),
    );
    let data = cfg.data_dir();
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub(), &registry)
        .await
        .expect("starts with its broker");
    let c = creds(&data);
    let sub = Subscriber::viewer(port, "abuse-viewer", &data);
    assert!(
        sub.wait_subscribed(WAIT).await,
        "the viewer logs in and subscribes"
    );
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(WAIT, |m| {
            let r = analyse(m, &schemas);
            r.last_status("ampera").is_some() && r.last_status("bkb").is_some()
        })
        .await,
        "both sites' statuses arrive"
    );

    let (tried, refused_n) = rights_attacks(port, &c, &sub, "managed").await;
    eprintln!("managed broker: {tried} attacks, {refused_n} refused");
    assert_eq!(tried, refused_n);
    assert_eq!(tried, 12);
    let m = Metrics::of(&registry);
    assert!(
        m.sum("simpang_mqtt_broker_denied_total", &[("what", "login")])
            .unwrap_or(0.0)
            >= 3.0
    );
    assert!(
        m.sum("simpang_mqtt_broker_denied_total", &[("what", "publish")])
            .unwrap_or(0.0)
            >= 7.0
    );

    // The genuine producer: an incident, its update and end, all delivered and all signed with
    // the site's key.
    let start = Utc::now();
    let tx = svc.sender();
    tx.rule_event(jam("ampera", RulePhase::Start, "padat", start));
    tx.rule_event(jam("ampera", RulePhase::Update, "macet", start));
    tx.rule_event(jam("ampera", RulePhase::End, "macet", start));
    let id = incident_id("ampera", Some("lajur"), IncidentKind::TrafficJam, start);
    assert!(
        sub.wait_for(WAIT, |m| analyse(m, &schemas).complete(1).contains(&id))
            .await,
        "the genuine incident arrives whole"
    );
    let key = c.signing_key("ampera").unwrap().expect("ampera has a key");
    let genuine: Vec<Received> = sub
        .messages()
        .into_iter()
        .filter(|r| r.topic == "simpang/v1/sites/ampera/incidents")
        .collect();
    assert_eq!(genuine.len(), 3);
    for r in &genuine {
        sign::verify(&key, &r.payload).expect("signed with the site's key");
    }
    // Everything else the producer sent is valid (the test's own markers aside).
    let real: Vec<Received> = sub
        .messages()
        .into_iter()
        .filter(|r| !r.payload.starts_with(b"marker-"))
        .collect();
    let report = analyse(&real, &schemas);
    assert!(report.errors.is_empty(), "{:#?}", report.errors);
    sub.stop().await;
    svc.stop().await;
}

/// `simpang mqtt-credentials` writes files an external Mosquitto enforces the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_mosquitto_with_the_generated_files_enforces_the_same_rights() {
    let dir = tempfile::tempdir().unwrap();
    // The config names the broker only later; the users come from the sites.
    let cfg = stage_config(&dir.path().join("gen"), "broker = \"mqtt://127.0.0.1:1\"");
    let out = dir.path().join("creds");
    let run = std::process::Command::new(support::bin())
        .args(["mqtt-credentials", "--config"])
        .arg(cfg.source.as_ref().unwrap())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("simpang runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let c = Credentials::load(&out.join("credentials.toml")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "credentials.toml",
        "passwd",
        "acl",
        "clients/site-ampera.toml",
        "clients/desk.toml",
    ] {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let passwd = std::fs::read_to_string(out.join("passwd")).unwrap();
    assert!(
        !passwd.contains(c.password("site-ampera").unwrap()),
        "the password file holds hashes only"
    );
    // A site's client file: its own login and key, nothing of the others.
    let site = Credentials::load(&out.join("clients/site-ampera.toml")).unwrap();
    assert_eq!(site.users.keys().collect::<Vec<_>>(), ["site-ampera"]);
    // Running it again keeps every secret.
    let again = std::process::Command::new(support::bin())
        .args(["mqtt-credentials", "--config"])
        .arg(cfg.source.as_ref().unwrap())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(Credentials::load(&out.join("credentials.toml")).unwrap(), c);

    let broker = Mosquitto::start_with(&MosquittoOpts {
        auth_files: Some((out.join("passwd"), out.join("acl"))),
        ..Default::default()
    });
    let port = broker.port;
    let sub = Subscriber::start(
        port,
        "ext-viewer",
        true,
        Some(("viewer", c.password("viewer").unwrap())),
    );
    assert!(sub.wait_subscribed(WAIT).await);
    let (tried, refused_n) = rights_attacks(port, &c, &sub, "external").await;
    eprintln!("external mosquitto: {tried} attacks, {refused_n} refused");
    // The same attacks less the health probe's (an external broker has no such user).
    assert_eq!((tried, refused_n), (11, 11));

    // simpang run's stage with the credentials file: logs in per site, signs, delivers.
    let cfg = stage_config(
        &dir.path().join("run"),
        &format!(
            "broker = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"ext\"\ncredentials_file = {:?}",
            out.join("credentials.toml")
        ),
    );
    let svc = IncidentService::start(&cfg, hub(), &Registry::new())
        .await
        .unwrap();
    let start = Utc::now();
    svc.sender()
        .rule_event(jam("bkb", RulePhase::Start, "padat", start));
    let id = incident_id("bkb", Some("lajur"), IncidentKind::TrafficJam, start);
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(WAIT, |m| analyse(m, &schemas).incidents.contains_key(&id))
            .await
    );
    let key = c.signing_key("bkb").unwrap().unwrap();
    let msg = sub
        .messages()
        .into_iter()
        .find(|r| r.topic == "simpang/v1/sites/bkb/incidents")
        .unwrap();
    sign::verify(&key, &msg.payload).expect("signed with bkb's key");
    sub.stop().await;
    svc.stop().await;
}
