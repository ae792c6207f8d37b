//! `vmfabric bench serve`: concurrent VM-create requests over HTTP against
//! `vmfabric serve` running as a separate process on loopback, on SQLite
//! and (with `--postgres`) PostgreSQL, with 1, 8 and 32 clients. In the
//! same run and on the same backend, the store-level reference of the
//! foundation issue: one VM per commit, and 256 VMs per commit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{AssertSqlSafe, Connection};
use vmfabric_model::{Error, NodeInput, Result, TokenInput, VmInput};
use vmfabric_store::{SqlStore, Store, SystemClock, VmRequest};

use crate::Out;
use crate::bench::vm;

/// A percentile of sorted latencies, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    crate::bench::percentile(sorted, p).as_secs_f64() * 1e3
}

#[derive(Debug, serde::Serialize)]
struct Row {
    backend: String,
    what: String,
    requests: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Kills the controller when the benchmark ends, however it ends.
pub(crate) struct Serve(Child);

impl Serve {
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn setup(url: &str) -> Result<SqlStore> {
    let s = crate::bench::fabric_setup(
        SqlStore::init(url, Arc::new(SystemClock)).await?,
        "10.0.0.0/8",
        &[],
    )
    .await?;
    // The node whose agent waits in the long-poll measurement: a node of
    // its own, so its plan has the VMs of that test, not the load's.
    s.add_node(
        "bench",
        &NodeInput {
            name: "w1".into(),
            address: "172.16.0.12".into(),
            ..NodeInput::default()
        },
    )
    .await?;
    Ok(s)
}

/// A fresh database on the PostgreSQL server of `admin`, by name.
pub(crate) async fn pg_database(admin: &str, name: &str) -> Result<String> {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(admin)
        .await
        .map_err(|e| Error::invalid("postgres", admin, format!("cannot connect: {e}")))?;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::raw_sql(AssertSqlSafe(drop))
        .execute(&mut c)
        .await
        .map_err(Error::storage)?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut c)
        .await
        .map_err(Error::storage)?;
    match admin.rsplit_once('/') {
        Some((base, _)) => Ok(format!("{base}/{name}")),
        None => Err(Error::invalid("postgres", admin, "a postgres:// URL")),
    }
}

/// The store-level reference: VMs one per commit, then 256 per commit.
async fn store_level(backend: &str, url: &str, n: usize, rows: &mut Vec<Row>) -> Result<()> {
    let s = setup(url).await?;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        s.create_vm("bench", &vm(format!("s{i}"))).await?;
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    rows.push(Row {
        backend: backend.into(),
        what: "store: vm create, 1 per commit (reference)".into(),
        requests: n,
        per_second: n as f64 / total.as_secs_f64(),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    });
    let batches = (n * 4).div_ceil(256);
    let mut lat = Vec::new();
    let start = Instant::now();
    for b in 0..batches {
        let reqs: Vec<VmRequest> = (0..256)
            .map(|i| VmRequest::new("bench", vm(format!("g{b}x{i}"))))
            .collect();
        let t = Instant::now();
        for r in s.create_vms(&reqs).await? {
            r?;
        }
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    rows.push(Row {
        backend: backend.into(),
        what: "store: vm create, 256 per commit (reference)".into(),
        requests: batches * 256,
        per_second: (batches * 256) as f64 / total.as_secs_f64(),
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
    });
    Ok(())
}

/// Start `vmfabric serve` on `url`, return it and its address.
pub(crate) fn start_serve(url: &str) -> Result<(Serve, String)> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::storage(format!("cannot find this program: {e}")))?;
    // The controller logs a line per request, as in production; the lines
    // go to a file (as to journald), not to the benchmark's terminal.
    let log_path =
        std::env::temp_dir().join(format!("vmfabric-bench-serve-{}.log", std::process::id()));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::storage(format!("cannot open {}: {e}", log_path.display())))?;
    let mut child = Command::new(exe)
        .args(["serve", "--db", url, "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| Error::storage(format!("cannot start vmfabric serve: {e}")))?;
    let out = child
        .stdout
        .take()
        .ok_or_else(|| Error::storage("no stdout of vmfabric serve"))?;
    let serve = Serve(child);
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| Error::storage(format!("vmfabric serve: {e}")))?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| Error::storage(format!("vmfabric serve said {line:?}")))?
        .to_string();
    Ok((serve, addr))
}

