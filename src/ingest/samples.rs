//! `simpang samples`: recorded footage served as the sites' RTSP cameras, in-process with
//! gst-rtsp-server on loopback.
//!
//! Per site one *feeder* pipeline reads the H.264 MP4 at real-time pace (its appsink syncs to the
//! clock) and loops it seamlessly with segment seeks; each mount is a shared media whose `appsrc`
//! the feeder pushes into, stamped with the media's running time on arrival. No decoding or encoding happens: serving six
//! cameras costs almost nothing, so the cameras never compete with the pipeline under test.
//! The footage must be H.264 without B-frames (scripts/make-footage.sh makes it so).
//!
//! A site whose footage `X.mp4` has a substream file beside it, `X.sub.mp4` (the same footage at
//! 640x360-ish and 5 fps, made by scripts/make-footage.sh), is also served as the camera's
//! second stream `rtsp://127.0.0.1:PORT/<site>/sub`, for a site's `detect_stream`. One feeder
//! plays both files in one pipeline, so the two streams show the same moment, as a camera's do.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use parking_lot::Mutex;
use tracing::{debug, info, info_span, warn};

use super::IngestError;
use crate::config::Config;
use crate::model::SiteId;

/// Arguments of `simpang samples`.
#[derive(clap::Args, Debug)]
pub struct SamplesArgs {
    #[arg(long, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Footage folder (`sites/<id>.mp4` per site, else the default clip) or one file for all.
    #[arg(long)]
    pub footage: Option<PathBuf>,
    /// RTSP port on 127.0.0.1; 0 picks a free one (printed on stdout).
    #[arg(long)]
    pub port: Option<u16>,
    /// Serve only these sites (comma-separated ids).
    #[arg(long, value_delimiter = ',')]
    pub sites: Vec<SiteId>,
}

pub fn main(args: SamplesArgs) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(&args.config)?;
    super::init_gstreamer()?;
    let footage = args
        .footage
        .clone()
        .unwrap_or_else(|| cfg.resolve(&cfg.samples.footage_dir));
    let mut feeds = Vec::new();
    for site in &cfg.sites {
        if !args.sites.is_empty() && !args.sites.contains(&site.id) {
            continue;
        }
        let path = footage_for(&footage, site.id.as_str(), &cfg.samples.default_footage)
            .with_context(|| format!("no footage for site {:?}", site.id))?;
        feeds.push((site.id.clone(), path));
    }
    for s in &args.sites {
        if cfg.site(s.as_str()).is_none() {
            anyhow::bail!(
                "--sites names {s:?}, which is not a site in {}",
                args.config.display()
            );
        }
    }
    let server = SampleServer::start(&feeds, args.port.unwrap_or(cfg.samples.port))?;
    for (id, path) in &feeds {
        println!(
            "samples: rtsp://127.0.0.1:{}/{id} <- {}",
            server.port(),
            path.display()
        );
        let sub = sub_footage(path);
        if sub.is_file() {
            println!(
                "samples: rtsp://127.0.0.1:{}/{id}/sub <- {}",
                server.port(),
                sub.display()
            );
        } else {
            warn!(site = %id, missing = %sub.display(), "no substream footage (scripts/setup.sh makes it): /{id}/sub not served");
        }
    }
    info!(
        port = server.port(),
        sites = feeds.len(),
        "sample cameras serving"
    );
    crate::shutdown::wait();
    server.stop();
    Ok(ExitCode::SUCCESS)
}

