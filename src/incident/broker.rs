//! Where the MQTT connections go: the embedded broker (rumqttd, in-process) or an external one
//! by URL (`mqtt://`, `mqtts://` with rustls and an optional private CA).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

use crate::config::{broker_uses_tls, Config, MqttConfig};

/// Largest message we publish or accept (inline JPEG snapshots are ~100 KB as base64).
pub const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Publishes rumqttc lets one connection have unacknowledged (its packet ids run 1..=INFLIGHT).
/// A link keeps fewer rows than this in flight (`link::WINDOW`), so its status messages never
/// wait behind rows.
pub const INFLIGHT: u16 = 64;

/// System CA bundles tried for `mqtts://` without `mqtt.ca_file` (Debian/Ubuntu, then Fedora).
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("mqtt.broker: {0}")]
    Url(String),
    #[error("mqtt.ca_file: cannot read CA file {path}: {error}")]
    CaFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("mqtt.broker: {0} uses TLS but no mqtt.ca_file is set and no system CA bundle was found (looked for {1})")]
    NoSystemCa(String, String),
    #[error("mqtt.embedded_listen: cannot listen on {addr} for the embedded MQTT broker: {error}")]
    EmbeddedListen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("mqtt.embedded_listen: the embedded MQTT broker did not start on {0}")]
    EmbeddedStart(SocketAddr),
}

/// A broker to connect to, resolved from the config.
#[derive(Clone, Debug)]
pub struct BrokerTarget {
    pub host: String,
    pub port: u16,
    /// `mqtt://host:port` or `mqtts://host:port`: what logs name (never the credentials).
    pub display: String,
    tls: Option<Vec<u8>>,
    credentials: Option<(String, String)>,
    keep_alive: Duration,
}

impl BrokerTarget {
    /// Resolves `[mqtt]`. For `embedded`, the target is the embedded listener.
    pub fn from_config(cfg: &Config) -> Result<Self, BrokerError> {
        let m = &cfg.mqtt;
        let credentials = m
            .username
            .as_ref()
            .map(|u| (u.clone(), m.password.clone().unwrap_or_default()));
        let keep_alive = Duration::from_secs(m.keep_alive_s.max(5));
        if m.broker == "embedded" {
            let addr = m.embedded_listen;
            // A wildcard listen address is reached through loopback.
            let host = if addr.ip().is_unspecified() {
                if addr.is_ipv4() {
                    "127.0.0.1".to_string()
                } else {
                    "::1".to_string()
                }
            } else {
                addr.ip().to_string()
            };
            return Ok(Self {
                display: format!(
                    "embedded mqtt://{}",
                    SocketAddr::new(host.parse().unwrap_or(addr.ip()), addr.port())
                ),
                host,
                port: addr.port(),
                tls: None,
                credentials,
                keep_alive,
            });
        }
        let url = url::Url::parse(&m.broker)
            .map_err(|e| BrokerError::Url(format!("{:?} is not a valid URL: {e}", m.broker)))?;
        let tls = broker_uses_tls(&m.broker);
        match url.scheme() {
            "mqtt" | "tcp" | "mqtts" | "ssl" => {}
            other => {
                return Err(BrokerError::Url(format!(
                    "unsupported scheme {other:?} in {:?} (use mqtt:// or mqtts://)",
                    m.broker
                )))
            }
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| BrokerError::Url(format!("{:?} has no host", m.broker)))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        let display = format!(
            "{}://{}:{port}",
            if tls { "mqtts" } else { "mqtt" },
            url.host_str().unwrap_or(&host)
        );
        let tls = if tls {
            Some(load_ca(cfg, m, &display)?)
        } else {
            None
        };
        Ok(Self {
            host,
            port,
            display,
            tls,
            credentials,
            keep_alive,
        })
    }

    /// Connection options for one client id; `clean_session` so that the outbox, not the
    /// broker's session, is what carries unacknowledged messages across reconnects.
    pub fn options(&self, client_id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(client_id, self.host.clone(), self.port);
        o.set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_inflight(INFLIGHT);
        if let Some((u, p)) = &self.credentials {
            o.set_credentials(u.clone(), p.clone());
        }
        if let Some(ca) = &self.tls {
            o.set_transport(Transport::tls_with_config(TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: None,
            }));
        }
        o
    }
}

