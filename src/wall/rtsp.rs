//! Annotated RTSP out: `rtsp://HOST:PORT/annotated/{site}` per site and `/annotated/wall` (the
//! mosaic), H.264 for Command Center wall controllers and VMS software.
//!
//! Each mount is a *shared* media: the first client starts one `appsrc ! x264enc ! rtph264pay`
//! pipeline and every later client of that mount receives the same encoded stream, so a mount
//! costs one encode however many clients watch. The media's appsrc is registered with the site
//! worker (or the mosaic) only while the media exists: with no client, nothing is drawn or
//! encoded for RTSP.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use super::metrics::WallMetrics;
use super::tile::{RtspSinks, SiteOutput, WorkerShared};
use super::WallError;
use crate::timing::{self, Stage};

/// The mount of the mosaic, and its label in metrics.
pub const MOSAIC: &str = "wall";

/// Encoder settings of one mount.
#[derive(Clone, Debug)]
pub struct EncoderSettings {
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    /// Longest distance between key frames, in frames: a client joining a shared stream waits
    /// for the next key frame before it shows a picture.
    pub key_int_max: u32,
    pub threads: u32,
}

/// The launch line of a mount: raw I420 tiles in, RTP H.264 out. `zerolatency` (no lookahead,
/// no B-frames, sliced threads) and `ultrafast` keep the encoder cheap and its delay at one
/// frame; constrained baseline is what every hardware decoder in a wall controller takes.
pub fn launch_line(s: &EncoderSettings) -> String {
    format!(
        "( appsrc name=src is-live=true format=time do-timestamp=false block=false \
         max-buffers=3 max-bytes=0 max-time=0 leaky-type=downstream \
         caps=\"video/x-raw,format=I420,width={w},height={h},framerate=0/1,pixel-aspect-ratio=1/1\" \
         ! x264enc name=enc tune=zerolatency speed-preset=ultrafast bitrate={b} \
           vbv-buf-capacity=1000 key-int-max={k} threads={t} \
         ! video/x-h264,profile=constrained-baseline \
         ! rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency )",
        w = s.width,
        h = s.height,
        b = s.bitrate_kbps,
        k = s.key_int_max.max(1),
        t = s.threads.max(1),
    )
}

