//! TLS end to end, and start-up: a corrupt outbox, unsafe or impossible broker settings.

use super::*;

/// `simpang run` with the managed broker's TLS listener; the desk over mqtts with the CA simpang
/// generated; a remote site's producer over mqtts; a client with another CA fails.
#[test]
fn tls_end_to_end_with_the_generated_ca_and_a_wrong_ca_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, tls0) = (support::ports::port(), support::ports::port());
    let cfg_path = support::simpang::run_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{plain}\"\nembedded_tls_listen = \"127.0.0.1:{tls0}\"\nclient_id = \"tls\"\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0"
        ),
        "offline_grace_s = 1.0\nupdate_interval_s = 600.0",
        &["ampera", "bkb"],
    );
    let run = support::simpang::Run::start(&cfg_path, &[]);
    // The ports the run got (new ones if another program had taken them).
    let tls = run.mqtt_tls_port();
    let data = dir.path().join("data");
    let ca_path = data.join("mqtt/tls/ca.pem");
    let ca = std::fs::read(&ca_path).expect("simpang made a CA");
    assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));

    // The desk over mqtts with the generated CA and its generated login.
    let t = TestDesk::start(
        Kind::Sqlite,
        Opts {
            broker: Some(format!("mqtts://localhost:{tls}")),
            mqtt_toml: format!(
                "ca_file = {:?}\ncredentials_file = {:?}\n",
                ca_path,
                data.join("mqtt/clients/desk.toml")
            ),
            ..Default::default()
        },
    );
    assert!(
        poll(WAIT, || t.desk.intake_subscribed().then_some(())).is_some(),
        "the desk connected over TLS"
    );
    // The camera is unreachable: camera_offline from simpang run reaches the desk.
    let cctv = || {
        t.block_on(async {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT site_id, incident_kind FROM reports WHERE site_id IS NOT NULL",
            )
            .fetch_all(t.desk.store().pool())
            .await
            .unwrap();
            rows
        })
    };
    assert!(
        poll(Duration::from_secs(60), || cctv()
            .iter()
            .any(|(s, k)| s == "ampera" && k == "camera_offline")
            .then_some(()))
        .is_some(),
        "run -> broker -> desk over mqtts; run log:\n{}",
        run.log()
    );

    // A site on another machine: its producer connects over mqtts with the CA and its own
    // client file.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let remote = stage_config_sites(
        &dir.path().join("remote"),
        &format!(
            "broker = \"mqtts://localhost:{tls}\"\nca_file = {:?}\ncredentials_file = {:?}\nclient_id = \"remote\"",
            ca_path,
            data.join("mqtt/clients/site-bkb.toml")
        ),
        BKB,
    );
    let registry = Registry::new();
    let svc = rt
        .block_on(IncidentService::start(&remote, hub(), &registry))
        .expect("remote stage starts");
    let start = Utc::now();
    svc.sender()
        .rule_event(jam("bkb", RulePhase::Start, "macet", start));
    let id = incident_id("bkb", Some("lajur"), IncidentKind::TrafficJam, start);
    assert!(
        poll(WAIT, || report_of(&t, &id)).is_some(),
        "remote site -> broker -> desk, all over mqtts"
    );

    // Another CA: the handshake fails, nothing is let in.
    let other = make_tls(dir.path(), "other");
    let other_ca = std::fs::read(&other.ca).unwrap();
    let v = support::mqtt::embedded_login(&data, "viewer");
    rt.block_on(async {
        match Conn::new(tls, "wrong-ca")
            .login(&v.0, &v.1)
            .tls(&other_ca)
            .connect()
            .await
        {
            Err(ConnectionError::Tls(e)) => eprintln!("wrong CA refused: {e}"),
            Err(e) => panic!("wrong CA: expected a TLS error, got {e:?}"),
            Ok(_) => panic!("a client trusting another CA connected"),
        }
        // Plain MQTT on the TLS port: no CONNACK.
        assert!(Conn::new(tls, "plain-on-tls")
            .login(&v.0, &v.1)
            .connect()
            .await
            .is_err());
        // And the right CA for the viewer works.
        Conn::new(tls, "right-ca")
            .login(&v.0, &v.1)
            .tls(&ca)
            .connect()
            .await
            .expect("the generated CA is trusted");
        svc.stop().await;
    });
    drop(t);
    drop(run);
}