fn load_ca(cfg: &Config, m: &MqttConfig, display: &str) -> Result<Vec<u8>, BrokerError> {
    if let Some(ca) = &m.ca_file {
        let path = cfg.resolve(ca);
        return std::fs::read(&path).map_err(|error| BrokerError::CaFile { path, error });
    }
    for p in SYSTEM_CA_BUNDLES {
        if let Ok(b) = std::fs::read(p) {
            return Ok(b);
        }
    }
    Err(BrokerError::NoSystemCa(
        display.to_string(),
        SYSTEM_CA_BUNDLES.join(", "),
    ))
}

/// Starts rumqttd on `listen` on its own threads (it builds its own runtimes) and returns once
/// it accepts connections. It lives as long as the process: rumqttd has no shutdown.
pub fn start_embedded(listen: SocketAddr) -> Result<(), BrokerError> {
    // rumqttd logs a failed bind on its own thread and carries on without a listener; binding
    // here first turns "address in use" into an error that names the setting.
    match TcpListener::bind(listen) {
        Ok(l) => drop(l),
        Err(error) => {
            return Err(BrokerError::EmbeddedListen {
                addr: listen,
                error,
            })
        }
    }
    let conn = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_PACKET,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "simpang-embedded".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: conn,
    };
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|error| BrokerError::EmbeddedListen {
            addr: listen,
            error,
        })?;
    let probe = if listen.ip().is_unspecified() {
        SocketAddr::new(
            if listen.is_ipv4() {
                [127, 0, 0, 1].into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            listen.port(),
        )
    } else {
        listen
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if mqtt_handshake(&probe) {
            tracing::info!(%listen, "embedded MQTT broker listening");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::EmbeddedStart(listen))
}

/// True when an MQTT broker at `addr` accepts a connection: CONNECT, CONNACK (accepted),
/// DISCONNECT. A bare TCP probe would make the broker log an aborted connection as an error.
fn mqtt_handshake(addr: &SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let id = b"simpang-probe";
    // MQTT 3.1.1 CONNECT: protocol name, level 4, clean session, keep-alive 10 s, client id.
    let mut packet = vec![0x10, (10 + 2 + id.len()) as u8];
    packet.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x0A]);
    packet.extend_from_slice(&[0x00, id.len() as u8]);
    packet.extend_from_slice(id);
    let mut ack = [0u8; 4];
    let ok = s.write_all(&packet).is_ok()
        && s.read_exact(&mut ack).is_ok()
        && ack[0] == 0x20
        && ack[3] == 0x00;
    let _ = s.write_all(&[0xE0, 0x00]);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn cfg(mqtt: &str) -> Config {
        let text = format!(
            "{mqtt}\n[city]\nname = \"P\"\n[[sites]]\nid = \"a\"\nname = \"A\"\naddress = \"x\"\nlat = 0.0\nlon = 0.0\nstream = \"rtsp://127.0.0.1:1/a\"\n"
        );
        Config::from_str_at(&text, Path::new("/tmp/t.toml")).unwrap()
    }

    #[test]
    fn targets() {
        let t = BrokerTarget::from_config(&cfg("")).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 1883));
        assert!(t.display.starts_with("embedded"));
        let t = BrokerTarget::from_config(&cfg(
            "[mqtt]\nbroker = \"mqtt://broker.example:1999\"\nusername = \"u\"\npassword = \"p\"",
        ))
        .unwrap();
        assert_eq!((t.host.as_str(), t.port), ("broker.example", 1999));
        assert_eq!(t.display, "mqtt://broker.example:1999");
        assert_eq!(t.credentials, Some(("u".into(), "p".into())));
        assert!(t.tls.is_none());
        let t = BrokerTarget::from_config(&cfg("[mqtt]\nbroker = \"mqtt://[::1]\"")).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 1883));
        let o = t.options("simpang-run-a");
        assert!(o.clean_session());
        assert_eq!(o.client_id(), "simpang-run-a");
    }
}
