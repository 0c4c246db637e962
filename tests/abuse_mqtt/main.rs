//! The MQTT side under attack, on loopback with the real parts: the managed broker (Mosquitto,
//! started by simpang), an external Mosquitto with the files `simpang mqtt-credentials` writes,
//! `simpang run`, and the desk with its database.
//!
//! Mosquitto answers a publish it refuses with a normal PUBACK (MQTT 3.1.1 has no negative
//! acknowledgement), so "refused" is checked where it matters: the message never reaches a
//! subscriber. Each refused publish is followed by a marker the same broker must deliver, and
//! the marker's arrival is the moment the refused message would have arrived too.

#[path = "../support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use prometheus::Registry;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, LastWill,
    MqttOptions, QoS, TlsConfiguration, Transport,
};
use simpang::config::Config;
use simpang::hub::Hub;
use simpang::incident::secrets::Credentials;
use simpang::incident::sign::{self, SigningKey};
use simpang::incident::{incident_id, IncidentService};
use simpang::model::{Evidence, IncidentKind, RuleEvent, RulePhase, SiteId, ZoneId};
use support::desk::{Kind, Opts, TestDesk};
use support::metrics::Metrics;
use support::mosquitto::{make_tls, Mosquitto, MosquittoOpts};
use support::mqtt::{analyse, is_signed, Received, Schemas, Subscriber};
use support::process::Proc;
use support::wait::{poll, poll_async};

const WAIT: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------------------------------------
// Clients

/// An MQTT client of the test's, connected.
struct Client {
    client: AsyncClient,
    el: EventLoop,
}

struct Conn<'a> {
    port: u16,
    id: &'a str,
    login: Option<(&'a str, &'a str)>,
    ca: Option<&'a [u8]>,
    will: Option<LastWill>,
}

impl<'a> Conn<'a> {
    fn new(port: u16, id: &'a str) -> Self {
        Self {
            port,
            id,
            login: None,
            ca: None,
            will: None,
        }
    }
    fn login(mut self, u: &'a str, p: &'a str) -> Self {
        self.login = Some((u, p));
        self
    }
    fn tls(mut self, ca: &'a [u8]) -> Self {
        self.ca = Some(ca);
        self
    }
    fn will(mut self, w: LastWill) -> Self {
        self.will = Some(w);
        self
    }

    /// Connects; the CONNACK, or the error the client got.
    async fn connect(self) -> Result<Client, ConnectionError> {
        let host = if self.ca.is_some() {
            "localhost"
        } else {
            "127.0.0.1"
        };
        let mut o = MqttOptions::new(self.id, host, self.port);
        o.set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(1 << 24, 1 << 24);
        if let Some((u, p)) = self.login {
            o.set_credentials(u, p);
        }
        if let Some(ca) = self.ca {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: ca.to_vec(),
                alpn: None,
                client_auth: None,
            }));
        }
        if let Some(w) = self.will {
            o.set_last_will(w);
        }
        let (client, mut el) = AsyncClient::new(o, 16);
        let got = tokio::time::timeout(WAIT, async {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .expect("a CONNACK or an error within 30 s");
        got.map(|()| Client { client, el })
    }
}

impl Client {
    /// Publishes at QoS 1 and waits for the broker's PUBACK (Mosquitto acknowledges a refused
    /// publish too).
    async fn publish(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("queued");
        tokio::time::timeout(WAIT, async {
            loop {
                match self.el.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(_))) => return,
                    Ok(_) => {}
                    Err(e) => panic!("publish on {topic}: {e}"),
                }
            }
        })
        .await
        .expect("a PUBACK within 30 s");
    }

    /// Subscribes and waits for the SUBACK.
    async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queued");
        tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(Event::Incoming(Incoming::SubAck(_))) = self.el.poll().await {
                    return;
                }
            }
        })
        .await
        .expect("a SUBACK within 30 s");
    }

    /// What arrives within `d`.
    async fn collect(&mut self, d: Duration) -> Vec<String> {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(d, async {
            loop {
                if let Ok(Event::Incoming(Incoming::Publish(p))) = self.el.poll().await {
                    got.push(p.topic.clone());
                }
            }
        })
        .await;
        got
    }
}

