//! Creating VMs, one or many per commit, in a constant number of round
//! trips to the database: read what the batch needs (one script), read the
//! front of each block's free space (one script), decide every address in
//! memory, write everything (one script).
//!
//! Why: with SQLite behind sqlx every statement is a hand-off to the
//! driver's worker thread and back, which costs more than SQLite's own work
//! (see BENCHMARKS.md). Decisions follow `alloc` exactly: the front of the
//! free ranges in address order, then (reuse `last`) the least recently
//! released address; the property test `store_vs_engine` holds both to the
//! engine's order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Value, json};
use sqlx::any::AnyRow;
use vmfabric_ipam::{Key, Range, RangeSet, Reuse, key};
use vmfabric_model::names::{MAX_NIC_INDEX, host_if_prefix, host_ifname};
use vmfabric_model::vm::nic_address;
use vmfabric_model::{AddressRequest, Block, Cluster, Error, Mac, Nic, Node, Result, Vm};

use super::alloc;
use super::clusters::{BLOCK_COLS, BLOCK_FROM, CLUSTER_COLS, block_from_row, cluster_from_row};
use super::nodes::{NODE_COLS, node_from_row};
use super::tx::{Written, run_script};
use super::{Counters, Dialect, Reach, RowExt, SqlStore, Tx, db};
use crate::VmRequest;

/// Interface-name candidates of a long VM name checked in the first round
/// trip; more only if all clash. Shortened names share 5 characters and 20
/// bits of hash, so clashes come with many long names of one head. A name
/// that fits is its own first candidate and clashes only with a shortened
/// one: a MAC (46 bits) or such a name is checked alone.
const EARLY_ATTEMPTS: u32 = 3;
/// Candidates tried before giving up.
const ATTEMPTS: u32 = 64;
/// Writes of one batch tried before giving up on concurrent clashes.
const WRITE_ATTEMPTS: u32 = 4;

fn hex(k: Key) -> String {
    format!("{k:032x}")
}

/// What the batch needs to know before deciding anything.
#[derive(Default)]
struct Context {
    clusters: HashMap<String, (i64, Cluster)>,
    nodes: HashMap<String, (i64, Node)>,
    /// Blocks VMs may draw from, by cluster id (networks) and node id (ranges).
    blocks: Vec<Block>,
    block_cluster: HashMap<i64, i64>,
    block_node: HashMap<i64, i64>,
    taken_names: HashSet<String>,
    taken: HashSet<String>,
    checked: HashSet<String>,
    /// The front of each block's free space.
    windows: HashMap<i64, Window>,
    /// Stored answers of earlier requests with the batch's idempotency keys.
    idem: HashMap<String, String>,
}

/// The longest idempotency key taken (a UUID is 36 characters).
const IDEM_KEY_MAX: usize = 255;

/// What a request asked, to tell a retry from another request that reuses
/// the key by mistake.
fn request_fingerprint(r: &VmRequest) -> Value {
    json!({"cluster": r.cluster, "vm": r.vm})
}

fn check_idem_key(k: &str) -> Result<()> {
    if k.is_empty() || k.len() > IDEM_KEY_MAX || !k.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Error::invalid(
            "idempotency_key",
            k,
            format!("1 to {IDEM_KEY_MAX} printable ASCII characters without spaces"),
        ));
    }
    Ok(())
}

/// The answer to a retried request: the VM the first one created.
fn replay(stored: &str, r: &VmRequest, key: &str) -> Result<Vm> {
    let v: Value = serde_json::from_str(stored).map_err(|_| super::corrupt("idempotency"))?;
    if v["request"] != request_fingerprint(r) {
        return Err(Error::conflict(
            "idempotency_key",
            key,
            "this key was used for a different request; a retry must repeat the request exactly",
        ));
    }
    serde_json::from_value(v["vm"].clone()).map_err(|_| super::corrupt("idempotency"))
}

/// Pairs of hex keys (or hex key and time) from a JSON column.
fn json_pairs(row: &AnyRow, col: &str) -> Result<Vec<(String, Value)>> {
    let text = row.opt_text(col)?.unwrap_or_else(|| "[]".into());
    let v: Vec<(String, Value)> = serde_json::from_str(&text).map_err(|_| super::corrupt(col))?;
    Ok(v)
}

fn unhex(s: &str) -> Result<Key> {
    u128::from_str_radix(s, 16).map_err(|_| super::corrupt("hex key"))
}

/// A block's window from the columns of the context query.
fn window_from_row(row: &AnyRow, limit: usize) -> Result<Window> {
    let mut w = Window::default();
    let fresh = json_pairs(row, "w_fresh")?;
    let full = fresh.len() >= limit;
    let mut last_loaded = 0;
    for (f, l) in fresh {
        let (f, l) = (unhex(&f)?, unhex(l.as_str().unwrap_or_default())?);
        if f > l {
            return Err(super::corrupt("free range with first above last"));
        }
        last_loaded = l;
        if w.loaded.insert((f, l)) {
            w.fresh.insert(Range::new(f, l));
        }
    }
    w.complete_to = if full { last_loaded } else { Key::MAX };
    for (f, l) in json_pairs(row, "w_asked")? {
        let (f, l) = (unhex(&f)?, unhex(l.as_str().unwrap_or_default())?);
        if f <= l && w.loaded.insert((f, l)) {
            w.fresh.insert(Range::new(f, l));
        }
    }
    for (k, at) in json_pairs(row, "w_released")? {
        let (k, at) = (unhex(&k)?, at.as_i64().unwrap_or(i64::MAX));
        w.order.insert((at, k));
        w.released.insert(k, at);
    }
    for (k, at) in json_pairs(row, "w_asked_released")? {
        w.released
            .insert(unhex(&k)?, at.as_i64().unwrap_or(i64::MAX));
    }
    Ok(w)
}

/// The loaded front of one block's free space, and what the batch took.
#[derive(Debug, Default)]
struct Window {
    fresh: RangeSet,
    loaded: BTreeSet<(Key, Key)>,
    /// Free space at or below this key is completely loaded.
    complete_to: Key,
    /// Every loaded released address not taken yet, with its usable time.
    released: HashMap<Key, i64>,
    /// The usable ones in reuse order, least recently released first
    /// (reuse `last`): a prefix of the block's order.
    order: BTreeSet<(i64, Key)>,
    /// Released addresses this batch took (rows to delete).
    gone: BTreeSet<Key>,
}

