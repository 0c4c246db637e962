//! Stand-ins for the operators' wall, so the measured process does the wall work it does in the
//! Command Center (it draws and encodes only while watched): the wall page's one MJPEG
//! connection for every tile (`/tiles.mjpg`) and an RTSP client of the mosaic
//! (`/annotated/wall`), as a wall controller would pull it; or (`--substreams`) the browser
//! page's passthrough tiles, one `/live/{site}` WebSocket per site ([`LiveViewers`]). They run in the harness process, so
//! their own cost is not in the measured process's CPU; the RTSP client receives and
//! depayloads, it does not decode (a wall controller decodes on its own hardware).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::debug;

use super::BenchError;

/// Reads `/tiles.mjpg` and counts the JPEG parts.
pub struct MjpegReader {
    pub url: String,
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MjpegReader {
    /// `login` is a wall device account (name, token), sent as HTTP Basic.
    pub fn start(
        http: SocketAddr,
        path: &str,
        login: (&str, &str),
    ) -> Result<MjpegReader, BenchError> {
        use base64::Engine;
        let url = format!("http://{http}{path}");
        let mut stream =
            TcpStream::connect_timeout(&http, Duration::from_secs(5)).map_err(|error| {
                BenchError::Io {
                    what: format!("cannot connect to {url}"),
                    error,
                }
            })?;
        let io = |error| BenchError::Io {
            what: format!("cannot request {url}"),
            error,
        };
        stream
            .set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(io)?;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", login.0, login.1));
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {http}\r\nAuthorization: Basic {basic}\r\n\
             Connection: close\r\n\r\n"
        )
        .map_err(io)?;
        let frames = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frames.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bench-mjpeg".into())
            .spawn(move || read_parts(stream, &f, &s))
            .map_err(|error| BenchError::Io {
                what: "cannot start the MJPEG reader".into(),
                error,
            })?;
        Ok(MjpegReader {
            url,
            frames,
            stop,
            thread: Some(thread),
        })
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Decodes the chunked transfer encoding (if used) and counts multipart JPEG parts by their
/// `Content-Length` headers.
fn read_parts(mut stream: TcpStream, frames: &AtomicU64, stop: &AtomicBool) {
    let mut raw: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut body = MultipartCounter::default();
    let mut chunked: Option<bool> = None;
    let mut chunks = Dechunker::default();
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(e) => {
                debug!(error = %e, "MJPEG reader ended");
                break;
            }
        };
        raw.extend_from_slice(&buf[..n]);
        if chunked.is_none() {
            let Some(end) = find(&raw, b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            chunked = Some(head.contains("transfer-encoding: chunked"));
            raw.drain(..end + 4);
        }
        let data = if chunked == Some(true) {
            chunks.feed(&raw)
        } else {
            raw.clone()
        };
        raw.clear();
        frames.fetch_add(body.feed(&data), Ordering::Relaxed);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Undoes `Transfer-Encoding: chunked` over a byte stream fed in pieces.
#[derive(Default)]
struct Dechunker {
    pending: Vec<u8>,
    /// Bytes left in the current chunk's data (then its CRLF).
    left: usize,
    in_data: bool,
}

impl Dechunker {
    fn feed(&mut self, input: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(input);
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            if self.in_data {
                let take = self.left.min(self.pending.len() - pos);
                out.extend_from_slice(&self.pending[pos..pos + take]);
                pos += take;
                self.left -= take;
                if self.left > 0 {
                    break;
                }
                // the CRLF after the data
                if self.pending.len() - pos < 2 {
                    break;
                }
                pos += 2;
                self.in_data = false;
            } else {
                let Some(eol) = find(&self.pending[pos..], b"\r\n") else {
                    break;
                };
                let line = String::from_utf8_lossy(&self.pending[pos..pos + eol]).to_string();
                pos += eol + 2;
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or(0);
                self.left = size;
                self.in_data = true;
            }
        }
        self.pending.drain(..pos);
        out
    }
}

/// Counts parts in a multipart body fed in pieces: each part has a `Content-Length` header.
#[derive(Default)]
struct MultipartCounter {
    pending: Vec<u8>,
    skip: usize,
}

impl MultipartCounter {
    fn feed(&mut self, input: &[u8]) -> u64 {
        let mut data = input;
        if self.skip > 0 {
            let s = self.skip.min(data.len());
            self.skip -= s;
            data = &data[s..];
        }
        self.pending.extend_from_slice(data);
        let mut parts = 0;
        loop {
            if self.skip > 0 {
                let s = self.skip.min(self.pending.len());
                self.pending.drain(..s);
                self.skip -= s;
                if self.skip > 0 {
                    break;
                }
            }
            let Some(h) = find(&self.pending, b"Content-Length: ") else {
                // keep a tail that could hold the start of a header
                let keep = self.pending.len().saturating_sub(32);
                self.pending.drain(..keep);
                break;
            };
            let from = h + b"Content-Length: ".len();
            let Some(eol) = find(&self.pending[from..], b"\r\n") else {
                break;
            };
            let Some(end) = find(&self.pending[from..], b"\r\n\r\n") else {
                break;
            };
            let len: usize = String::from_utf8_lossy(&self.pending[from..from + eol])
                .trim()
                .parse()
                .unwrap_or(0);
            parts += 1;
            self.pending.drain(..from + end + 4);
            self.skip = len;
        }
        parts
    }
}

/// An RTSP client of an annotated stream: receives and depayloads H.264, counts access units.
pub struct RtspClient {
    pub url: String,
    pipeline: gst::Pipeline,
    frames: Arc<AtomicU64>,
}

impl RtspClient {
    /// `login` is a wall device account (name, token), given to RTSP's own authentication.
    pub fn start(url: &str, login: (&str, &str)) -> Result<RtspClient, BenchError> {
        crate::ingest::init_gstreamer()?;
        let (user, pw) = login;
        let line = format!(
            "rtspsrc location=\"{url}\" user-id=\"{user}\" user-pw=\"{pw}\" protocols=tcp latency=0 ! rtph264depay \
             ! fakesink name=sink sync=false async=false"
        );
        let err = |m: String| BenchError::Protocol(format!("RTSP client of {url}: {m}"));
        let pipeline = gst::parse::launch(&line)
            .map_err(|e| err(e.to_string()))?
            .dynamic_cast::<gst::Pipeline>()
            .map_err(|_| err("not a pipeline".into()))?;
        let frames = Arc::new(AtomicU64::new(0));
        let f = frames.clone();
        let pad = pipeline
            .by_name("sink")
            .and_then(|s| s.static_pad("sink"))
            .ok_or_else(|| err("no sink pad".into()))?;
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            f.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| err(e.to_string()))?;
        Ok(RtspClient {
            url: url.to_string(),
            pipeline,
            frames,
        })
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The pipeline's first error, if any.
    pub fn error(&self) -> Option<String> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(e.error().to_string()),
            _ => None,
        }
    }

