//! The sites a running node serves: one [`SiteSlot`] per site, kept by [`SiteId`] in a
//! [`Sites`] registry, holding everything the node has for that site in one place: its settings
//! (the config's [`Site`]), its latest-value slots in the hub, the frame loop's tracker and
//! rules, and its camera.
//!
//! Nothing is addressed by position: the frame loop finds a frame's site by the id the frame
//! carries, so a site can be started ([`crate::app::Running::add_site`]) or stopped
//! ([`crate::app::Running::remove_site`]) while the others run.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::analytics::SiteAnalytics;
use crate::config::Site;
use crate::hub::{Registry, SiteHub};
use crate::ingest::CameraHandle;
use crate::model::SiteId;

/// Everything a running node has for one site.
pub struct SiteSlot {
    pub id: SiteId,
    /// The site as configured: fixed for the slot's life (a changed site is a new slot).
    pub config: Arc<Site>,
    /// Its latest-value slots, which the wall and the incident stage read through the hub.
    pub hub: Arc<SiteHub>,
    /// Tracker and rules; the frame loop's state of this site.
    pub analytics: Mutex<SiteAnalytics>,
    /// Its rules were told the camera is gone (reset when it is back online).
    pub lost: AtomicBool,
    /// The camera's supervisor; taken out to stop it.
    camera: Mutex<Option<CameraHandle>>,
}

/// The sites of a running node, by id.
pub type Sites = Registry<SiteSlot>;

impl SiteSlot {
    pub fn new(config: Arc<Site>, hub: Arc<SiteHub>, analytics: SiteAnalytics) -> Self {
        Self {
            id: hub.id.clone(),
            config,
            hub,
            analytics: Mutex::new(analytics),
            lost: AtomicBool::new(false),
            camera: Mutex::new(None),
        }
    }

    pub(crate) fn set_camera(&self, camera: CameraHandle) {
        *self.camera.lock() = Some(camera);
    }

    /// The camera, for stopping it (None once taken, or before it started).
    pub(crate) fn take_camera(&self) -> Option<CameraHandle> {
        self.camera.lock().take()
    }

    pub fn has_camera(&self) -> bool {
        self.camera.lock().is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::hub::Hub;

    fn config() -> Config {
        let mut text = String::from("[city]\nname = \"Palembang\"\n");
        for id in ["bkb", "ampera", "charitas"] {
            text.push_str(&format!(
                "[[sites]]\nid = \"{id}\"\nname = \"Site {id}\"\naddress = \"Jl. {id}\"\n\
                 lat = -2.99\nlon = 104.76\nstream = \"rtsp://127.0.0.1:8554/{id}\"\n"
            ));
        }
        Config::from_str_at(&text, Path::new("sites.toml")).unwrap()
    }

    fn slot(cfg: &Config, hub: &Hub, i: usize) -> Arc<SiteSlot> {
        let site = &cfg.sites[i];
        let slots = hub.add(SiteId::new(&site.id)).unwrap();
        let analytics = SiteAnalytics::new(site, Arc::from(Vec::new())).unwrap();
        Arc::new(SiteSlot::new(Arc::new(site.clone()), slots, analytics))
    }

    /// Slots are found by id whatever the order they came in or went out, and each slot's parts
    /// belong to its own site.
    #[test]
    fn slots_by_id_added_and_removed() {
        let cfg = config();
        let hub = Hub::new([]);
        let sites = Sites::default();
        for i in [2, 0] {
            let s = slot(&cfg, &hub, i);
            sites.insert(s.id.clone(), s).map_err(|_| ()).unwrap();
        }
        assert_eq!(sites.ids(), [SiteId::new("charitas"), SiteId::new("bkb")]);
        let c = sites.get("charitas").unwrap();
        assert_eq!(c.config.id, "charitas");
        assert_eq!(c.hub.id.as_str(), "charitas");
        assert!(Arc::ptr_eq(&c.hub, &hub.site("charitas").unwrap()));
        assert!(sites.get("ampera").is_none());

        // A second slot for a running id is refused and handed back.
        let again = Arc::new(SiteSlot::new(
            Arc::new(cfg.sites[2].clone()),
            Arc::new(SiteHub::new(SiteId::new("charitas"), chrono::Utc::now())),
            SiteAnalytics::new(&cfg.sites[2], Arc::from(Vec::new())).unwrap(),
        ));
        assert!(sites.insert(again.id.clone(), again).is_err());
        assert!(Arc::ptr_eq(&sites.get("charitas").unwrap(), &c));

        let a = slot(&cfg, &hub, 1);
        sites.insert(a.id.clone(), a).map_err(|_| ()).unwrap();
        let gone = sites.remove("charitas").unwrap();
        assert!(Arc::ptr_eq(&gone, &c));
        assert!(sites.get("charitas").is_none());
        assert_eq!(sites.len(), 2);
        assert_eq!(
            sites
                .all()
                .iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>(),
            ["bkb", "ampera"]
        );
        assert!(!sites.get("bkb").unwrap().has_camera());
    }
}