/// An address a request took, so a failed request can give it back.
#[derive(Debug, Clone, Copy)]
enum Took {
    Fresh {
        block: i64,
        key: Key,
    },
    Released {
        block: i64,
        key: Key,
        usable_at: i64,
        ordered: bool,
    },
}

impl Took {
    fn key(&self) -> Key {
        match *self {
            Took::Fresh { key, .. } | Took::Released { key, .. } => key,
        }
    }
}

impl Window {
    /// The next address in the block's order: the lowest fresh one, then
    /// (reuse `last`) the least recently released one.
    fn take_next(&mut self, block: i64, reuse: Reuse) -> Result<Option<Took>> {
        if let Some(k) = self.fresh.first() {
            if k > self.complete_to {
                return Err(Error::storage(
                    "free-space window too small (please report this)",
                ));
            }
            self.fresh.remove_one(k);
            return Ok(Some(Took::Fresh { block, key: k }));
        }
        if reuse == Reuse::Last
            && let Some((usable_at, k)) = self.order.pop_first()
        {
            self.released.remove(&k);
            self.gone.insert(k);
            return Ok(Some(Took::Released {
                block,
                key: k,
                usable_at,
                ordered: true,
            }));
        }
        Ok(None)
    }

    /// Take exactly `k` if it is free (an explicit request may take a
    /// released address that is still cooling down).
    fn take(&mut self, block: i64, k: Key) -> Option<Took> {
        if self.fresh.remove_one(k) {
            return Some(Took::Fresh { block, key: k });
        }
        let usable_at = self.released.remove(&k)?;
        let ordered = self.order.remove(&(usable_at, k));
        self.gone.insert(k);
        Some(Took::Released {
            block,
            key: k,
            usable_at,
            ordered,
        })
    }

    fn give_back(&mut self, t: Took) {
        match t {
            Took::Fresh { key, .. } => {
                self.fresh.insert_one(key);
            }
            Took::Released {
                key,
                usable_at,
                ordered,
                ..
            } => {
                self.gone.remove(&key);
                self.released.insert(key, usable_at);
                if ordered {
                    self.order.insert((usable_at, key));
                }
            }
        }
    }
}

