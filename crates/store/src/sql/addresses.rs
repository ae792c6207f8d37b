//! Addresses: who holds what now, reservations, release, history, usage.

use serde_json::json;
use sqlx::any::AnyRow;
use vmfabric_ipam::Family;
use vmfabric_ipam::{Key, key};
use vmfabric_model::view::{
    Allocation, FreeRange, FreeSpace, HistoryEntry, Holder, ReleaseResult, Released, Usage,
};
use vmfabric_model::{Block, Cluster, Error, NetworkType, Result, Timestamp};

use super::alloc;
use super::clusters::{
    BLOCK_COLS, BLOCK_FROM, address_cursor, address_next, block_cursor, block_from_row, block_next,
};
use super::vms::parse_addr;
use super::{Counters, RESERVED, Reach, RowExt, SqlStore, Tx, USED, db, kb};
use crate::{AddressFilter, Page, PageRequest, ReserveNext};

/// Where `reserve --next` (or a VM's extra address) takes an address from.
pub(crate) enum Source {
    /// A to-cluster pool: the cluster's networks.
    Pool(i64),
    /// A routing node's subnets, ranges and IPv6 /64.
    Node(i64),
    /// One network or range.
    One(Block),
}

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

/// Columns of an address listing. `a.node` is the node that carries the
/// address now: a VM's node (moved with it on migration), or the node
/// whose range holds a reservation.
const ALLOCATION_SELECT: &str = "SELECT a.address, a.kind, a.vm, a.nic_idx, a.mac, a.note, a.cluster, a.since, a.node AS node_name, b.first AS bfirst, b.last AS blast, b.prefix_len \
     FROM allocations a JOIN blocks b ON b.id = a.block_id";

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

    pub(crate) async fn allocations_tx(
        &self,
        tx: &mut Tx,
        f: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Allocation>> {
        let size = page.size()?;
        let from = address_cursor(page)?;
        let cluster = match &f.cluster {
            Some(c) => Some(self.load_cluster(tx, c).await?),
            None => None,
        };
        let node = match &f.node {
            Some(n) => Some(self.load_node(tx, n).await?),
            None => None,
        };
        if let (Some((_, c)), Some((_, n))) = (&cluster, &node)
            && c.name != n.cluster
        {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let probe = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let rows = if f.reserved {
            // Reservations have an index of their own; they are few, so
            // the cluster and node conditions only filter it.
            let sql = format!(
                "{ALLOCATION_SELECT} WHERE a.until IS NULL AND a.kind = 'reserved' AND a.address >= $1 AND (a.cluster = $2 OR $3 = 0) AND (a.node = $4 OR $5 = 0) ORDER BY a.address LIMIT $6"
            );
            sqlx::query(SqlStore::dynamic(sql))
                .bind(kb(from))
                .bind(f.cluster.as_deref().unwrap_or_default())
                .bind(i64::from(f.cluster.is_some()))
                .bind(f.node.as_deref().unwrap_or_default())
                .bind(i64::from(f.node.is_some()))
                .bind(probe)
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?
        } else if let Some((nid, n)) = &node {
            // A node's addresses: its VMs' (through their NICs) and the
            // reservations in its own ranges. Bounded by the node's size.
            let vm_sql = format!(
                "{ALLOCATION_SELECT} JOIN nics ni ON ni.id = a.nic_id JOIN vms v ON v.id = ni.vm_id WHERE v.node_id = $1 AND a.until IS NULL AND a.address >= $2 ORDER BY a.address LIMIT $3"
            );
            let mut rows = sqlx::query(SqlStore::dynamic(vm_sql))
                .bind(*nid)
                .bind(kb(from))
                .bind(probe)
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?;
            let blocks = sqlx::query(
                "SELECT first, last FROM blocks WHERE node_id = $1 AND last >= $2 ORDER BY first",
            )
            .bind(*nid)
            .bind(kb(from))
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
            for b in blocks {
                let sql = format!(
                    "{ALLOCATION_SELECT} WHERE a.until IS NULL AND a.address >= $1 AND a.address <= $2 AND a.kind = 'reserved' ORDER BY a.address LIMIT $3"
                );
                let first = b.key("first")?.max(from);
                rows.extend(
                    sqlx::query(SqlStore::dynamic(sql))
                        .bind(kb(first))
                        .bind(kb(b.key("last")?))
                        .bind(probe)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db)?,
                );
            }
            let mut items = rows
                .iter()
                .map(allocation_from_row)
                .collect::<Result<Vec<_>>>()?;
            items.retain(|a| a.cluster == n.cluster);
            items.sort_by_key(|a| key::key(a.address));
            items.truncate(size + 1);
            return Ok(Page::from_probe(items, size, |a| {
                address_next(key::key(a.address))
            }));
        } else if let Some((cid, _)) = &cluster {
            return self.cluster_allocations(tx, *cid, from, size).await;
        } else {
            let sql = format!(
                "{ALLOCATION_SELECT} WHERE a.until IS NULL AND a.address >= $1 ORDER BY a.address LIMIT $2"
            );
            sqlx::query(SqlStore::dynamic(sql))
                .bind(kb(from))
                .bind(probe)
                .fetch_all(&mut **tx)
                .await
                .map_err(db)?
        };
        let items = rows
            .iter()
            .map(allocation_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_probe(items, size, |a| {
            address_next(key::key(a.address))
        }))
    }

    /// A cluster's addresses in address order: its blocks in order, each
    /// read through the index of active holdings from where the page
    /// starts, skipping blocks that hold nothing. Every statement finds its
    /// rows by key, and no page sorts more than its own rows.
    async fn cluster_allocations(
        &self,
        tx: &mut Tx,
        cid: i64,
        from: Key,
        size: usize,
    ) -> Result<Page<Allocation>> {
        let mut items: Vec<Allocation> = Vec::new();
        // The block holding `from`, then those after it.
        let mut start = sqlx::query(
            "SELECT first FROM blocks WHERE cluster_id = $1 AND first <= $2 ORDER BY first DESC LIMIT 1",
        )
        .bind(cid)
        .bind(kb(from))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .map(|r| r.key("first"))
        .transpose()?
        .unwrap_or(from);
        const BLOCKS_AT_ONCE: i64 = 64;
        'blocks: loop {
            let blocks = sqlx::query(
                "SELECT first, last, used + reserved AS held FROM blocks WHERE cluster_id = $1 AND first >= $2 ORDER BY first LIMIT $3",
            )
            .bind(cid)
            .bind(kb(start))
            .bind(BLOCKS_AT_ONCE)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
            let last_batch = blocks.len() < usize::try_from(BLOCKS_AT_ONCE).unwrap_or(usize::MAX);
            for b in &blocks {
                let (first, last) = (b.key("first")?, b.key("last")?);
                start = first.saturating_add(1);
                if b.int("held")? == 0 || last < from {
                    continue;
                }
                let want = size + 1 - items.len();
                let sql = format!(
                    "{ALLOCATION_SELECT} WHERE a.until IS NULL AND a.address >= $1 AND a.address <= $2 ORDER BY a.address LIMIT $3"
                );
                let rows = sqlx::query(SqlStore::dynamic(sql))
                    .bind(kb(first.max(from)))
                    .bind(kb(last))
                    .bind(i64::try_from(want).unwrap_or(i64::MAX))
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db)?;
                for r in &rows {
                    items.push(allocation_from_row(r)?);
                }
                if items.len() > size {
                    break 'blocks;
                }
            }
            if last_batch {
                break;
            }
        }
        Ok(Page::from_probe(items, size, |a| {
            address_next(key::key(a.address))
        }))
    }

    /// Blocks matching a filter, a page of them in address order: a
    /// cluster's networks and node ranges, a node's ranges (and, for
    /// to-cluster types, its cluster's networks), or all.
    async fn filtered_blocks(
        &self,
        tx: &mut Tx,
        f: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Block>> {
        let size = page.size()?;
        let from = block_cursor(page)?;
        let probe = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let cluster = match &f.cluster {
            Some(c) => Some(self.load_cluster(tx, c).await?),
            None => None,
        };
        let rows = match (&f.node, &cluster) {
            (Some(n), _) => {
                let (nid, node) = self.load_node(tx, n).await?;
                if cluster
                    .as_ref()
                    .is_some_and(|(_, c)| c.name != node.cluster)
                {
                    Vec::new()
                } else {
                    let (cid, _) = self.load_cluster(tx, &node.cluster).await?;
                    let sql = format!(
                        "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.cluster_id = $1 AND b.node_id IS NULL AND b.first >= $2 ORDER BY b.first LIMIT $3"
                    );
                    let mut rows = sqlx::query(SqlStore::dynamic(sql))
                        .bind(cid)
                        .bind(from.clone())
                        .bind(probe)
                        .fetch_all(&mut **tx)
                        .await
                        .map_err(db)?;
                    let sql = format!(
                        "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.node_id = $1 AND b.first >= $2 ORDER BY b.first LIMIT $3"
                    );
                    rows.extend(
                        sqlx::query(SqlStore::dynamic(sql))
                            .bind(nid)
                            .bind(from)
                            .bind(probe)
                            .fetch_all(&mut **tx)
                            .await
                            .map_err(db)?,
                    );
                    rows
                }
            }
            (None, Some((cid, _))) => {
                let sql = format!(
                    "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.cluster_id = $1 AND b.first >= $2 ORDER BY b.first LIMIT $3"
                );
                sqlx::query(SqlStore::dynamic(sql))
                    .bind(*cid)
                    .bind(from)
                    .bind(probe)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db)?
            }
            (None, None) => {
                let sql = format!(
                    "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.first >= $1 ORDER BY b.first LIMIT $2"
                );
                sqlx::query(SqlStore::dynamic(sql))
                    .bind(from)
                    .bind(probe)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db)?
            }
        };
        let mut blocks = rows
            .iter()
            .map(block_from_row)
            .collect::<Result<Vec<_>>>()?;
        blocks.sort_by_key(|b| b.range.first);
        blocks.truncate(size + 1);
        Ok(Page::from_probe(blocks, size, block_next))
    }

    pub(crate) async fn free_space_tx(
        &self,
        tx: &mut Tx,
        f: &AddressFilter,
        limit: usize,
        page: &PageRequest,
    ) -> Result<Page<FreeSpace>> {
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX - 1);
        let blocks = self.filtered_blocks(tx, f, page).await?;
        let mut out = Vec::with_capacity(blocks.items.len());
        for b in blocks.items {
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
        Ok(Page {
            items: out,
            next: blocks.next,
        })
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
        self.record_reservation(tx, counters, &b, addr, note).await
    }

    /// Reserve the next free address of a cluster's pool, a node's ranges
    /// (or, for to-cluster types, the pool its VMs use) or one network or
    /// range: the same blocks, in the same order, as a VM allocation.
    pub(crate) async fn reserve_next_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        r: &ReserveNext,
    ) -> Result<Allocation> {
        let mut family = if r.ipv6 { Family::V6 } else { Family::V4 };
        let (cluster, label, source) = match (&r.cluster, &r.node, &r.network) {
            (Some(c), None, None) => {
                let (cid, cluster) = self.load_cluster(tx, c).await?;
                if cluster.network_type == NetworkType::Routing {
                    return Err(Error::invalid(
                        "cluster",
                        c,
                        "a routing cluster has no pool: its addresses belong to its nodes; name one with --node",
                    ));
                }
                let label = format!("the {} pool of cluster {}", family.name(), cluster.name);
                (cluster, label, Source::Pool(cid))
            }
            (None, Some(n), None) => {
                let (nid, node) = self.load_node(tx, n).await?;
                let (cid, cluster) = self.load_cluster(tx, &node.cluster).await?;
                match cluster.network_type {
                    NetworkType::Routing => {
                        let label = format!("the {} ranges of node {}", family.name(), node.name);
                        (cluster, label, Source::Node(nid))
                    }
                    _ => {
                        let label =
                            format!("the {} pool of cluster {}", family.name(), cluster.name);
                        (cluster, label, Source::Pool(cid))
                    }
                }
            }
            (None, None, Some(text)) => {
                let range = SqlStore::block_text(
                    "network",
                    text,
                    "a network (CIDR) or a node range (A-B)",
                )?;
                let b = self
                    .block_containing(tx, range.first)
                    .await?
                    .filter(|b| b.range == range)
                    .ok_or_else(|| Error::not_found("network", text))?;
                let (_, cluster) = self.load_cluster(tx, &b.cluster).await?;
                family = b.family();
                (cluster, format!("network {}", b.text()), Source::One(b))
            }
            _ => {
                return Err(Error::invalid(
                    "next",
                    format!(
                        "cluster={} node={} network={}",
                        r.cluster.as_deref().unwrap_or("-"),
                        r.node.as_deref().unwrap_or("-"),
                        r.network.as_deref().unwrap_or("-")
                    ),
                    "name exactly one of cluster, node or network to take the next free address from",
                ));
            }
        };
        let (b, k) = self
            .take_next_from(tx, counters, &cluster, &source, family, &label)
            .await?;
        self.record_reservation(tx, counters, &b, key::addr(k), r.note.as_deref())
            .await
    }

    /// Take the next free address of `family` from the first block of
    /// `source` that has one (locking it), or say how full they all are.
    pub(crate) async fn take_next_from(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        cluster: &Cluster,
        source: &Source,
        family: Family,
        label: &str,
    ) -> Result<(Block, Key)> {
        let now = self.now().0;
        let (mut used, mut usable, mut cooling) = (0u128, 0u128, 0u128);
        let mut after = None;
        loop {
            let blocks = self.source_blocks(tx, source, after).await?;
            let Some(last) = blocks.last() else { break };
            after = Some(last.range.first);
            for b in blocks.iter().filter(|b| b.family() == family) {
                self.lock_block(tx, b.id).await?;
                let ba = SqlStore::block_alloc(cluster, b);
                if let Some(k) = alloc::take_next(tx, counters, &ba, now).await? {
                    return Ok((b.clone(), k));
                }
                let (u, rs, c) = self.block_counts(tx, b.id).await?;
                used += u128::try_from(u + rs).unwrap_or(0);
                cooling += u128::try_from(c).unwrap_or(0);
                usable += b.range.len() - self.excluded_count(tx, b).await?;
            }
            if matches!(source, Source::One(_)) {
                break;
            }
        }
        Err(Error::Exhausted {
            pool: label.to_string(),
            family: family.name().to_string(),
            used,
            usable,
            cooling,
        })
    }

    /// The next blocks of `source` after `after`, in address order.
    pub(crate) async fn source_blocks(
        &self,
        tx: &mut Tx,
        source: &Source,
        after: Option<Key>,
    ) -> Result<Vec<Block>> {
        let (filter, id) = match source {
            Source::One(b) => {
                return Ok(if after.is_none() {
                    vec![b.clone()]
                } else {
                    Vec::new()
                });
            }
            Source::Pool(cid) => (
                "b.cluster_id = $1 AND b.node_id IS NULL AND b.role = 'network'",
                *cid,
            ),
            Source::Node(nid) => ("b.node_id = $1", *nid),
        };
        let sql = format!(
            "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE {filter} AND b.first > $2 ORDER BY b.first LIMIT 64"
        );
        sqlx::query(SqlStore::dynamic(sql))
            .bind(id)
            .bind(after.map(kb).unwrap_or_default())
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?
            .iter()
            .map(block_from_row)
            .collect()
    }

    /// Write a reservation of `addr` (already taken from `b`'s free space).
    async fn record_reservation(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        b: &Block,
        addr: std::net::IpAddr,
        note: Option<&str>,
    ) -> Result<Allocation> {
        if let Some(n) = note {
            vmfabric_model::names::check_note(n)?;
        }
        let k = key::key(addr);
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
        self.log_change(
            tx,
            "ip.reserve",
            &addr.to_string(),
            Some(&b.cluster),
            Reach::None,
            &json!({"note": note}),
        );
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
        let row = sqlx::query("SELECT id, block_id, kind, vm, nic_idx, mac, note, node FROM allocations WHERE address = $1 AND until IS NULL")
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
        // A VM's address leaves its node's plan; a reservation is in none.
        let node = row.opt_text("node")?;
        let reach = match (&holder, node.as_deref()) {
            (Holder::Vm { .. }, Some(n)) => Reach::Nodes(&[n]),
            _ => Reach::None,
        };
        self.log_change(
            tx,
            "ip.release",
            &addr.to_string(),
            Some(&b.cluster),
            reach,
            &json!({"holder": holder.describe()}),
        );
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
        page: &PageRequest,
    ) -> Result<Page<HistoryEntry>> {
        let addr = parse_addr(ip)?;
        let size = page.size()?;
        let probe = i64::try_from(size + 1).unwrap_or(i64::MAX);
        // Oldest first: (since, id) orders holdings that began together.
        let (since, id) = match &page.after {
            None => (i64::MIN, i64::MIN),
            Some(a) => a
                .split_once(':')
                .and_then(|(s, i)| Some((s.parse().ok()?, i.parse().ok()?)))
                .ok_or_else(|| super::bad_cursor(a))?,
        };
        const COLS: &str =
            "SELECT id, kind, vm, nic_idx, mac, note, cluster, node, since, until FROM allocations";
        let rows = match at {
            None => sqlx::query(SqlStore::dynamic(format!(
                "{COLS} WHERE address = $1 AND (since, id) > ($2, $3) ORDER BY since, id LIMIT $4"
            )))
            .bind(kb(key::key(addr)))
            .bind(since)
            .bind(id)
            .bind(probe),
            Some(t) => sqlx::query(SqlStore::dynamic(format!(
                "{COLS} WHERE address = $1 AND (since, id) > ($2, $3) AND since <= $4 AND (until IS NULL OR until > $4) ORDER BY since, id LIMIT $5"
            )))
            .bind(kb(key::key(addr)))
            .bind(since)
            .bind(id)
            .bind(t.0)
            .bind(probe),
        }
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        let entries = rows
            .iter()
            .map(|r| {
                Ok((
                    r.int("id")?,
                    HistoryEntry {
                        address: addr,
                        holder: holder_from_row(r)?,
                        cluster: r.text("cluster")?,
                        node: r.opt_text("node")?,
                        since: Timestamp(r.int("since")?),
                        until: r.opt_int("until")?.map(Timestamp),
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let page = Page::from_probe(entries, size, |(id, e)| format!("{}:{id}", e.since.0));
        Ok(Page {
            items: page.items.into_iter().map(|(_, e)| e).collect(),
            next: page.next,
        })
    }

    pub(crate) async fn usage_tx(
        &self,
        tx: &mut Tx,
        cluster: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<Usage>> {
        let f = AddressFilter {
            cluster: cluster.map(String::from),
            ..AddressFilter::default()
        };
        let now = self.now().0;
        let blocks = self.filtered_blocks(tx, &f, page).await?;
        let mut out = Vec::with_capacity(blocks.items.len());
        for b in blocks.items {
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
        Ok(Page {
            items: out,
            next: blocks.next,
        })
    }
}