/// `clients` concurrent clients, each creating `per_request` VMs per
/// request (one: `POST /clusters/bench/vms`; more: `POST /vms/batch`), one
/// request at a time. Returns each request's latency, the time taken and
/// the number of VMs created.
async fn load(
    base: &str,
    token: &str,
    clients: usize,
    total: usize,
    per_request: usize,
    tag: &str,
) -> Result<(Vec<Duration>, Duration, usize)> {
    let per_request = per_request.max(1);
    let per = total.div_ceil(clients * per_request);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = if per_request == 1 {
            format!("{base}/api/v1/clusters/bench/vms")
        } else {
            format!("{base}/api/v1/vms/batch")
        };
        let token = token.to_string();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            // A connection per client, kept alive, as a panel would.
            let http = reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .map_err(|e| Error::storage(e.to_string()))?;
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let name = |j: usize| format!("{tag}-{c}-{i}-{j}");
                let req = if per_request == 1 {
                    http.post(&url).json(&vm(name(0)))
                } else {
                    let batch: Vec<VmRequest> = (0..per_request)
                        .map(|j| VmRequest::new("bench", vm(name(j))))
                        .collect();
                    http.post(&url).json(&batch)
                };
                let t = Instant::now();
                let r = req
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(|e| Error::storage(format!("request failed: {e}")))?;
                let status = r.status();
                let body = r.bytes().await.map_err(|e| Error::storage(e.to_string()))?;
                let created = match (per_request, status.as_u16()) {
                    (1, 201) => true,
                    (_, 200) => {
                        serde_json::from_slice::<Vec<serde_json::Value>>(&body).is_ok_and(|v| {
                            v.len() == per_request && v.iter().all(|x| x.get("vm").is_some())
                        })
                    }
                    _ => false,
                };
                if !created {
                    let text = String::from_utf8_lossy(&body);
                    return Err(Error::storage(format!(
                        "vm create answered {status}: {}",
                        text.chars().take(500).collect::<String>()
                    )));
                }
                lat.push(t.elapsed());
            }
            Ok::<_, Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| Error::storage(e.to_string()))??);
    }
    let n = all.len() * per_request;
    Ok((all, start.elapsed(), n))
}

/// From a VM create's answer to the long-polling agent's answer with the
/// new plan: `n` samples.
async fn wake(base: &str, op: &str, agent: &str, n: usize) -> Result<Vec<Duration>> {
    let http = reqwest::Client::new();
    let plan_url = format!("{base}/api/v1/nodes/w1/plan");
    let mut lat = Vec::with_capacity(n);
    let fail = |e: reqwest::Error| Error::storage(format!("request failed: {e}"));
    for i in 0..n {
        let now: serde_json::Value = http
            .get(&plan_url)
            .bearer_auth(agent)
            .send()
            .await
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        let hash = now["hash"].as_str().unwrap_or_default().to_string();
        let waiter = {
            let (http, url, agent) = (
                http.clone(),
                format!("{plan_url}?have={hash}&wait=30"),
                agent.to_string(),
            );
            tokio::spawn(async move {
                let r = http.get(&url).bearer_auth(&agent).send().await;
                let at = Instant::now();
                r.map(|_| at)
            })
        };
        // Let the waiter arrive and wait.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let r = http
            .post(format!("{base}/api/v1/clusters/bench/vms"))
            .bearer_auth(op)
            .json(&VmInput {
                name: format!("wake-{i}"),
                node: "w1".into(),
                ..VmInput::default()
            })
            .send()
            .await
            .map_err(fail)?;
        let acked = Instant::now();
        if r.status().as_u16() != 201 {
            return Err(Error::storage(format!("vm create answered {}", r.status())));
        }
        let woke = waiter
            .await
            .map_err(|e| Error::storage(e.to_string()))?
            .map_err(fail)?;
        lat.push(woke.saturating_duration_since(acked));
    }
    Ok(lat)
}

/// VMs per request in the batch-endpoint measurement.
const BATCH_REQUEST: usize = 64;