impl SqlStore {
    /// Begin the transaction and learn, in the same round trip, everything
    /// the batch refers to.
    async fn batch_context(&self, reqs: &[VmRequest], now: i64) -> Result<(Tx, Context)> {
        // Every list is sent without repeats: the statements below join
        // them to the tables, and a repeat would repeat rows.
        let mut prefixes = BTreeSet::new();
        let mut macs = BTreeSet::new();
        for r in reqs {
            let first = host_if_prefix(&r.vm.name, 0);
            let more = if first == r.vm.name {
                1
            } else {
                EARLY_ATTEMPTS
            };
            prefixes.insert(first);
            for attempt in 1..more {
                prefixes.insert(host_if_prefix(&r.vm.name, attempt));
            }
            let nics = r.vm.nics.len().max(1);
            for nic in 0..nics.min(usize::from(MAX_NIC_INDEX) + 1) {
                macs.insert(Mac::for_nic(self.seed, &r.vm.name, nic as u8, 0).to_string());
            }
        }
        // Addresses asked for by name (unparsable ones fail in planning).
        let asked: BTreeSet<String> = reqs
            .iter()
            .flat_map(|r| r.vm.ips.iter().chain(r.vm.nics.iter().flat_map(|n| &n.ips)))
            .filter_map(|t| t.trim().parse::<std::net::IpAddr>().ok())
            .map(|ip| hex(key::key(ip)))
            .collect();
        // Enough free ranges per block for every address the requests may
        // take from it: each NIC takes its first address and its extras of
        // a family from the first block that has them.
        let takes = |r: &VmRequest| -> usize {
            match r.vm.nic_inputs() {
                Ok(nics) => nics
                    .iter()
                    .map(|n| 1 + usize::from(n.extra_ipv4.max(n.extra_ipv6)))
                    .sum(),
                Err(_) => 0,
            }
        };
        let window = reqs.iter().map(takes).sum::<usize>() + asked.len() + 1;
        let set =
            |f: fn(&VmRequest) -> Option<&str>| reqs.iter().filter_map(f).collect::<BTreeSet<_>>();
        let doc = json!({
            "clusters": set(|r| Some(r.cluster.as_str())),
            "nodes": set(|r| Some(r.vm.node.as_str())),
            "names": set(|r| Some(r.vm.name.as_str())),
            "prefixes": prefixes,
            "macs": macs,
            "asked": asked,
            "keys": reqs.iter().filter_map(VmRequest::stored_key).collect::<BTreeSet<_>>(),
            "n": window,
            "now": now,
        });
        let d = self.dialect;
        let mut statements = Vec::new();
        if d == Dialect::Postgres {
            // Several controllers share the database: hold the blocks this
            // batch draws from (in id order, so no two batches deadlock)
            // before reading their free space.
            statements.push(format!(
                "SELECT 'lock' AS k, b.id FROM {BLOCK_FROM} WHERE (b.node_id IS NULL AND c.name IN @LIST(clusters)) OR n.name IN @LIST(nodes) ORDER BY b.id FOR UPDATE OF b"
            ));
        }
        // The lists drive joins rather than `IN (SELECT ...)`: SQLite builds
        // a temporary b-tree for every such subquery, which cost more than
        // the lookups themselves (perf, BENCHMARKS.md).
        statements.extend([
            format!(
                "SELECT 'node' AS k, {NODE_COLS}, {CLUSTER_COLS} FROM @EACHTEXT(nodes) AS l JOIN nodes n ON n.name = l.value JOIN clusters c ON c.id = n.cluster_id"
            ),
            format!("SELECT 'cluster' AS k, {CLUSTER_COLS} FROM @EACHTEXT(clusters) AS l JOIN clusters c ON c.name = l.value"),
            // Each block with the front of its free space: the first free
            // ranges, the usable released addresses in reuse order, and the
            // ranges and released entries holding the asked addresses.
            format!(
                "WITH ids AS (\
                   SELECT b.id FROM @EACHTEXT(clusters) AS l JOIN clusters c ON c.name = l.value JOIN blocks b ON b.cluster_id = c.id AND b.node_id IS NULL \
                   UNION ALL SELECT b.id FROM @EACHTEXT(nodes) AS l JOIN nodes n ON n.name = l.value JOIN blocks b ON b.node_id = n.id) \
                 SELECT 'block' AS k, b.cluster_id AS b_cluster_id, b.node_id AS b_node_id, {BLOCK_COLS}, \
                 (SELECT @AGG(@ARR(@HEX(x.first), @HEX(x.last))) FROM (SELECT first, last FROM free_ranges WHERE block_id = b.id ORDER BY first LIMIT @ARG(n)) AS x) AS w_fresh, \
                 (SELECT @AGG(@ARR(@HEX(x.address), x.usable_at)) FROM (SELECT address, usable_at FROM released WHERE block_id = b.id AND usable_at <= @ARG(now) ORDER BY usable_at, address LIMIT @ARG(n)) AS x) AS w_released, \
                 (SELECT @AGG(@JSON(y.r)) FROM (SELECT (SELECT @ARR(@HEX(first), @HEX(last)) FROM free_ranges WHERE block_id = b.id AND first <= @UNHEX(a.value) ORDER BY first DESC LIMIT 1) AS r FROM @EACHTEXT(asked) AS a WHERE @UNHEX(a.value) BETWEEN b.first AND b.last) AS y WHERE y.r IS NOT NULL) AS w_asked, \
                 (SELECT @AGG(@ARR(@HEX(r.address), r.usable_at)) FROM @EACHTEXT(asked) AS a JOIN released r ON r.address = @UNHEX(a.value) WHERE r.block_id = b.id) AS w_asked_released \
                 FROM ids, {BLOCK_FROM} WHERE b.id = ids.id"
            ),
        ]);
        // Names, candidates and idempotency keys already taken, in one
        // statement (on PostgreSQL each statement is a round trip). Each is
        // looked up by a subquery per list entry, which every planner runs
        // as one index probe: as joins, PostgreSQL's cached plan for a new
        // installation (its statistics saying the tables are empty) read
        // the whole index, 1.5 ms for one VM at 12,000 (BENCHMARKS.md).
        // A miss comes back as NULL.
        let mut taken = String::from(
            "SELECT 'name' AS k, (SELECT v.name FROM vms v WHERE v.name = l.value) AS v, NULL AS r FROM @EACHTEXT(names) AS l \
             UNION ALL SELECT 'taken', (SELECT v.if_prefix FROM vms v WHERE v.if_prefix = l.value), NULL FROM @EACHTEXT(prefixes) AS l \
             UNION ALL SELECT 'taken', (SELECT ni.mac FROM nics ni WHERE ni.mac = l.value), NULL FROM @EACHTEXT(macs) AS l",
        );
        if reqs.iter().any(|r| r.idempotency_key.is_some()) {
            taken.push_str(
                " UNION ALL SELECT 'idem', l.value, (SELECT i.response FROM idempotency i WHERE i.key = l.value) FROM @EACHTEXT(keys) AS l",
            );
        }
        let taken = format!(
            "SELECT t.k, t.v, t.r FROM ({taken}) AS t WHERE t.v IS NOT NULL AND (t.k <> 'idem' OR t.r IS NOT NULL)"
        );
        statements.push(taken);
        let (tx, rows) = self
            .begin_with_script(&statements, &doc.to_string())
            .await?;
        let mut ctx = Context::default();
        for list in ["prefixes", "macs"] {
            if let Some(c) = doc[list].as_array() {
                ctx.checked
                    .extend(c.iter().filter_map(|v| v.as_str().map(String::from)));
            }
        }
        for row in rows {
            match row.text("k")?.as_str() {
                "node" => {
                    let (id, node) = node_from_row(&row)?;
                    let (cid, c) = cluster_from_row(&row)?;
                    ctx.clusters.insert(c.name.clone(), (cid, c));
                    ctx.nodes.insert(node.name.clone(), (id, node));
                }
                "cluster" => {
                    let (cid, c) = cluster_from_row(&row)?;
                    ctx.clusters.insert(c.name.clone(), (cid, c));
                }
                "block" => {
                    let b = block_from_row(&row)?;
                    ctx.windows.insert(b.id, window_from_row(&row, window)?);
                    ctx.block_cluster.insert(b.id, row.int("b_cluster_id")?);
                    if let Some(n) = row.opt_int("b_node_id")? {
                        ctx.block_node.insert(b.id, n);
                    }
                    ctx.blocks.push(b);
                }
                "name" => {
                    if let Some(v) = row.opt_text("v")? {
                        ctx.taken_names.insert(v);
                    }
                }
                "lock" => {}
                "idem" => {
                    if let Some(r) = row.opt_text("r")? {
                        ctx.idem.insert(row.text("v")?, r);
                    }
                }
                _ => {
                    if let Some(v) = row.opt_text("v")? {
                        ctx.taken.insert(v);
                    }
                }
            }
        }
        Ok((tx, ctx))
    }

    /// Whether `candidate` (an interface prefix or a MAC) is free, asking the
    /// database about candidates the first round trip did not cover.
    async fn candidate_free(
        &self,
        tx: &mut Tx,
        ctx: &mut Context,
        candidate: &str,
    ) -> Result<bool> {
        if !ctx.checked.contains(candidate) {
            let n = sqlx::query(
                "SELECT (SELECT COUNT(*) FROM vms WHERE if_prefix = $1) + (SELECT COUNT(*) FROM nics WHERE mac = $1) AS n",
            )
            .bind(candidate)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?
            .int("n")?;
            ctx.checked.insert(candidate.to_string());
            if n > 0 {
                ctx.taken.insert(candidate.to_string());
            }
        }
        Ok(!ctx.taken.contains(candidate))
    }

    /// Blocks a VM on node `nid` of cluster `cid` may use.
    fn blocks_of(ctx: &Context, c: &Cluster, cid: i64, nid: i64) -> Vec<Block> {
        ctx.blocks
            .iter()
            .filter(|b| match c.network_type {
                vmfabric_model::NetworkType::Routing => ctx.block_node.get(&b.id) == Some(&nid),
                _ => {
                    ctx.block_cluster.get(&b.id) == Some(&cid)
                        && !ctx.block_node.contains_key(&b.id)
                }
            })
            .cloned()
            .collect()
    }

