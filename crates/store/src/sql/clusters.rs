//! Clusters, their networks, and blocks in general.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::json;
use sqlx::any::AnyRow;
use vmfabric_ipam::{Cidr, Range, RangeSet, key};
use vmfabric_model::block::system_holes;
use vmfabric_model::cluster::{Community, Fabric, RouteReflector};
use vmfabric_model::network::MAX_EXCLUSION_CHANGE;
use vmfabric_model::view::{ClusterSummary, Exclusion, NetworkView};
use vmfabric_model::{
    Block, BlockRole, Cluster, ClusterInput, ClusterPatch, Error, NetworkInput, NetworkPatch,
    NetworkType, Result, Seconds,
};

use super::alloc::{self, BlockAlloc};
use super::{Reach, RowExt, SqlStore, Tx, db, kb};

/// The most holdings one `--force` releases (or VMs it deletes): each is
/// a few row operations and a change-log entry, and one change stays one
/// short transaction.
pub(crate) const MAX_FORCED: i64 = 4096;

/// A holding as refusals name it: `192.0.2.9 (VM web1)` or `(reserved)`.
fn holder_label(row: &AnyRow) -> Result<String> {
    let addr = key::addr(row.key("address")?);
    Ok(match row.opt_text("vm")? {
        Some(vm) => format!("{addr} (VM {vm})"),
        None => format!("{addr} (reserved)"),
    })
}
use crate::{Page, PageRequest};

/// Columns of a cluster row, in `cluster_from_row` order.
pub(crate) const CLUSTER_COLS: &str = "c.id AS cluster_id, c.name AS cluster_name, c.network_type, c.virtualization, c.vm_gateway, c.vm_gateway6, c.community, c.asn, c.route_reflectors, c.cooldown_s, c.reuse, c.dns AS cluster_dns, c.mtu AS cluster_mtu";

pub(crate) fn cluster_from_row(row: &AnyRow) -> Result<(i64, Cluster)> {
    let network_type: NetworkType = row
        .text("network_type")?
        .parse()
        .map_err(|_| super::corrupt("network_type"))?;
    let fabric = if network_type == NetworkType::IpFabric {
        let rrs: Vec<serde_json::Value> = serde_json::from_str(&row.text("route_reflectors")?)
            .map_err(|_| super::corrupt("route_reflectors"))?;
        let mut route_reflectors = Vec::new();
        for rr in rrs {
            let address: IpAddr = rr["address"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| super::corrupt("route reflector address"))?;
            let asn = rr["asn"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| super::corrupt("route reflector asn"))?;
            route_reflectors.push(RouteReflector { address, asn });
        }
        let community = row.text("community")?;
        Some(Fabric {
            vm_gateway: row.parsed::<Ipv4Addr>("vm_gateway")?,
            vm_gateway6: row.parsed::<Ipv6Addr>("vm_gateway6")?,
            community: Community::parse("community", &community)
                .map_err(|_| super::corrupt("community"))?,
            route_reflectors,
            asn: u32::try_from(row.int("asn")?).map_err(|_| super::corrupt("asn"))?,
        })
    } else {
        None
    };
    let cluster = Cluster {
        name: row.text("cluster_name")?,
        network_type,
        assignment: network_type.assignment(),
        virtualization: row.parsed("virtualization")?,
        fabric,
        cooldown: Seconds(
            u64::try_from(row.int("cooldown_s")?).map_err(|_| super::corrupt("cooldown"))?,
        ),
        reuse: row
            .text("reuse")?
            .parse()
            .map_err(|()| super::corrupt("reuse"))?,
        dns: super::dns_from_row(row, "cluster_dns")?.unwrap_or_default(),
        mtu: row
            .opt_int("cluster_mtu")?
            .map(|m| u16::try_from(m).map_err(|_| super::corrupt("mtu")))
            .transpose()?,
    };
    Ok((row.int("cluster_id")?, cluster))
}

/// Columns of a block row, in `block_from_row` order.
/// The reason of an operator's exclusion.
const OPERATOR: &str = "excluded by the operator";

pub(crate) const BLOCK_COLS: &str = "b.id AS block_id, b.role, b.first, b.last, b.prefix_len, b.gateway, c.name AS block_cluster, n.name AS block_node";

pub(crate) const BLOCK_FROM: &str =
    "blocks b JOIN clusters c ON c.id = b.cluster_id LEFT JOIN nodes n ON n.id = b.node_id";

pub(crate) fn block_from_row(row: &AnyRow) -> Result<Block> {
    let first = row.key("first")?;
    let last = row.key("last")?;
    if first > last {
        return Err(super::corrupt("block with first above last"));
    }
    let range = Range::new(first, last);
    let cidr = match row.opt_int("prefix_len")? {
        Some(len) => Some(
            u8::try_from(len)
                .ok()
                .and_then(|l| Cidr::new(key::addr(first), l).ok())
                .ok_or_else(|| super::corrupt("block prefix"))?,
        ),
        None => None,
    };
    let role = BlockRole::parse(&row.text("role")?).ok_or_else(|| super::corrupt("block role"))?;
    Ok(Block {
        id: row.int("block_id")?,
        cluster: row.text("block_cluster")?,
        node: row.opt_text("block_node")?,
        role,
        range,
        cidr,
        gateway: row.opt_parsed("gateway")?,
    })
}

/// The cursor of a listing in address order after `k`: the next address
/// (pages start at their cursor).
pub(crate) fn address_next(k: vmfabric_ipam::Key) -> String {
    key::addr(k.saturating_add(1)).to_string()
}

