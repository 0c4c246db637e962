//! Every HTTP listener of simpang (the desk, the wall, the metrics endpoint) is served by
//! [`serve`], which bounds what one client can hold on to:
//!
//! - a request's head must arrive whole within `header_timeout` (slowloris: one header byte a
//!   second is cut off), and so must the next one on a kept-alive connection;
//! - a handler has `request_timeout` to answer (reading a slow upload counts), else `408`;
//! - a client that stops reading a response for `write_stall_timeout` is disconnected (a
//!   stalled MJPEG viewer does not pin its connection forever);
//! - at most `max_connections` connections in all and `max_connections_per_ip` from one
//!   address (an IPv6 client is counted by its /64); above either, a new connection is closed
//!   at once, before anything is read from it.
//!
//! HTTP/1.1 only (what browsers speak without TLS, and what MJPEG and SSE need), with upgrades
//! (WebSocket). The peer address reaches handlers as axum's `ConnectInfo<SocketAddr>`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tower::ServiceExt;
use tracing::{debug, warn};

/// What one listener lets a client hold.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            write_stall_timeout: Duration::from_secs(30),
            max_connections: 512,
            max_connections_per_ip: 64,
        }
    }
}

impl From<&crate::config::HttpConfig> for Limits {
    fn from(c: &crate::config::HttpConfig) -> Self {
        let secs = |v: f64| Duration::from_secs_f64(v.clamp(0.001, 3600.0));
        Self {
            header_timeout: secs(c.header_timeout_s),
            request_timeout: secs(c.request_timeout_s),
            write_stall_timeout: secs(c.write_stall_timeout_s),
            max_connections: c.max_connections as usize,
            max_connections_per_ip: c.max_connections_per_ip as usize,
        }
    }
}

/// The key a client is counted (and rate limited) by: its IPv4 address, or the /64 of its IPv6
/// address (one subscriber usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Open connections, in all and per client.
struct Table {
    max: usize,
    per_ip: usize,
    state: Mutex<(usize, HashMap<String, usize>)>,
    idle: tokio::sync::Notify,
    /// When a refusal was last logged (one line per 10 s, not one per connection).
    warned: Mutex<Option<Instant>>,
}

/// One admitted connection; gives its place back when dropped.
struct Slot {
    table: Arc<Table>,
    key: String,
}

impl Table {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let key = client_key(ip);
        let mut st = self.state.lock();
        if st.0 >= self.max {
            return Err("max_connections");
        }
        let n = st.1.entry(key.clone()).or_insert(0);
        if *n >= self.per_ip {
            return Err("max_connections_per_ip");
        }
        *n += 1;
        st.0 += 1;
        Ok(Slot {
            table: self.clone(),
            key,
        })
    }

    fn open(&self) -> usize {
        self.state.lock().0
    }

    fn refused(&self, peer: SocketAddr, why: &str) {
        let mut w = self.warned.lock();
        if w.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            *w = Some(Instant::now());
            warn!(%peer, limit = why, "connection refused: limit reached (logged once per 10 s)");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.table.state.lock();
        st.0 = st.0.saturating_sub(1);
        if let Some(n) = st.1.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.1.remove(&self.key);
            }
        }
        if st.0 == 0 {
            self.table.idle.notify_waiters();
        }
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` resolves; then stops accepting,
/// asks open connections to finish their current response, and waits for them (at most 10 s:
/// a stream that never ends is the caller's to end, as the wall does on stop).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let table = Arc::new(Table {
        max: limits.max_connections.max(1),
        per_ip: limits.max_connections_per_ip.max(1),
        state: Mutex::new((0, HashMap::new())),
        idle: tokio::sync::Notify::new(),
        warned: Mutex::new(None),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match table.admit(peer.ip()) {
            Ok(s) => s,
            Err(why) => {
                table.refused(peer, why);
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(StallGuard::new(stream, limits.write_stall_timeout));
        let app = app.clone();
        let request_timeout = limits.request_timeout;
        let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let res = tokio::time::timeout(request_timeout, app.oneshot(req.map(Body::new)));
                Ok::<_, Infallible>(match res.await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(),
                })
            }
        });
        let mut stop = stop_rx.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(io, svc).with_upgrades();
            let mut conn = pin!(conn);
            let r = tokio::select! {
                r = conn.as_mut() => r,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = r {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let wait_idle = async {
        while table.open() > 0 {
            let idle = table.idle.notified();
            if table.open() == 0 {
                break;
            }
            idle.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), wait_idle)
        .await
        .is_err()
    {
        warn!(
            open = table.open(),
            "connections still open 10 s after shutdown; leaving them"
        );
    }
    Ok(())
}

fn timed_out() -> Response<Body> {
    let mut r = Response::new(Body::from("waktu permintaan habis (request timeout)\n"));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

/// A TCP stream whose writes fail once they have waited `limit` for the client to read.
struct StallGuard {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(inner: TcpStream, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The write could not proceed: arm (or check) the deadline.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let deadline = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(&mut self, r: io::Result<T>) -> Poll<io::Result<T>> {
        self.stalled = None;
        Poll::Ready(r)
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(r) => this.progressed(r),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn client_keys_group_ipv6_by_64() {
        let cases = [
            ("10.1.2.3", "10.1.2.3"),
            ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
            ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
        ];
        for (ip, want) in cases {
            assert_eq!(client_key(ip.parse().unwrap()), want, "{ip}");
        }
    }

    /// A server under `limits` on a free loopback port, answering `/` and a slow `/slow`.
    fn start(limits: Limits) -> (tokio::runtime::Runtime, SocketAddr) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route(
                "/",
                axum::routing::get(|ConnectInfo(p): ConnectInfo<SocketAddr>| async move {
                    format!("hello {}", p.ip())
                }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        rt.spawn(serve(listener, app, limits, std::future::pending()));
        (rt, addr)
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // A server refusing the connection may reset it before the request is written: that
        // is a refusal (an empty answer), not a test failure.
        let _ = write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn answers_with_the_peer_address_and_times_out_slow_handlers() {
        let (_rt, addr) = start(Limits {
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        });
        assert!(get(addr, "/").contains("hello 127.0.0.1"));
        assert!(get(addr, "/slow").starts_with("HTTP/1.1 408"));
    }

    #[test]
    fn a_slow_header_is_cut_off() {
        let (_rt, addr) = start(Limits {
            header_timeout: Duration::from_millis(500),
            ..Limits::default()
        });
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // Bytes keep coming, but the head never completes: the deadline is for the whole head.
        let mut cut = false;
        for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if s.write_all(&[*b]).is_err() {
                cut = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if !cut {
            let mut buf = [0u8; 256];
            // The server closes (EOF, or a reset) rather than waiting for the rest.
            cut = matches!(s.read(&mut buf), Ok(0) | Err(_))
                || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408");
        }
        assert!(
            cut,
            "a head trickling in past the header timeout is cut off"
        );
    }

    #[test]
    fn connections_past_the_per_ip_cap_are_closed_unread() {
        let (_rt, addr) = start(Limits {
            max_connections_per_ip: 2,
            ..Limits::default()
        });
        let held: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The accept queue is first in, first out: the two are admitted before the third.
        let third = get(addr, "/");
        assert!(third.is_empty(), "third connection answered: {third:?}");
        drop(held);
        // Their places come back once the server sees them closed.
        let mut again = String::new();
        for _ in 0..400 {
            again = get(addr, "/");
            if again.contains("hello") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(again.contains("hello"), "{again:?}");
    }
}
