//! Addresses: who holds what now, reservations, release, history, usage.

use serde_json::json;
use sqlx::any::AnyRow;
use vmfabric_ipam::{Key, key};
use vmfabric_model::view::{
    Allocation, FreeRange, FreeSpace, HistoryEntry, Holder, ReleaseResult, Released, Usage,
};
use vmfabric_model::{Block, Error, Result, Timestamp};

use super::alloc;
use super::clusters::{BLOCK_COLS, BLOCK_FROM, block_from_row};
use super::vms::parse_addr;
use super::{Counters, RESERVED, RowExt, SqlStore, Tx, USED, db, kb};
use crate::AddressFilter;

fn holder_from_row(row: &AnyRow) -> Result<Holder> {
    Ok(match row.text("kind")?.as_str() {
        "vm" => Holder::Vm {
            vm: row
                .opt_text("vm")?
                .ok_or_else(|| super::corrupt("allocation without VM"))?,
            nic: row
                .opt_int("nic_idx")?
                .and_then(|i| u8::try_from(i).ok())
                .unwrap_or(0),
            mac: row.opt_parsed("mac")?,
        },
        _ => Holder::Reserved {
            note: row.opt_text("note")?,
        },
    })
}

fn block_text(row: &AnyRow) -> Result<String> {
    let first = row.key("bfirst")?;
    let last = row.key("blast")?;
    Ok(match row.opt_int("prefix_len")? {
        Some(len) => format!("{}/{len}", key::addr(first)),
        None => vmfabric_ipam::Range::new(first, last.max(first)).to_string(),
    })
}

const ALLOCATION_SELECT: &str = "SELECT a.address, a.kind, a.vm, a.nic_idx, a.mac, a.note, a.cluster, a.since, COALESCE(vn.name, bn.name) AS node_name, b.first AS bfirst, b.last AS blast, b.prefix_len \
     FROM allocations a JOIN blocks b ON b.id = a.block_id LEFT JOIN nodes bn ON bn.id = b.node_id \
     LEFT JOIN nics ni ON ni.id = a.nic_id LEFT JOIN vms v ON v.id = ni.vm_id LEFT JOIN nodes vn ON vn.id = v.node_id";

fn allocation_from_row(row: &AnyRow) -> Result<Allocation> {
    Ok(Allocation {
        address: row.ip("address")?,
        holder: holder_from_row(row)?,
        cluster: row.text("cluster")?,
        node: row.opt_text("node_name")?,
        block: block_text(row)?,
        since: Timestamp(row.int("since")?),
    })
}

impl SqlStore {
    /// Who holds `k` now, if anyone.
    pub(crate) async fn active_holder(&self, tx: &mut Tx, k: Key) -> Result<Option<Holder>> {
        let row = sqlx::query("SELECT kind, vm, nic_idx, mac, note FROM allocations WHERE address = $1 AND until IS NULL")
            .bind(kb(k))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        row.as_ref().map(holder_from_row).transpose()
    }

    async fn check_filter(&self, tx: &mut Tx, f: &AddressFilter) -> Result<()> {
        if let Some(c) = &f.cluster {
            self.load_cluster(tx, c).await?;
        }
        if let Some(n) = &f.node {
            self.load_node(tx, n).await?;
        }
        Ok(())
    }

    pub(crate) async fn allocations_tx(
        &self,
        tx: &mut Tx,
        f: &AddressFilter,
    ) -> Result<Vec<Allocation>> {
        self.check_filter(tx, f).await?;
        let sql = format!(
            "{ALLOCATION_SELECT} WHERE a.until IS NULL AND (CAST($1 AS TEXT) IS NULL OR a.cluster = $1) AND (CAST($2 AS TEXT) IS NULL OR COALESCE(vn.name, bn.name) = $2) ORDER BY a.address"
        );
        let rows = sqlx::query(SqlStore::dynamic(sql))
            .bind(f.cluster.as_deref())
            .bind(f.node.as_deref())
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        rows.iter().map(allocation_from_row).collect()
    }

