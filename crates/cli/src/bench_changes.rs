//! `vmfabric bench changes`: what a change in place costs next to a VM
//! create, measured interleaved in the same run on the same database, and
//! how much the change log grows per change.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vmfabric_model::{ClusterInput, ClusterPatch, Error, NodeInput, Result};
use vmfabric_store::{NodeBlockKind, SqlStore, Store};

use crate::Out;
use crate::bench::{fabric_setup, percentile, vm};

#[derive(Debug, serde::Serialize)]
struct Row {
    operation: String,
    p50_us: f64,
    p99_us: f64,
    /// p50 against the p50 of a VM create in the same run.
    ratio_to_create: f64,
}

pub async fn changes(count: usize, dir: Option<PathBuf>) -> Result<Out> {
    let count = count.max(10);
    let tmp = std::env::temp_dir().join(format!("vmfabric-bench-changes-{}", std::process::id()));
    let dir = dir.unwrap_or(tmp.clone());
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::invalid("dir", dir.display(), format!("cannot create: {e}")))?;
    let path = dir.join("changes.db");
    let _ = std::fs::remove_file(&path);
    let s = fabric_setup(SqlStore::init_sqlite(&path).await?, "198.18.0.0/16", &[]).await?;
    s.create_cluster(&ClusterInput {
        name: "hz".into(),
        network_type: "routing".into(),
        ..ClusterInput::default()
    })
    .await?;
    s.add_node(
        "hz",
        &NodeInput {
            name: "h1".into(),
            address: "123.45.12.48".into(),
            subnets: vec!["203.0.113.0/24".into()],
            ..NodeInput::default()
        },
    )
    .await?;
    let names = [
        "vm create (reference)",
        "vm add-address",
        "vm remove-address",
        "vm add-nic (with an address)",
        "cluster set (community)",
        "node add-range",
        "node remove-subnet (range)",
        "vm remove-nic --force (1 address)",
        "vm create, 3 NICs + 1 extra IPv4",
        "node set --address",
    ];
    let mut lat: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let mut time = |i: usize, t: Instant| lat[i].push(t.elapsed());
    for i in 0..count {
        let name = format!("c{i}");
        let t = Instant::now();
        s.create_vm("bench", &vm(name.clone())).await?;
        time(0, t);
        let t = Instant::now();
        let v = s.add_vm_address(&name, 0, false, None).await?;
        time(1, t);
        let extra = v.nics[0]
            .addresses
            .last()
            .map(|a| a.address.to_string())
            .unwrap_or_default();
        let t = Instant::now();
        s.remove_vm_address(&name, &extra).await?;
        time(2, t);
        let t = Instant::now();
        s.add_nic(&name, true, false).await?;
        time(3, t);
        let patch = ClusterPatch {
            bgp_community: Some(format!("65000:{}", i % 60_000)),
            ..ClusterPatch::default()
        };
        let t = Instant::now();
        s.update_cluster("bench", &patch).await?;
        time(4, t);
        let range = format!(
            "198.51.{}.{}-198.51.{}.{}",
            i / 64 % 256,
            i % 64 * 4,
            i / 64 % 256,
            i % 64 * 4 + 3
        );
        let t = Instant::now();
        s.add_node_block("h1", NodeBlockKind::Range, &range).await?;
        time(5, t);
        let t = Instant::now();
        s.remove_node_block("h1", &range, false).await?;
        time(6, t);
        let t = Instant::now();
        s.remove_nic(&name, 1, true).await?;
        time(7, t);
        let multi = vmfabric_model::VmInput {
            extra_ipv4: 1,
            ..vm(format!("m{i}"))
        }
        .with_nic_count(3);
        let t = Instant::now();
        s.create_vm("bench", &multi).await?;
        time(8, t);
        let moved = vmfabric_model::NodePatch {
            address: Some(format!("123.45.12.{}", 48 + (i + 1) % 2)),
            ..vmfabric_model::NodePatch::default()
        };
        let t = Instant::now();
        s.update_node("h1", &moved).await?;
        time(9, t);
    }
    for l in &mut lat {
        l.sort();
    }
    let create_p50 = percentile(&lat[0], 0.5).as_secs_f64();
    let rows: Vec<Row> = names
        .iter()
        .zip(&lat)
        .map(|(n, l)| Row {
            operation: n.to_string(),
            p50_us: percentile(l, 0.5).as_secs_f64() * 1e6,
            p99_us: percentile(l, 0.99).as_secs_f64() * 1e6,
            ratio_to_create: percentile(l, 0.5).as_secs_f64() / create_p50.max(1e-9),
        })
        .collect();

    // The change log's size per change: its table and index pages.
    let db = |e: sqlx::Error| Error::storage(e);
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes")
        .fetch_one(s.pool())
        .await
        .map_err(db)?;
    let bytes: i64 = sqlx::query_scalar(
        "SELECT COALESCE(SUM(pgsize), 0) FROM dbstat WHERE name = 'changes' OR name LIKE 'changes_%' OR name LIKE 'sqlite_autoindex_changes%'",
    )
    .fetch_one(s.pool())
    .await
    .map_err(db)?;
    let payload: f64 = sqlx::query_scalar(
        "SELECT CAST(AVG(LENGTH(kind) + LENGTH(subject) + COALESCE(LENGTH(actor), 0) + LENGTH(detail) + COALESCE(LENGTH(cluster), 0) + COALESCE(LENGTH(nodes), 0)) AS REAL) FROM changes",
    )
    .fetch_one(s.pool())
    .await
    .map_err(db)?;
    s.pool().close().await;
    if dir == tmp {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let per = bytes as f64 / entries.max(1) as f64;
    let mut text = format!(
        "{count} of each, interleaved, on SQLite ({})\n{:<32} {:>10} {:>10} {:>8}\n",
        path.display(),
        "operation",
        "p50 µs",
        "p99 µs",
        "x create"
    );
    for r in &rows {
        text.push_str(&format!(
            "{:<32} {:>10.0} {:>10.0} {:>8.2}\n",
            r.operation, r.p50_us, r.p99_us, r.ratio_to_create
        ));
    }
    text.push_str(&format!(
        "change log: {entries} entries, {bytes} bytes of table and index pages: {per:.0} bytes per change (payload {payload:.0} bytes)\n"
    ));
    let json = serde_json::json!({
        "rows": rows,
        "change_log": {"entries": entries, "bytes": bytes, "bytes_per_change": per, "payload_per_change": payload},
    });
    Out::new(&json, text)
}
