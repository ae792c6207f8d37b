//! Every statement the store issues finds its rows through an index: no
//! read or write scans the tables that grow with the installation (VMs,
//! NICs, holdings, the change log, free space, released addresses,
//! idempotency keys). On a database of realistic size, on SQLite and on
//! PostgreSQL, the test records every statement a workload of every Store
//! method sends (through sqlx's statement log), asks the database for each
//! one's plan (`EXPLAIN QUERY PLAN`; `EXPLAIN` of the generic plan) and
//! fails on a full scan. On PostgreSQL it also reads the server's own count
//! of sequential scans per table, which sees what EXPLAIN cannot: the
//! lookups foreign keys make when a row they point at is deleted.
//!
//! `check` is the one exception, by design: like fsck, it reads everything
//! once. Its statements are recorded apart and not held to the rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use common::{TestStore, cluster, network, node, vm};
use sqlx::Row;
use tracing::field::{Field, Visit};
use tracing::span;
use vmfabric_model::{NodeInput, Timestamp, TokenInput, VmInput};
use vmfabric_store::{AddressFilter, ListAll, PageRequest, SqlStore, Store, VmRequest};

/// Tables that grow with VMs and time: a full scan of one of them costs
/// more the larger the installation.
const LARGE: [&str; 7] = [
    "vms",
    "nics",
    "allocations",
    "changes",
    "free_ranges",
    "released",
    "idempotency",
];

// --- recording statements -------------------------------------------------

/// Statements seen, with the phase they were seen in.
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
static PHASE: Mutex<String> = Mutex::new(String::new());

fn phase(p: &str) {
    *PHASE.lock().unwrap() = p.to_string();
}

/// A tracing subscriber that keeps the SQL of sqlx's statement events.
struct Capture;

#[derive(Default)]
struct Fields {
    summary: String,
    statement: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_string(),
            "db.statement" => self.statement = value.to_string(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "summary" | "db.statement") {
            panic!(
                "sqlx recorded {} with Debug; read it as a string",
                field.name()
            );
        }
        let _ = value;
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        m.target() == "sqlx::query"
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, e: &tracing::Event<'_>) {
        let mut f = Fields::default();
        e.record(&mut f);
        // Long statements come whole in `db.statement`, short ones in
        // `summary`.
        let sql = if f.statement.trim().is_empty() {
            f.summary
        } else {
            f.statement
        };
        let phase = PHASE.lock().unwrap().clone();
        SEEN.lock().unwrap().push((phase, sql.trim().to_string()));
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

/// The distinct statements recorded in `phase`, SQLite scripts split into
/// their statements (the store joins them with ";\n").
fn statements(of_phase: &str) -> BTreeSet<String> {
    SEEN.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == of_phase)
        .flat_map(|(_, sql)| sql.split(";\n").map(|s| s.trim().to_string()))
        .filter(|s| {
            let head = s.split_whitespace().next().unwrap_or("").to_uppercase();
            !s.is_empty()
                && !matches!(
                    head.as_str(),
                    "BEGIN" | "COMMIT" | "ROLLBACK" | "PRAGMA" | "SET" | "SAVEPOINT" | "RELEASE"
                )
                // sqlx's own migration bookkeeping
                && !s.contains("_sqlx_migrations")
        })
        .collect()
}

// --- the installation -----------------------------------------------------