    /// Load the front of the free space of every block in `demand`, and
    /// the ranges or released entries holding explicitly asked addresses.
    async fn load_windows(
        &self,
        tx: &mut Tx,
        demand: &BTreeMap<i64, (usize, Reuse)>,
        asked: &BTreeSet<(i64, Key)>,
        now: i64,
    ) -> Result<HashMap<i64, Window>> {
        // The text depends only on how many blocks and asked addresses
        // there are, so SQLite's prepared statements are reused; the values
        // travel in one JSON argument.
        let mut statements = Vec::new();
        let mut w = Vec::new();
        for (i, (&id, &(n, reuse))) in demand.iter().enumerate() {
            let limit = n + asked.len() + 1;
            w.push(json!({"id": id, "n": limit}));
            statements.push(format!(
                "SELECT 'fresh' AS k, block_id, first, last, 0 AS usable_at FROM free_ranges WHERE block_id = @ARG(w.{i}.id) ORDER BY first LIMIT @ARG(w.{i}.n)"
            ));
            if reuse == Reuse::Last {
                statements.push(format!(
                    "SELECT 'released' AS k, block_id, address AS first, address AS last, usable_at FROM released WHERE block_id = @ARG(w.{i}.id) AND usable_at <= @ARG(now) ORDER BY usable_at, address LIMIT @ARG(w.{i}.n)"
                ));
            }
        }
        let mut a = Vec::new();
        for (i, &(id, k)) in asked.iter().enumerate() {
            a.push(json!({"id": id, "k": hex(k)}));
            statements.push(format!(
                "SELECT 'asked' AS k, block_id, first, last, 0 AS usable_at FROM free_ranges WHERE block_id = @ARG(a.{i}.id) AND first <= @UNHEX(@ARGTEXT(a.{i}.k)) ORDER BY first DESC LIMIT 1"
            ));
            statements.push(format!(
                "SELECT 'asked-released' AS k, block_id, address AS first, address AS last, usable_at FROM released WHERE address = @UNHEX(@ARGTEXT(a.{i}.k))"
            ));
        }
        let arg = json!({"now": now, "w": w, "a": a}).to_string();
        let mut windows: HashMap<i64, Window> = HashMap::new();
        let mut fresh_rows: HashMap<i64, (usize, Key)> = HashMap::new();
        for row in run_script(tx, self.dialect, &statements, &[&arg]).await? {
            let id = row.int("block_id")?;
            let (first, last) = (row.key("first")?, row.key("last")?);
            if first > last {
                return Err(super::corrupt("free range with first above last"));
            }
            let w = windows.entry(id).or_default();
            match row.text("k")?.as_str() {
                "fresh" | "asked" => {
                    if row.text("k")? == "fresh" {
                        let e = fresh_rows.entry(id).or_insert((0, 0));
                        e.0 += 1;
                        e.1 = e.1.max(last);
                    }
                    if w.loaded.insert((first, last)) {
                        w.fresh.insert(Range::new(first, last));
                    }
                }
                "released" => {
                    let at = row.int("usable_at")?;
                    w.order.insert((at, first));
                    w.released.insert(first, at);
                }
                _ => {
                    w.released.insert(first, row.int("usable_at")?);
                }
            }
        }
        for (&id, &(n, _)) in demand {
            let limit = n + asked.len() + 1;
            let w = windows.entry(id).or_default();
            w.complete_to = match fresh_rows.get(&id) {
                Some(&(rows, last)) if rows >= limit => last,
                _ => Key::MAX,
            };
        }
        Ok(windows)
    }

    /// Create the VMs of `reqs`; each succeeds or fails on its own, and the
    /// failed ones leave no trace. Writes nothing until every decision is made.
    pub(crate) async fn create_vms_batch(&self, reqs: &[VmRequest]) -> Result<Vec<Result<Vm>>> {
        // Names, MACs and idempotency keys are unique in the installation,
        // but a batch holds only the blocks it draws from: on PostgreSQL
        // another controller may commit one of them between this batch's
        // check and its write. The UNIQUE constraints refuse that write;
        // deciding again from fresh reads fails only the request that
        // clashed, not the whole batch.
        for _ in 0..WRITE_ATTEMPTS {
            if let Some(results) = self.create_vms_once(reqs).await? {
                return Ok(results);
            }
        }
        Err(Error::storage(format!(
            "{WRITE_ATTEMPTS} attempts to write this batch clashed with concurrent writers; try again"
        )))
    }