/// A damaged outbox.db is moved aside with its time and `simpang run` starts, saying so.
#[test]
fn a_corrupt_outbox_is_moved_aside_and_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg_path = support::simpang::run_config(
        dir.path(),
        &format!("broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"corrupt\""),
        "",
        &["ampera"],
    );
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("outbox.db"),
        b"this is not a database, it is a broken disk".repeat(200),
    )
    .unwrap();
    let run = support::simpang::Run::start(&cfg_path, &[]);
    let port = run.mqtt_port();
    let kept: Vec<PathBuf> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("outbox.db.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "moved aside: {kept:?}");
    let log = run.log();
    let line = log
        .lines()
        .find(|l| l.contains("damaged"))
        .unwrap_or_else(|| panic!("no warning in:\n{log}"));
    assert!(
        line.contains("WARN")
            && line.contains("outbox.db")
            && line.contains(&*kept[0].file_name().unwrap().to_string_lossy()),
        "{line}"
    );
    // And it works: the site's status reaches the broker.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sub = Subscriber::viewer(port, "corrupt-viewer", &data);
        let schemas = Schemas::load();
        assert!(
            sub.wait_for(WAIT, |m| analyse(m, &schemas)
                .last_status("ampera")
                .is_some())
                .await
        );
        sub.stop().await;
    });
    drop(run);
}

/// A plain listener on the network, or a missing Mosquitto, stops `simpang run` with an error
/// that names the setting.
#[test]
fn unsafe_or_impossible_broker_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "network",
            format!("broker = \"embedded\"\nembedded_listen = \"0.0.0.0:{}\"", support::ports::port()),
            "mqtt.embedded_listen",
        ),
        (
            "mosquitto",
            format!(
                "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{}\"\nmosquitto = \"/nonexistent/mosquitto\"",
                support::ports::port()
            ),
            "/nonexistent/mosquitto",
        ),
    ];
    for (name, mqtt, want) in cases {
        let sub = dir.path().join(name);
        std::fs::create_dir_all(&sub).unwrap();
        let cfg_path = support::simpang::run_config(&sub, &mqtt, "", &["ampera"]);
        let mut p = Proc::simpang(
            "run",
            &["run", "--config", &cfg_path.display().to_string()],
            &[],
        );
        assert!(
            poll(Duration::from_secs(120), || !p.is_running()).is_some(),
            "{name}: still running"
        );
        let st = p.terminate(Duration::ZERO).expect("exited");
        assert!(!st.success(), "{name}: started");
        let log = p.log();
        assert!(log.contains(want), "{name}: {log}");
    }
}

/// The broker is a supervised child: killed, it is started again and the sites reconnect;
/// stopped with the stage, it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_is_restarted_when_it_dies_and_stopped_with_simpang() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::ports::port();
    let cfg = stage_config(
        dir.path(),
        &format!(
            "broker = \"embedded\"\nembedded_listen = \"127.0.0.1:{port}\"\nclient_id = \"sup\""
        ),
    );
    let registry = Registry::new();
    let svc = IncidentService::start(&cfg, hub(), &registry)
        .await
        .unwrap();
    let broker = svc.managed_broker().expect("managed");
    let pid = broker.pid().expect("running");
    // SAFETY: a signal to the broker child this test's stage started.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let metric = |name: &str| Metrics::of(&registry).sum(name, &[]).unwrap_or(0.0);
    assert!(
        poll_async(WAIT, || metric("simpang_mqtt_broker_restarts_total") >= 1.0
            && broker.pid().is_some_and(|p| p != pid))
        .await
        .is_some(),
        "started again"
    );
    assert!(
        poll_async(WAIT, || metric("simpang_mqtt_connected") >= 2.0)
            .await
            .is_some(),
        "both sites reconnected"
    );
    let data = cfg.data_dir();
    let sub = Subscriber::viewer(port, "sup-viewer", &data);
    assert!(sub.wait_subscribed(WAIT).await);
    let start = Utc::now();
    svc.sender()
        .rule_event(jam("bkb", RulePhase::Start, "padat", start));
    let id = incident_id("bkb", Some("lajur"), IncidentKind::TrafficJam, start);
    let schemas = Schemas::load();
    assert!(
        sub.wait_for(WAIT, |m| analyse(m, &schemas).incidents.contains_key(&id))
            .await
    );
    sub.stop().await;
    let pid = broker.pid().unwrap();
    svc.stop().await;
    assert!(
        poll(WAIT, || (!Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")))
        .then_some(()))
        .is_some(),
        "the broker stopped with the stage"
    );
}