/// A fabric cluster of 120 nodes with 100 VMs each, a routing cluster of
/// 60 nodes (a /29 and a /64 each, 4 VMs), a switching cluster, and some
/// history (deletes, migrations, releases, reservations).
async fn build(t: &TestStore) {
    let s = &t.store;
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("10.64.0.0/16"))
        .await
        .unwrap();
    s.add_network("fab", &network("2001:db8:64::/64"))
        .await
        .unwrap();
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/25")).await.unwrap();
    for i in 0..120 {
        s.add_node(
            "fab",
            &node(
                &format!("f{i:03}"),
                &format!("172.16.{}.{}", i / 200, 10 + i % 200),
            ),
        )
        .await
        .unwrap();
    }
    for i in 0..60u32 {
        let base = 8 * i;
        let input = NodeInput {
            subnets: vec![format!("198.51.100.{}/29", base % 256)],
            ipv6: Some(format!("2001:db8:{i:x}::2/64")),
            ..node(&format!("h{i:02}"), &format!("172.16.8.{}", 10 + i))
        };
        if base >= 256 {
            // 198.51.100.0/24 holds 32 /29s; the rest in 203.0.113.0/24.
            let input = NodeInput {
                subnets: vec![format!("203.0.113.{}/29", base - 256)],
                ..input
            };
            s.add_node("hz", &input).await.unwrap();
        } else {
            s.add_node("hz", &input).await.unwrap();
        }
    }
    for i in 0..8 {
        s.add_node("sw", &node(&format!("s{i}"), &format!("192.0.2.{}", 2 + i)))
            .await
            .unwrap();
    }
    let mut reqs: Vec<VmRequest> = Vec::new();
    for n in 0..120 {
        for v in 0..100 {
            let mut input = vm(&format!("vm-f{n:03}-{v:03}"), &format!("f{n:03}"));
            input.ipv6 = v % 10 == 0;
            reqs.push(VmRequest::new("fab", input));
        }
    }
    for n in 0..60 {
        for v in 0..4 {
            let mut input = vm(&format!("vm-h{n:02}-{v}"), &format!("h{n:02}"));
            input.ipv6 = true;
            reqs.push(VmRequest::new("hz", input));
        }
    }
    for n in 0..8 {
        for v in 0..6 {
            reqs.push(VmRequest::new(
                "sw",
                vm(&format!("vm-s{n}-{v}"), &format!("s{n}")),
            ));
        }
    }
    for chunk in reqs.chunks(256) {
        for r in s.create_vms(chunk).await.unwrap() {
            r.unwrap();
        }
    }
    // History: deleted and migrated VMs, releases, reservations.
    for v in 0..40 {
        s.delete_vm(&format!("vm-f000-{v:03}")).await.unwrap();
        t.clock.advance_secs(1);
    }
    for v in 40..60 {
        s.migrate_vm(&format!("vm-f000-{v:03}"), "f001")
            .await
            .unwrap();
    }
    s.reserve("10.64.200.1", Some("abuse case 1"))
        .await
        .unwrap();
    s.reserve("198.51.100.7", None).await.unwrap();
    if t.backend == "postgres" {
        sqlx::raw_sql("ANALYZE").execute(s.pool()).await.unwrap();
    }
}

// --- the workload: every method of the Store ------------------------------

async fn pages<T>(
    fetch: impl AsyncFn(PageRequest) -> vmfabric_model::Result<vmfabric_store::Page<T>>,
) {
    // The first page and the one after it: both cursor forms.
    let first = fetch(PageRequest::first(7)).await.unwrap();
    if let Some(next) = first.next {
        fetch(PageRequest::first(7).next(next)).await.unwrap();
    }
}

