//! The incident producer of `simpang run` (its incident service, in-process) as the cluster and
//! desk tests drive it: a config with one crowd zone per site, the deployment's MQTT logins
//! (`simpang mqtt-credentials`), and incidents in rounds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use simpang::incident::{incident_id, IncidentSender};
use simpang::model::{Evidence, Image, IncidentKind, RuleEvent, RulePhase, SiteId, ZoneId};

/// A producer config: `sites` (each with a crowd zone `zona`), MQTT settings `mqtt` (lines of
/// the `[mqtt]` table), the client id prefix `client_id`, fast reconnects.
pub fn config(dir: &Path, client_id: &str, sites: &[&str], mqtt: &str) -> String {
    let mut text = format!(
        "data_dir = {:?}\n[city]\nname = \"Palembang\"\n\
         [mqtt]\n{mqtt}client_id = \"{client_id}\"\nreconnect_initial_s = 0.2\nreconnect_max_s = 1.0\n\
         [incidents]\nupdate_interval_s = 30.0\n",
        dir.join("data")
    );
    for s in sites {
        text += &format!(
            "[[sites]]\nid = \"{s}\"\nname = \"Simpang {s}\"\naddress = \"Jl. {s}\"\nlat = -2.99\nlon = 104.76\n\
             stream = \"rtsp://127.0.0.1:1/{s}\"\n\
             [[sites.zones]]\nid = \"zona\"\nname = \"Zona {s}\"\nkind = \"crowd\"\n\
             polygon = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]\n"
        );
    }
    text
}

/// `simpang mqtt-credentials` for the config at `cfg`, into `out` (returned), once it has
/// written every file (Mosquitto's password file and ACL, `nats-users.conf`, clients' files).
pub fn credentials(cfg: &Path, out: &Path) -> PathBuf {
    const WAIT: Duration = Duration::from_secs(60);
    let mut made = super::process::Proc::simpang(
        "mqtt-credentials",
        &[
            "mqtt-credentials",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    made.wait_line("nats-users.conf", WAIT);
    assert!(
        super::wait::poll(WAIT, || (!made.is_running()).then_some(())).is_some(),
        "simpang mqtt-credentials ends"
    );
    out.to_path_buf()
}

/// The incident service of `simpang run` on `cfg`, every site online, with its metrics.
pub fn start(
    rt: &tokio::runtime::Runtime,
    cfg: &simpang::config::Config,
) -> (simpang::incident::IncidentService, prometheus::Registry) {
    let hub = simpang::hub::Hub::new(cfg.sites.iter().map(|s| SiteId::new(&s.id)));
    for s in hub.sites() {
        s.update_status(|st| st.online = true);
    }
    let registry = prometheus::Registry::new();
    let svc = rt
        .block_on(simpang::incident::IncidentService::start(
            cfg, hub, &registry,
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    (svc, registry)
}

/// Crowd incidents, one rule event per site per round: new (seq 1), two updates with a level
/// change (2, 3), end (4), then the next incident.
pub struct Rounds {
    sites: Vec<String>,
    starts: Vec<DateTime<Utc>>,
    round: usize,
    /// incident id -> (last seq produced, ended)
    pub produced: HashMap<String, (i64, bool)>,
}

impl Rounds {
    pub fn new(sites: &[&str]) -> Rounds {
        Rounds {
            sites: sites.iter().map(|s| s.to_string()).collect(),
            starts: vec![Utc::now(); sites.len()],
            round: 0,
            produced: HashMap::new(),
        }
    }

    /// One round into `tx`; `frame` goes with each `new` (an inline snapshot).
    pub fn next(&mut self, tx: &IncidentSender, frame: Option<&Arc<Image>>) {
        let now = Utc::now();
        let step = self.round % 4;
        for (i, site) in self.sites.iter().enumerate() {
            let (phase, level) = match step {
                0 => {
                    self.starts[i] = now;
                    (RulePhase::Start, "sedang")
                }
                1 => (RulePhase::Update, "tinggi"),
                2 => (RulePhase::Update, "sedang"),
                _ => (RulePhase::End, "sedang"),
            };
            tx.rule_event(RuleEvent {
                site: SiteId::new(site),
                zone: Some(ZoneId::new("zona")),
                kind: IncidentKind::Crowd,
                phase,
                level: level.parse().unwrap(),
                started_at: self.starts[i],
                at: now,
                evidence: Evidence {
                    persons: Some(12 + self.round as u32 % 7),
                    ..Default::default()
                },
                frame: frame.filter(|_| phase == RulePhase::Start).cloned(),
                boxes: vec![],
            });
            let id = incident_id(site, Some("zona"), IncidentKind::Crowd, self.starts[i]);
            self.produced
                .insert(id, (step as i64 + 1, phase == RulePhase::End));
        }
        self.round += 1;
    }
}
