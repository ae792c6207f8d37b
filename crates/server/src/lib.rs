//! The vmfabric controller: the REST API that billing systems, panels and
//! node agents talk to, over any [`Store`] (SQLite embedded, or one
//! PostgreSQL shared by several controllers).
//!
//! Everything here is shell around the store and the pure crates: a
//! request is authenticated (bearer token, role), parsed into the same
//! input types the CLI uses, answered by one store call, and errors leave
//! as RFC 9457 problem documents carrying the field, the value and the rule.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use vmfabric_model::{Error, Result};
use vmfabric_store::Store;

pub mod api;
pub mod auth;
pub mod batch;
pub mod listen;
pub mod metrics;
pub mod openapi;
pub mod panel;
pub mod plan_watch;
pub mod problem;

use auth::TokenCache;
use batch::Batcher;
use metrics::Metrics;
use plan_watch::PlanWatch;
use problem::Problem;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Certificate chain and private key (PEM): serve HTTPS instead of HTTP.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Committers of VM creations running at once (1 for SQLite).
    pub commit_workers: usize,
    /// Most VMs in one commit.
    pub max_batch: usize,
    /// How often the store's revision is read, for agents waiting on their
    /// plan: a change reaches its agent this late at most, whichever
    /// controller committed it.
    pub revision_poll: Duration,
    /// How long a VM creation's idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// Timeouts and the connection cap.
    pub limits: listen::Limits,
}

impl Settings {
    pub fn new(listen: SocketAddr) -> Settings {
        Settings {
            listen,
            tls: None,
            commit_workers: 1,
            max_batch: 256,
            revision_poll: Duration::from_millis(20),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            limits: listen::Limits::default(),
        }
    }
}

/// What every request handler shares.
#[derive(Debug)]
pub struct Controller {
    pub store: Arc<dyn Store>,
    pub tokens: TokenCache,
    pub metrics: Arc<Metrics>,
    pub batcher: Batcher,
    /// The long polls waiting for their plan, woken by the changes that
    /// reach their node.
    pub watch: Arc<PlanWatch>,
    /// Becomes true when the controller is asked to stop: long polls
    /// answer at once, so a graceful shutdown does not wait for them.
    pub stopping: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    /// Timeouts and the connection cap (the body timeout applies here).
    pub limits: listen::Limits,
    /// The panel's signed-in browsers.
    pub sessions: panel::session::Sessions,
    /// Served over HTTPS: the panel's cookie is `Secure`.
    pub tls: bool,
}

pub type Ctl = Arc<Controller>;

/// SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// How long requests in flight may take to finish after a stop signal.
const GRACE: Duration = Duration::from_secs(30);

impl Controller {
    /// The controller over `store`, with its background tasks (committers,
    /// revision watch) started.
    pub async fn start(store: Arc<dyn Store>, settings: &Settings) -> Result<Ctl> {
        let metrics = Arc::new(Metrics::default());
        let batcher = Batcher::start(
            store.clone(),
            metrics.clone(),
            settings.commit_workers,
            settings.max_batch,
        );
        // Fail now, not in the first long poll, if the store does not
        // answer; and follow the log from this revision on, before any
        // long poll reads a plan (a change between the two is not missed).
        let first = store.revision().await?;
        let (stop, stopping) = watch::channel(false);
        let plan_watch = Arc::new(PlanWatch::default());
        tokio::spawn(plan_watch.clone().follow(
            store.clone(),
            first,
            settings.revision_poll,
            stopping.clone(),
        ));
        // Forget old idempotency keys now and then (a retry comes within
        // minutes, not days).
        let prune_store = store.clone();
        let ttl = settings.idempotency_ttl;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                let ttl_us = i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX);
                let before = vmfabric_model::Timestamp(prune_store.now().0.saturating_sub(ttl_us));
                // A failure is retried at the next tick.
                let _ = prune_store.forget_idempotency(before).await;
            }
        });
        Ok(Arc::new(Controller {
            store,
            tokens: TokenCache::default(),
            metrics,
            batcher,
            watch: plan_watch,
            stopping,
            stop,
            limits: settings.limits,
            sessions: panel::session::Sessions::default(),
            tls: settings.tls.is_some(),
        }))
    }
}

/// The whole HTTP surface: `/api/v1/…`, `/metrics`, `/healthz`, `/readyz`.
pub fn router(ctl: Ctl) -> Router {
    // Route layers: they see the matched route, and `observe` (outside)
    // also times the requests `authenticate` refuses.
    // Innermost: a body is read (within its timeout) only for a client
    // with a token.
    let authed = api::routes()
        .route_layer(middleware::from_fn_with_state(
            ctl.clone(),
            listen::read_body,
        ))
        .route_layer(middleware::from_fn_with_state(ctl.clone(), authenticate))
        .route_layer(middleware::from_fn_with_state(ctl.clone(), observe))
        .with_state(ctl.clone());
    Router::new()
        .merge(authed)
        .merge(panel::routes().with_state(ctl.clone()))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(ready).with_state(ctl))
        .fallback(not_found)
        // Outermost: a head over the limit is refused before any work.
        .layer(middleware::from_fn(listen::problem_documents))
        .layer(middleware::from_fn(listen::limit_head))
}

