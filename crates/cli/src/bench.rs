//! `vmfabric bench store`: durable allocations through the store on SQLite,
//! measured in the same run as the reference they are judged against: one
//! bare SQLite WAL commit (`synchronous=FULL`) through the same driver.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmfabric_model::{ClusterInput, Error, NetworkInput, NodeInput, Result, VmInput};
use vmfabric_store::{SqlStore, Store, VmRequest};

use crate::Out;

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    operations: usize,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
}

fn row(name: &str, lat: &mut [Duration], total: Duration, ops: usize) -> Row {
    lat.sort();
    Row {
        name: name.into(),
        operations: ops,
        per_second: ops as f64 / total.as_secs_f64(),
        p50_us: percentile(lat, 0.5).as_secs_f64() * 1e6,
        p99_us: percentile(lat, 0.99).as_secs_f64() * 1e6,
    }
}

async fn fabric_store(path: PathBuf, cidr: &str, exclude: &[&str]) -> Result<SqlStore> {
    fabric_setup(SqlStore::init_sqlite(&path).await?, cidr, exclude).await
}

/// The benchmarks' world on `s`: ip-fabric cluster `bench` with one
/// network, node `n1`.
pub(crate) async fn fabric_setup(s: SqlStore, cidr: &str, exclude: &[&str]) -> Result<SqlStore> {
    s.create_cluster(&ClusterInput {
        name: "bench".into(),
        network_type: "ip-fabric".into(),
        vm_gateway: Some("100.64.0.1".into()),
        bgp_community: Some("65000:100".into()),
        route_reflectors: vec!["172.16.0.2:65000".into()],
        ..ClusterInput::default()
    })
    .await?;
    s.add_network(
        "bench",
        &NetworkInput {
            cidr: cidr.into(),
            exclude: exclude.iter().map(|x| x.to_string()).collect(),
            ..NetworkInput::default()
        },
    )
    .await?;
    s.add_node(
        "bench",
        &NodeInput {
            name: "n1".into(),
            address: "172.16.0.11".into(),
            ..NodeInput::default()
        },
    )
    .await?;
    Ok(s)
}

/// A VM on the benchmark cluster's node n1.
pub(crate) fn vm(name: String) -> VmInput {
    VmInput {
        name,
        node: "n1".into(),
        ..VmInput::default()
    }
}

pub async fn store(count: usize, batch: usize, dir: Option<PathBuf>) -> Result<Out> {
    let count = count.max(10);
    let batch = batch.max(1);
    let tmp = std::env::temp_dir().join(format!("vmfabric-bench-{}", std::process::id()));
    let dir = dir.unwrap_or(tmp.clone());
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::invalid("dir", dir.display(), format!("cannot create: {e}")))?;
    let mut rows = Vec::new();

    // Reference: one small row per WAL commit, same pool and settings; and
    // one VM (one allocation) per commit on a /16 and on a /8. Interleaved,
    // so all three see the same machine at the same moments.
    {
        let commit = SqlStore::init_sqlite(&dir.join("commit.db")).await?;
        let p = commit.pool();
        let db = |e: sqlx::Error| Error::storage(e);
        sqlx::query("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")
            .execute(p)
            .await
            .map_err(db)?;
        let s16 = fabric_store(dir.join("single16.db"), "198.18.0.0/16", &[]).await?;
        let s8 = fabric_store(dir.join("single8.db"), "10.0.0.0/8", &[]).await?;
        // The lowest 99.0 % of a /8 excluded: free space begins at 10.253.112.0.
        let s8full = fabric_store(
            dir.join("single8full.db"),
            "10.0.0.0/8",
            &["10.0.0.0-10.253.111.255"],
        )
        .await?;
        let mut lat = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        let mut total = [Duration::ZERO; 4];
        for i in 0..count {
            let t = Instant::now();
            let mut tx = p.begin_with("BEGIN IMMEDIATE").await.map_err(db)?;
            sqlx::query("INSERT INTO t (v) VALUES ($1)")
                .bind((i as u64).to_be_bytes().to_vec())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            lat[0].push(t.elapsed());
            for (j, s) in [(1, &s16), (2, &s8), (3, &s8full)] {
                let t = Instant::now();
                s.create_vm("bench", &vm(format!("b{i}"))).await?;
                lat[j].push(t.elapsed());
            }
        }
        for j in 0..4 {
            total[j] = lat[j].iter().sum();
        }
        let [a, b, c, d] = &mut lat;
        rows.push(row(
            "sqlite WAL commit, 1 row (reference)",
            a,
            total[0],
            count,
        ));
        rows.push(row("vm create, 1 per commit, pool /16", b, total[1], count));
        rows.push(row("vm create, 1 per commit, pool /8", c, total[2], count));
        rows.push(row(
            "vm create, 1 per commit, pool /8 99% excluded",
            d,
            total[3],
            count,
        ));
    }

    // Group commit: `batch` VMs per commit.
    {
        let s = fabric_store(dir.join("batch.db"), "10.0.0.0/8", &[]).await?;
        let total = (count * 5).div_ceil(batch) * batch;
        let mut lat = Vec::new();
        let start = Instant::now();
        let mut i = 0;
        while i < total {
            let reqs: Vec<VmRequest> = (i..i + batch)
                .map(|j| VmRequest::new("bench", vm(format!("b{j}"))))
                .collect();
            let t = Instant::now();
            for r in s.create_vms(&reqs).await? {
                r?;
            }
            lat.push(t.elapsed());
            i += batch;
        }
        rows.push(row(
            &format!("vm create, {batch} per commit (latency per commit)"),
            &mut lat,
            start.elapsed(),
            total,
        ));
        let report = s.check().await?;
        if !report.problems.is_empty() {
            return Err(Error::storage(format!(
                "bench left problems: {:?}",
                report.problems
            )));
        }
    }
    if dir == tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    }

    let reference = rows[0].p50_us;
    let mut text = String::from(
        "measurement                                          ops   per second   p50 µs   p99 µs   p50/commit\n",
    );
    for r in &rows {
        text.push_str(&format!(
            "{:<50} {:>6} {:>12.0} {:>8.0} {:>8.0} {:>11.2}\n",
            r.name,
            r.operations,
            r.per_second,
            r.p50_us,
            r.p99_us,
            r.p50_us / reference
        ));
    }
    let json = serde_json::json!({"rows": rows, "reference_p50_us": reference});
    Out::new(&json, text)
}