async fn workload(t: &TestStore) {
    let s = &t.store;
    let none = AddressFilter::default();
    let fab = AddressFilter::cluster("fab");
    let hz = AddressFilter::cluster("hz");
    let sw = AddressFilter::cluster("sw");
    let f2 = AddressFilter::node("f002");
    let h3 = AddressFilter::node("h03");
    let s1 = AddressFilter::node("s1");
    let reserved = AddressFilter {
        reserved: true,
        ..AddressFilter::default()
    };
    let both = AddressFilter {
        cluster: Some("fab".into()),
        node: Some("f002".into()),
        reserved: false,
    };

    // Reads.
    pages(async |p| s.clusters(&p).await).await;
    s.cluster("fab").await.unwrap();
    for c in [None, Some("fab"), Some("sw")] {
        pages(async |p| s.networks(c, &p).await).await;
        pages(async |p| s.usage(c, &p).await).await;
    }
    for c in [None, Some("fab"), Some("hz")] {
        pages(async |p| s.nodes(c, &p).await).await;
    }
    s.node("f002").await.unwrap();
    s.vm("vm-f002-003").await.unwrap();
    for f in [&none, &fab, &f2, &both, &h3] {
        pages(async |p| s.vms(f, &p).await).await;
    }
    for f in [&none, &fab, &hz, &sw, &f2, &h3, &s1, &reserved, &both] {
        pages(async |p| s.allocations(f, &p).await).await;
        pages(async |p| s.free_space(f, 3, &p).await).await;
    }
    let addr = s.vm("vm-f000-050").await.unwrap().nics[0].addresses[0]
        .address
        .to_string();
    pages(async |p| s.history(&addr, None, &p).await).await;
    let at = Timestamp(s.now().0 - 1);
    pages(async |p| s.history(&addr, Some(at), &p).await).await;
    for n in ["f002", "h03", "s1"] {
        s.plan_input(n).await.unwrap();
    }
    // Block maps (the panel): a /25 address by address, runs of a /16
    // and of a /64.
    for ip in ["192.0.2.5", "10.64.0.0", "2001:db8:64::"] {
        s.block_map(ip).await.unwrap();
    }
    s.revision().await.unwrap();
    pages(async |p| s.changes(&Default::default(), &p).await).await;
    for since in [None, Some(1)] {
        for object in [None, Some("vm-f000-050".to_string())] {
            let f = vmfabric_store::ChangeFilter { since, object };
            pages(async |p| s.changes(&f, &p).await).await;
        }
    }
    s.changes_after((1, 0), 50).await.unwrap();

    // Writes, each kind, and the errors they give.
    s.create_cluster(&cluster("tmp", "switching"))
        .await
        .unwrap();
    s.add_network("tmp", &network("192.0.2.128/29"))
        .await
        .unwrap();
    s.add_node("tmp", &node("t1", "192.0.2.130")).await.unwrap();
    s.create_vm("tmp", &vm("tvm1", "t1")).await.unwrap();
    s.create_vm("tmp", &vm("tvm2", "t1")).await.unwrap();
    s.create_vm("tmp", &vm("tvm3", "t1")).await.unwrap();
    s.create_vm("tmp", &vm("tvm4", "t1")).await.unwrap();
    // Exhausted: the error counts what the pool holds.
    assert!(s.create_vm("tmp", &vm("tvm6", "t1")).await.is_err());
    let taken = s.vm("tvm1").await.unwrap().nics[0].addresses[0]
        .address
        .to_string();
    let clash = VmInput {
        ips: vec![taken.clone()],
        ..vm("tvm5", "t1")
    };
    assert!(s.create_vm("tmp", &clash).await.is_err());
    assert!(
        s.remove_network("tmp", "192.0.2.128/29", false)
            .await
            .is_err()
    );
    // The next free address, from each kind of source (here: exhausted).
    for (cluster, node, network) in [
        (Some("tmp"), None, None),
        (None, Some("t1"), None),
        (None, None, Some("192.0.2.128/29")),
    ] {
        let r = vmfabric_store::ReserveNext {
            cluster: cluster.map(String::from),
            node: node.map(String::from),
            network: network.map(String::from),
            ..Default::default()
        };
        assert!(s.reserve_next(&r).await.is_err());
    }
    for node in ["f002", "h03"] {
        let r = vmfabric_store::ReserveNext {
            node: Some(node.into()),
            ..Default::default()
        };
        let a = s.reserve_next(&r).await.unwrap();
        s.release(&a.address.to_string()).await.unwrap();
    }
    s.delete_vm("tvm1").await.unwrap();
    s.delete_vm("tvm2").await.unwrap();
    s.delete_vm("tvm3").await.unwrap();
    // --force deletes the last VM (recorded as `vm delete` would).
    s.remove_node("t1", true).await.unwrap();
    let set = |gw: Option<&str>, add: &[&str], remove: &[&str]| vmfabric_model::NetworkPatch {
        shrink_to: None,
        gateway: gw.map(String::from),
        add_exclusions: add.iter().map(|x| x.to_string()).collect(),
        remove_exclusions: remove.iter().map(|x| x.to_string()).collect(),
    };
    s.update_network(
        "tmp",
        "192.0.2.128/29",
        &set(Some("192.0.2.134"), &["192.0.2.131"], &[]),
    )
    .await
    .unwrap();
    s.update_network("tmp", "192.0.2.128/29", &set(None, &[], &["192.0.2.131"]))
        .await
        .unwrap();
    // Shrunk in place (the gateway .134 stays inside), then removed.
    s.update_network(
        "tmp",
        "192.0.2.128/29",
        &vmfabric_model::NetworkPatch {
            shrink_to: Some("192.0.2.132/30".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.reserve("192.0.2.133", None).await.unwrap();
    s.remove_network("tmp", "192.0.2.132/30", true)
        .await
        .unwrap();
    s.delete_cluster("tmp").await.unwrap();
    // Several NICs and extra addresses in one create.
    let multi = VmInput {
        extra_ipv4: 1,
        ..vm("multi", "f003")
    }
    .with_nic_count(2);
    s.create_vm("fab", &multi).await.unwrap();
    s.delete_vm("multi").await.unwrap();
    let mut keyed = VmRequest::new("fab", vm("keyed", "f003"));
    keyed.idempotency_key = Some("order-77".into());
    s.create_vms(&[keyed.clone(), VmRequest::new("fab", vm("plain", "f003"))])
        .await
        .unwrap();
    s.create_vms(std::slice::from_ref(&keyed)).await.unwrap();
    s.migrate_vm("keyed", "f004").await.unwrap();
    // Changes in place: NICs, addresses, a cluster's settings, a node's
    // blocks.
    let v = s.add_nic("keyed", true, false).await.unwrap();
    let extra = v.nics[1].addresses[0].address.to_string();
    s.add_vm_address("keyed", 0, false, None).await.unwrap();
    s.remove_vm_address("keyed", &extra).await.unwrap();
    s.remove_nic("keyed", 1, false).await.unwrap();
    s.add_nic("keyed", true, false).await.unwrap();
    s.remove_nic("keyed", 1, true).await.unwrap();
    let patch = vmfabric_model::ClusterPatch {
        cooldown: Some("2h".into()),
        ..Default::default()
    };
    s.update_cluster("fab", &patch).await.unwrap();
    s.add_node_block(
        "h03",
        vmfabric_store::NodeBlockKind::Range,
        "192.0.2.250-192.0.2.251",
    )
    .await
    .unwrap();
    s.remove_node_block("h03", "192.0.2.250-192.0.2.251", false)
        .await
        .unwrap();
    // A node's IPv6 /64 (whether h03 has one or not, every statement runs).
    assert!(
        s.remove_node_ipv6("h03", false).await.is_err(),
        "its VMs hold IPv6"
    );
    s.add_node(
        "hz",
        &vmfabric_model::NodeInput {
            subnets: vec!["192.0.2.244/30".into()],
            ..node("h-six", "100.64.9.9")
        },
    )
    .await
    .unwrap();
    s.add_node_ipv6("h-six", "2001:db8:ffe3::2/64", None)
        .await
        .unwrap();
    s.remove_node_ipv6("h-six", false).await.unwrap();
    let patch = vmfabric_model::NodePatch {
        uplink: Some("enp1s0".into()),
        ..Default::default()
    };
    s.update_node("h-six", &patch).await.unwrap();
    let moved = vmfabric_model::NodePatch {
        address: Some("100.64.9.10".into()),
        ..Default::default()
    };
    s.update_node("h-six", &moved).await.unwrap();
    s.remove_node("h-six", false).await.unwrap();
    assert!(s.migrate_vm("vm-h01-1", "h02").await.is_err());
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.248/29".into()],
            ipv6: Some("2001:db8:ff::2/64".into()),
            ..node("h99", "172.16.9.99")
        },
    )
    .await
    .unwrap();
    s.create_vm(
        "hz",
        &VmInput {
            ipv6: true,
            ..vm("vm-h99", "h99")
        },
    )
    .await
    .unwrap();
    s.reserve("203.0.113.255", Some("kept")).await.unwrap();
    assert!(s.reserve(&taken, None).await.is_err());
    s.release("203.0.113.255").await.unwrap();
    let h99 = s.vm("vm-h99").await.unwrap().nics[0].addresses[0]
        .address
        .to_string();
    s.release(&h99).await.unwrap();
    s.delete_vm("vm-h99").await.unwrap();
    s.remove_node("h99", false).await.unwrap();
    s.delete_vm("plain").await.unwrap();
    let tok = s
        .create_token(&TokenInput {
            name: "billing".into(),
            role: "operator".into(),
            node: None,
        })
        .await
        .unwrap();
    s.create_token(&TokenInput {
        name: String::new(),
        role: "node".into(),
        node: Some("f002".into()),
    })
    .await
    .unwrap();
    pages(async |p| s.tokens(&p).await).await;
    s.authenticate(&tok.secret).await.unwrap();
    s.revoke_token(tok.info.id).await.unwrap();
    s.forget_idempotency(Timestamp(0)).await.unwrap();
    for n in ["f002", "f003", "h03"] {
        s.report_status(n, &serde_json::json!({"changes": []}))
            .await
            .unwrap();
    }
    pages(async |p| s.agent_statuses(&p).await).await;
    s.agent_status("f002").await.unwrap();
}

// --- plans ----------------------------------------------------------------

/// "SCAN x" lines of SQLite's plan, by table (aliases resolved).
fn sqlite_scans(sql: &str, plan: &[String]) -> Vec<String> {
    let aliases = aliases(sql);
    plan.iter()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("SCAN ")?;
            let name = rest.split_whitespace().next()?;
            let table = aliases.get(name).map_or(name, String::as_str);
            LARGE.contains(&table).then(|| line.trim().to_string())
        })
        .collect()
}