    /// One attempt of `create_vms_batch`; `None` if its write clashed.
    async fn create_vms_once(&self, reqs: &[VmRequest]) -> Result<Option<Vec<Result<Vm>>>> {
        let now = self.now().0;
        let (mut owned_tx, mut ctx) = self.batch_context(reqs, now).await?;
        let tx = &mut owned_tx;
        // The holdings begin after the locks are held: a release that
        // committed while this batch waited ended at a time later than
        // `now`, and the address's next holding must not begin before it.
        let written_at = self.now().0.max(now);

        // Check each request and decide what it needs (pure rules).
        struct Planned {
            nid: i64,
            cluster: Cluster,
            node: Node,
            blocks: Vec<Block>,
            /// Per NIC, in order.
            requests: Vec<Vec<AddressRequest>>,
        }
        let mut planned: Vec<Result<Planned>> = Vec::with_capacity(reqs.len());
        for r in reqs {
            let p = (|| {
                let (cid, cluster) = ctx
                    .clusters
                    .get(&r.cluster)
                    .cloned()
                    .ok_or_else(|| Error::not_found("cluster", &r.cluster))?;
                let (nid, node) = ctx
                    .nodes
                    .get(&r.vm.node)
                    .cloned()
                    .ok_or_else(|| Error::not_found("node", &r.vm.node))?;
                let blocks = SqlStore::blocks_of(&ctx, &cluster, cid, nid);
                let requests = r.vm.plan(&cluster, &node, &blocks)?;
                Ok(Planned {
                    nid,
                    cluster,
                    node,
                    blocks,
                    requests,
                })
            })();
            planned.push(p);
        }

        // First-free order with a cool-down: cooled addresses rejoin the
        // free ranges before anyone takes one, and those windows are read
        // again (rare: not the default order).
        let mut reload: BTreeMap<i64, (usize, Reuse)> = BTreeMap::new();
        for p in planned.iter().flatten() {
            if p.cluster.reuse != Reuse::FirstFree {
                continue;
            }
            for b in &p.blocks {
                let cooled = ctx.windows.get(&b.id).is_some_and(|w| !w.order.is_empty());
                if cooled && !reload.contains_key(&b.id) {
                    let mut c = Counters::default();
                    alloc::promote_cooled(tx, &mut c, &SqlStore::block_alloc(&p.cluster, b), now)
                        .await?;
                    c.flush(tx).await?;
                    reload.insert(b.id, (reqs.len(), Reuse::FirstFree));
                }
            }
        }
        if !reload.is_empty() {
            let asked: BTreeSet<(i64, Key)> = planned
                .iter()
                .flatten()
                .flat_map(|p| p.requests.iter().flatten())
                .filter_map(|r| match r {
                    AddressRequest::Exact { ip, block } if reload.contains_key(block) => {
                        Some((*block, key::key(*ip)))
                    }
                    _ => None,
                })
                .collect();
            let fresh = self.load_windows(tx, &reload, &asked, now).await?;
            ctx.windows.extend(fresh);
        }
        let mut windows = std::mem::take(&mut ctx.windows);

        // Decide, request by request, in order.
        let mut doc = WriteDoc::new(written_at);
        let mut results: Vec<Result<Vm>> = Vec::with_capacity(reqs.len());
        let mut used_names: HashSet<String> = HashSet::new();
        // Keys this batch answered (as stored), with the index of the answer.
        let mut answered: HashMap<String, usize> = HashMap::new();
        for (r, p) in reqs.iter().zip(planned) {
            if let (Some(key), Some(stored_key)) = (r.idempotency_key.as_deref(), r.stored_key()) {
                if let Err(e) = check_idem_key(key) {
                    results.push(Err(e));
                    continue;
                }
                if let Some(stored) = ctx.idem.get(&stored_key) {
                    results.push(replay(stored, r, key).and_then(|vm| {
                        // A retry must not hand out a VM that is gone.
                        if ctx.taken_names.contains(&vm.name) {
                            Ok(vm)
                        } else {
                            Err(Error::conflict(
                                "idempotency_key",
                                key,
                                format!(
                                    "the VM this key created, {}, was deleted since; create it again with a new key",
                                    vm.name
                                ),
                            ))
                        }
                    }));
                    continue;
                }
                if let Some(&i) = answered.get(&stored_key) {
                    let first = &reqs[i];
                    results.push(match &results[i] {
                        Ok(vm) if request_fingerprint(first) == request_fingerprint(r) => {
                            Ok(vm.clone())
                        }
                        _ => Err(Error::conflict(
                            "idempotency_key",
                            key,
                            "this key was used for a different request in the same batch",
                        )),
                    });
                    continue;
                }
            }
            let p = match p {
                Ok(p) => p,
                Err(e) => {
                    results.push(Err(e));
                    continue;
                }
            };
            if ctx.taken_names.contains(&r.vm.name) || used_names.contains(&r.vm.name) {
                results.push(Err(Error::conflict(
                    "name",
                    &r.vm.name,
                    "a VM with this name exists",
                )));
                continue;
            }
            let mut prefix = None;
            for attempt in 0..ATTEMPTS {
                let c = host_if_prefix(&r.vm.name, attempt);
                if self.candidate_free(tx, &mut ctx, &c).await? {
                    prefix = Some(c);
                    break;
                }
            }
            // One MAC per NIC, none taken by another VM or an earlier NIC.
            let mut macs: Vec<Mac> = Vec::with_capacity(p.requests.len());
            for nic in 0..p.requests.len() {
                let index = u8::try_from(nic).map_err(|_| super::corrupt("NIC index"))?;
                for attempt in 0..ATTEMPTS {
                    let m = Mac::for_nic(self.seed, &r.vm.name, index, attempt);
                    if !macs.contains(&m)
                        && self.candidate_free(tx, &mut ctx, &m.to_string()).await?
                    {
                        macs.push(m);
                        break;
                    }
                }
            }
            let (Some(prefix), true) = (prefix, macs.len() == p.requests.len()) else {
                results.push(Err(Error::conflict(
                    "name",
                    &r.vm.name,
                    "no unique host interface name or MAC could be derived for this VM",
                )));
                continue;
            };
            let mut took: Vec<Took> = Vec::new();
            // (NIC, address, block), NIC by NIC.
            let mut addresses: Vec<(usize, Key, i64)> = Vec::new();
            let mut failure = None;
            'nics: for (nic, requests) in p.requests.iter().enumerate() {
                for req in requests {
                    match self
                        .decide(
                            tx,
                            &p.cluster,
                            &p.node,
                            &p.blocks,
                            &mut windows,
                            req,
                            &mut took,
                            &doc.counters,
                        )
                        .await?
                    {
                        Ok((k, block)) => addresses.push((nic, k, block)),
                        Err(e) => {
                            failure = Some(e);
                            break 'nics;
                        }
                    }
                }
            }
            if let Some(e) = failure {
                // Give back what this request took; the others keep theirs.
                for t in took.into_iter().rev() {
                    let (Took::Fresh { block, .. } | Took::Released { block, .. }) = t;
                    if let Some(w) = windows.get_mut(&block) {
                        w.give_back(t);
                    }
                }
                results.push(Err(e));
                continue;
            }
            used_names.insert(r.vm.name.clone());
            ctx.taken.insert(prefix.clone());
            let mut nics = Vec::with_capacity(macs.len());
            for (i, mac) in macs.iter().enumerate() {
                ctx.taken.insert(mac.to_string());
                let index = u8::try_from(i).map_err(|_| super::corrupt("NIC index"))?;
                if i > 0 {
                    doc.more_nics
                        .push(json!({"name": r.vm.name, "idx": i, "mac": mac.to_string()}));
                }
                nics.push(Nic {
                    index,
                    mac: *mac,
                    host_interface: host_ifname(&prefix, index)?,
                    addresses: Vec::new(),
                });
            }
            for (nic, k, block_id) in &addresses {
                let Some(b) = p.blocks.iter().find(|b| b.id == *block_id) else {
                    return Err(super::corrupt("block vanished"));
                };
                let Some(n) = nics.get_mut(*nic) else {
                    return Err(super::corrupt("NIC vanished"));
                };
                n.addresses
                    .push(nic_address(&p.cluster, &p.node, b, key::addr(*k)));
                doc.allocation(
                    *k,
                    *block_id,
                    &r.vm.name,
                    &n.mac,
                    &p.cluster.name,
                    &p.node.name,
                    *nic,
                );
            }
            for t in &took {
                match *t {
                    Took::Fresh { block, .. } => doc.count(block, 1, 0),
                    Took::Released { block, .. } => doc.count(block, 1, -1),
                }
            }
            let ips: Vec<String> = nics
                .iter()
                .flat_map(|n| &n.addresses)
                .map(|a| a.address.to_string())
                .collect();
            let mut detail =
                json!({"cluster": p.cluster.name, "node": p.node.name, "addresses": ips});
            if nics.len() > 1 {
                detail["nics"] = nics
                    .iter()
                    .map(|n| {
                        json!({"nic": n.index, "mac": n.mac.to_string(), "interface": n.host_interface.as_str(),
                            "addresses": n.addresses.iter().map(|a| a.address.to_string()).collect::<Vec<_>>()})
                    })
                    .collect();
            }
            doc.vm(
                p.nid,
                &r.vm.name,
                &prefix,
                &macs[0],
                &p.cluster.name,
                &p.node.name,
                detail,
                r.actor.clone().unwrap_or_else(crate::actor),
            );
            let vm = Vm {
                name: r.vm.name.clone(),
                cluster: p.cluster.name.clone(),
                node: p.node.name.clone(),
                nics,
            };
            if let Some(key) = r.stored_key() {
                doc.idem(&key, &json!({"request": request_fingerprint(r), "vm": vm}));
                answered.insert(key, results.len());
            }
            results.push(Ok(vm));
        }
        if !doc.is_empty() {
            for (id, w) in &windows {
                doc.window_diff(*id, w);
            }
            let statements = write_statements(self.dialect, &doc);
            for (name, cluster, node, detail, actor) in std::mem::take(&mut doc.changes) {
                owned_tx.log(
                    doc.now,
                    &actor,
                    "vm.create",
                    &name,
                    Some(&cluster),
                    Reach::Nodes(&[&node]),
                    &detail,
                );
            }
            let args = doc.finish();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Written::Clash = owned_tx.commit_after(&statements, &args).await? {
                return Ok(None);
            }
        } else {
            owned_tx.rollback().await?;
        }
        Ok(Some(results))
    }

    /// Decide one address of a request. The outer `Result` is a storage
    /// failure; the inner one a refusal of this request.
    #[allow(clippy::too_many_arguments)]
    async fn decide(
        &self,
        tx: &mut Tx,
        c: &Cluster,
        node: &Node,
        blocks: &[Block],
        windows: &mut HashMap<i64, Window>,
        req: &AddressRequest,
        took: &mut Vec<Took>,
        pending: &BTreeMap<i64, (i64, i64)>,
    ) -> Result<Result<(Key, i64)>> {
        match req {
            AddressRequest::Exact { ip, block } => {
                let k = key::key(*ip);
                let w = windows.entry(*block).or_default();
                if let Some(t) = w.take(*block, k) {
                    took.push(t);
                    return Ok(Ok((k, *block)));
                }
                let Some(b) = blocks.iter().find(|b| b.id == *block) else {
                    return Err(super::corrupt("block vanished"));
                };
                let why = if w.gone.contains(&k) || w.loaded.iter().any(|(f, l)| *f <= k && k <= *l)
                {
                    "taken by an earlier VM of the same batch".to_string()
                } else {
                    self.describe_unavailable(tx, b, k).await?
                };
                Ok(Err(Error::conflict(
                    "ip",
                    ip,
                    format!("the address is {why}"),
                )))
            }
            AddressRequest::Next {
                family,
                blocks: ids,
            } => {
                for id in ids {
                    let w = windows.entry(*id).or_default();
                    if let Some(t) = w.take_next(*id, c.reuse)? {
                        took.push(t);
                        return Ok(Ok((t.key(), *id)));
                    }
                }
                Ok(Err(self
                    .exhausted(tx, c, node, *family, blocks, ids, pending)
                    .await?))
            }
        }
    }
}

