//! Accepting connections: our own loop over hyper rather than
//! `axum::serve`, because what a client may make the server hold before
//! it has a token (the request head's size, how long a connection may sit
//! idle, how many connections) is set here, and `axum::serve` exposes none
//! of it.
//!
//! Every connection is in a registry: busy while a request is in flight
//! (its answer not yet fully sent), idle otherwise. An idle connection is
//! closed when its timeout passes (head on a new connection or once a head
//! has begun, idle keep-alive between requests); at the cap, a new
//! connection closes the longest-idle one, so health checks and new clients
//! get in while requests in flight (agents' long polls) are never cut.
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tower_service::Service;
use vmfabric_model::{Error, Result};

use crate::Ctl;
use crate::problem::HttpProblem;

/// The request line and headers we read and answer: more gets 431 as a
/// problem document. Tokens are 68 characters; browsers send under 2 KiB.
pub const HEAD_LIMIT: usize = 8 * 1024;

/// What hyper buffers of a request head at most; past it hyper answers a
/// bare 431 and closes, without our problem document (it never reaches
/// the router). Twice `HEAD_LIMIT` so that heads just over the limit get
/// the document.
pub const HEAD_BUFFER: usize = 2 * HEAD_LIMIT;

/// Largest request body read (axum's default for `Bytes`).
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// What one client may hold of the server, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A new connection's first request head (and TLS handshake), or a
    /// head once its first byte came, must arrive within this.
    pub head_timeout: Duration,
    /// A kept-alive connection with no request may wait this long.
    pub idle_timeout: Duration,
    /// A request's whole body must arrive within this of its head.
    pub body_timeout: Duration,
    /// Connections open at once; at the cap a new one closes the
    /// longest-idle one (or is refused when every one is busy).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            // 10,000 agents' long polls and room for API clients.
            max_connections: 15_000,
        }
    }
}

/// 431 for a request head over `HEAD_LIMIT`, before any other work.
pub async fn limit_head(req: Request, next: Next) -> Response {
    let size = req.uri().to_string().len()
        + req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>();
    if size > HEAD_LIMIT {
        return HttpProblem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Error::invalid(
                "headers",
                format!("{size} bytes"),
                format!("the request line and headers take at most {HEAD_LIMIT} bytes"),
            ),
        )
        .into();
    }
    next.run(req).await
}

/// 415 for a request with a body (or a Content-Type) other than JSON: every
/// body of the API is JSON, and reading a form or text as JSON would only
/// fail later with a vaguer error.
fn not_json(req: &Request) -> Option<HttpProblem> {
    let ctype = req.headers().get(axum::http::header::CONTENT_TYPE);
    // A body is framed by a non-zero length or chunked encoding; a DELETE
    // or GET without either has none.
    let has_body = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|l| l.as_bytes() != b"0")
        || req
            .headers()
            .contains_key(axum::http::header::TRANSFER_ENCODING);
    let json = |v: &axum::http::HeaderValue| {
        let mime = v.to_str().unwrap_or_default();
        let essence = mime.split(';').next().unwrap_or_default().trim();
        essence.eq_ignore_ascii_case("application/json")
    };
    let shown = match ctype {
        Some(v) if json(v) => return None,
        Some(v) => String::from_utf8_lossy(v.as_bytes())
            .chars()
            .take(80)
            .collect(),
        None if has_body => "(none)".to_string(),
        None => return None,
    };
    Some(HttpProblem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::invalid(
            "content-type",
            shown,
            "a request body is JSON: send Content-Type: application/json",
        ),
    ))
}

/// An answer the router made without a problem document (405 for a method
/// a route does not take) gets one; its headers (Allow) stay.
pub async fn problem_documents(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    if resp.status() != StatusCode::METHOD_NOT_ALLOWED {
        return resp;
    }
    let allow = resp
        .headers()
        .get(axum::http::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut doc: Response = HttpProblem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Error::invalid("method", &method, format!("{path} takes {allow}")),
    )
    .into();
    let (mut parts, body) = resp.into_parts();
    drop(body);
    let ctype = doc.headers_mut().remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    if let Some(c) = ctype {
        parts.headers.insert(axum::http::header::CONTENT_TYPE, c);
    }
    Response::from_parts(parts, doc.into_body())
}

