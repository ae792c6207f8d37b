//! VMs: creation with their addresses, listing, migration, deletion.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use sqlx::any::AnyRow;
use std::net::IpAddr;

use serde_json::json;
use vmfabric_ipam::{Family, key};
use vmfabric_model::names::{MAX_NIC_INDEX, host_ifname};
use vmfabric_model::vm::{check_migration, nic_address, pool_label};
use vmfabric_model::{Block, Cluster, Error, Mac, Nic, Node, Result, Vm};

use super::alloc;
use super::{Counters, Reach, RowExt, SqlStore, Tx, USED, db};
use crate::{AddressFilter, Page, PageRequest};

/// The active holdings of VM `$2`'s NICs (a WHERE clause on allocations).
macro_rules! active_of_vm {
    () => {
        "until IS NULL AND nic_id IN (SELECT ni.id FROM nics ni JOIN vms v ON v.id = ni.vm_id WHERE v.name = $2)"
    };
}

/// A VM of a listing before its NICs are read.
struct VmHead {
    id: i64,
    name: String,
    cluster: String,
    node: String,
    if_prefix: String,
}

/// Columns and joins of a VM listing; each caller adds one WHERE clause
/// that an index serves, its order and its LIMIT.
const VM_HEAD: &str = "SELECT v.id AS vm_id, v.name AS vm_name, v.if_prefix, c.name AS c_name, n.name AS n_name \
     FROM vms v JOIN nodes n ON n.id = v.node_id JOIN clusters c ON c.id = n.cluster_id";

fn head_from_row(r: &AnyRow) -> Result<VmHead> {
    Ok(VmHead {
        id: r.int("vm_id")?,
        name: r.text("vm_name")?,
        cluster: r.text("c_name")?,
        node: r.text("n_name")?,
        if_prefix: r.text("if_prefix")?,
    })
}

/// The cursor of a cluster's VM listing (node by node, then by name):
/// `node/vm` (neither name may hold a slash).
fn cluster_cursor(v: &VmHead) -> String {
    format!("{}/{}", v.node, v.name)
}

fn parse_cluster_cursor(after: &str) -> Result<(String, String)> {
    after
        .split_once('/')
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .ok_or_else(|| super::bad_cursor(after))
}

/// Nodes of a cluster with VMs, read at once when a page walks them.
const NODES_AT_ONCE: i64 = 64;