    /// Blocks matching a filter: a cluster's networks and node ranges, a
    /// node's ranges (and, for to-cluster types, its cluster's networks).
    async fn filtered_blocks(&self, tx: &mut Tx, f: &AddressFilter) -> Result<Vec<Block>> {
        self.check_filter(tx, f).await?;
        let node_cluster = match &f.node {
            Some(n) => Some(self.load_node(tx, n).await?.1.cluster),
            None => None,
        };
        let sql = format!(
            "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE (CAST($1 AS TEXT) IS NULL OR c.name = $1) AND (CAST($2 AS TEXT) IS NULL OR n.name = $2 OR (b.node_id IS NULL AND c.name = $3)) ORDER BY c.name, b.first"
        );
        let rows = sqlx::query(SqlStore::dynamic(sql))
            .bind(f.cluster.as_deref())
            .bind(f.node.as_deref())
            .bind(node_cluster.as_deref())
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        rows.iter().map(block_from_row).collect()
    }

    pub(crate) async fn free_space_tx(
        &self,
        tx: &mut Tx,
        f: &AddressFilter,
        limit: usize,
    ) -> Result<Vec<FreeSpace>> {
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX - 1);
        let mut out = Vec::new();
        for b in self.filtered_blocks(tx, f).await? {
            let rows = sqlx::query(
                "SELECT first, last FROM free_ranges WHERE block_id = $1 ORDER BY first LIMIT $2",
            )
            .bind(b.id)
            .bind(limit_i + 1)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
            let mut more = rows.len() > limit;
            let mut ranges = Vec::new();
            for r in rows.iter().take(limit) {
                let (first, last) = (r.key("first")?, r.key("last")?);
                ranges.push(FreeRange {
                    first: key::addr(first),
                    last: key::addr(last),
                    count: vmfabric_ipam::Range::new(first, last.max(first)).len(),
                });
            }
            let rel = sqlx::query("SELECT address, usable_at FROM released WHERE block_id = $1 ORDER BY usable_at, address LIMIT $2")
                .bind(b.id)
                .bind(limit_i + 1)
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?;
            more |= rel.len() > limit;
            let released = rel
                .iter()
                .take(limit)
                .map(|r| {
                    Ok(Released {
                        address: r.ip("address")?,
                        usable_at: Timestamp(r.int("usable_at")?),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            out.push(FreeSpace {
                cluster: b.cluster.clone(),
                node: b.node.clone(),
                block: b.text(),
                ranges,
                released,
                more,
            });
        }
        Ok(out)
    }

    pub(crate) async fn reserve_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        ip: &str,
        note: Option<&str>,
    ) -> Result<Allocation> {
        let addr = parse_addr(ip)?;
        let k = key::key(addr);
        let b = self.block_containing(tx, k).await?.ok_or_else(|| {
            Error::invalid(
                "address",
                addr,
                "the address is in no network and no node range of this installation",
            )
        })?;
        let (_, c) = self.load_cluster(tx, &b.cluster).await?;
        self.lock_block(tx, b.id).await?;
        if !alloc::take(tx, counters, &SqlStore::block_alloc(&c, &b), k).await? {
            let why = self.describe_unavailable(tx, &b, k).await?;
            return Err(Error::conflict(
                "address",
                addr,
                format!("cannot reserve: the address is {why}"),
            ));
        }
        let now = self.now().0;
        sqlx::query("INSERT INTO allocations (address, block_id, kind, note, cluster, node, since) VALUES ($1, $2, 'reserved', $3, $4, $5, $6)")
            .bind(kb(k))
            .bind(b.id)
            .bind(note)
            .bind(&b.cluster)
            .bind(b.node.as_deref())
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        counters.add(b.id, RESERVED, 1);
        self.log_change(tx, "ip.reserve", &addr.to_string(), &json!({"note": note}))
            .await?;
        Ok(Allocation {
            address: addr,
            holder: Holder::Reserved {
                note: note.map(String::from),
            },
            cluster: b.cluster.clone(),
            node: b.node.clone(),
            block: b.text(),
            since: Timestamp(now),
        })
    }

    pub(crate) async fn release_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        ip: &str,
    ) -> Result<ReleaseResult> {
        let addr = parse_addr(ip)?;
        let k = key::key(addr);
        let not_held = || {
            Error::conflict(
                "address",
                addr,
                "the address is not held by anyone: nothing to release",
            )
        };
        // Hold the block before reading the holding: two releases of one
        // address (or a release and a VM delete) on PostgreSQL would
        // otherwise both see it held and both give it back. Blocks are
        // disjoint, so a holding lives in the block containing its address.
        let b = self.block_containing(tx, k).await?.ok_or_else(not_held)?;
        self.lock_block(tx, b.id).await?;
        let row = sqlx::query("SELECT id, block_id, kind, vm, nic_idx, mac, note FROM allocations WHERE address = $1 AND until IS NULL")
            .bind(kb(k))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .ok_or_else(not_held)?;
        if row.int("block_id")? != b.id {
            return Err(super::corrupt(format!(
                "holding of {addr} outside its block"
            )));
        }
        let holder = holder_from_row(&row)?;
        let (_, c) = self.load_cluster(tx, &b.cluster).await?;
        let now = self.now().0;
        let ended =
            sqlx::query("UPDATE allocations SET until = $1 WHERE id = $2 AND until IS NULL")
                .bind(now)
                .bind(row.int("id")?)
                .execute(&mut **tx)
                .await
                .map_err(db)?
                .rows_affected();
        if ended != 1 {
            return Err(Error::conflict(
                "address",
                addr,
                "the address was released by someone else meanwhile: nothing to release",
            ));
        }
        let usable_at =
            alloc::give_back(tx, counters, &SqlStore::block_alloc(&c, &b), k, now).await?;
        counters.add(
            b.id,
            if matches!(holder, Holder::Vm { .. }) {
                USED
            } else {
                RESERVED
            },
            -1,
        );
        self.log_change(
            tx,
            "ip.release",
            &addr.to_string(),
            &json!({"holder": holder.describe()}),
        )
        .await?;
        Ok(ReleaseResult {
            address: addr,
            holder,
            usable_at: Timestamp(usable_at),
            cooldown: c.cooldown,
        })
    }

    pub(crate) async fn history_tx(
        &self,
        tx: &mut Tx,
        ip: &str,
        at: Option<Timestamp>,
    ) -> Result<Vec<HistoryEntry>> {
        let addr = parse_addr(ip)?;
        let rows = sqlx::query(
            "SELECT kind, vm, nic_idx, mac, note, cluster, node, since, until FROM allocations WHERE address = $1 AND (CAST($2 AS BIGINT) IS NULL OR (since <= $2 AND (until IS NULL OR until > $2))) ORDER BY since, id",
        )
        .bind(kb(key::key(addr)))
        .bind(at.map(|t| t.0))
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    address: addr,
                    holder: holder_from_row(r)?,
                    cluster: r.text("cluster")?,
                    node: r.opt_text("node")?,
                    since: Timestamp(r.int("since")?),
                    until: r.opt_int("until")?.map(Timestamp),
                })
            })
            .collect()
    }

    pub(crate) async fn usage_tx(&self, tx: &mut Tx, cluster: Option<&str>) -> Result<Vec<Usage>> {
        let f = AddressFilter {
            cluster: cluster.map(String::from),
            node: None,
        };
        let now = self.now().0;
        let mut out = Vec::new();
        for b in self.filtered_blocks(tx, &f).await? {
            let (used, reserved, _) = self.block_counts(tx, b.id).await?;
            let cooling = sqlx::query(
                "SELECT COUNT(*) AS n FROM released WHERE block_id = $1 AND usable_at > $2",
            )
            .bind(b.id)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?
            .int("n")?;
            let n = |v: i64| u128::try_from(v).map_err(|_| super::corrupt("negative counter"));
            let (used, reserved, cooling) = (n(used)?, n(reserved)?, n(cooling)?);
            let total = b.range.len();
            let system = self.excluded_count(tx, &b).await?;
            let free = total
                .checked_sub(system + used + reserved + cooling)
                .ok_or_else(|| {
                    super::corrupt(format!("counters of {} exceed its size", b.label()))
                })?;
            out.push(Usage {
                cluster: b.cluster.clone(),
                node: b.node.clone(),
                block: b.text(),
                role: b.role,
                family: b.family().name().to_string(),
                total,
                system,
                used,
                reserved,
                cooling,
                free,
            });
        }
        Ok(out)
    }
}