/// The body of an authenticated request, read whole within the body
/// timeout: 408 if it stops coming, 413 past `BODY_LIMIT`.
pub async fn read_body(State(ctl): State<Ctl>, req: Request, next: Next) -> Response {
    if let Some(refused) = not_json(&req) {
        return refused.into();
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(
        ctl.limits.body_timeout,
        axum::body::to_bytes(body, BODY_LIMIT),
    )
    .await;
    let bytes = match read {
        Ok(Ok(b)) => b,
        Err(_) => {
            return HttpProblem::new(
                StatusCode::REQUEST_TIMEOUT,
                Error::invalid(
                    "body",
                    "incomplete",
                    format!(
                        "a request's body must arrive within {} s of its head",
                        ctl.limits.body_timeout.as_secs_f64()
                    ),
                ),
            )
            .into();
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_large {
                HttpProblem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Error::invalid(
                        "body",
                        format!("over {BODY_LIMIT} bytes"),
                        format!("a request's body takes at most {BODY_LIMIT} bytes"),
                    ),
                )
                .into()
            } else {
                HttpProblem::new(
                    StatusCode::BAD_REQUEST,
                    Error::invalid(
                        "body",
                        "unreadable",
                        format!("the body could not be read: {e}"),
                    ),
                )
                .into()
            };
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

// ---------------------------------------------------------------------------
// The registry of connections

/// Where a connection is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No request in flight since `since`; `served` once it answered one;
    /// `head` when the first byte of the next head came.
    Idle {
        since: Instant,
        served: bool,
        head: Option<Instant>,
    },
    Busy,
}

#[derive(Debug)]
struct Conn {
    id: u64,
    phase: Mutex<Phase>,
    /// Close now (idle) or after the request in flight (busy).
    evict: Notify,
    /// The phase changed: the deadline may have.
    changed: Notify,
}

impl Conn {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        // A panic while holding the lock leaves a usable phase.
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When this connection is closed if nothing happens, or None while
    /// busy (the body timeout and the handlers bound a request).
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match *self.phase() {
            Phase::Busy => None,
            Phase::Idle {
                since,
                served: false,
                ..
            } => Some(since + limits.head_timeout),
            Phase::Idle { head: Some(t), .. } => Some(t + limits.head_timeout),
            Phase::Idle { since, .. } => Some(since + limits.idle_timeout),
        }
    }

    /// Bytes came in: on an idle kept-alive connection, a head began.
    fn read_some(&self) {
        if let Phase::Idle {
            served: true,
            head: head @ None,
            ..
        } = &mut *self.phase()
        {
            *head = Some(Instant::now());
        }
    }
}

#[derive(Debug, Default)]
struct Connections {
    open: usize,
    /// Idle connections by when they became idle: the oldest goes first.
    idle: BTreeMap<(Instant, u64), Arc<Conn>>,
}

#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    conns: Mutex<Connections>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Connections> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self) -> usize {
        self.lock().open
    }

    fn register(&self) -> Arc<Conn> {
        let since = Instant::now();
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            phase: Mutex::new(Phase::Idle {
                since,
                served: false,
                head: None,
            }),
            evict: Notify::new(),
            changed: Notify::new(),
        });
        let mut c = self.lock();
        c.open += 1;
        c.idle.insert((since, conn.id), conn.clone());
        conn
    }

    /// The longest-idle connection, out of the idle set (the caller tells
    /// it to close).
    fn oldest_idle(&self) -> Option<Arc<Conn>> {
        self.lock().idle.pop_first().map(|(_, c)| c)
    }

    fn begin(&self, conn: &Conn) {
        let mut phase = conn.phase();
        if let Phase::Idle { since, .. } = *phase {
            self.lock().idle.remove(&(since, conn.id));
        }
        *phase = Phase::Busy;
    }

    fn end(&self, conn: &Arc<Conn>) {
        let since = Instant::now();
        *conn.phase() = Phase::Idle {
            since,
            served: true,
            head: None,
        };
        self.lock().idle.insert((since, conn.id), conn.clone());
        conn.changed.notify_one();
    }

    fn closed(&self, conn: &Conn) {
        let phase = *conn.phase();
        let mut c = self.lock();
        c.open = c.open.saturating_sub(1);
        if let Phase::Idle { since, .. } = phase {
            c.idle.remove(&(since, conn.id));
        }
    }
}