pub async fn run(requests: usize, clients: &[usize], postgres: Option<&str>) -> Result<Out> {
    let requests = requests.max(100);
    vmfabric_client::install_crypto();
    let dir = std::env::temp_dir().join(format!("vmfabric-bench-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::invalid("dir", dir.display(), format!("cannot create: {e}")))?;
    let mut backends = vec![(
        "sqlite".to_string(),
        format!("sqlite://{}?mode=rwc", dir.join("serve.db").display()),
        format!("sqlite://{}?mode=rwc", dir.join("store.db").display()),
    )];
    let pid = std::process::id();
    if let Some(admin) = postgres {
        backends.push((
            "postgres".to_string(),
            pg_database(admin, &format!("vmf_bench_serve_{pid}")).await?,
            pg_database(admin, &format!("vmf_bench_store_{pid}")).await?,
        ));
    }
    let mut rows = Vec::new();
    let mut text = String::new();
    for (backend, serve_url, store_url) in &backends {
        store_level(backend, store_url, requests.min(2000), &mut rows).await?;
        let (token, agent) = {
            let s = setup(serve_url).await?;
            let t = s
                .create_token(&TokenInput {
                    name: "bench".into(),
                    role: "operator".into(),
                    node: None,
                })
                .await?;
            let a = s
                .create_token(&TokenInput {
                    name: "bench agent".into(),
                    role: "node".into(),
                    node: Some("w1".into()),
                })
                .await?;
            s.pool().close().await;
            (t.secret, a.secret)
        };
        let (serve, base) = start_serve(serve_url)?;
        // Warm up: connections, prepared statements.
        load(&base, &token, 4, 200, 1, "warm").await?;
        // One VM per request (the server batches concurrent requests into
        // one commit), then a client's own batches of 64 (`/vms/batch`).
        let runs = clients
            .iter()
            .map(|&n| (n.max(1), 1))
            .chain(clients.iter().max().map(|&n| (n.max(1), BATCH_REQUEST)));
        for (n, per_request) in runs {
            let total = if per_request == 1 {
                requests
            } else {
                requests * 4
            };
            let (mut lat, took, done) = load(
                &base,
                &token,
                n,
                total,
                per_request,
                &format!("c{n}b{per_request}"),
            )
            .await?;
            lat.sort();
            rows.push(Row {
                backend: backend.clone(),
                what: if per_request == 1 {
                    format!("HTTP vm create, {n} clients")
                } else {
                    format!("HTTP vm batch of {per_request}, {n} clients")
                },
                requests: done,
                per_second: done as f64 / took.as_secs_f64(),
                p50_ms: percentile(&lat, 0.5),
                p99_ms: percentile(&lat, 0.99),
            });
        }
        let mut lat = wake(&base, &token, &agent, 50).await?;
        lat.sort();
        rows.push(Row {
            backend: backend.clone(),
            what: "agent long poll: create answered -> new plan".into(),
            requests: lat.len(),
            per_second: 0.0,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
        });
        drop(serve);
    }
    for b in &backends {
        let single = rows
            .iter()
            .find(|r| r.backend == b.0 && r.what.contains("1 per commit"))
            .map_or(1.0, |r| r.per_second);
        let batched = rows
            .iter()
            .find(|r| r.backend == b.0 && r.what.contains("256 per commit"))
            .map_or(1.0, |r| r.per_second);
        for r in rows.iter().filter(|r| r.backend == b.0) {
            if r.per_second == 0.0 {
                text.push_str(&format!(
                    "{:<9} {:<46} {:>7} samples            p50 {:>7.2} ms  p99 {:>7.2} ms\n",
                    r.backend, r.what, r.requests, r.p50_ms, r.p99_ms
                ));
                continue;
            }
            text.push_str(&format!(
                "{:<9} {:<46} {:>7} req {:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  x{:.2} of 1/commit, x{:.2} of 256/commit\n",
                r.backend,
                r.what,
                r.requests,
                r.per_second,
                r.p50_ms,
                r.p99_ms,
                r.per_second / single,
                r.per_second / batched
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(admin) = postgres
        && let Ok(mut c) = sqlx::AnyConnection::connect(admin).await
    {
        for name in [
            format!("vmf_bench_serve_{pid}"),
            format!("vmf_bench_store_{pid}"),
        ] {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await;
        }
    }
    Out::new(&rows, text)
}