    pub fn stop(self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The wall page's browser tiles: one `/live/{site}` WebSocket per site, reading every message
/// (MP4 fragments and analytics) as the page does, counting the fragments. They do not decode:
/// a browser decodes on the operator's machine.
pub struct LiveViewers {
    pub url: String,
    frames: Arc<AtomicU64>,
    errors: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LiveViewers {
    /// `login` is a wall device account (name, token), sent as HTTP Basic on the upgrade.
    pub fn start(
        http: SocketAddr,
        sites: &[String],
        login: (&str, &str),
    ) -> Result<LiveViewers, BenchError> {
        use base64::Engine;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", login.0, login.1))
        );
        let frames = Arc::new(AtomicU64::new(0));
        let errors: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for site in sites {
            let url = format!("ws://{http}/live/{site}");
            let (f, e, s, auth) = (frames.clone(), errors.clone(), stop.clone(), basic.clone());
            let origin = format!("http://{http}");
            let t = std::thread::Builder::new()
                .name("bench-live".into())
                .spawn(move || {
                    if let Err(m) = read_live(&url, &origin, &auth, &f, &s) {
                        if let Ok(mut e) = e.lock() {
                            e.push(format!("{url}: {m}"));
                        }
                    }
                })
                .map_err(|error| BenchError::Io {
                    what: "cannot start a live viewer".into(),
                    error,
                })?;
            threads.push(t);
        }
        Ok(LiveViewers {
            url: format!("ws://{http}/live/{{site}} x {}", sites.len()),
            frames,
            errors,
            stop,
            threads,
        })
    }

    /// MP4 fragments received by all the viewers.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The first viewer that failed, if any.
    pub fn error(&self) -> Option<String> {
        self.errors.lock().ok()?.first().cloned()
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn read_live(
    url: &str,
    origin: &str,
    auth: &str,
    frames: &AtomicU64,
    stop: &AtomicBool,
) -> Result<(), String> {
    use tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    for (k, v) in [("origin", origin), ("authorization", auth)] {
        req.headers_mut()
            .insert(k, v.parse().map_err(|e| format!("header {k}: {e}"))?);
    }
    let (mut ws, _) = tungstenite::connect(req).map_err(|e| e.to_string())?;
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .map_err(|e| e.to_string())?;
    }
    while !stop.load(Ordering::SeqCst) {
        match ws.read() {
            // kind 2: one MP4 fragment, one frame of the camera
            Ok(tungstenite::Message::Binary(b)) if b.first() == Some(&2) => {
                frames.fetch_add(1, Ordering::Relaxed);
            }
            Ok(tungstenite::Message::Close(c)) => return Err(format!("closed: {c:?}")),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let _ = ws.close(None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_across_pieces() {
        let stream = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        for split in 0..stream.len() {
            let mut d = Dechunker::default();
            let mut out = d.feed(&stream[..split]);
            out.extend(d.feed(&stream[split..]));
            assert_eq!(out, b"hello world", "split at {split}");
        }
    }

    #[test]
    fn counts_parts_across_pieces() {
        let jpeg = [0xFFu8, 0xD8, b'C', b'o', b'n', 0xFF, 0xD9];
        let mut body = Vec::new();
        body.extend_from_slice(b"--frame\r\n");
        for site in ["a", "b", "c"] {
            body.extend_from_slice(
                format!("Content-Type: image/jpeg\r\nContent-Length: 7\r\nX-Site: {site}\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(&jpeg);
            body.extend_from_slice(b"\r\n--frame\r\n");
        }
        for split in 0..body.len() {
            let mut c = MultipartCounter::default();
            let n = c.feed(&body[..split]) + c.feed(&body[split..]);
            assert_eq!(n, 3, "split at {split}");
        }
        // a JPEG that happens to contain the header text is skipped by length, not counted
        let mut tricky = b"Content-Length: 18\r\n\r\n".to_vec();
        tricky.extend_from_slice(b"Content-Length: 1\r");
        let mut c = MultipartCounter::default();
        assert_eq!(c.feed(&tricky), 1);
    }
}