fn refused(e: &ConnectionError) -> bool {
    matches!(
        e,
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
        )
    )
}

// ------------------------------------------------------------------------------------------------
// Configs and messages

const AMPERA: &str = r#"
[[sites]]
id = "ampera"
name = "Jembatan Ampera"
address = "Jembatan Ampera, Palembang"
lat = -2.9917
lon = 104.7636
stream = "rtsp://127.0.0.1:1/ampera"
"#;

const BKB: &str = r#"
[[sites]]
id = "bkb"
name = "Benteng Kuto Besak (BKB)"
address = "Jl. Sultan Mahmud Badaruddin, Palembang"
lat = -2.99245
lon = 104.7593
stream = "rtsp://127.0.0.1:1/bkb"
"#;

/// An incident-stage config in `dir` with the given `[mqtt]` body and the two sites.
fn stage_config(dir: &Path, mqtt: &str) -> Config {
    stage_config_sites(dir, mqtt, &format!("{AMPERA}{BKB}"))
}

/// [`stage_config`] with the given `[[sites]]` tables.
fn stage_config_sites(dir: &Path, mqtt: &str, sites: &str) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        "data_dir = {:?}\n[city]\nname = \"Palembang\"\n[mqtt]\n{mqtt}\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n\
         [incidents]\nupdate_interval_s = 600.0\n{sites}",
        dir.join("data")
    );
    let p = dir.join("simpang.toml");
    std::fs::write(&p, text).unwrap();
    Config::load(&p).unwrap_or_else(|e| panic!("{e}"))
}

fn hub() -> Arc<Hub> {
    let h = Hub::new([SiteId::new("ampera"), SiteId::new("bkb")]);
    for s in h.sites() {
        s.update_status(|s| s.online = true);
    }
    h
}

fn jam(site: &str, phase: RulePhase, level: &str, start: chrono::DateTime<Utc>) -> RuleEvent {
    RuleEvent {
        site: SiteId::new(site),
        zone: Some(ZoneId::new("lajur")),
        kind: IncidentKind::TrafficJam,
        phase,
        level: level.parse().unwrap(),
        started_at: start,
        at: Utc::now(),
        evidence: Evidence {
            vehicle_count: Some(30),
            ..Default::default()
        },
        frame: None,
        boxes: vec![],
    }
}

fn creds(data: &Path) -> Credentials {
    Credentials::load(&data.join("mqtt/credentials.toml")).unwrap_or_else(|e| panic!("{e}"))
}

fn password(c: &Credentials, user: &str) -> String {
    c.password(user)
        .unwrap_or_else(|| panic!("no password for {user}"))
        .to_string()
}

/// A unique marker payload on `site`'s counts topic, published by that site's producer.
async fn marker(producer: &mut Client, site: &str, n: usize) -> String {
    let text = format!("marker-{n}");
    producer
        .publish(
            &format!("simpang/v1/sites/{site}/counts"),
            text.clone().into_bytes(),
            false,
        )
        .await;
    text
}

async fn seen(sub: &Subscriber, text: &str) -> bool {
    sub.wait_for(WAIT, |m| m.iter().any(|r| r.payload == text.as_bytes()))
        .await
}

fn arrived(sub: &Subscriber, text: &str) -> bool {
    sub.messages().iter().any(|r| r.payload == text.as_bytes())
}

/// (seq, cleared) of the report of an incident.
fn report_of(t: &TestDesk, incident: &str) -> Option<(i64, bool)> {
    t.block_on(async {
        let row: Option<(Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT incident_seq, cleared_at FROM reports WHERE incident_id = $1")
                .bind(incident)
                .fetch_optional(t.desk.store().pool())
                .await
                .unwrap();
        row.map(|(s, c)| (s.unwrap_or(0), c.is_some()))
    })
}

mod intake;
mod rights;
mod startup;
