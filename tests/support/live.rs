//! A browser tile's view of `/live/{site}` without a browser: a WebSocket client that reads the
//! `hello`, the MP4 init segment and fragments, and the analytics messages, and GStreamer to
//! decode what it got the way a browser's MSE would (qtdemux on the fragmented MP4).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use serde_json::Value;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Header bytes before the MP4 bytes of a binary message (src/wall/live.rs).
pub const HEADER_LEN: usize = 16;

/// One binary message.
#[derive(Clone, Debug)]
pub struct Binary {
    /// 1 init segment, 2 fragment.
    pub kind: u8,
    pub key: bool,
    pub seq: u32,
    pub arrived_ms: f64,
    pub mp4: Vec<u8>,
}

impl Binary {
    /// The fragment's decode time (`moof/traf/tfdt`), 90 kHz ticks.
    pub fn decode_time(&self) -> u64 {
        let tfdt = find_box(&self.mp4, &[b"moof", b"traf", b"tfdt"]).expect("fragment has a tfdt");
        assert_eq!(tfdt[0], 1, "64-bit tfdt");
        u64::from_be_bytes(tfdt[4..12].try_into().unwrap())
    }
}

/// What the socket said, in order.
#[derive(Clone, Debug)]
pub enum Received {
    Text(Value),
    Binary(Binary),
}

/// A `/live/{site}` client.
pub struct LiveClient {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
}

impl LiveClient {
    /// Connects to `ws://ADDR/live/SITE` (`base` is `http://ADDR`), sending `origin` if given.
    /// `base` may carry a wall device account (`http://NAME:TOKEN@ADDR`, as
    /// [`super::simpang::Run::base`] does): it is sent as HTTP Basic on the upgrade request, the
    /// way a wall controller signs in; an `origin` with it is the origin without it.
    pub fn connect(base: &str, site: &str, origin: Option<&str>) -> Result<LiveClient, String> {
        use base64::Engine;
        let (login, bare) = split_login(base);
        let url = format!("{}/live/{site}", bare.replacen("http://", "ws://", 1));
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(url.as_str())
            .map_err(|e| e.to_string())?;
        if let Some(o) = origin {
            let (_, o) = split_login(o);
            req.headers_mut()
                .insert("origin", o.parse().map_err(|e| format!("{e}"))?);
        }
        if let Some(l) = login {
            let v = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(l)
            );
            req.headers_mut()
                .insert("authorization", v.parse().map_err(|e| format!("{e}"))?);
        }
        let (ws, _) = tungstenite::connect(req).map_err(|e| format!("{url}: {e}"))?;
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .map_err(|e| e.to_string())?;
        }
        Ok(LiveClient { ws })
    }

    /// The next message (pings aside); panics on a closed or silent socket.
    pub fn next(&mut self) -> Received {
        loop {
            match self.ws.read().expect("live socket read") {
                Message::Text(t) => {
                    return Received::Text(serde_json::from_str(t.as_str()).expect("JSON text"))
                }
                Message::Binary(b) => {
                    assert!(b.len() >= HEADER_LEN, "binary message of {} bytes", b.len());
                    return Received::Binary(Binary {
                        kind: b[0],
                        key: b[1] & 1 == 1,
                        seq: u32::from_le_bytes(b[4..8].try_into().unwrap()),
                        arrived_ms: f64::from_le_bytes(b[8..16].try_into().unwrap()),
                        mp4: b[HEADER_LEN..].to_vec(),
                    });
                }
                Message::Close(c) => panic!("the server closed the live socket: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Reads until `n` fragments have arrived (or `deadline` passes): everything received.
    pub fn read_fragments(&mut self, n: usize, deadline: Duration) -> Vec<Received> {
        let end = Instant::now() + deadline;
        let mut out = Vec::new();
        let mut got = 0;
        while got < n {
            assert!(
                Instant::now() < end,
                "{got} of {n} fragments within {deadline:?}"
            );
            let m = self.next();
            if matches!(&m, Received::Binary(b) if b.kind == 2) {
                got += 1;
            }
            out.push(m);
        }
        out
    }
}

/// The boxes at the top level of `b`: (type, payload).
pub fn boxes(mut b: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let len = u32::from_be_bytes(b[..4].try_into().unwrap()) as usize;
        assert!(
            len >= 8 && len <= b.len(),
            "box length {len} of {}",
            b.len()
        );
        out.push((b[4..8].try_into().unwrap(), &b[8..len]));
        b = &b[len..];
    }
    out
}

/// The payload of the box at `path` (container boxes only on the way).
pub fn find_box<'a>(b: &'a [u8], path: &[&[u8; 4]]) -> Option<&'a [u8]> {
    let (first, rest) = path.split_first()?;
    let (_, body) = boxes(b).into_iter().find(|(k, _)| k == *first)?;
    if rest.is_empty() {
        Some(body)
    } else {
        find_box(body, rest)
    }
}

/// Decodes an init segment followed by fragments (a fragmented MP4 file, as MSE gets it) with
/// GStreamer: (frames decoded, width, height, luma means of the frames).
pub fn decode_fmp4(mp4: &[u8], dir: &std::path::Path) -> (usize, u32, u32, Vec<f64>) {
    gst::init().unwrap();
    let path = dir.join(format!("live-{}.mp4", std::process::id()));
    std::fs::write(&path, mp4).unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location=\"{}\" ! qtdemux ! h264parse ! avdec_h264 ! videoconvert \
         ! video/x-raw,format=GRAY8 ! appsink name=out sync=false",
        path.display()
    ))
    .unwrap()
    .dynamic_cast::<gst::Pipeline>()
    .unwrap();
    let sink = p
        .by_name("out")
        .unwrap()
        .dynamic_cast::<gstreamer_app::AppSink>()
        .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (mut n, mut w, mut h, mut means) = (0, 0, 0, Vec::new());
    while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        let caps = s.caps().unwrap();
        let st = caps.structure(0).unwrap();
        w = st.get::<i32>("width").unwrap() as u32;
        h = st.get::<i32>("height").unwrap() as u32;
        let map = s.buffer().unwrap().map_readable().unwrap();
        let px = &map.as_slice()[..(w * h) as usize];
        means.push(px.iter().map(|v| *v as f64).sum::<f64>() / px.len() as f64);
        n += 1;
    }
    let bus = p.bus().unwrap();
    let err = bus
        .pop_filtered(&[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => e.error().to_string(),
            _ => String::new(),
        });
    p.set_state(gst::State::Null).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(err.is_none(), "decoding the fragments failed: {err:?}");
    (n, w, h, means)
}

/// (`NAME:TOKEN` if any, the URL without it) of `http://NAME:TOKEN@ADDR...`.
fn split_login(url: &str) -> (Option<String>, String) {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((login, host)) if !login.contains('/') => {
                (Some(login.to_string()), format!("{scheme}://{host}"))
            }
            _ => (None, url.to_string()),
        },
        None => (None, url.to_string()),
    }
}