/// The footage file for a site: `DIR/sites/<id>.mp4`, `DIR/<id>.mp4`, then `DIR/<default>`;
/// `dir` may also be a single file used for every site.
pub fn footage_for(dir: &Path, site: &str, default: &str) -> Result<PathBuf, IngestError> {
    if dir.is_file() {
        return Ok(dir.to_path_buf());
    }
    let candidates = [
        dir.join("sites").join(format!("{site}.mp4")),
        dir.join(format!("{site}.mp4")),
        dir.join(default),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            IngestError::Samples(format!(
                "none of {} exists (run scripts/setup.sh to fetch the sample footage)",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// A shared media at `path` fed by the returned appsrc list.
fn mount(mounts: &rtsp::RTSPMountPoints, path: &str, site: &SiteId) -> Sinks {
    let sinks: Sinks = Arc::new(Mutex::new(Vec::new()));
    let factory = rtsp::RTSPMediaFactory::new();
    factory.set_launch(
        "( appsrc name=src is-live=true format=time block=false \
         max-bytes=4000000 leaky-type=downstream \
         caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )",
    );
    factory.set_shared(true);
    let sinks_cfg = sinks.clone();
    let site_cfg = site.clone();
    factory.connect_media_configure(move |_, media| {
        let element = media.element();
        let src = element
            .dynamic_cast_ref::<gst::Bin>()
            .and_then(|b| b.by_name("src"))
            .and_then(|e| e.dynamic_cast::<gst_app::AppSrc>().ok());
        match src {
            Some(src) => {
                debug!(site = %site_cfg, "client media configured");
                sinks_cfg.lock().push((src.clone(), None));
                // push_live skips an appsrc that is not PLAYING rather than dropping
                // it, so the media's end is what forgets it.
                let (sinks, site) = (sinks_cfg.clone(), site_cfg.clone());
                media.connect_unprepared(move |_| {
                    debug!(site = %site, "client media ended");
                    sinks.lock().retain(|(s, _)| s != &src);
                });
            }
            None => warn!(site = %site_cfg, "sample media has no appsrc"),
        }
    });
    mounts.add_factory(path, factory);
    sinks
}

/// The substream footage of `footage` (`X.mp4` -> `X.sub.mp4`, beside it).
pub fn sub_footage(footage: &Path) -> PathBuf {
    footage.with_extension("sub.mp4")
}

/// The appsrcs of the mounts' media, each with the offset from the feeder's running time to
/// its own (set at its first frame).
type Sinks = Arc<Mutex<Vec<(gst_app::AppSrc, Option<i64>)>>>;

/// A running sample-camera server.
pub struct SampleServer {
    port: u16,
    main_loop: glib::MainLoop,
    loop_thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    feeders: Vec<std::thread::JoinHandle<()>>,
}

impl SampleServer {
    /// Serves each `(site, file)` as `rtsp://127.0.0.1:PORT/<site>`; port 0 picks a free port.
    pub fn start(feeds: &[(SiteId, PathBuf)], port: u16) -> Result<Self, IngestError> {
        let server = rtsp::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let mounts = server
            .mount_points()
            .ok_or_else(|| IngestError::Samples("RTSP server has no mount points".into()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut feeders = Vec::new();
        for (site, path) in feeds {
            let sinks = mount(&mounts, &format!("/{site}"), site);
            let sub = sub_footage(path);
            let sub = sub
                .is_file()
                .then(|| (sub, mount(&mounts, &format!("/{site}/sub"), site)));
            let (path, stop, site) = (path.clone(), stop.clone(), site.clone());
            feeders.push(
                std::thread::Builder::new()
                    .name(format!("feed-{site}"))
                    .spawn(move || {
                        let span = info_span!("samples", site = %site);
                        let _g = span.enter();
                        feed(&path, &sinks, sub.as_ref(), &stop);
                    })?,
            );
        }
        let ctx = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&ctx), false);
        let source_id = ctx
            .with_thread_default(|| server.attach(Some(&ctx)))
            .map_err(|e| IngestError::Samples(format!("cannot use main context: {e}")))?
            .map_err(|e| {
                IngestError::Samples(format!(
                    "cannot listen on 127.0.0.1:{port} (port in use?): {e}"
                ))
            })?;
        let bound = server.bound_port();
        if bound <= 0 {
            return Err(IngestError::Samples(format!(
                "cannot listen on 127.0.0.1:{port}"
            )));
        }
        let ml = main_loop.clone();
        let loop_thread = std::thread::Builder::new()
            .name("rtsp-samples".into())
            .spawn(move || {
                let _keep = (server, source_id);
                if ctx.with_thread_default(|| ml.run()).is_err() {
                    warn!("RTSP main loop could not own its context");
                }
            })?;
        Ok(Self {
            port: bound as u16,
            main_loop,
            loop_thread: Some(loop_thread),
            stop,
            feeders,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.main_loop.quit();
        if let Some(t) = self.loop_thread.take() {
            let _ = t.join();
        }
        for f in self.feeders.drain(..) {
            let _ = f.join();
        }
    }
}

/// Plays `path` (and the substream file `sub`, side by side) at real-time pace forever, pushing
/// each access unit into the mounts' appsrcs.
fn feed(path: &Path, sinks: &Sinks, sub: Option<&(PathBuf, Sinks)>, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        if let Err(e) = feed_once(path, sinks, sub, stop) {
            warn!(error = %e, file = %path.display(), "sample feeder failed, restarting in 2 s");
            for _ in 0..40 {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn feed_once(
    path: &Path,
    sinks: &Sinks,
    sub: Option<&(PathBuf, Sinks)>,
    stop: &AtomicBool,
) -> Result<(), String> {
    let branch = |path: &Path, name: &str| {
        let location = path.display().to_string().replace('"', "\\\"");
        format!(
            "filesrc location=\"{location}\" ! qtdemux ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name={name} sync=true "
        )
    };
    // Both files in one pipeline: one clock, one segment loop (the bin posts SEGMENT_DONE once
    // both demuxers are done), so the substream never drifts from the main stream.
    let mut line = branch(path, "out");
    if let Some((sub_path, _)) = sub {
        line.push_str(&branch(sub_path, "sub"));
    }
    let pipeline = gst::parse::launch(&line)
        .map_err(|e| e.to_string())?
        .dynamic_cast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    feed_sink(&pipeline, "out", sinks)?;
    if let Some((_, sub_sinks)) = sub {
        feed_sink(&pipeline, "sub", sub_sinks)?;
    }
    let result = play_looping(&pipeline, stop);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Pushes what the appsink `name` of the feeder gets into the appsrcs of `sinks`.
fn feed_sink(pipeline: &gst::Pipeline, name: &str, sinks: &Sinks) -> Result<(), String> {
    let sink = pipeline
        .by_name(name)
        .and_then(|e| e.dynamic_cast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    // A new feeder pipeline starts its timeline again: every client's stamps are re-anchored.
    for (_, offset) in sinks.lock().iter_mut() {
        *offset = None;
    }
    let sinks_cb = sinks.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let rt = sample.buffer().and_then(|b| b.pts()).and_then(|pts| {
                    sample
                        .segment()?
                        .downcast_ref::<gst::ClockTime>()?
                        .to_running_time(pts)
                });
                if let (Some(buf), Some(rt)) = (sample.buffer_owned(), rt) {
                    // The footage has no B-frames: arrival order is presentation order.
                    sinks_cb
                        .lock()
                        .retain_mut(|(src, offset)| push_regular(src, offset, &buf, rt));
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// Pushes `buf` into a media's appsrc stamped on the footage's own timeline (`rt`, its running
/// time in the feeder, which the segment looping keeps increasing), moved once to where the
/// media's running time was at its first frame: the frame intervals stay those of the file, as
/// a real camera's RTP clock ticks regularly whatever the network does. Stamping at arrival
/// instead would carry the feeder's scheduling jitter to the clients. Skipped while the media
/// is not PLAYING (see [`super::push_live`]); false once the appsrc refuses data.
fn push_regular(
    src: &gst_app::AppSrc,
    offset: &mut Option<i64>,
    buf: &gst::Buffer,
    rt: gst::ClockTime,
) -> bool {
    if src.current_state() != gst::State::Playing {
        return true;
    }
    let Some(now) = src.current_running_time() else {
        return true;
    };
    let rt = rt.nseconds() as i64;
    let off = *offset.get_or_insert(now.nseconds() as i64 - rt);
    let Ok(stamp) = u64::try_from(rt + off) else {
        return true;
    };
    let mut b = buf.clone();
    {
        let b = b.make_mut();
        b.set_pts(gst::ClockTime::from_nseconds(stamp));
        b.set_dts(gst::ClockTime::from_nseconds(stamp));
    }
    src.push_buffer(b).is_ok()
}

fn play_looping(pipeline: &gst::Pipeline, stop: &AtomicBool) -> Result<(), String> {
    let bus = pipeline.bus().ok_or("no bus")?;
    pipeline
        .set_state(gst::State::Paused)
        .map_err(|e| format!("cannot open: {e}"))?;
    // Wait for preroll, then a flushing segment seek: at its end the demuxer posts SEGMENT_DONE
    // instead of EOS, and a non-flushing seek back to 0 continues without a gap.
    let prerolled = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::AsyncDone, gst::MessageType::Error],
    );
    if let Some(m) = prerolled {
        if let gst::MessageView::Error(e) = m.view() {
            return Err(e.error().to_string());
        }
    }
    pipeline
        .seek_simple(
            gst::SeekFlags::FLUSH | gst::SeekFlags::SEGMENT,
            gst::ClockTime::ZERO,
        )
        .map_err(|e| format!("cannot seek: {e}"))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot play: {e}"))?;
    while !stop.load(Ordering::SeqCst) {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::SegmentDone(_) => {
                pipeline
                    .seek_simple(gst::SeekFlags::SEGMENT, gst::ClockTime::ZERO)
                    .map_err(|e| format!("cannot loop: {e}"))?;
            }
            gst::MessageView::Eos(_) => return Err("unexpected end of stream".into()),
            gst::MessageView::Error(e) => return Err(e.error().to_string()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footage_lookup_order() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sites")).unwrap();
        std::fs::write(d.path().join("sample.mp4"), b"x").unwrap();
        std::fs::write(d.path().join("sites/bkb.mp4"), b"x").unwrap();
        std::fs::write(d.path().join("ampera.mp4"), b"x").unwrap();
        let f = |s| footage_for(d.path(), s, "sample.mp4").unwrap();
        assert_eq!(f("bkb"), d.path().join("sites/bkb.mp4"));
        assert_eq!(f("ampera"), d.path().join("ampera.mp4"));
        assert_eq!(f("other"), d.path().join("sample.mp4"));
        let err = footage_for(d.path(), "x", "missing.mp4")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.mp4") && err.contains("setup.sh"),
            "{err}"
        );
        assert_eq!(
            footage_for(&d.path().join("sample.mp4"), "any", "z").unwrap(),
            d.path().join("sample.mp4")
        );
        assert_eq!(
            sub_footage(&d.path().join("sites/bkb.mp4")),
            d.path().join("sites/bkb.sub.mp4")
        );
    }
}