impl SqlStore {
    /// The error for a request no block could serve.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn exhausted(
        &self,
        tx: &mut Tx,
        c: &Cluster,
        node: &Node,
        family: Family,
        blocks: &[Block],
        ids: &[i64],
        pending: &BTreeMap<i64, (i64, i64)>,
    ) -> Result<Error> {
        let now = self.now().0;
        let (mut used, mut usable, mut cooling) = (0u128, 0u128, 0u128);
        for id in ids {
            let b = find_block(blocks, *id)?;
            let (u, r, _) = self.block_counts(tx, b.id).await?;
            // What earlier VMs of the same batch took is not stored yet.
            let taken = pending.get(id).map_or(0, |p| p.0);
            used += u128::try_from(u + r + taken).unwrap_or(0);
            usable += b.range.len() - self.excluded_count(tx, b).await?;
            let n = sqlx::query(
                "SELECT COUNT(*) AS n FROM released WHERE block_id = $1 AND usable_at > $2",
            )
            .bind(b.id)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?
            .int("n")?;
            cooling += u128::try_from(n).unwrap_or(0);
        }
        Ok(Error::Exhausted {
            pool: pool_label(c, node, family),
            family: family.name().to_string(),
            used,
            usable,
            cooling,
        })
    }

    /// The NICs and active addresses of `heads`, assembled into VMs (in
    /// the order of `heads`). One query for the whole page.
    async fn assemble(&self, tx: &mut Tx, heads: Vec<VmHead>) -> Result<Vec<Vm>> {
        self.assemble_known(tx, heads, &[], &[], &[]).await
    }

    /// `assemble`, with clusters, nodes and blocks the caller has already
    /// read (a node's plan: its own, and its cluster's pool), which are not
    /// read again.
    async fn assemble_known(
        &self,
        tx: &mut Tx,
        heads: Vec<VmHead>,
        known_clusters: &[&Cluster],
        known_nodes: &[&Node],
        known_blocks: &[Block],
    ) -> Result<Vec<Vm>> {
        if heads.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = heads.iter().map(|h| h.id.to_string()).collect();
        // The page's VM ids as one argument: a JSON array for SQLite, an
        // array literal for PostgreSQL (`= ANY` of it is an index search).
        let (sql, ids) = match self.dialect {
            super::Dialect::Sqlite => (
                "SELECT ni.vm_id, ni.idx, ni.mac, a.address, a.block_id FROM nics ni \
                 LEFT JOIN allocations a ON a.nic_id = ni.id AND a.until IS NULL \
                 WHERE ni.vm_id IN (SELECT value FROM json_each($1)) ORDER BY ni.vm_id, ni.idx, a.address",
                format!("[{}]", ids.join(",")),
            ),
            super::Dialect::Postgres => (
                "SELECT ni.vm_id, ni.idx, ni.mac, a.address, a.block_id FROM nics ni \
                 LEFT JOIN allocations a ON a.nic_id = ni.id AND a.until IS NULL \
                 WHERE ni.vm_id = ANY (CAST($1 AS BIGINT[])) ORDER BY ni.vm_id, ni.idx, a.address",
                format!("{{{}}}", ids.join(",")),
            ),
        };
        let rows = sqlx::query(sql)
            .bind(ids)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let mut clusters: HashMap<String, Cluster> = known_clusters
            .iter()
            .map(|c| (c.name.clone(), (*c).clone()))
            .collect();
        let mut nodes: HashMap<String, Node> = known_nodes
            .iter()
            .map(|n| (n.name.clone(), (*n).clone()))
            .collect();
        let mut blocks: HashMap<i64, Block> =
            known_blocks.iter().map(|b| (b.id, b.clone())).collect();
        let mut out: Vec<Vm> = Vec::with_capacity(heads.len());
        let mut index: HashMap<i64, usize> = HashMap::with_capacity(heads.len());
        let mut prefixes: Vec<String> = Vec::with_capacity(heads.len());
        for h in heads {
            if let Entry::Vacant(slot) = clusters.entry(h.cluster.clone()) {
                slot.insert(self.load_cluster(tx, &h.cluster).await?.1);
            }
            if let Entry::Vacant(slot) = nodes.entry(h.node.clone()) {
                slot.insert(self.load_node(tx, &h.node).await?.1);
            }
            index.insert(h.id, out.len());
            prefixes.push(h.if_prefix);
            out.push(Vm {
                name: h.name,
                cluster: h.cluster,
                node: h.node,
                nics: Vec::new(),
            });
        }
        for r in rows {
            let Some(&i) = index.get(&r.int("vm_id")?) else {
                continue;
            };
            let idx = u8::try_from(r.int("idx")?)
                .ok()
                .filter(|i| *i <= MAX_NIC_INDEX)
                .ok_or_else(|| super::corrupt("nic index"))?;
            let vm = &mut out[i];
            if vm.nics.last().is_none_or(|n| n.index != idx) {
                vm.nics.push(Nic {
                    index: idx,
                    mac: r.parsed::<Mac>("mac")?,
                    host_interface: host_ifname(&prefixes[i], idx)?,
                    addresses: Vec::new(),
                });
            }
            let Some(block_id) = r.opt_int("block_id")? else {
                continue;
            };
            let k = r.key("address")?;
            if let Entry::Vacant(slot) = blocks.entry(block_id) {
                slot.insert(self.block_by_id(tx, block_id).await?);
            }
            let vm = &mut out[i];
            let (Some(c), Some(n), Some(b), Some(nic)) = (
                clusters.get(&vm.cluster),
                nodes.get(&vm.node),
                blocks.get(&block_id),
                vm.nics.last_mut(),
            ) else {
                continue;
            };
            nic.addresses.push(nic_address(c, n, b, key::addr(k)));
        }
        Ok(out)
    }

    async fn heads(
        &self,
        tx: &mut Tx,
        q: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> Result<Vec<VmHead>> {
        q.fetch_all(&mut **tx)
            .await
            .map_err(db)?
            .iter()
            .map(head_from_row)
            .collect()
    }

    pub(crate) async fn vm_tx(&self, tx: &mut Tx, name: &str) -> Result<Vm> {
        let heads = self
            .heads(
                tx,
                sqlx::query(SqlStore::dynamic(format!("{VM_HEAD} WHERE v.name = $1"))).bind(name),
            )
            .await?;
        self.assemble(tx, heads)
            .await?
            .pop()
            .ok_or_else(|| Error::not_found("vm", name))
    }

    /// Every VM of a node (its plan), in name order, with the node, its
    /// cluster and the cluster's pool as read already.
    pub(crate) async fn vms_of_node(
        &self,
        tx: &mut Tx,
        node_id: i64,
        known: (&Cluster, &Node, &[Block]),
    ) -> Result<Vec<Vm>> {
        let (c, n, pool) = known;
        // The node and its cluster are known: no lookup of them per VM.
        let heads = sqlx::query(
            "SELECT v.id, v.name, v.if_prefix FROM vms v WHERE v.node_id = $1 ORDER BY v.name",
        )
        .bind(node_id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?
        .iter()
        .map(|r| {
            Ok(VmHead {
                id: r.int("id")?,
                name: r.text("name")?,
                cluster: c.name.clone(),
                node: n.name.clone(),
                if_prefix: r.text("if_prefix")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
        self.assemble_known(tx, heads, &[c], &[n], pool).await
    }

    pub(crate) async fn vms_tx(
        &self,
        tx: &mut Tx,
        f: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Vm>> {
        let size = page.size()?;
        let probe = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let after = page.after.clone().unwrap_or_default();
        let cluster = match &f.cluster {
            Some(c) => Some(self.load_cluster(tx, c).await?),
            None => None,
        };
        let heads = match (&f.node, &cluster) {
            (Some(n), _) => {
                let (nid, node) = self.load_node(tx, n).await?;
                if cluster
                    .as_ref()
                    .is_some_and(|(_, c)| c.name != node.cluster)
                {
                    Vec::new()
                } else {
                    let sql = format!(
                        "{VM_HEAD} WHERE v.node_id = $1 AND v.name > $2 ORDER BY v.name LIMIT $3"
                    );
                    self.heads(
                        tx,
                        sqlx::query(SqlStore::dynamic(sql))
                            .bind(nid)
                            .bind(after)
                            .bind(probe),
                    )
                    .await?
                }
            }
            (None, Some((cid, _))) => {
                // Node by node in name order, each node's VMs by name: every
                // statement is an index range, and a page reads only the
                // nodes it shows (and empty ones it passes).
                let sql = format!(
                    "{VM_HEAD} WHERE v.node_id = $1 AND v.name > $2 ORDER BY v.name LIMIT $3"
                );
                let mut heads: Vec<VmHead> = Vec::new();
                let mut node = String::new();
                if let Some(a) = &page.after {
                    // The rest of the cursor's node first.
                    let (n, after_vm) = parse_cluster_cursor(a)?;
                    let id =
                        sqlx::query("SELECT id FROM nodes WHERE cluster_id = $1 AND name = $2")
                            .bind(*cid)
                            .bind(&n)
                            .fetch_optional(&mut **tx)
                            .await
                            .map_err(db)?;
                    if let Some(id) = id {
                        heads.extend(
                            self.heads(
                                tx,
                                sqlx::query(SqlStore::dynamic(sql.clone()))
                                    .bind(id.int("id")?)
                                    .bind(after_vm)
                                    .bind(i64::try_from(size + 1).unwrap_or(i64::MAX)),
                            )
                            .await?,
                        );
                    }
                    node = n;
                }
                'nodes: while heads.len() <= size {
                    let rows = sqlx::query(
                        "SELECT n.id, n.name FROM nodes n WHERE n.cluster_id = $1 AND n.name > $2 AND EXISTS (SELECT 1 FROM vms v WHERE v.node_id = n.id) ORDER BY n.name LIMIT $3",
                    )
                    .bind(*cid)
                    .bind(&node)
                    .bind(NODES_AT_ONCE)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db)?;
                    for r in &rows {
                        node = r.text("name")?;
                        let want = size + 1 - heads.len();
                        heads.extend(
                            self.heads(
                                tx,
                                sqlx::query(SqlStore::dynamic(sql.clone()))
                                    .bind(r.int("id")?)
                                    .bind("")
                                    .bind(i64::try_from(want).unwrap_or(i64::MAX)),
                            )
                            .await?,
                        );
                        if heads.len() > size {
                            break 'nodes;
                        }
                    }
                    if rows.len() < usize::try_from(NODES_AT_ONCE).unwrap_or(0) {
                        break;
                    }
                }
                let page = Page::from_probe(heads, size, cluster_cursor);
                let next = page.next;
                let items = self.assemble(tx, page.items).await?;
                return Ok(Page { items, next });
            }
            (None, None) => {
                let sql = format!("{VM_HEAD} WHERE v.name > $1 ORDER BY v.name LIMIT $2");
                self.heads(
                    tx,
                    sqlx::query(SqlStore::dynamic(sql)).bind(after).bind(probe),
                )
                .await?
            }
        };
        let page = Page::from_probe(heads, size, |h| h.name.clone());
        let next = page.next;
        let items = self.assemble(tx, page.items).await?;
        Ok(Page { items, next })
    }

    /// Hold the blocks of a VM's addresses, in id order like every other
    /// writer (so no two deadlock), before reading the VM: on PostgreSQL a
    /// concurrent delete, migration or release of it then finishes first
    /// and this transaction sees its result. SQLite has one writer.
    async fn lock_blocks_of_vm(&self, tx: &mut Tx, name: &str) -> Result<()> {
        if self.dialect == super::Dialect::Postgres {
            sqlx::query(
                "SELECT b.id FROM blocks b WHERE b.id IN (SELECT a.block_id FROM allocations a JOIN nics ni ON ni.id = a.nic_id JOIN vms v ON v.id = ni.vm_id WHERE a.until IS NULL AND v.name = $1) ORDER BY b.id FOR UPDATE OF b",
            )
            .bind(name)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        }
        Ok(())
    }

    pub(crate) async fn migrate_vm_tx(&self, tx: &mut Tx, name: &str, to: &str) -> Result<Vm> {
        self.lock_blocks_of_vm(tx, name).await?;
        let vm = self.vm_tx(tx, name).await?;
        let (_, c) = self.load_cluster(tx, &vm.cluster).await?;
        let (_, from) = self.load_node(tx, &vm.node).await?;
        let (to_id, to_node) = self.load_node(tx, to).await?;
        check_migration(&c, name, &from, &to_node)?;
        // History answers "who held this address, where, when": the
        // holding on the old node ends now (kept as a closed copy), the
        // active one continues on the new node from now.
        let now = self.now().0;
        sqlx::query(concat!(
            "INSERT INTO allocations (address, block_id, kind, nic_id, vm, nic_idx, mac, note, cluster, node, since, until) \
             SELECT address, block_id, kind, nic_id, vm, nic_idx, mac, note, cluster, node, since, $1 FROM allocations \
             WHERE ", active_of_vm!()),
        )
        .bind(now)
        .bind(name)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        sqlx::query(concat!(
            "UPDATE allocations SET since = $1, node = $3 \
             WHERE ",
            active_of_vm!()
        ))
        .bind(now)
        .bind(name)
        .bind(&to_node.name)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        sqlx::query("UPDATE vms SET node_id = $1 WHERE name = $2")
            .bind(to_id)
            .bind(name)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        self.log_change(
            tx,
            "vm.migrate",
            name,
            Some(&c.name),
            Reach::Nodes(&[&from.name, &to_node.name]),
            &json!({"from": from.name, "to": to_node.name}),
        );
        self.vm_tx(tx, name).await
    }

    pub(crate) async fn delete_vm_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
    ) -> Result<Vm> {
        self.lock_blocks_of_vm(tx, name).await?;
        let vm = self.vm_tx(tx, name).await?;
        let (_, c) = self.load_cluster(tx, &vm.cluster).await?;
        let now = self.now().0;
        let ended = sqlx::query(concat!(
            "UPDATE allocations SET until = $1 WHERE ",
            active_of_vm!(),
            " RETURNING address, block_id"
        ))
        .bind(now)
        .bind(name)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for row in ended {
            let b = self.block_by_id(tx, row.int("block_id")?).await?;
            let ba = SqlStore::block_alloc(&c, &b);
            self.lock_block(tx, b.id).await?;
            alloc::give_back(tx, counters, &ba, row.key("address")?, now).await?;
            counters.add(b.id, USED, -1);
        }
        sqlx::query("DELETE FROM vms WHERE name = $1")
            .bind(name)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        self.log_change(
            tx,
            "vm.delete",
            name,
            Some(&vm.cluster),
            Reach::Nodes(&[&vm.node]),
            &json!({"cluster": vm.cluster, "node": vm.node, "before": vm}),
        );
        Ok(vm)
    }
}

fn find_block(blocks: &[Block], id: i64) -> Result<&Block> {
    blocks
        .iter()
        .find(|b| b.id == id)
        .ok_or_else(|| super::corrupt(format!("block {id} vanished")))
}

/// Parse an address given on the command line or the API.
/// The addresses a new NIC gets (by the rules of a VM's first NIC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NewNicAddresses {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl SqlStore {
    /// One more address on a VM's NIC: `ip` if given and free, else the
    /// next one by the rules of the VM's cluster (the node's ranges for
    /// routing, the cluster pool otherwise). Only the VM's node's plan
    /// changes; the VM's other addresses stay.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn add_vm_address_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
        nic: u8,
        ipv6: bool,
        ip: Option<&str>,
    ) -> Result<Vm> {
        let vm = self.vm_tx(tx, name).await?;
        let Some(n) = vm.nics.iter().find(|n| n.index == nic) else {
            let have: Vec<String> = vm.nics.iter().map(|n| n.index.to_string()).collect();
            return Err(Error::invalid(
                "nic",
                nic,
                format!(
                    "VM {name} has NICs {} (vm add-nic adds one)",
                    have.join(", ")
                ),
            ));
        };
        let (nid, node) = self.load_node(tx, &vm.node).await?;
        let (cid, cluster) = self.load_cluster(tx, &vm.cluster).await?;
        let routing = cluster.network_type == vmfabric_model::NetworkType::Routing;
        let family = match ip {
            Some(text) => {
                let f = Family::of(parse_addr(text)?);
                if ipv6 && f != Family::V6 {
                    return Err(Error::invalid(
                        "ip",
                        text,
                        "--ipv6 asks for an IPv6 address",
                    ));
                }
                f
            }
            None if ipv6 => Family::V6,
            None => Family::V4,
        };
        let label = pool_label(&cluster, &node, family);
        let (b, k) = match ip {
            None => {
                let source = if routing {
                    super::addresses::Source::Node(nid)
                } else {
                    super::addresses::Source::Pool(cid)
                };
                self.take_next_from(tx, counters, &cluster, &source, family, &label)
                    .await?
            }
            Some(text) => {
                let addr = parse_addr(text)?;
                let k = key::key(addr);
                let b = self
                    .block_containing(tx, k)
                    .await?
                    .filter(|b| {
                        b.cluster == cluster.name
                            && if routing {
                                b.node.as_deref() == Some(node.name.as_str())
                            } else {
                                b.role == vmfabric_model::BlockRole::Network
                            }
                    })
                    .ok_or_else(|| {
                        Error::invalid(
                            "ip",
                            text,
                            format!("a VM on node {} takes addresses from {label}", node.name),
                        )
                    })?;
                self.lock_block(tx, b.id).await?;
                if !alloc::take(tx, counters, &SqlStore::block_alloc(&cluster, &b), k).await? {
                    let why = self.describe_unavailable(tx, &b, k).await?;
                    return Err(Error::conflict("ip", addr, format!("the address is {why}")));
                }
                (b, k)
            }
        };
        let addr = key::addr(k);
        sqlx::query(
            "INSERT INTO allocations (address, block_id, kind, nic_id, vm, nic_idx, mac, cluster, node, since) SELECT $1, $2, 'vm', ni.id, $3, $4, $5, $6, $7, $8 FROM nics ni WHERE ni.mac = $5",
        )
        .bind(super::kb(k))
        .bind(b.id)
        .bind(name)
        .bind(i64::from(nic))
        .bind(n.mac.to_string())
        .bind(&cluster.name)
        .bind(&node.name)
        .bind(self.now().0)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        counters.add(b.id, USED, 1);
        self.log_change(
            tx,
            "vm.add-address",
            name,
            Some(&cluster.name),
            Reach::Nodes(&[&node.name]),
            &json!({"nic": nic, "after": addr.to_string()}),
        );
        self.vm_tx(tx, name).await
    }

    /// End a VM's claim on one of its addresses (recorded in history).
    pub(crate) async fn remove_vm_address_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
        ip: &str,
    ) -> Result<Vm> {
        let vm = self.vm_tx(tx, name).await?;
        let addr = parse_addr(ip)?;
        if !vm
            .nics
            .iter()
            .any(|n| n.addresses.iter().any(|a| a.address == addr))
        {
            return Err(Error::invalid(
                "ip",
                ip,
                format!("not an address of VM {name} (vm show {name} lists them)"),
            ));
        }
        self.release_tx(tx, counters, ip).await?;
        self.vm_tx(tx, name).await
    }

    /// One more NIC: the next index, its own MAC and host interface
    /// (`<vm>_net<N>`), and addresses by the rules of the first NIC.
    pub(crate) async fn add_nic_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
        with: NewNicAddresses,
    ) -> Result<Vm> {
        let vm = self.vm_tx(tx, name).await?;
        let next = vm
            .nics
            .iter()
            .map(|n| n.index)
            .max()
            .map_or(0, |i| i.saturating_add(1));
        if next > MAX_NIC_INDEX {
            return Err(Error::conflict(
                "nic",
                next,
                format!(
                    "VM {name} has {} NICs, the most a VM may have",
                    u16::from(MAX_NIC_INDEX) + 1
                ),
            ));
        }
        let row = sqlx::query("SELECT id, if_prefix FROM vms WHERE name = $1")
            .bind(name)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        let (vm_id, prefix) = (row.int("id")?, row.text("if_prefix")?);
        let host = host_ifname(&prefix, next)?;
        let mut mac = None;
        for attempt in 0..16 {
            let m = Mac::for_nic(self.seed, name, next, attempt);
            let n = sqlx::query("SELECT COUNT(*) AS n FROM nics WHERE mac = $1")
                .bind(m.to_string())
                .fetch_one(&mut **tx)
                .await
                .map_err(db)?
                .int("n")?;
            if n == 0 {
                mac = Some(m);
                break;
            }
        }
        let mac = mac
            .ok_or_else(|| Error::storage("no free MAC after 16 attempts (please report this)"))?;
        sqlx::query("INSERT INTO nics (vm_id, idx, mac) VALUES ($1, $2, $3)")
            .bind(vm_id)
            .bind(i64::from(next))
            .bind(mac.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        self.log_change(
            tx,
            "vm.add-nic",
            name,
            Some(&vm.cluster),
            Reach::Nodes(&[&vm.node]),
            &json!({"nic": next, "mac": mac.to_string(), "interface": host.as_str()}),
        );
        // Each address step answers with the VM as it is then: the last
        // one is the answer (no further read).
        let mut answer = None;
        if with.ipv4 {
            answer = Some(
                self.add_vm_address_tx(tx, counters, name, next, false, None)
                    .await?,
            );
        }
        if with.ipv6 {
            answer = Some(
                self.add_vm_address_tx(tx, counters, name, next, true, None)
                    .await?,
            );
        }
        match answer {
            Some(vm) => Ok(vm),
            None => self.vm_tx(tx, name).await,
        }
    }

    /// Remove a NIC (not the first: it goes with the VM); its addresses
    /// must be removed first, or are released here with `force`.
    pub(crate) async fn remove_nic_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
        index: u8,
        force: bool,
    ) -> Result<Vm> {
        let mut vm = self.vm_tx(tx, name).await?;
        if force
            && index != 0
            && let Some(n) = vm.nics.iter().find(|n| n.index == index)
            && !n.addresses.is_empty()
        {
            let held: Vec<String> = n.addresses.iter().map(|a| a.address.to_string()).collect();
            for ip in held {
                self.release_tx(tx, counters, &ip).await?;
            }
            vm = self.vm_tx(tx, name).await?;
        }
        let Some(n) = vm.nics.iter().find(|n| n.index == index) else {
            return Err(Error::not_found("nic", format!("{index} of VM {name}")));
        };
        if index == 0 {
            return Err(Error::invalid(
                "nic",
                index,
                "a VM's first NIC goes only with the VM (vm delete)",
            ));
        }
        if !n.addresses.is_empty() {
            let held: Vec<String> = n.addresses.iter().map(|a| a.address.to_string()).collect();
            return Err(Error::conflict(
                "nic",
                index,
                format!(
                    "NIC {index} of VM {name} still holds {}; remove them first (vm remove-address), or --force to release them (recorded in history)",
                    held.join(", ")
                ),
            ));
        }
        sqlx::query("DELETE FROM nics WHERE mac = $1")
            .bind(n.mac.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        self.log_change(
            tx,
            "vm.remove-nic",
            name,
            Some(&vm.cluster),
            Reach::Nodes(&[&vm.node]),
            &json!({"nic": index, "before": {"mac": n.mac.to_string(), "interface": n.host_interface.as_str()}}),
        );
        self.vm_tx(tx, name).await
    }
}

pub(crate) fn parse_addr(text: &str) -> Result<IpAddr> {
    let ip: IpAddr = text
        .trim()
        .parse()
        .map_err(|_| Error::invalid("address", text, "must be an IPv4 or IPv6 address"))?;
    // The store keys IPv4 addresses as IPv4-mapped IPv6 ones; taking the
    // mapped spelling would let `::ffff:192.0.2.9` stand for 192.0.2.9 here
    // while `vm create --ip` refuses it. One spelling everywhere.
    if let IpAddr::V6(a) = ip
        && let Some(v4) = a.to_ipv4_mapped()
    {
        return Err(Error::invalid(
            "address",
            text,
            format!("IPv4-mapped addresses are not used; write the IPv4 address {v4}"),
        ));
    }
    Ok(ip)
}
