//! Accepting connections: our own loop over hyper rather than
//! `axum::serve`, because what a client may make the server hold before
//! it has a token (the request head's size) is set on hyper's connection
//! builder, which `axum::serve` does not expose.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use vmfabric_model::{Error, Result};

use crate::problem::HttpProblem;

/// The request line and headers we read and answer: more gets 431 as a
/// problem document. Tokens are 68 characters; browsers send under 2 KiB.
pub const HEAD_LIMIT: usize = 8 * 1024;

/// What hyper buffers of a request head at most; past it hyper answers a
/// bare 431 and closes, without our problem document (it never reaches
/// the router). Twice `HEAD_LIMIT` so that heads just over the limit get
/// the document.
pub const HEAD_BUFFER: usize = 2 * HEAD_LIMIT;

/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

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

/// Serve `app` on `listener` (over TLS with `tls`) until `stop` turns
/// true; then let the connections finish their requests for up to `grace`.
pub async fn run(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .max_buf_size(HEAD_BUFFER)
        .max_header_size(HEAD_BUFFER);
    let http = Arc::new(http);
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
        let _ = stream.set_nodelay(true);
        let (http, app, stop, open) = (http.clone(), app.clone(), stop.clone(), open.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let _open = open;
            match tls {
                None => connection(&http, stream, app, stop).await,
                Some(acceptor) => {
                    if let Ok(Ok(s)) =
                        tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await
                    {
                        connection(&http, s, app, stop).await;
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

/// One connection until it closes, or until a stop lets its request in
/// flight finish.
async fn connection<IO>(
    http: &hyper::server::conn::http1::Builder,
    io: IO,
    app: Router,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
