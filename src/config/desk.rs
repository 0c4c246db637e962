//! Settings of `simpang desk`: agencies (OPD), report categories with their SLA and routing.

use std::net::SocketAddr;

use serde::Deserialize;

use super::locate::FieldPath;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeskConfig {
    pub listen: SocketAddr,
    /// `sqlite://PATH` (relative to the config file) or `postgres://...`; default data_dir/desk.db.
    pub database: Option<String>,
    /// Largest accepted photo upload, bytes.
    pub max_photo_bytes: usize,
    pub agencies: Vec<Agency>,
    pub categories: Vec<Category>,
}

/// A government agency (OPD) that receives dispositions.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    pub id: String,
    pub name: String,
}

/// A report category with its service level and the agencies it routes to.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub id: String,
    pub name: String,
    /// Hours from disposition to the agency's answer (24, 48 or 72 in the seed services).
    pub sla_hours: u32,
    /// Agency ids, the first being the default recipient.
    pub agencies: Vec<String>,
}

fn agency(id: &str, name: &str) -> Agency {
    Agency {
        id: id.into(),
        name: name.into(),
    }
}

fn category(id: &str, name: &str, sla_hours: u32, agencies: &[&str]) -> Category {
    Category {
        id: id.into(),
        name: name.into(),
        sla_hours,
        agencies: agencies.iter().map(|s| s.to_string()).collect(),
    }
}

impl Default for DeskConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            database: None,
            max_photo_bytes: 5 * 1024 * 1024,
            agencies: vec![
                agency("dishub", "Dinas Perhubungan"),
                agency("satlantas", "Satlantas Polrestabes Palembang"),
                agency("dlh", "Dinas Lingkungan Hidup dan Kebersihan"),
                agency("satpolpp", "Satuan Polisi Pamong Praja"),
                agency("pupr", "Dinas Pekerjaan Umum dan Penataan Ruang"),
                agency("perkim", "Dinas Perumahan dan Kawasan Permukiman"),
                agency("bpbd", "Badan Penanggulangan Bencana Daerah"),
                agency("diskominfo", "Dinas Komunikasi dan Informatika"),
            ],
            categories: vec![
                category("traffic", "Lalu lintas", 24, &["dishub", "satlantas"]),
                category("garbage", "Sampah dan kebersihan", 48, &["dlh"]),
                category("crowd", "Kerumunan dan ketertiban umum", 24, &["satpolpp"]),
                category("roads", "Jalan rusak", 72, &["pupr"]),
                category(
                    "street_lights",
                    "Penerangan jalan",
                    72,
                    &["dishub", "perkim"],
                ),
                category("flood", "Banjir dan genangan", 24, &["pupr", "bpbd"]),
                category("camera_fault", "Gangguan kamera CCTV", 48, &["diskominfo"]),
                category("other", "Lainnya", 72, &["diskominfo"]),
            ],
        }
    }
}

impl DeskConfig {
    pub fn validate(&self, p: &FieldPath, bad: &mut impl FnMut(FieldPath, String)) {
        let mut seen = std::collections::HashSet::new();
        for (i, a) in self.agencies.iter().enumerate() {
            if a.id.trim().is_empty() || !seen.insert(a.id.as_str()) {
                bad(
                    p.key("agencies").index(i).key("id"),
                    format!("agency id {:?} is empty or repeated", a.id),
                );
            }
        }
        let mut cats = std::collections::HashSet::new();
        for (i, c) in self.categories.iter().enumerate() {
            let cp = p.key("categories").index(i);
            if c.id.trim().is_empty() || !cats.insert(c.id.as_str()) {
                bad(
                    cp.key("id"),
                    format!("category id {:?} is empty or repeated", c.id),
                );
            }
            if c.sla_hours == 0 {
                bad(cp.key("sla_hours"), "must be positive".into());
            }
            if c.agencies.is_empty() {
                bad(cp.key("agencies"), "must name at least one agency".into());
            }
            for (j, a) in c.agencies.iter().enumerate() {
                if !seen.contains(a.as_str()) {
                    bad(
                        cp.key("agencies").index(j),
                        format!("unknown agency {a:?} (not in [[desk.agencies]])"),
                    );
                }
            }
        }
        if self.max_photo_bytes == 0 {
            bad(p.key("max_photo_bytes"), "must be positive".into());
        }
    }
}