/// A running RTSP server.
pub struct RtspOut {
    port: u16,
    server: rtsp::RTSPServer,
    ctx: glib::MainContext,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RtspOut {
    /// Serves the mounts on `addr:port` (port 0 picks a free one, see [`RtspOut::port`]), to
    /// wall device accounts only (`guard`).
    pub fn start(
        addr: IpAddr,
        port: u16,
        sites: &[Arc<SiteOutput>],
        shared: &Arc<WorkerShared>,
        site_enc: EncoderSettings,
        mosaic_enc: EncoderSettings,
        guard: super::rtsp_auth::Guard,
    ) -> Result<Self, WallError> {
        let server = rtsp::RTSPServer::new();
        server.set_address(&addr.to_string());
        server.set_service(&port.to_string());
        guard.install(&server);
        let mounts = server
            .mount_points()
            .ok_or_else(|| WallError::Rtsp("RTSP server has no mount points".into()))?;
        let mut known = HashSet::new();
        let encoders = Encoders::default();
        for site in sites {
            let factory = mount(
                &site_enc,
                site.id.as_str(),
                SinkOwner::Site(site.clone()),
                shared.clone(),
                encoders.clone(),
            );
            mounts.add_factory(&format!("/annotated/{}", site.id), factory);
            known.insert(site.id.to_string());
        }
        let factory = mount(
            &mosaic_enc,
            MOSAIC,
            SinkOwner::Mosaic,
            shared.clone(),
            encoders.clone(),
        );
        mounts.add_factory(&format!("/annotated/{MOSAIC}"), factory);
        known.insert(MOSAIC.to_string());
        count_clients(&server, Arc::new(known), shared.metrics.clone(), encoders);

        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let source_id = ctx
            .with_thread_default(|| server.attach(Some(&ctx)))
            .map_err(|e| WallError::Rtsp(format!("cannot use a main context: {e}")))?
            .map_err(|e| {
                WallError::Rtsp(format!(
                    "cannot listen on {addr}:{port} for annotated RTSP out (port in use?): {e}"
                ))
            })?;
        let bound = server.bound_port();
        if bound <= 0 {
            return Err(WallError::Rtsp(format!("cannot listen on {addr}:{port}")));
        }
        let (ml, ctx2, server2) = (main_loop.clone(), ctx.clone(), server.clone());
        let thread = std::thread::Builder::new()
            .name("wall-rtsp".into())
            .spawn(move || {
                let _keep = (server2, source_id);
                if ctx2.with_thread_default(|| ml.run()).is_err() {
                    warn!("RTSP main loop could not own its context");
                }
            })
            .map_err(|e| WallError::Rtsp(format!("cannot start the RTSP thread: {e}")))?;
        info!(%addr, port = bound, "annotated RTSP out listening");
        Ok(Self {
            port: bound as u16,
            server,
            ctx,
            main_loop,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Disconnects every client (their media shut down with them) and ends the server.
    pub fn stop(mut self) {
        // Clients and media belong to the server's main loop: close them from there.
        let (server, ml) = (self.server.clone(), self.main_loop.clone());
        self.ctx.invoke(move || {
            server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
            ml.quit();
        });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The encoders of the live media of each mount, to ask them for a key frame.
type Encoders = Arc<Mutex<HashMap<String, Vec<gst::Element>>>>;

/// Who feeds a mount's appsrc.
#[derive(Clone)]
enum SinkOwner {
    Site(Arc<SiteOutput>),
    Mosaic,
}

impl SinkOwner {
    fn sinks<'a>(&'a self, shared: &'a WorkerShared) -> &'a RtspSinks {
        match self {
            SinkOwner::Site(s) => &s.rtsp,
            SinkOwner::Mosaic => &shared.mosaic_sinks,
        }
    }
}

fn mount(
    enc: &EncoderSettings,
    label: &str,
    owner: SinkOwner,
    shared: Arc<WorkerShared>,
    encoders: Encoders,
) -> rtsp::RTSPMediaFactory {
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(&launch_line(enc));
    factory.set_shared(true);
    super::rtsp_auth::allow_devices(&factory);
    let label = label.to_string();
    factory.connect_media_configure(move |_, media| {
        let bin = media.element();
        let bin = bin.dynamic_cast_ref::<gst::Bin>();
        let src = bin
            .and_then(|b| b.by_name("src"))
            .and_then(|e| e.dynamic_cast::<gst_app::AppSrc>().ok());
        let Some(src) = src else {
            warn!(mount = %label, "annotated media has no appsrc");
            return;
        };
        let enc = bin.and_then(|b| b.by_name("enc"));
        if let Some(enc) = &enc {
            measure_encoder(enc, &label, &shared.metrics);
            encoders
                .lock()
                .entry(label.clone())
                .or_default()
                .push(enc.clone());
        }
        debug!(mount = %label, "annotated RTSP media configured");
        owner.sinks(&shared).lock().push(src.clone());
        shared.wake.notify();
        // The media ends when its last client leaves: forget its appsrc. This is the only way
        // one is forgotten while it lives, as push_live skips (does not drop) an appsrc whose
        // pipeline is not PLAYING.
        let (owner2, shared2, label2) = (owner.clone(), shared.clone(), label.clone());
        let encoders2 = encoders.clone();
        media.connect_unprepared(move |_| {
            debug!(mount = %label2, "annotated RTSP media unprepared");
            owner2.sinks(&shared2).lock().retain(|s| s != &src);
            if let (Some(e), Some(list)) = (&enc, encoders2.lock().get_mut(&label2)) {
                list.retain(|x| x != e);
            }
        });
    });
    factory
}

/// Encoder latency and output bytes, from pad probes. With `tune=zerolatency` x264enc emits
/// each frame's output inside the call that takes its input (no lookahead, no B-frames), so the
/// time from the sink probe to the next src probe is the encode time of that frame.
fn measure_encoder(enc: &gst::Element, label: &str, m: &WallMetrics) {
    let (Some(sink), Some(src)) = (enc.static_pad("sink"), enc.static_pad("src")) else {
        return;
    };
    let entered: Arc<Mutex<Option<Instant>>> = Arc::default();
    let e_in = entered.clone();
    // Events and buffers arrive on the media's streaming thread, which runs x264; the caps
    // event comes before x264 opens (and starts its slice threads, which inherit the niceness).
    sink.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            super::metrics::deprioritize_current_thread();
            if let Some(gst::PadProbeData::Buffer(_)) = &info.data {
                *e_in.lock() = Some(Instant::now());
            }
            gst::PadProbeReturn::Ok
        },
    );
    let latency = m.rtsp_encode_seconds.with_label_values(&[label]);
    let bytes = m.rtsp_bytes.with_label_values(&[label]);
    let stage = if label == MOSAIC {
        Stage::X264Mosaic
    } else {
        Stage::X264Site
    };
    src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
            bytes.inc_by(b.size() as u64);
        }
        if let Some(t) = entered.lock().take() {
            let spent = t.elapsed();
            latency.observe(spent.as_secs_f64());
            timing::record(stage, spent);
        }
        gst::PadProbeReturn::Ok
    });
}

/// The mount a request is about: `rtsp://h:p/annotated/bkb/stream=0` -> `bkb`.
pub fn mount_key(uri: &str) -> Option<&str> {
    let rest = uri.split_once("/annotated/")?.1;
    let key = rest.split(['/', '?']).next()?;
    (!key.is_empty()).then_some(key)
}

/// Keeps `simpang_wall_viewers{output="rtsp"}` at the number of clients playing each mount, and
/// asks the mount's encoder for a key frame when a client starts playing: a client joining a
/// shared stream shows a picture at once instead of after up to a key-frame interval.
fn count_clients(
    server: &rtsp::RTSPServer,
    known: Arc<HashSet<String>>,
    m: WallMetrics,
    encoders: Encoders,
) {
    server.connect_client_connected(move |_, client| {
        let playing: Arc<Mutex<HashSet<String>>> = Arc::default();
        let (p, k, mm, enc) = (playing.clone(), known.clone(), m.clone(), encoders.clone());
        client.connect_play_request(move |_, ctx| {
            let Some(uri) = ctx.uri().map(|u| u.request_uri().to_string()) else {
                return;
            };
            if let Some(key) = mount_key(&uri).filter(|k2| k.contains(*k2)) {
                if p.lock().insert(key.to_string()) {
                    mm.viewers.with_label_values(&[key, "rtsp"]).inc();
                }
                for e in enc.lock().get(key).into_iter().flatten() {
                    let ev = gstreamer_video::UpstreamForceKeyUnitEvent::builder()
                        .all_headers(true)
                        .build();
                    if let Some(pad) = e.static_pad("src") {
                        pad.send_event(ev);
                    }
                }
            }
        });
        let (p, mm) = (playing.clone(), m.clone());
        client.connect_teardown_request(move |_, ctx| {
            let Some(uri) = ctx.uri().map(|u| u.request_uri().to_string()) else {
                return;
            };
            if let Some(key) = mount_key(&uri) {
                if p.lock().remove(key) {
                    mm.viewers.with_label_values(&[key, "rtsp"]).dec();
                }
            }
        });
        let (p, mm) = (playing, m.clone());
        client.connect_closed(move |_| {
            for key in p.lock().drain() {
                mm.viewers.with_label_values(&[&key, "rtsp"]).dec();
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_keys() {
        let cases = [
            ("rtsp://127.0.0.1:8555/annotated/bkb", Some("bkb")),
            ("rtsp://127.0.0.1:8555/annotated/bkb/", Some("bkb")),
            (
                "rtsp://127.0.0.1:8555/annotated/wall/stream=0",
                Some("wall"),
            ),
            ("rtsp://127.0.0.1:8555/annotated/", None),
            ("rtsp://127.0.0.1:8555/other/bkb", None),
        ];
        for (uri, want) in cases {
            assert_eq!(mount_key(uri), want, "{uri}");
        }
    }

    #[test]
    fn launch_line_parses() {
        gst::init().unwrap();
        let line = launch_line(&EncoderSettings {
            width: 640,
            height: 360,
            bitrate_kbps: 1500,
            key_int_max: 30,
            threads: 1,
        });
        // the factory wraps it in a bin; parse the inside the same way
        let inner = line.trim().trim_start_matches('(').trim_end_matches(')');
        let bin = gst::parse::bin_from_description(inner, false).unwrap();
        assert!(bin.by_name("pay0").is_some() && bin.by_name("enc").is_some());
    }
}