/// Everything a batch writes, as one JSON document for the write script.
struct WriteDoc {
    now: i64,
    vms: Vec<Value>,
    /// NICs after the first (rare: most VMs have one).
    more_nics: Vec<Value>,
    allocations: Vec<Value>,
    /// Addresses on NICs after the first.
    more_allocations: Vec<Value>,
    counters: BTreeMap<i64, (i64, i64)>,
    /// Free ranges that are gone, whose end moved (same first address),
    /// and that are new: three disjoint sets of rows, so PostgreSQL can
    /// write them in one statement.
    range_deletes: Vec<Value>,
    range_updates: Vec<Value>,
    range_inserts: Vec<Value>,
    released_deletes: Vec<Value>,
    /// Change-log entries: (VM, cluster, node, detail, who asked).
    changes: Vec<(String, String, String, Value, String)>,
    idem: Vec<Value>,
}

impl WriteDoc {
    fn new(now: i64) -> WriteDoc {
        WriteDoc {
            now,
            vms: Vec::new(),
            more_nics: Vec::new(),
            allocations: Vec::new(),
            more_allocations: Vec::new(),
            counters: BTreeMap::new(),
            range_deletes: Vec::new(),
            range_updates: Vec::new(),
            range_inserts: Vec::new(),
            released_deletes: Vec::new(),
            changes: Vec::new(),
            idem: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    #[allow(clippy::too_many_arguments)]
    fn vm(
        &mut self,
        nid: i64,
        name: &str,
        prefix: &str,
        mac: &Mac,
        cluster: &str,
        node: &str,
        detail: Value,
        actor: String,
    ) {
        self.vms.push(
            json!({"node_id": nid, "name": name, "if_prefix": prefix, "mac": mac.to_string()}),
        );
        self.changes.push((
            name.to_string(),
            cluster.to_string(),
            node.to_string(),
            detail,
            actor,
        ));
    }

    #[allow(clippy::too_many_arguments)]
    fn allocation(
        &mut self,
        k: Key,
        block: i64,
        vm: &str,
        mac: &Mac,
        cluster: &str,
        node: &str,
        nic: usize,
    ) {
        let row = json!({"key": hex(k), "block_id": block, "vm": vm, "mac": mac.to_string(), "cluster": cluster, "node": node});
        if nic == 0 {
            self.allocations.push(row);
        } else {
            let mut row = row;
            row["idx"] = nic.into();
            self.more_allocations.push(row);
        }
    }

    fn idem(&mut self, key: &str, response: &Value) {
        self.idem
            .push(json!({"key": key, "response": response.to_string()}));
    }

    fn count(&mut self, block: i64, used: i64, released: i64) {
        let e = self.counters.entry(block).or_default();
        e.0 += used;
        e.1 += released;
    }

    /// The free-range rows that changed: deleted where a loaded range is
    /// gone, updated where its end moved, inserted where a new one appeared.
    fn window_diff(&mut self, block: i64, w: &Window) {
        let now: BTreeSet<(Key, Key)> = w.fresh.ranges().map(|r| (r.first, r.last)).collect();
        let new: BTreeMap<Key, Key> = now.difference(&w.loaded).copied().collect();
        for (f, _) in w.loaded.difference(&now) {
            if !new.contains_key(f) {
                self.range_deletes
                    .push(json!({"block_id": block, "first": hex(*f)}));
            }
        }
        let loaded_firsts: BTreeSet<Key> = w.loaded.iter().map(|(f, _)| *f).collect();
        for (f, l) in new {
            let row = json!({"block_id": block, "first": hex(f), "last": hex(l)});
            if loaded_firsts.contains(&f) {
                self.range_updates.push(row);
            } else {
                self.range_inserts.push(row);
            }
        }
        for k in &w.gone {
            self.released_deletes.push(hex(*k).into());
        }
    }

    /// The arguments of the write script: `$1` the time and one JSON array
    /// per part, `$2` … `$11` in the order below (the change log is written
    /// with the commit, see `Tx::log`), so that no statement
    /// parses the whole batch: with one document, PostgreSQL's every
    /// `($1::json)->'part'` parsed all of it, and the time, read per row,
    /// parsed it per row (EXPLAIN ANALYZE: 580 ms for 256 VMs under a
    /// generic plan, BENCHMARKS.md); SQLite's every statement parsed it.
    fn finish(self) -> Vec<String> {
        let counters: Vec<Value> = self
            .counters
            .into_iter()
            .map(|(id, (used, released))| json!({"id": id, "used": used, "released": released}))
            .collect();
        let parts = [
            Value::from(self.range_deletes),
            Value::from(self.range_updates),
            Value::from(self.range_inserts),
            Value::from(self.released_deletes),
            Value::from(self.vms),
            Value::from(self.allocations),
            Value::from(counters),
            Value::from(self.idem),
            Value::from(self.more_nics),
            Value::from(self.more_allocations),
        ];
        std::iter::once(self.now.to_string())
            .chain(parts.iter().map(Value::to_string))
            .collect()
    }
}

/// The write script, with the arguments of `WriteDoc::finish`.
fn write_statements(d: Dialect, doc: &WriteDoc) -> Vec<String> {
    match d {
        // One statement: each round trip to the server costs about as much
        // as inserting ten VMs (BENCHMARKS.md).
        Dialect::Postgres => vec![postgres_write(doc)],
        Dialect::Sqlite => sqlite_write(doc),
    }
}

/// Few rows are changed by one keyed statement each: SQLite runs
/// `UPDATE … FROM` and `IN (SELECT …)` through a temporary b-tree, which
/// cost more than the keyed statements for a one-VM create (perf,
/// BENCHMARKS.md). `{i}` in `each` is the row's index.
const KEYED_UP_TO: usize = 4;

fn keyed(s: &mut Vec<String>, rows: usize, each: &str, bulk: &str) {
    if rows == 0 {
        return;
    }
    if rows <= KEYED_UP_TO {
        s.extend((0..rows).map(|i| each.replace("{i}", &i.to_string())));
    } else {
        s.push(bulk.to_string());
    }
}

/// SQLite runs the whole script in one call; statements with nothing to
/// do are left out. Each statement reads only its own part of the batch
/// (`WriteDoc::finish`): with one document for all, each of them parsed
/// the whole batch again. The few variants of the script stay in the
/// statement cache.
fn sqlite_write(doc: &WriteDoc) -> Vec<String> {
    let mut s = Vec::new();
    keyed(
        &mut s,
        doc.range_deletes.len(),
        "DELETE FROM free_ranges WHERE block_id = ($2 ->> '$[{i}].block_id') AND first = unhex($2 ->> '$[{i}].first')",
        "DELETE FROM free_ranges WHERE (block_id, first) IN (SELECT j.value->>'block_id', unhex(j.value->>'first') FROM json_each($2) AS j)",
    );
    keyed(
        &mut s,
        doc.range_updates.len(),
        "UPDATE free_ranges SET last = unhex($3 ->> '$[{i}].last') WHERE block_id = ($3 ->> '$[{i}].block_id') AND first = unhex($3 ->> '$[{i}].first')",
        "UPDATE free_ranges SET last = unhex(j.value->>'last') FROM json_each($3) AS j WHERE free_ranges.block_id = (j.value->>'block_id') AND free_ranges.first = unhex(j.value->>'first')",
    );
    keyed(
        &mut s,
        doc.released_deletes.len(),
        "DELETE FROM released WHERE address = unhex($5 ->> '$[{i}]')",
        "DELETE FROM released WHERE address IN (SELECT unhex(j.value) FROM json_each($5) AS j)",
    );
    let mut add = |when: bool, sql: &str| {
        if when {
            s.push(sql.to_string());
        }
    };
    add(
        !doc.range_inserts.is_empty(),
        "INSERT INTO free_ranges (block_id, first, last) SELECT j.value->>'block_id', unhex(j.value->>'first'), unhex(j.value->>'last') FROM json_each($4) AS j",
    );
    add(
        true,
        "INSERT INTO vms (node_id, name, if_prefix, created_at) SELECT j.value->>'node_id', j.value->>'name', j.value->>'if_prefix', CAST($1 AS INTEGER) FROM json_each($6) AS j",
    );
    add(
        true,
        "INSERT INTO nics (vm_id, idx, mac) SELECT v.id, 0, j.value->>'mac' FROM json_each($6) AS j JOIN vms v ON v.name = j.value->>'name'",
    );
    // A NIC is found by its MAC (unique): one index probe per address.
    add(
        !doc.allocations.is_empty(),
        "INSERT INTO allocations (address, block_id, kind, nic_id, vm, nic_idx, mac, cluster, node, since) SELECT unhex(j.value->>'key'), j.value->>'block_id', 'vm', ni.id, j.value->>'vm', 0, j.value->>'mac', j.value->>'cluster', j.value->>'node', CAST($1 AS INTEGER) FROM json_each($7) AS j JOIN nics ni ON ni.mac = j.value->>'mac'",
    );
    add(
        !doc.more_nics.is_empty(),
        "INSERT INTO nics (vm_id, idx, mac) SELECT v.id, j.value->>'idx', j.value->>'mac' FROM json_each($10) AS j JOIN vms v ON v.name = j.value->>'name'",
    );
    add(
        !doc.more_allocations.is_empty(),
        "INSERT INTO allocations (address, block_id, kind, nic_id, vm, nic_idx, mac, cluster, node, since) SELECT unhex(j.value->>'key'), j.value->>'block_id', 'vm', ni.id, j.value->>'vm', j.value->>'idx', j.value->>'mac', j.value->>'cluster', j.value->>'node', CAST($1 AS INTEGER) FROM json_each($11) AS j JOIN nics ni ON ni.mac = j.value->>'mac'",
    );
    add(
        !doc.idem.is_empty(),
        "INSERT INTO idempotency (key, response, created_at) SELECT j.value->>'key', j.value->>'response', CAST($1 AS INTEGER) FROM json_each($9) AS j",
    );
    keyed(
        &mut s,
        doc.counters.len(),
        "UPDATE blocks SET used = used + ($8 ->> '$[{i}].used'), released = released + ($8 ->> '$[{i}].released') WHERE id = ($8 ->> '$[{i}].id')",
        "UPDATE blocks SET used = blocks.used + c.d_used, released = blocks.released + c.d_released FROM (SELECT j.value->>'id' AS d_id, j.value->>'used' AS d_used, j.value->>'released' AS d_released FROM json_each($8) AS j) AS c WHERE blocks.id = c.d_id",
    );
    s
}

/// The row of `table` that `key` (a condition on the outer row `x`) names,
/// found through the table's index for each row of the batch: the
/// `OFFSET 0` keeps the planner from turning the lookups into a join that
/// reads (hashes) the whole table, which a generic plan made while the
/// table was small did (tests/query_plans.rs).
fn probe(table: &str, key: &str) -> String {
    format!("LATERAL (SELECT ctid FROM {table} WHERE {key} OFFSET 0) AS k")
}

/// PostgreSQL: every write of the batch in one statement of data-modifying
/// CTEs. They share one snapshot and run in no fixed order, so no two of
/// them touch the same row: ranges are split into deletes, updates and
/// inserts of distinct keys, and the NICs and allocations take the new
/// rows' ids from `RETURNING`. Parts with nothing to do are left out (the
/// variants stay in the statement cache).
fn postgres_write(doc: &WriteDoc) -> String {
    const NOW: &str = "($1::bigint)";
    let mut parts: Vec<String> = Vec::new();
    if !doc.range_deletes.is_empty() {
        parts.push(format!("rd AS (DELETE FROM free_ranges f WHERE f.ctid = ANY (ARRAY(SELECT k.ctid FROM json_to_recordset($2::json) AS x(block_id bigint, first text), {})))", probe("free_ranges", "block_id = x.block_id AND first = decode(x.first, 'hex')")));
    }
    if !doc.range_updates.is_empty() {
        parts.push(format!("ru AS (UPDATE free_ranges f SET last = u.last FROM (SELECT k.ctid, decode(x.last, 'hex') AS last FROM json_to_recordset($3::json) AS x(block_id bigint, first text, last text), {}) AS u WHERE f.ctid = u.ctid)", probe("free_ranges", "block_id = x.block_id AND first = decode(x.first, 'hex')")));
    }
    if !doc.range_inserts.is_empty() {
        parts.push("ri AS (INSERT INTO free_ranges (block_id, first, last) SELECT x.block_id, decode(x.first, 'hex'), decode(x.last, 'hex') FROM json_to_recordset($4::json) AS x(block_id bigint, first text, last text))".into());
    }
    if !doc.released_deletes.is_empty() {
        parts.push(format!("rl AS (DELETE FROM released r WHERE r.ctid = ANY (ARRAY(SELECT k.ctid FROM json_array_elements_text($5::json) AS x(value), {})))", probe("released", "address = decode(x.value, 'hex')")));
    }
    parts.push("j AS MATERIALIZED (SELECT * FROM json_to_recordset($6::json) AS x(node_id bigint, name text, if_prefix text, mac text))".into());
    parts.push(format!("v AS (INSERT INTO vms (node_id, name, if_prefix, created_at) SELECT node_id, name, if_prefix, {NOW} FROM j RETURNING id, name)"));
    parts.push("n AS (INSERT INTO nics (vm_id, idx, mac) SELECT v.id, 0, j.mac FROM v JOIN j ON j.name = v.name RETURNING id, vm_id)".into());
    if !doc.allocations.is_empty() {
        parts.push(format!("a AS (INSERT INTO allocations (address, block_id, kind, nic_id, vm, nic_idx, mac, cluster, node, since) SELECT decode(x.key, 'hex'), x.block_id, 'vm', n.id, x.vm, 0, x.mac, x.cluster, x.node, {NOW} FROM json_to_recordset($7::json) AS x(key text, block_id bigint, vm text, mac text, cluster text, node text) JOIN v ON v.name = x.vm JOIN n ON n.vm_id = v.id)"));
    }
    if !doc.more_nics.is_empty() {
        parts.push("n2 AS (INSERT INTO nics (vm_id, idx, mac) SELECT v.id, x.idx, x.mac FROM json_to_recordset($10::json) AS x(name text, idx bigint, mac text) JOIN v ON v.name = x.name RETURNING id, mac)".into());
    }
    if !doc.more_allocations.is_empty() {
        parts.push(format!("a2 AS (INSERT INTO allocations (address, block_id, kind, nic_id, vm, nic_idx, mac, cluster, node, since) SELECT decode(x.key, 'hex'), x.block_id, 'vm', n2.id, x.vm, x.idx, x.mac, x.cluster, x.node, {NOW} FROM json_to_recordset($11::json) AS x(key text, block_id bigint, vm text, mac text, cluster text, node text, idx bigint) JOIN n2 ON n2.mac = x.mac)"));
    }
    if !doc.counters.is_empty() {
        parts.push("c AS (UPDATE blocks SET used = blocks.used + x.used, released = blocks.released + x.released FROM json_to_recordset($8::json) AS x(id bigint, used bigint, released bigint) WHERE blocks.id = x.id)".into());
    }
    if !doc.idem.is_empty() {
        parts.push(format!("i AS (INSERT INTO idempotency (key, response, created_at) SELECT x.key, x.response, {NOW} FROM json_to_recordset($9::json) AS x(key text, response text))"));
    }
    // Data-modifying CTEs run to completion whether or not the main
    // statement reads them.
    format!("WITH {} SELECT 1", parts.join(", "))
}