/// `FROM t a`, `JOIN t AS a`: alias → table.
fn aliases(sql: &str) -> BTreeMap<String, String> {
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = BTreeMap::new();
    for (i, w) in words.iter().enumerate() {
        let kw = w.to_uppercase();
        if (kw == "FROM" || kw == "JOIN" || kw == "UPDATE" || kw == "INTO")
            && let Some(table) = words.get(i + 1)
        {
            out.insert(table.to_string(), table.to_string());
            let mut j = i + 2;
            if words.get(j).is_some_and(|w| w.eq_ignore_ascii_case("AS")) {
                j += 1;
            }
            if let Some(alias) = words.get(j)
                && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !is_keyword(alias)
            {
                out.insert(alias.to_string(), table.to_string());
            }
        }
    }
    out
}

fn is_keyword(w: &str) -> bool {
    [
        "WHERE",
        "JOIN",
        "LEFT",
        "ON",
        "ORDER",
        "GROUP",
        "LIMIT",
        "SET",
        "VALUES",
        "SELECT",
        "USING",
        "INNER",
        "CROSS",
        "RETURNING",
        "WITH",
        "AND",
        "OR",
    ]
    .contains(&w.to_uppercase().as_str())
}

/// Full scans in PostgreSQL's plan: `Seq Scan on t`, index scans of a
/// large table with no `Index Cond` (the whole index), and parallel plans.
fn postgres_scans(plan: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    for (i, line) in plan.iter().enumerate() {
        let l = line.trim().trim_start_matches("->").trim();
        let table = |rest: &str| {
            rest.split(" on ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .map(str::to_string)
        };
        // Starting a parallel worker costs more than a keyed read.
        if l.starts_with("Gather") {
            bad.push(format!("{l} (parallel workers)"));
        }
        if l.starts_with("Seq Scan on ")
            && let Some(t) = table(l)
            && LARGE.contains(&t.as_str())
        {
            bad.push(l.to_string());
        }
        if (l.starts_with("Index Scan") || l.starts_with("Index Only Scan"))
            && let Some(t) = table(l)
            && LARGE.contains(&t.as_str())
        {
            let depth = line.len() - line.trim_start().len();
            let has_cond = plan[i + 1..]
                .iter()
                .take_while(|n| {
                    let d = n.len() - n.trim_start().len();
                    d > depth && !n.trim_start().starts_with("->")
                })
                .any(|n| n.trim().starts_with("Index Cond:"));
            if !has_cond {
                bad.push(format!("{l} (no Index Cond: the whole index)"));
            }
        }
    }
    bad
}

async fn explain(s: &SqlStore, sql: &str) -> Result<Vec<String>, String> {
    match s.dialect() {
        vmfabric_store::sql::Dialect::Sqlite => {
            // Parameters left unbound are NULL; the plan does not depend
            // on them.
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(s.pool())
                .await
                .map_err(|e| e.to_string())?
                .iter()
                .map(|r| r.try_get::<String, _>("detail").map_err(|e| e.to_string()))
                .collect()
        }
        vmfabric_store::sql::Dialect::Postgres => {
            // The generic plan: the one a prepared statement keeps.
            let mut conn = s.pool().acquire().await.map_err(|e| e.to_string())?;
            let prepare = |types: String| {
                format!(
                    "SET plan_cache_mode = force_generic_plan; DEALLOCATE ALL; PREPARE vmf_explain{types} AS {sql}"
                )
            };
            let untyped = sqlx::raw_sql(sqlx::AssertSqlSafe(prepare(String::new())))
                .execute(&mut *conn)
                .await;
            if let Err(e) = untyped {
                // A script that leaves some arguments unused (a batch
                // with nothing of that part) gets them all as text, as
                // the store sends them.
                if !e.to_string().contains("could not determine data type") {
                    return Err(e.to_string());
                }
                let n = (1..=20)
                    .rev()
                    .find(|i| sql.contains(&format!("${i}")))
                    .unwrap_or(0);
                let types = format!("({})", vec!["text"; n].join(", "));
                sqlx::raw_sql(sqlx::AssertSqlSafe(prepare(types)))
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let n: i64 = sqlx::raw_sql(
                "SELECT CAST(cardinality(parameter_types) AS BIGINT) AS n FROM pg_prepared_statements WHERE name = 'vmf_explain'",
            )
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| e.to_string())?
            .try_get("n")
            .map_err(|e| e.to_string())?;
            let nulls = vec!["NULL"; usize::try_from(n).unwrap_or(0)].join(", ");
            let args = if n == 0 {
                String::new()
            } else {
                format!("({nulls})")
            };
            let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "EXPLAIN (COSTS OFF) EXECUTE vmf_explain{args}"
            )))
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
            sqlx::raw_sql("DEALLOCATE ALL; RESET plan_cache_mode")
                .execute(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            rows.iter()
                .map(|r| r.try_get::<String, _>(0).map_err(|e| e.to_string()))
                .collect()
        }
    }
}