/// Takes a connection out of the registry when its task ends.
struct Registered(Arc<Registry>, Arc<Conn>);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.closed(&self.1);
    }
}

/// Marks the connection idle again when the answer has been sent (hyper
/// drops the body then), or the request was abandoned.
struct InFlight(Arc<Registry>, Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end(&self.1);
    }
}

/// A connection's byte stream, telling its `Conn` when bytes come in.
struct Watched<IO> {
    io: IO,
    conn: Arc<Conn>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.read_some();
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

// ---------------------------------------------------------------------------
// Serving

/// Serve `app` on `listener` (over TLS with `tls`) until `stop` turns
/// true; then let the connections finish their requests for up to `grace`.
pub async fn run(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    // Our registry times heads and idle connections (hyper's one timer
    // would count a kept-alive connection's idle time against its head).
    http.header_read_timeout(None)
        .max_buf_size(HEAD_BUFFER)
        .max_header_size(HEAD_BUFFER);
    let http = Arc::new(http);
    let registry = Arc::new(Registry::default());
    // Each connection's task holds a sender: all are gone when the last
    // connection closes.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            // Out of file descriptors, or a connection reset before we
            // took it: others may still come; do not spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if registry.open() >= limits.max_connections {
            match registry.oldest_idle() {
                Some(victim) => victim.evict.notify_one(),
                // Every connection has a request in flight: this one waits
                // for none of them.
                None => continue,
            }
        }
        let _ = stream.set_nodelay(true);
        let conn = Registered(registry.clone(), registry.register());
        let (http, app, stop, open) = (http.clone(), app.clone(), stop.clone(), open.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => connection(&http, stream, app, &conn, limits, stop).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(limits.head_timeout, acceptor.accept(stream));
                    let s = tokio::select! {
                        s = handshake => s,
                        _ = conn.1.evict.notified() => return,
                    };
                    if let Ok(Ok(s)) = s {
                        connection(&http, s, app, &conn, limits, stop).await;
                    }
                }
            }
        });
    }
    drop(open);
    drop(listener);
    let _ = tokio::time::timeout(grace, all_closed.recv()).await;
    Ok(())
}

/// One connection until it closes, times out, is evicted, or a stop lets
/// its request in flight finish.
async fn connection<IO>(
    http: &hyper::server::conn::http1::Builder,
    io: IO,
    app: Router,
    reg: &Registered,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Registered(registry, conn) = reg;
    let service = {
        let (registry, conn) = (registry.clone(), conn.clone());
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            registry.begin(&conn);
            let in_flight = InFlight(registry.clone(), conn.clone());
            let mut app = app.clone();
            async move {
                let resp = match app.call(req.map(Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                // The connection is idle again once hyper drops the body,
                // its last byte sent.
                let (parts, body) = resp.into_parts();
                let body = body.map_frame(move |f| {
                    let _ = &in_flight;
                    f
                });
                Ok::<_, std::convert::Infallible>(Response::from_parts(parts, Body::new(body)))
            }
        })
    };
    let io = Watched {
        io,
        conn: conn.clone(),
    };
    let served = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    loop {
        let deadline = conn.deadline(&limits);
        let timeout = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = served.as_mut() => return,
            _ = stop.wait_for(|s| *s) => break,
            _ = conn.evict.notified() => break,
            _ = conn.changed.notified() => {}
            () = timeout => {
                // The deadline may have moved while we slept (a head began,
                // a request came): look again before closing.
                if conn.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    return;
                }
            }
        }
    }
    // Stop or eviction: an idle connection closes now (dropped), a busy
    // one after its answer.
    if matches!(*conn.phase(), Phase::Busy) {
        served.as_mut().graceful_shutdown();
        let _ = served.await;
    }
}
