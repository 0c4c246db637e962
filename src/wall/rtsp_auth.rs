//! Sign-in to annotated RTSP out, with gst-rtsp-server's own machinery: an `RTSPAuth` (HTTP
//! Basic, realm `simpang wall`), a token with the role `device` for a wall device account, and
//! that role's permission to access and construct the media on every mount. A request without
//! valid credentials is answered 401 with a Basic challenge; a client names itself as
//! `rtsp://NAME:TOKEN@host:port/annotated/...` (a wall device account: `simpang wall device
//! add NAME`).
//!
//! The accounts live in the wall's accounts file, hashed, so they cannot be given to
//! `RTSPAuth::add_basic` up front: [`DeviceAuth`] checks the credentials of each request
//! against the current accounts (one SHA-256, no argon2 on the RTSP thread) and registers a
//! valid `Basic` value with the parent's table (or removes it once its account is gone) before
//! letting the parent authenticate as usual.
//!
//! Clients are capped in all and per address (`[wall.auth] rtsp_max_clients`,
//! `rtsp_max_clients_per_ip`): one over either is closed as it connects.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::sync::{Arc, OnceLock};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use gstreamer_rtsp_server::subclass::prelude::*;
use parking_lot::Mutex;
use tracing::{debug, warn};

use super::accounts;
use crate::guard::client_key;

/// The role every wall device account gets on RTSP out.
const ROLE: &str = "device";

/// What RTSP out needs of the wall's sign-in.
#[derive(Clone)]
pub struct Guard {
    pub accounts: Arc<accounts::Store>,
    pub max_clients: usize,
    pub max_clients_per_ip: usize,
}

impl Guard {
    /// Puts `server` behind device sign-in and the client caps.
    pub fn install(&self, server: &rtsp::RTSPServer) {
        let auth = DeviceAuth::new(self.accounts.clone());
        server.set_auth(Some(&auth));
        let counts: Arc<Mutex<(usize, HashMap<String, usize>)>> = Arc::default();
        let (max, per_ip) = (self.max_clients.max(1), self.max_clients_per_ip.max(1));
        server.connect_client_connected(move |_, client| {
            let key = client_ip(client)
                .and_then(|ip| ip.parse().ok())
                .map(client_key)
                .unwrap_or_else(|| "unknown".into());
            let admitted = {
                let mut c = counts.lock();
                let n = c.1.get(&key).copied().unwrap_or(0);
                if c.0 >= max || n >= per_ip {
                    false
                } else {
                    c.0 += 1;
                    c.1.insert(key.clone(), n + 1);
                    true
                }
            };
            if !admitted {
                warn!(client = %key, "RTSP client refused: too many clients");
                client.close();
                return;
            }
            let counts = counts.clone();
            client.connect_closed(move |_| {
                let mut c = counts.lock();
                c.0 = c.0.saturating_sub(1);
                if let Some(n) = c.1.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        c.1.remove(&key);
                    }
                }
            });
        });
    }
}

/// Lets wall device accounts access and construct the media of a mount.
pub fn allow_devices(factory: &rtsp::RTSPMediaFactory) {
    let role = gst::Structure::builder(ROLE)
        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_ACCESS.as_str(), true)
        .field(rtsp::RTSP_PERM_MEDIA_FACTORY_CONSTRUCT.as_str(), true)
        .build();
    factory.add_role_from_structure(&role);
}

/// The peer address of an RTSP client.
fn client_ip(client: &rtsp::RTSPClient) -> Option<String> {
    use glib::translate::ToGlibPtr;
    // SAFETY: the client is alive for the call (we hold a reference); its connection is owned
    // by the client (transfer none) and valid while the client is; the IP string belongs to
    // the connection and is copied before we return.
    unsafe {
        let conn = rtsp::ffi::gst_rtsp_client_get_connection(client.to_glib_none().0);
        if conn.is_null() {
            return None;
        }
        let ip = rtsp::gst_rtsp::ffi::gst_rtsp_connection_get_ip(conn);
        if ip.is_null() {
            return None;
        }
        CStr::from_ptr(ip).to_str().ok().map(str::to_string)
    }
}

mod imp {
    use super::*;

    #[derive(Default)]
    pub struct DeviceAuth {
        pub(super) state: OnceLock<State>,
    }

    pub(super) struct State {
        pub accounts: Arc<accounts::Store>,
        pub token: rtsp::RTSPToken,
        /// `Basic` values registered with the parent's table.
        pub registered: Mutex<HashSet<String>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for DeviceAuth {
        const NAME: &'static str = "SimpangDeviceAuth";
        type Type = super::DeviceAuth;
        type ParentType = rtsp::RTSPAuth;
    }

    impl ObjectImpl for DeviceAuth {}

    impl RTSPAuthImpl for DeviceAuth {
        fn authenticate(&self, ctx: &rtsp::RTSPContext) -> bool {
            if let (Some(st), Some(req)) = (self.state.get(), ctx.request()) {
                let auth = self.obj();
                let snap = st.accounts.current();
                for cred in req.parse_auth_credentials().iter() {
                    if cred.scheme() != rtsp::gst_rtsp::RTSPAuthMethod::Basic {
                        continue;
                    }
                    let Some(b64) = cred.authorization() else {
                        continue;
                    };
                    let valid = super::super::auth::basic_pair_of(b64)
                        .is_some_and(|(name, secret)| snap.device(&name, &secret).is_some());
                    let mut reg = st.registered.lock();
                    if valid && reg.insert(b64.to_string()) {
                        debug!("RTSP device credentials registered");
                        auth.add_basic(b64, &st.token);
                    } else if !valid && reg.remove(b64) {
                        debug!("RTSP device credentials withdrawn");
                        auth.remove_basic(b64);
                    }
                }
            }
            self.parent_authenticate(ctx)
        }
    }
}

glib::wrapper! {
    /// `RTSPAuth` that takes wall device accounts (see the module docs).
    pub struct DeviceAuth(ObjectSubclass<imp::DeviceAuth>) @extends rtsp::RTSPAuth;
}

impl DeviceAuth {
    pub fn new(accounts: Arc<accounts::Store>) -> Self {
        let obj: Self = glib::Object::new();
        let token = rtsp::RTSPToken::builder()
            .field(rtsp::RTSP_TOKEN_MEDIA_FACTORY_ROLE.as_str(), ROLE)
            .build();
        let _ = obj.imp().state.set(imp::State {
            accounts,
            token,
            registered: Mutex::new(HashSet::new()),
        });
        obj.set_supported_methods(rtsp::gst_rtsp::RTSPAuthMethod::Basic);
        obj.set_realm(Some("simpang wall"));
        obj
    }
}