/// PostgreSQL's count of sequential scans of each large table.
async fn seq_scans(t: &TestStore) -> BTreeMap<String, i64> {
    let url = t.url();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql("SELECT pg_stat_clear_snapshot()")
        .execute(&mut conn)
        .await
        .unwrap();
    let rows =
        sqlx::raw_sql("SELECT relname, CAST(seq_scan AS BIGINT) AS n FROM pg_stat_user_tables")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    rows.iter()
        .map(|r| (r.get::<String, _>("relname"), r.get::<i64, _>("n")))
        .filter(|(t, _)| LARGE.contains(&t.as_str()))
        .collect()
}

async fn run(mut t: TestStore) {
    let b = t.backend;
    SEEN.lock().unwrap().clear();
    phase("build");
    build(&t).await;
    let vms = t
        .store
        .all_vms(&AddressFilter::default())
        .await
        .unwrap()
        .len();
    assert!(vms > 12_000, "{b}: the installation has {vms} VMs");
    let before = if b == "postgres" {
        // Stats reach pg_stat_user_tables when a backend ends: a fresh
        // pool, and the old backends gone.
        t.reopen().await;
        Some(seq_scans(&t).await)
    } else {
        None
    };
    phase("workload");
    workload(&t).await;
    let mut failures = Vec::new();
    if let Some(before) = before {
        // The workload's backends end with the pool: their counts flush.
        t.reopen().await;
        let after = seq_scans(&t).await;
        for (table, n) in &after {
            let was = before.get(table).copied().unwrap_or(0);
            if *n > was {
                failures.push(format!(
                    "{} sequential scans of {table} during the workload (foreign keys, or statements EXPLAIN did not show)",
                    n - was
                ));
            }
        }
    }
    phase("check");
    let report = t.store.check().await.unwrap();
    assert!(report.problems.is_empty(), "{b}: {:?}", report.problems);
    phase("explain");

    let all = statements("workload");
    assert!(
        all.len() > 60,
        "{b}: only {} statements recorded",
        all.len()
    );
    for sql in &all {
        match explain(&t.store, sql).await {
            Err(e) => failures.push(format!("cannot explain ({e}):\n  {sql}")),
            Ok(plan) => {
                let bad = match t.store.dialect() {
                    vmfabric_store::sql::Dialect::Sqlite => sqlite_scans(sql, &plan),
                    vmfabric_store::sql::Dialect::Postgres => postgres_scans(&plan),
                };
                if !bad.is_empty() {
                    failures.push(format!(
                        "full scan ({}):\n  {sql}\n  plan: {}",
                        bad.join("; "),
                        plan.join(" | ")
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{b}: {} of {} statements scan a large table:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{b}: {} statements explained, none scans a large table ({} VMs)",
        all.len(),
        vms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_scans_a_large_table() {
    tracing::subscriber::set_global_default(Capture).expect("one subscriber per test binary");
    run(common::store().await).await;
    run(common::pg_store().await).await;
}