/// The cursor of a listing of blocks after `b`.
pub(crate) fn block_next(b: &Block) -> String {
    address_next(b.range.first)
}

/// The stored key a page in address order starts at (the lowest for the
/// first page).
pub(crate) fn address_cursor(page: &PageRequest) -> Result<vmfabric_ipam::Key> {
    match &page.after {
        None => Ok(0),
        Some(a) => {
            let ip: IpAddr = a.parse().map_err(|_| super::bad_cursor(a))?;
            Ok(key::key(ip))
        }
    }
}

pub(crate) fn block_cursor(page: &PageRequest) -> Result<Vec<u8>> {
    Ok(kb(address_cursor(page)?))
}

impl SqlStore {
    pub(crate) async fn load_cluster(&self, tx: &mut Tx, name: &str) -> Result<(i64, Cluster)> {
        let sql = format!("SELECT {CLUSTER_COLS} FROM clusters c WHERE c.name = $1");
        let row = sqlx::query(SqlStore::dynamic(sql))
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::not_found("cluster", name))?;
        cluster_from_row(&row)
    }

    /// The allocator view of a block of `cluster`.
    pub(crate) fn block_alloc(cluster: &Cluster, b: &Block) -> BlockAlloc {
        BlockAlloc {
            id: b.id,
            reuse: cluster.reuse,
            cooldown: cluster.cooldown.micros(),
        }
    }

    /// The block that contains `k`, anywhere in the installation.
    pub(crate) async fn block_containing(
        &self,
        tx: &mut Tx,
        k: vmfabric_ipam::Key,
    ) -> Result<Option<Block>> {
        let sql = format!(
            "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.first <= $1 ORDER BY b.first DESC LIMIT 1"
        );
        let row = sqlx::query(SqlStore::dynamic(sql))
            .bind(kb(k))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        match row {
            Some(r) => {
                let b = block_from_row(&r)?;
                Ok(b.range.contains(k).then_some(b))
            }
            None => Ok(None),
        }
    }

    /// A block of the installation that overlaps `r`, if any. Blocks are
    /// disjoint, so only the last one starting at or before `r.last` can.
    pub(crate) async fn block_overlapping(&self, tx: &mut Tx, r: Range) -> Result<Option<Block>> {
        let sql = format!(
            "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.first <= $1 ORDER BY b.first DESC LIMIT 1"
        );
        let row = sqlx::query(SqlStore::dynamic(sql))
            .bind(kb(r.last))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        match row {
            Some(row) => {
                let b = block_from_row(&row)?;
                Ok(b.range.overlaps(&r).then_some(b))
            }
            None => Ok(None),
        }
    }

    /// Store a new block with its free space: the block minus the system
    /// holes, the operator's exclusions and the node addresses inside it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_block(
        &self,
        tx: &mut Tx,
        cluster_id: i64,
        cluster: &Cluster,
        node_id: Option<i64>,
        role: BlockRole,
        range: Range,
        cidr: Option<Cidr>,
        gateway: Option<IpAddr>,
        exclusions: &[(Range, &str)],
        field: &str,
    ) -> Result<i64> {
        let text = cidr.map_or_else(|| range.to_string(), |c| c.to_string());
        if let Some(other) = self.block_overlapping(tx, range).await? {
            return Err(Error::conflict(
                field,
                &text,
                format!(
                    "overlaps {}; no two blocks of the installation may share an address",
                    other.label()
                ),
            ));
        }
        if let (Some(f), NetworkType::IpFabric) = (&cluster.fabric, cluster.network_type) {
            for gw in [IpAddr::V4(f.vm_gateway), IpAddr::V6(f.vm_gateway6)] {
                if range.contains(key::key(gw)) {
                    return Err(Error::conflict(
                        field,
                        &text,
                        format!(
                            "contains {gw}, the VM gateway of cluster {}, which must not be handed to a VM",
                            cluster.name
                        ),
                    ));
                }
            }
        }
        // Node addresses are unique in the installation; a block carves out
        // its own cluster's nodes (below), and may not contain another's.
        let nodes = sqlx::query(
            "SELECT na.address, n.id, n.name, n.cluster_id, c.name AS cluster FROM node_addresses na JOIN nodes n ON n.id = na.node_id JOIN clusters c ON c.id = n.cluster_id WHERE na.address >= $1 AND na.address <= $2 ORDER BY na.address",
        )
        .bind(kb(range.first))
        .bind(kb(range.last))
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for n in &nodes {
            if n.int("cluster_id")? != cluster_id {
                return Err(Error::conflict(
                    field,
                    &text,
                    format!(
                        "contains {}, the address of node {} of cluster {}",
                        n.ip("address")?,
                        n.text("name")?,
                        n.text("cluster")?
                    ),
                ));
            }
        }
        let now = self.now().0;
        let row = sqlx::query(
            "INSERT INTO blocks (cluster_id, node_id, role, first, last, prefix_len, gateway, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(cluster_id)
        .bind(node_id)
        .bind(role.as_str())
        .bind(kb(range.first))
        .bind(kb(range.last))
        .bind(cidr.map(|c| i64::from(c.prefix_len())))
        .bind(gateway.map(|g| g.to_string()))
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
        let id = row.int("id")?;
        let mut holes: Vec<(Range, String, Option<i64>)> =
            system_holes(cluster.network_type, role, cidr, gateway)
                .into_iter()
                .map(|(r, why)| (r, why.to_string(), None))
                .collect();
        for (x, why) in exclusions {
            holes.push((*x, why.to_string(), None));
        }
        // Addresses of the cluster's nodes inside the new block.
        for n in nodes {
            let k = n.key("address")?;
            holes.push((
                Range::single(k),
                format!("address of node {}", n.text("name")?),
                Some(n.int("id")?),
            ));
        }
        // A route reflector inside a VM pool keeps its address: a VM's /32
        // announced for it would pull the reflector's traffic to that VM.
        if let Some(f) = &cluster.fabric {
            for rr in &f.route_reflectors {
                let k = key::key(rr.address);
                if range.contains(k) {
                    holes.push((
                        Range::single(k),
                        format!("address of route reflector {}", rr.address),
                        None,
                    ));
                }
            }
        }
        for (r, why, node) in &holes {
            sqlx::query("INSERT INTO exclusions (block_id, first, last, reason, node_id) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(kb(r.first))
                .bind(kb(r.last))
                .bind(why.as_str())
                .bind(*node)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        let hole_ranges: Vec<Range> = holes.iter().map(|(r, _, _)| *r).collect();
        alloc::seed_block(tx, id, range, &hole_ranges).await?;
        Ok(id)
    }

    pub(crate) async fn exclusions_of(
        &self,
        tx: &mut Tx,
        block: i64,
    ) -> Result<Vec<(Range, String)>> {
        let rows = sqlx::query(
            "SELECT first, last, reason FROM exclusions WHERE block_id = $1 ORDER BY first",
        )
        .bind(block)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    Range::new(r.key("first")?, r.key("last")?),
                    r.text("reason")?,
                ))
            })
            .collect()
    }

    /// Addresses excluded from a block (the union of its exclusions).
    pub(crate) async fn excluded_count(&self, tx: &mut Tx, b: &Block) -> Result<u128> {
        let mut set = RangeSet::new();
        for (r, _) in self.exclusions_of(tx, b.id).await? {
            if let Some(i) = r.intersect(&b.range) {
                set.insert(i);
            }
        }
        Ok(set.count())
    }

    async fn network_view(&self, tx: &mut Tx, b: Block) -> Result<NetworkView> {
        let exclusions = self
            .exclusions_of(tx, b.id)
            .await?
            .into_iter()
            .map(|(r, reason)| Exclusion {
                range: r.to_string(),
                reason,
            })
            .collect();
        Ok(NetworkView {
            block: b,
            exclusions,
        })
    }

    async fn summary(&self, tx: &mut Tx, id: i64, cluster: Cluster) -> Result<ClusterSummary> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM blocks WHERE cluster_id = $1 AND role = 'network') AS networks, (SELECT COUNT(*) FROM nodes WHERE cluster_id = $1) AS nodes, (SELECT COUNT(*) FROM vms WHERE node_id IN (SELECT id FROM nodes WHERE cluster_id = $1)) AS vms",
        )
        .bind(id)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?;
        let count =
            |c: &str| -> Result<u64> { u64::try_from(row.int(c)?).map_err(|_| super::corrupt(c)) };
        Ok(ClusterSummary {
            networks: count("networks")?,
            nodes: count("nodes")?,
            vms: count("vms")?,
            cluster,
        })
    }

    pub(crate) async fn create_cluster_tx(
        &self,
        tx: &mut Tx,
        input: &ClusterInput,
    ) -> Result<Cluster> {
        let c = input.validate()?;
        let fabric = c.fabric.as_ref();
        let rrs: Vec<serde_json::Value> = fabric
            .map(|f| {
                f.route_reflectors
                    .iter()
                    .map(|r| json!({"address": r.address.to_string(), "asn": r.asn}))
                    .collect()
            })
            .unwrap_or_default();
        let row = sqlx::query(
            "INSERT INTO clusters (name, network_type, vm_gateway, vm_gateway6, community, asn, route_reflectors, cooldown_s, reuse, created_at, virtualization, dns, mtu) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(&c.name)
        .bind(c.network_type.as_str())
        .bind(fabric.map(|f| f.vm_gateway.to_string()))
        .bind(fabric.map(|f| f.vm_gateway6.to_string()))
        .bind(fabric.map(|f| f.community.to_string()))
        .bind(fabric.map(|f| i64::from(f.asn)))
        .bind(serde_json::Value::Array(rrs).to_string())
        .bind(i64::try_from(c.cooldown.0).unwrap_or(i64::MAX))
        .bind(c.reuse.name())
        .bind(self.now().0)
        .bind(c.virtualization.as_str())
        .bind(super::dns_text(Some(&c.dns)))
        .bind(c.mtu.map(i64::from))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        if row.is_none() {
            return Err(Error::conflict(
                "name",
                &c.name,
                "a cluster with this name exists",
            ));
        }
        self.log_change(
            tx,
            "cluster.create",
            &c.name,
            Some(&c.name),
            Reach::None,
            &json!({"type": c.network_type.as_str()}),
        );
        Ok(c)
    }

    /// Change a cluster in place: BGP settings, gateways, cool-down and
    /// reuse. A reflector that moves into a pool takes its address out of
    /// it (refused if a VM or reservation holds it); one that leaves gives
    /// it back. Every node of the cluster gets the new plan.
    pub(crate) async fn update_cluster_tx(
        &self,
        tx: &mut Tx,
        counters: &mut super::Counters,
        name: &str,
        patch: &ClusterPatch,
    ) -> Result<Cluster> {
        let (cid, old) = self.load_cluster(tx, name).await?;
        let new = patch.apply(&old)?;
        if let Some(f) = &new.fabric {
            for (field, gw) in [
                ("vm-gateway", IpAddr::V4(f.vm_gateway)),
                ("vm-gateway6", IpAddr::V6(f.vm_gateway6)),
            ] {
                if let Some(b) = self.block_containing(tx, key::key(gw)).await?
                    && b.cluster == new.name
                {
                    return Err(Error::conflict(
                        field,
                        gw,
                        format!(
                            "lies in {}; the VM gateway must not be an address a VM could get",
                            b.label()
                        ),
                    ));
                }
            }
        }
        let rrs = |c: &Cluster| -> Vec<IpAddr> {
            c.fabric
                .as_ref()
                .map(|f| f.route_reflectors.iter().map(|r| r.address).collect())
                .unwrap_or_default()
        };
        let (was, is) = (rrs(&old), rrs(&new));
        for gone in was.iter().filter(|a| !is.contains(a)) {
            let k = key::key(*gone);
            let Some(b) = self.block_containing(tx, k).await? else {
                continue;
            };
            if b.cluster != new.name {
                continue;
            }
            self.lock_block(tx, b.id).await?;
            sqlx::query("DELETE FROM exclusions WHERE block_id = $1 AND first = $2 AND last = $2 AND reason = $3")
                .bind(b.id)
                .bind(kb(k))
                .bind(format!("address of route reflector {gone}"))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            // Free again only if nothing else keeps it (the network's own
            // address, an operator's exclusion, a node).
            self.give_back_uncovered(tx, b.id, Range::single(k)).await?;
        }
        for came in is.iter().filter(|a| !was.contains(a)) {
            let k = key::key(*came);
            let Some(b) = self.block_containing(tx, k).await? else {
                continue;
            };
            if b.cluster != new.name {
                continue;
            }
            self.lock_block(tx, b.id).await?;
            if !alloc::take(tx, counters, &SqlStore::block_alloc(&new, &b), k).await? {
                let why = self.describe_unavailable(tx, &b, k).await?;
                return Err(Error::conflict(
                    "route-reflector",
                    came,
                    format!(
                        "the address lies in {} and is {why}; a reflector's address is never a VM's",
                        b.label()
                    ),
                ));
            }
            sqlx::query("INSERT INTO exclusions (block_id, first, last, reason, node_id) VALUES ($1, $2, $2, $3, NULL)")
                .bind(b.id)
                .bind(kb(k))
                .bind(format!("address of route reflector {came}"))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        let fabric = new.fabric.as_ref();
        let rr_json: Vec<serde_json::Value> = fabric
            .map(|f| {
                f.route_reflectors
                    .iter()
                    .map(|r| json!({"address": r.address.to_string(), "asn": r.asn}))
                    .collect()
            })
            .unwrap_or_default();
        sqlx::query(
            "UPDATE clusters SET vm_gateway = $1, vm_gateway6 = $2, community = $3, asn = $4, route_reflectors = $5, cooldown_s = $6, reuse = $7, dns = $8, mtu = $9 WHERE id = $10",
        )
        .bind(fabric.map(|f| f.vm_gateway.to_string()))
        .bind(fabric.map(|f| f.vm_gateway6.to_string()))
        .bind(fabric.map(|f| f.community.to_string()))
        .bind(fabric.map(|f| i64::from(f.asn)))
        .bind(serde_json::Value::Array(rr_json).to_string())
        .bind(i64::try_from(new.cooldown.0).unwrap_or(i64::MAX))
        .bind(new.reuse.name())
        .bind(super::dns_text(Some(&new.dns)))
        .bind(new.mtu.map(i64::from))
        .bind(cid)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        self.log_change(
            tx,
            "cluster.set",
            name,
            Some(name),
            Reach::Cluster,
            &json!({"before": old, "after": new}),
        );
        Ok(new)
    }

    pub(crate) async fn clusters_tx(
        &self,
        tx: &mut Tx,
        page: &PageRequest,
    ) -> Result<Page<ClusterSummary>> {
        let size = page.size()?;
        let sql = format!(
            "SELECT {CLUSTER_COLS} FROM clusters c WHERE c.name > $1 ORDER BY c.name LIMIT $2"
        );
        let rows = sqlx::query(SqlStore::dynamic(sql))
            .bind(page.after.clone().unwrap_or_default())
            .bind(i64::try_from(size + 1).unwrap_or(i64::MAX))
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let clusters = rows
            .iter()
            .map(cluster_from_row)
            .collect::<Result<Vec<_>>>()?;
        let page = Page::from_probe(clusters, size, |(_, c)| c.name.clone());
        let mut items = Vec::with_capacity(page.items.len());
        for (id, c) in page.items {
            items.push(self.summary(tx, id, c).await?);
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    pub(crate) async fn cluster_tx(&self, tx: &mut Tx, name: &str) -> Result<ClusterSummary> {
        let (id, c) = self.load_cluster(tx, name).await?;
        self.summary(tx, id, c).await
    }

    pub(crate) async fn delete_cluster_tx(&self, tx: &mut Tx, name: &str) -> Result<Cluster> {
        let (id, c) = self.load_cluster(tx, name).await?;
        let s = self.summary(tx, id, c.clone()).await?;
        if s.vms > 0 {
            return Err(Error::conflict(
                "cluster",
                name,
                format!("the cluster still has {} VMs; delete them first", s.vms),
            ));
        }
        let reserved =
            sqlx::query("SELECT CAST(COALESCE(SUM(reserved), 0) AS BIGINT) AS n FROM blocks WHERE cluster_id = $1")
                .bind(id)
                .fetch_one(&mut **tx)
                .await
                .map_err(db)?
                .int("n")?;
        if reserved > 0 {
            return Err(Error::conflict(
                "cluster",
                name,
                format!(
                    "{reserved} addresses of the cluster are reserved; release them first (`vmfabric ip list --cluster {name}`)"
                ),
            ));
        }
        let nodes = sqlx::query("SELECT id FROM nodes WHERE cluster_id = $1")
            .bind(id)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        for n in &nodes {
            self.revoke_node_tokens(tx, n.int("id")?).await?;
        }
        for sql in [
            "DELETE FROM blocks WHERE cluster_id = $1",
            "DELETE FROM nodes WHERE cluster_id = $1",
            "DELETE FROM clusters WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        self.log_change(
            tx,
            "cluster.delete",
            name,
            Some(name),
            Reach::Cluster,
            &json!({}),
        );
        Ok(c)
    }

    pub(crate) async fn add_network_tx(
        &self,
        tx: &mut Tx,
        cluster: &str,
        input: &NetworkInput,
    ) -> Result<NetworkView> {
        let (cid, c) = self.load_cluster(tx, cluster).await?;
        let spec = input.validate(&c)?;
        let r = spec.cidr.range();
        // A switching gateway that is some node's address is a mistake.
        if let Some(gw) = spec.gateway {
            let node = sqlx::query("SELECT n.name FROM node_addresses na JOIN nodes n ON n.id = na.node_id WHERE na.address = $1")
                .bind(kb(key::key(gw)))
                .fetch_optional(&mut **tx)
                .await
                .map_err(db)?;
            if let Some(n) = node {
                return Err(Error::conflict(
                    "gateway",
                    gw,
                    format!(
                        "this is the address of node {}; the gateway is the data center's router",
                        n.text("name")?
                    ),
                ));
            }
        }
        let id = self
            .insert_block(
                tx,
                cid,
                &c,
                None,
                BlockRole::Network,
                r,
                Some(spec.cidr),
                spec.gateway,
                &spec
                    .exclusions
                    .iter()
                    .map(|x| (*x, OPERATOR))
                    .collect::<Vec<_>>(),
                "cidr",
            )
            .await?;
        // The pool is in every node's plan (on-link prefixes, announced
        // prefixes).
        self.log_change(
            tx,
            "network.add",
            &spec.cidr.to_string(),
            Some(cluster),
            Reach::Cluster,
            &json!({"cluster": cluster}),
        );
        let b = self.block_by_id(tx, id).await?;
        self.network_view(tx, b).await
    }

    /// Change a network in place: its gateway, and operator exclusions
    /// added (every address free, or already kept back) or removed (given
    /// back unless something else keeps them). Validated as `network add`
    /// with the new settings; every node of the cluster gets the new plan.
    pub(crate) async fn update_network_tx(
        &self,
        tx: &mut Tx,
        counters: &mut super::Counters,
        cluster: &str,
        cidr: &str,
        patch: &NetworkPatch,
    ) -> Result<NetworkView> {
        if *patch == NetworkPatch::default() {
            return Err(Error::invalid(
                "patch",
                "",
                "name at least one setting to change",
            ));
        }
        let (c, parsed, b) = self.network_of(tx, cluster, cidr).await?;
        self.lock_block(tx, b.id).await?;
        let before = self.network_view(tx, b.clone()).await?;
        if let Some(to) = &patch.shrink_to {
            if *patch
                != (NetworkPatch {
                    shrink_to: Some(to.clone()),
                    ..NetworkPatch::default()
                })
            {
                return Err(Error::invalid(
                    "shrink-to",
                    to,
                    "shrink a network in a change of its own (then set gateway or exclusions)",
                ));
            }
            let new = self
                .shrink_network(tx, counters, &c, &b, parsed, to)
                .await?;
            let b = self.block_by_id(tx, b.id).await?;
            let after = self.network_view(tx, b).await?;
            self.log_change(
                tx,
                "network.shrink",
                &new.to_string(),
                Some(cluster),
                Reach::Cluster,
                &json!({"cluster": cluster, "before": before, "after": after}),
            );
            return Ok(after);
        }
        let operator: Vec<Range> = self
            .exclusions_of(tx, b.id)
            .await?
            .into_iter()
            .filter(|(_, why)| why == OPERATOR)
            .map(|(r, _)| r)
            .collect();
        let mut exclude: Vec<String> = operator.iter().map(ToString::to_string).collect();
        for text in &patch.remove_exclusions {
            let r = Range::parse(text).map_err(|e| Error::invalid("remove-exclusion", text, e))?;
            let Some(i) = operator.iter().position(|o| *o == r) else {
                let have: Vec<String> = operator.iter().map(ToString::to_string).collect();
                return Err(Error::invalid(
                    "remove-exclusion",
                    text,
                    format!(
                        "not an exclusion of {parsed} (it has: {})",
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ),
                ));
            };
            exclude.retain(|x| *x != operator[i].to_string());
        }
        exclude.extend(patch.add_exclusions.iter().cloned());
        let spec = NetworkInput {
            cidr: parsed.to_string(),
            gateway: patch
                .gateway
                .clone()
                .or_else(|| b.gateway.map(|g| g.to_string())),
            exclude,
        }
        .validate(&c)?;
        let added: Vec<Range> = spec
            .exclusions
            .iter()
            .copied()
            .filter(|r| !operator.contains(r))
            .collect();
        let removed: Vec<Range> = operator
            .iter()
            .copied()
            .filter(|r| !spec.exclusions.contains(r))
            .collect();
        let size: u128 = added.iter().chain(&removed).map(|r| r.len()).sum();
        if size > MAX_EXCLUSION_CHANGE {
            return Err(Error::invalid(
                "exclusion",
                size,
                format!(
                    "one change may exclude or give back at most {MAX_EXCLUSION_CHANGE} addresses; split it"
                ),
            ));
        }
        let ba = SqlStore::block_alloc(&c, &b);
        // Give back first, so that a replaced exclusion may overlap the old.
        for r in &removed {
            sqlx::query("DELETE FROM exclusions WHERE block_id = $1 AND first = $2 AND last = $3 AND reason = $4")
                .bind(b.id)
                .bind(kb(r.first))
                .bind(kb(r.last))
                .bind(OPERATOR)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            self.give_back_uncovered(tx, b.id, *r).await?;
        }
        if spec.gateway != b.gateway {
            if let Some(old) = b.gateway {
                let k = key::key(old);
                sqlx::query("DELETE FROM exclusions WHERE block_id = $1 AND first = $2 AND last = $2 AND reason = 'gateway'")
                    .bind(b.id)
                    .bind(kb(k))
                    .execute(&mut **tx)
                    .await
                    .map_err(db)?;
                self.give_back_uncovered(tx, b.id, Range::single(k)).await?;
            }
            if let Some(new) = spec.gateway {
                let node = sqlx::query("SELECT n.name FROM node_addresses na JOIN nodes n ON n.id = na.node_id WHERE na.address = $1")
                    .bind(kb(key::key(new)))
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db)?;
                if let Some(n) = node {
                    return Err(Error::conflict(
                        "gateway",
                        new,
                        format!("this is the address of node {}", n.text("name")?),
                    ));
                }
                self.keep_back(
                    tx,
                    counters,
                    &ba,
                    &b,
                    Range::single(key::key(new)),
                    "gateway",
                    "gateway",
                )
                .await?;
            }
            sqlx::query("UPDATE blocks SET gateway = $1 WHERE id = $2")
                .bind(spec.gateway.map(|g| g.to_string()))
                .bind(b.id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        for r in &added {
            self.keep_back(tx, counters, &ba, &b, *r, OPERATOR, "add-exclusion")
                .await?;
        }
        let b = self.block_by_id(tx, b.id).await?;
        let after = self.network_view(tx, b).await?;
        self.log_change(
            tx,
            "network.set",
            &parsed.to_string(),
            Some(cluster),
            Reach::Cluster,
            &json!({"cluster": cluster, "before": before, "after": after}),
        );
        Ok(after)
    }

    /// Shrink network `b` (now `old`) to `to`, inside it: refused while an
    /// address outside `to` is held or the gateway lies outside it; the
    /// free and cooling addresses outside leave the pool, exclusions are
    /// clipped, and the system addresses become those a new network `to`
    /// would have (a held one is refused).
    async fn shrink_network(
        &self,
        tx: &mut Tx,
        counters: &mut super::Counters,
        c: &Cluster,
        b: &Block,
        old: Cidr,
        to: &str,
    ) -> Result<Cidr> {
        let new = vmfabric_model::network::parse_cidr("shrink-to", to)?;
        let (o, n) = (old.range(), new.range());
        if new == old || !(o.first <= n.first && n.last <= o.last) {
            return Err(Error::invalid(
                "shrink-to",
                new,
                format!("must lie inside {old} and be smaller (to grow, add another network)"),
            ));
        }
        if let Some(g) = b.gateway
            && !new.contains(g)
        {
            return Err(Error::conflict(
                "shrink-to",
                new,
                format!("the gateway {g} would fall outside it; move it first (--gateway)"),
            ));
        }
        // The same rules as a new network of this cluster.
        NetworkInput {
            cidr: new.to_string(),
            gateway: b.gateway.map(|g| g.to_string()),
            exclude: Vec::new(),
        }
        .validate(c)
        .map_err(|e| match e {
            Error::Invalid { value, rule, .. } => Error::Invalid {
                field: "shrink-to".into(),
                value,
                rule,
            },
            other => other,
        })?;
        // What is held outside, in two index ranges (the first ten named).
        let mut outside: Vec<Range> = Vec::new();
        if o.first < n.first {
            outside.push(Range::new(o.first, n.first - 1));
        }
        if n.last < o.last {
            outside.push(Range::new(n.last + 1, o.last));
        }
        let mut holders = Vec::new();
        for r in &outside {
            let rows = sqlx::query(
                "SELECT address, vm FROM allocations WHERE until IS NULL AND address >= $1 AND address <= $2 ORDER BY address LIMIT 11",
            )
            .bind(kb(r.first))
            .bind(kb(r.last))
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
            for row in rows {
                holders.push(holder_label(&row)?);
            }
        }
        if !holders.is_empty() {
            let more = if holders.len() > 10 { ", …" } else { "" };
            holders.truncate(10);
            return Err(Error::conflict(
                "shrink-to",
                new,
                format!(
                    "{}{more} would fall outside it; move or release them first",
                    holders.join(", ")
                ),
            ));
        }
        // Exclusions: outside ones go, crossing ones are clipped; system
        // holes of the old network that the new one does not have go too.
        let old_system = system_holes(c.network_type, b.role, Some(old), b.gateway);
        let new_system = system_holes(c.network_type, b.role, Some(new), b.gateway);
        let mut give_back: Vec<Range> = Vec::new();
        for (r, why) in self.exclusions_of(tx, b.id).await? {
            let system = old_system.iter().any(|(x, w)| *x == r && *w == why);
            let keep = if system {
                new_system.iter().any(|(x, w)| *x == r && *w == why)
            } else {
                r.intersect(&n).is_some()
            };
            let clipped = r.intersect(&n);
            if keep && clipped == Some(r) {
                continue;
            }
            sqlx::query("DELETE FROM exclusions WHERE block_id = $1 AND first = $2 AND last = $3 AND reason = $4")
                .bind(b.id)
                .bind(kb(r.first))
                .bind(kb(r.last))
                .bind(&why)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
            match (keep, clipped) {
                (true, Some(x)) => {
                    sqlx::query("INSERT INTO exclusions (block_id, first, last, reason, node_id) VALUES ($1, $2, $3, $4, NULL)")
                        .bind(b.id)
                        .bind(kb(x.first))
                        .bind(kb(x.last))
                        .bind(&why)
                        .execute(&mut **tx)
                        .await
                        .map_err(db)?;
                }
                (false, Some(x)) => give_back.push(x),
                _ => {}
            }
        }
        // Free and cooling addresses outside leave the pool.
        sqlx::query("DELETE FROM free_ranges WHERE block_id = $1 AND first < $2 AND last < $2")
            .bind(b.id)
            .bind(kb(n.first))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "UPDATE free_ranges SET first = $2 WHERE block_id = $1 AND first < $2 AND last >= $2",
        )
        .bind(b.id)
        .bind(kb(n.first))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM free_ranges WHERE block_id = $1 AND first > $2")
            .bind(b.id)
            .bind(kb(n.last))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "UPDATE free_ranges SET last = $2 WHERE block_id = $1 AND first <= $2 AND last > $2",
        )
        .bind(b.id)
        .bind(kb(n.last))
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        for r in &outside {
            let gone = sqlx::query("DELETE FROM released WHERE address >= $1 AND address <= $2")
                .bind(kb(r.first))
                .bind(kb(r.last))
                .execute(&mut **tx)
                .await
                .map_err(db)?
                .rows_affected();
            counters.add(
                b.id,
                super::RELEASED,
                -i64::try_from(gone).unwrap_or(i64::MAX),
            );
        }
        sqlx::query("UPDATE blocks SET first = $1, last = $2, prefix_len = $3 WHERE id = $4")
            .bind(kb(n.first))
            .bind(kb(n.last))
            .bind(i64::from(new.prefix_len()))
            .bind(b.id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        let shrunk = self.block_by_id(tx, b.id).await?;
        for r in give_back {
            self.give_back_uncovered(tx, b.id, r).await?;
        }
        // The new network's own system addresses (a broadcast address
        // where a VM sits is refused).
        let ba = SqlStore::block_alloc(c, &shrunk);
        for (r, why) in new_system {
            if why == "gateway" || old_system.iter().any(|(x, w)| *x == r && *w == why) {
                continue;
            }
            self.keep_back(tx, counters, &ba, &shrunk, r, why, "shrink-to")
                .await?;
        }
        Ok(new)
    }

    /// Keep `r` of block `b` back with `reason`: each address must be free
    /// (it is taken) or kept back already; a held one is refused.
    #[allow(clippy::too_many_arguments)]
    async fn keep_back(
        &self,
        tx: &mut Tx,
        counters: &mut super::Counters,
        ba: &BlockAlloc,
        b: &Block,
        r: Range,
        reason: &str,
        field: &str,
    ) -> Result<()> {
        let mut k = r.first;
        loop {
            if !alloc::take(tx, counters, ba, k).await? && !self.covered(tx, b.id, k).await? {
                let why = self.describe_unavailable(tx, b, k).await?;
                return Err(Error::conflict(
                    field,
                    r,
                    format!("{} is {why}", key::addr(k)),
                ));
            }
            if k >= r.last {
                break;
            }
            k += 1;
        }
        sqlx::query("INSERT INTO exclusions (block_id, first, last, reason, node_id) VALUES ($1, $2, $3, $4, NULL)")
            .bind(b.id)
            .bind(kb(r.first))
            .bind(kb(r.last))
            .bind(reason)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Whether an exclusion of block `block` covers `k`.
    async fn covered(&self, tx: &mut Tx, block: i64, k: vmfabric_ipam::Key) -> Result<bool> {
        let n = sqlx::query(
            "SELECT COUNT(*) AS n FROM exclusions WHERE block_id = $1 AND first <= $2 AND last >= $2",
        )
        .bind(block)
        .bind(kb(k))
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?
        .int("n")?;
        Ok(n > 0)
    }

    /// Free every address of `r` that no exclusion keeps back any more.
    pub(crate) async fn give_back_uncovered(
        &self,
        tx: &mut Tx,
        block: i64,
        r: Range,
    ) -> Result<()> {
        let mut k = r.first;
        loop {
            if !self.covered(tx, block, k).await? {
                alloc::free_one(tx, block, k).await?;
            }
            if k >= r.last {
                return Ok(());
            }
            k += 1;
        }
    }

    /// Network `cidr` of `cluster`: the cluster, the parsed CIDR, the block.
    async fn network_of(
        &self,
        tx: &mut Tx,
        cluster: &str,
        cidr: &str,
    ) -> Result<(Cluster, Cidr, Block)> {
        let (cid, c) = self.load_cluster(tx, cluster).await?;
        let parsed = vmfabric_model::network::parse_cidr("cidr", cidr)?;
        let sql = format!(
            "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.cluster_id = $1 AND b.role = 'network' AND b.first = $2 AND b.last = $3"
        );
        let row = sqlx::query(SqlStore::dynamic(sql))
            .bind(cid)
            .bind(kb(parsed.range().first))
            .bind(kb(parsed.range().last))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::not_found("network", format!("{parsed} of cluster {cluster}")))?;
        Ok((c, parsed, block_from_row(&row)?))
    }

    pub(crate) async fn block_by_id(&self, tx: &mut Tx, id: i64) -> Result<Block> {
        let sql = format!("SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.id = $1");
        let row = sqlx::query(SqlStore::dynamic(sql))
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        block_from_row(&row)
    }

    pub(crate) async fn networks_tx(
        &self,
        tx: &mut Tx,
        cluster: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NetworkView>> {
        let size = page.size()?;
        let probe = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let after = block_cursor(page)?;
        let rows = match cluster {
            Some(c) => {
                let (cid, _) = self.load_cluster(tx, c).await?;
                let sql = format!(
                    "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.cluster_id = $1 AND b.node_id IS NULL AND b.first >= $2 ORDER BY b.first LIMIT $3"
                );
                sqlx::query(SqlStore::dynamic(sql))
                    .bind(cid)
                    .bind(after)
                    .bind(probe)
                    .fetch_all(&mut **tx)
                    .await
            }
            None => {
                let sql = format!(
                    "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.first >= $1 AND b.node_id IS NULL ORDER BY b.first LIMIT $2"
                );
                sqlx::query(SqlStore::dynamic(sql))
                    .bind(after)
                    .bind(probe)
                    .fetch_all(&mut **tx)
                    .await
            }
        }
        .map_err(db)?;
        let blocks = rows
            .iter()
            .map(block_from_row)
            .collect::<Result<Vec<_>>>()?;
        let page = Page::from_probe(blocks, size, block_next);
        let mut items = Vec::with_capacity(page.items.len());
        for b in page.items {
            items.push(self.network_view(tx, b).await?);
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// Refuse to drop a block that still holds allocations or reservations.
    /// `--force`: release every address held in block `b` (VMs' and
    /// reservations), each recorded in history and the change log like a
    /// release. Bounded: a larger block is emptied in several steps.
    pub(crate) async fn release_holders(
        &self,
        tx: &mut Tx,
        counters: &mut super::Counters,
        b: &Block,
        field: &str,
    ) -> Result<()> {
        self.lock_block(tx, b.id).await?;
        let rows = sqlx::query(
            "SELECT address FROM allocations WHERE until IS NULL AND address >= $1 AND address <= $2 ORDER BY address LIMIT $3",
        )
        .bind(kb(b.range.first))
        .bind(kb(b.range.last))
        .bind(MAX_FORCED + 1)
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        if rows.len() > usize::try_from(MAX_FORCED).unwrap_or(usize::MAX) {
            return Err(Error::conflict(
                field,
                b.text(),
                format!(
                    "more than {MAX_FORCED} addresses are held in {}; --force releases at most {MAX_FORCED} at once: release some first",
                    b.label()
                ),
            ));
        }
        for row in rows {
            let addr = key::addr(row.key("address")?);
            self.release_tx(tx, counters, &addr.to_string()).await?;
        }
        // The block's counts are read next (check_block_empty).
        counters.flush(tx).await
    }

    pub(crate) async fn check_block_empty(
        &self,
        tx: &mut Tx,
        b: &Block,
        field: &str,
        value: &str,
    ) -> Result<()> {
        // Held until the block is deleted: a reservation or VM committing
        // meanwhile (PostgreSQL) would otherwise be left outside any block.
        self.lock_block(tx, b.id).await?;
        let row = sqlx::query("SELECT used, reserved FROM blocks WHERE id = $1")
            .bind(b.id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        let (used, reserved) = (row.int("used")?, row.int("reserved")?);
        if used + reserved > 0 {
            // Name the holders (the first ten), so the operator knows what
            // to move.
            let rows = sqlx::query(
                "SELECT address, kind, vm FROM allocations WHERE until IS NULL AND address >= $1 AND address <= $2 ORDER BY address LIMIT 11",
            )
            .bind(kb(b.range.first))
            .bind(kb(b.range.last))
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
            let mut holders = Vec::new();
            for r in rows.iter().take(10) {
                holders.push(holder_label(r)?);
            }
            if rows.len() > 10 {
                holders.push("…".to_string());
            }
            return Err(Error::conflict(
                field,
                value,
                format!(
                    "{} still has {used} addresses held by VMs and {reserved} reserved: {}; remove those addresses (vm remove-address, vm delete) and release the reservations first, or --force to release them all (each recorded in history)",
                    b.label(),
                    holders.join(", ")
                ),
            ));
        }
        Ok(())
    }

    pub(crate) async fn remove_network_tx(
        &self,
        tx: &mut Tx,
        counters: &mut super::Counters,
        cluster: &str,
        cidr: &str,
        force: bool,
    ) -> Result<NetworkView> {
        let (_, c, b) = self.network_of(tx, cluster, cidr).await?;
        if force {
            self.release_holders(tx, counters, &b, "cidr").await?;
        }
        self.check_block_empty(tx, &b, "cidr", &b.text()).await?;
        let view = self.network_view(tx, b.clone()).await?;
        sqlx::query("DELETE FROM blocks WHERE id = $1")
            .bind(b.id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        self.log_change(
            tx,
            "network.remove",
            &c.to_string(),
            Some(cluster),
            Reach::Cluster,
            &json!({"cluster": cluster}),
        );
        Ok(view)
    }

    /// Used in messages: the counter columns of a block.
    pub(crate) async fn block_counts(&self, tx: &mut Tx, id: i64) -> Result<(i64, i64, i64)> {
        let row = sqlx::query("SELECT used, reserved, released FROM blocks WHERE id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?;
        Ok((row.int("used")?, row.int("reserved")?, row.int("released")?))
    }
}