async fn not_found(req: Request) -> Problem {
    Problem(Error::not_found("route", req.uri().path()))
}

/// Ready when the store answers.
async fn ready(State(ctl): State<Ctl>) -> Response {
    match ctl.store.revision().await {
        Ok(r) => format!("ready, revision {r}\n").into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {e}\n"),
        )
            .into_response(),
    }
}

/// Who the change log names for changes made with `token`.
pub fn actor(token: &vmfabric_model::TokenInfo) -> String {
    match token.name.as_str() {
        "" => format!("{} token {}", token.role, token.id),
        name => format!("{} token {} ({name})", token.role, token.id),
    }
}

/// Every request but health carries a valid token; handlers check roles.
async fn authenticate(State(ctl): State<Ctl>, mut req: Request, next: Next) -> Response {
    match ctl
        .tokens
        .authenticate(ctl.store.as_ref(), req.headers())
        .await
    {
        Ok(token) => {
            let actor = actor(&token);
            let who = TokenName(match token.name.as_str() {
                "" => format!("{} token {}", token.role, token.id),
                name => name.to_string(),
            });
            req.extensions_mut().insert(token);
            let mut resp = vmfabric_store::acting_as(actor, next.run(req)).await;
            // For the request's log line (never the secret).
            resp.extensions_mut().insert(who);
            resp
        }
        Err(e) => Problem(e).into_response(),
    }
}

/// Who made a request, as its log line names it.
#[derive(Debug, Clone)]
struct TokenName(String);

/// Request ids: this process's start and a counter, unique per process
/// and sortable; the log line and the problem document both carry it.
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{start:x}-{n}")
}

/// A problem document gets the request's id, so an operator can find the
/// log line of the error a client reports.
async fn with_request_id(resp: Response, id: &str) -> Response {
    let problem = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return Response::from_parts(parts, axum::body::Body::empty());
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut doc) => {
            if let Some(o) = doc.as_object_mut() {
                o.insert("request_id".into(), id.into());
            }
            axum::body::Body::from(doc.to_string())
        }
        Err(_) => axum::body::Body::from(bytes),
    };
    let mut resp = Response::from_parts(parts, body);
    resp.headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    resp
}

/// Latency per route, for /metrics, and one log line per request: its
/// id, method, route, status, duration and token name.
async fn observe(State(ctl): State<Ctl>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = request_id();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    // A write that succeeded may reach waiting agents: tell the watch now.
    if method != "GET" && resp.status().is_success() {
        ctl.watch.nudge();
    }
    let took = start.elapsed();
    ctl.metrics.observe(&method, &route, status, took);
    let token = resp
        .extensions()
        .get::<TokenName>()
        .map_or("-", |t| t.0.as_str())
        .to_string();
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    if status >= 500 {
        tracing::error!(request_id = %id, %method, %route, status, micros, %token, "request");
    } else {
        tracing::info!(request_id = %id, %method, %route, status, micros, %token, "request");
    }
    let mut resp = with_request_id(resp, &id).await;
    if let Ok(v) = axum::http::HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// Let this process open as many files (connections) as its hard limit
/// allows: one per waiting agent. Returns the limit now in force.
fn raise_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                hard
            } else {
                soft
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    }
}

/// Serve until the process is stopped. `bound` learns the address (with
/// port 0, the one the system chose) once the socket listens.
pub async fn serve(
    store: Arc<dyn Store>,
    mut settings: Settings,
    bound: impl FnOnce(SocketAddr),
) -> Result<()> {
    let files = raise_file_limit();
    // Each connection is a file descriptor; keep some for the database,
    // logs and the listener, so that the cap (not the kernel) says no.
    const SPARE_FILES: u64 = 256;
    let fits = usize::try_from(files.saturating_sub(SPARE_FILES)).unwrap_or(usize::MAX);
    if settings.limits.max_connections > fits {
        eprintln!(
            "warning: this process may open {files} files: at most {fits} connections instead of {} (raise LimitNOFILE / ulimit -n)",
            settings.limits.max_connections
        );
        settings.limits.max_connections = fits.max(1);
    }
    let ctl = Controller::start(store, &settings).await?;
    let app = router(ctl.clone());
    // On SIGTERM/SIGINT: stop accepting, end long polls, let requests in
    // flight (and their commits) finish.
    {
        let ctl = ctl.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = ctl.stop.send(true);
        });
    }
    let listener = std::net::TcpListener::bind(settings.listen).map_err(|e| {
        Error::invalid(
            "listen",
            settings.listen,
            format!("cannot listen there: {e}"),
        )
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::storage(format!("socket: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::storage(format!("socket: {e}")))?;
    let tls = match &settings.tls {
        Some((cert, key)) => {
            // One crypto provider for the process (ring: no C toolchain needed).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| {
                    Error::invalid(
                        "tls-cert",
                        cert.display(),
                        format!("cannot load the certificate and key: {e}"),
                    )
                })?;
            // HTTP/1.1 only: offering h2 in ALPN would make clients speak
            // a protocol this server does not serve.
            let mut inner = (*config.get_inner()).clone();
            inner.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(inner)))
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| Error::storage(format!("socket: {e}")))?;
    bound(addr);
    listen::run(
        listener,
        tls,
        app,
        settings.limits,
        ctl.stopping.clone(),
        GRACE,
    )
    .await
}
