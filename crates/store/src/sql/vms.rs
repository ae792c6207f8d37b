//! VMs: creation with their addresses, listing, migration, deletion.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde_json::json;
use vmfabric_ipam::{Family, Key, key};
use vmfabric_model::names::{MAX_NIC_INDEX, host_ifname};
use vmfabric_model::vm::{check_migration, nic_address, pool_label};
use vmfabric_model::{Block, Cluster, Error, Mac, Nic, Node, Result, Vm};

use super::alloc;
use super::{Counters, RowExt, SqlStore, Tx, USED, db};
use crate::AddressFilter;

/// The active holdings of VM `$2`'s NICs (a WHERE clause on allocations).
macro_rules! active_of_vm {
    () => {
        "until IS NULL AND nic_id IN (SELECT ni.id FROM nics ni JOIN vms v ON v.id = ni.vm_id WHERE v.name = $2)"
    };
}

/// One row of the VM listing query.
struct VmRow {
    name: String,
    cluster: String,
    node: String,
    if_prefix: String,
    nic: Option<(u8, Mac)>,
    address: Option<(Key, i64)>,
}

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

    /// VMs matching a WHERE fragment, fully assembled.
    async fn load_vms(
        &self,
        tx: &mut Tx,
        filter: &str,
        bind: Option<&str>,
        bind2: Option<&str>,
    ) -> Result<Vec<Vm>> {
        let sql = format!(
            "SELECT v.name AS vm_name, v.if_prefix, c.name AS c_name, n.name AS n_name, ni.idx, ni.mac, a.address, a.block_id \
             FROM vms v JOIN clusters c ON c.id = v.cluster_id JOIN nodes n ON n.id = v.node_id \
             LEFT JOIN nics ni ON ni.vm_id = v.id \
             LEFT JOIN allocations a ON a.nic_id = ni.id AND a.until IS NULL \
             WHERE {filter} ORDER BY v.name, ni.idx, a.address"
        );
        let rows = sqlx::query(SqlStore::dynamic(sql))
            .bind(bind)
            .bind(bind2)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let mut parsed = Vec::with_capacity(rows.len());
        for r in rows {
            let nic = match r.opt_int("idx")? {
                Some(i) => Some((
                    u8::try_from(i)
                        .ok()
                        .filter(|i| *i <= MAX_NIC_INDEX)
                        .ok_or_else(|| super::corrupt("nic index"))?,
                    r.parsed::<Mac>("mac")?,
                )),
                None => None,
            };
            let address = match r.opt_int("block_id")? {
                Some(b) => Some((r.key("address")?, b)),
                None => None,
            };
            parsed.push(VmRow {
                name: r.text("vm_name")?,
                cluster: r.text("c_name")?,
                node: r.text("n_name")?,
                if_prefix: r.text("if_prefix")?,
                nic,
                address,
            });
        }
        self.assemble(tx, parsed).await
    }

    async fn assemble(&self, tx: &mut Tx, rows: Vec<VmRow>) -> Result<Vec<Vm>> {
        let mut clusters: HashMap<String, Cluster> = HashMap::new();
        let mut nodes: HashMap<String, Node> = HashMap::new();
        let mut blocks: HashMap<i64, Block> = HashMap::new();
        let mut out: Vec<Vm> = Vec::new();
        for r in rows {
            if let Entry::Vacant(slot) = clusters.entry(r.cluster.clone()) {
                slot.insert(self.load_cluster(tx, &r.cluster).await?.1);
            }
            if let Entry::Vacant(slot) = nodes.entry(r.node.clone()) {
                slot.insert(self.load_node(tx, &r.node).await?.1);
            }
            if out.last().is_none_or(|v| v.name != r.name) {
                out.push(Vm {
                    name: r.name.clone(),
                    cluster: r.cluster.clone(),
                    node: r.node.clone(),
                    nics: Vec::new(),
                });
            }
            let Some(vm) = out.last_mut() else { continue };
            let Some((idx, mac)) = r.nic else { continue };
            if vm.nics.last().is_none_or(|n| n.index != idx) {
                vm.nics.push(Nic {
                    index: idx,
                    mac,
                    host_interface: host_ifname(&r.if_prefix, idx)?,
                    addresses: Vec::new(),
                });
            }
            let Some((k, block_id)) = r.address else {
                continue;
            };
            if let Entry::Vacant(slot) = blocks.entry(block_id) {
                slot.insert(self.block_by_id(tx, block_id).await?);
            }
            let (Some(c), Some(n), Some(b), Some(nic)) = (
                clusters.get(&r.cluster),
                nodes.get(&r.node),
                blocks.get(&block_id),
                vm.nics.last_mut(),
            ) else {
                continue;
            };
            nic.addresses.push(nic_address(c, n, b, key::addr(k)));
        }
        Ok(out)
    }

    pub(crate) async fn vm_tx(&self, tx: &mut Tx, name: &str) -> Result<Vm> {
        self.load_vms(
            tx,
            "v.name = $1 AND CAST($2 AS TEXT) IS NULL",
            Some(name),
            None,
        )
        .await?
        .pop()
        .ok_or_else(|| Error::not_found("vm", name))
    }

    pub(crate) async fn vms_tx(&self, tx: &mut Tx, f: &AddressFilter) -> Result<Vec<Vm>> {
        if let Some(c) = &f.cluster {
            self.load_cluster(tx, c).await?;
        }
        if let Some(n) = &f.node {
            self.load_node(tx, n).await?;
        }
        self.load_vms(
            tx,
            "(CAST($1 AS TEXT) IS NULL OR c.name = $1) AND (CAST($2 AS TEXT) IS NULL OR n.name = $2)",
            f.cluster.as_deref(),
            f.node.as_deref(),
        )
        .await
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
            &json!({"from": from.name, "to": to_node.name}),
        )
        .await?;
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
            &json!({"cluster": vm.cluster, "node": vm.node}),
        )
        .await?;
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
