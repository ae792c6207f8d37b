//! Nodes, their own addresses, and the blocks routing nodes bring.

use std::net::{IpAddr, Ipv6Addr};

use serde_json::json;
use sqlx::any::AnyRow;
use vmfabric_ipam::{Cidr, Range, key};
use vmfabric_model::node::{NodeIpv6, RoutingNode};
use vmfabric_model::{
    BlockRole, Cluster, Error, IfName, NetworkType, Node, NodeInput, NodePatch, Result,
};

use super::alloc;
use super::clusters::{BLOCK_COLS, BLOCK_FROM, block_from_row};
use super::{Counters, Reach, RowExt, SqlStore, Tx, db, kb};
use crate::{NodeBlockKind, NodeView, Page, PageRequest};

pub(crate) const NODE_COLS: &str = "n.id AS node_id, n.name AS node_name, c.name AS node_cluster, n.address, n.address_prefix, n.uplink, n.uplink_mac, n.bridge, n.primary_ip, n.primary_prefix, n.ipv6_address, n.ipv6_gateway, n.ndp_proxy, n.dns AS node_dns";

fn prefix(row: &AnyRow, col: &str) -> Result<Option<u8>> {
    row.opt_int(col)?
        .map(|p| u8::try_from(p).map_err(|_| super::corrupt(col)))
        .transpose()
}

pub(crate) fn node_from_row(row: &AnyRow) -> Result<(i64, Node)> {
    let iface = |col: &str| -> Result<IfName> {
        IfName::new(col, &row.text(col)?).map_err(|_| super::corrupt(col))
    };
    let routing = match row.opt_parsed::<IpAddr>("primary_ip")? {
        Some(primary_ip) => {
            let ipv6 = match row.opt_parsed::<Ipv6Addr>("ipv6_address")? {
                Some(address) => Some(NodeIpv6 {
                    address,
                    network: Cidr::containing(IpAddr::V6(address), 64),
                    gateway: row
                        .opt_parsed("ipv6_gateway")?
                        .ok_or_else(|| super::corrupt("ipv6_gateway"))?,
                }),
                None => None,
            };
            Some(RoutingNode {
                primary_ip,
                primary_prefix: prefix(row, "primary_prefix")?,
                ipv6,
                ndp_proxy: row.opt_parsed("ndp_proxy")?.unwrap_or_default(),
                dns: super::dns_from_row(row, "node_dns")?,
            })
        }
        None => None,
    };
    let node = Node {
        name: row.text("node_name")?,
        cluster: row.text("node_cluster")?,
        address: row.parsed("address")?,
        address_prefix: prefix(row, "address_prefix")?,
        uplink: iface("uplink")?,
        uplink_mac: row.opt_parsed("uplink_mac")?,
        bridge: iface("bridge")?,
        routing,
    };
    Ok((row.int("node_id")?, node))
}

impl SqlStore {
    pub(crate) async fn load_node(&self, tx: &mut Tx, name: &str) -> Result<(i64, Node)> {
        let sql = format!(
            "SELECT {NODE_COLS} FROM nodes n JOIN clusters c ON c.id = n.cluster_id WHERE n.name = $1"
        );
        let row = sqlx::query(SqlStore::dynamic(sql))
            .bind(name)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::not_found("node", name))?;
        node_from_row(&row)
    }

    async fn node_view(&self, tx: &mut Tx, id: i64, node: Node) -> Result<NodeView> {
        let sql =
            format!("SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.node_id = $1 ORDER BY b.first");
        let rows = sqlx::query(SqlStore::dynamic(sql))
            .bind(id)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let ranges = rows
            .iter()
            .map(block_from_row)
            .collect::<Result<Vec<_>>>()?;
        let vms = sqlx::query("SELECT COUNT(*) AS n FROM vms WHERE node_id = $1")
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?
            .int("n")?;
        Ok(NodeView {
            node,
            ranges,
            vms: u64::try_from(vms).map_err(|_| super::corrupt("count"))?,
        })
    }

    /// Give back one of a node's own addresses: no longer the node's, and
    /// free again where it was carved out of a cluster network (unless
    /// held back for another reason too).
    async fn unclaim_node_address(&self, tx: &mut Tx, node_id: i64, ip: IpAddr) -> Result<()> {
        let k = key::key(ip);
        sqlx::query("DELETE FROM node_addresses WHERE address = $1 AND node_id = $2")
            .bind(kb(k))
            .bind(node_id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        let carved = sqlx::query(
            "SELECT block_id FROM exclusions WHERE node_id = $1 AND first = $2 AND last = $2",
        )
        .bind(node_id)
        .bind(kb(k))
        .fetch_all(&mut **tx)
        .await
        .map_err(db)?;
        for row in carved {
            let block = row.int("block_id")?;
            sqlx::query(
                "DELETE FROM exclusions WHERE block_id = $1 AND node_id = $2 AND first = $3 AND last = $3",
            )
            .bind(block)
            .bind(node_id)
            .bind(kb(k))
            .execute(&mut **tx)
            .await
            .map_err(db)?;
            self.give_back_uncovered(tx, block, vmfabric_ipam::Range::single(k))
                .await?;
        }
        Ok(())
    }

    /// Claim one of a new node's addresses: unique among nodes, not held by
    /// anyone, and carved out of its cluster's block if it lies in one.
    async fn claim_node_address(
        &self,
        tx: &mut Tx,
        cluster: &Cluster,
        node_id: i64,
        node: &str,
        field: &str,
        ip: IpAddr,
    ) -> Result<()> {
        let k = key::key(ip);
        let inserted = sqlx::query("INSERT INTO node_addresses (address, node_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING node_id")
            .bind(kb(k))
            .bind(node_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        if inserted.is_none() {
            let other = sqlx::query("SELECT n.name FROM node_addresses na JOIN nodes n ON n.id = na.node_id WHERE na.address = $1")
                .bind(kb(k))
                .fetch_one(&mut **tx)
                .await
                .map_err(db)?
                .text("name")?;
            return Err(Error::conflict(
                field,
                ip,
                format!("this is already the address of node {other}"),
            ));
        }
        if let Some(f) = &cluster.fabric
            && (ip == IpAddr::V4(f.vm_gateway) || ip == IpAddr::V6(f.vm_gateway6))
        {
            return Err(Error::conflict(
                field,
                ip,
                format!(
                    "this is the VM gateway of cluster {}; it must not be used on a node",
                    cluster.name
                ),
            ));
        }
        let Some(block) = self.block_containing(tx, k).await? else {
            return Ok(());
        };
        if let Some(other) = &block.node
            && other != node
        {
            return Err(Error::conflict(
                field,
                ip,
                format!(
                    "the address lies in {}, which belongs to another node",
                    block.label()
                ),
            ));
        }
        if block.cluster != cluster.name {
            return Err(Error::conflict(
                field,
                ip,
                format!(
                    "the address lies in {}, a pool of another cluster",
                    block.label()
                ),
            ));
        }
        if block.gateway == Some(ip) {
            return Err(Error::conflict(
                field,
                ip,
                format!(
                    "this is the gateway of {}; the gateway is the data center's router",
                    block.label()
                ),
            ));
        }
        let ba = SqlStore::block_alloc(cluster, &block);
        let mut counters = Counters::default();
        if !alloc::take(tx, &mut counters, &ba, k).await? {
            let holder = self.describe_unavailable(tx, &block, k).await?;
            return Err(Error::conflict(
                field,
                ip,
                format!("the address is {holder}"),
            ));
        }
        counters.flush(tx).await?;
        sqlx::query("INSERT INTO exclusions (block_id, first, last, reason, node_id) VALUES ($1, $2, $2, $3, $4)")
            .bind(block.id)
            .bind(kb(k))
            .bind(format!("address of node {node}"))
            .bind(node_id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn add_node_tx(
        &self,
        tx: &mut Tx,
        cluster: &str,
        input: &NodeInput,
    ) -> Result<NodeView> {
        let (cid, c) = self.load_cluster(tx, cluster).await?;
        let (node, blocks) = input.validate(&c)?;
        let r = node.routing.as_ref();
        let row = sqlx::query(
            "INSERT INTO nodes (cluster_id, name, address, address_prefix, uplink, bridge, primary_ip, primary_prefix, ipv6_address, ipv6_gateway, ndp_proxy, created_at, uplink_mac, dns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(cid)
        .bind(&node.name)
        .bind(node.address.to_string())
        .bind(node.address_prefix.map(i64::from))
        .bind(node.uplink.as_str())
        .bind(node.bridge.as_str())
        .bind(r.map(|r| r.primary_ip.to_string()))
        .bind(r.and_then(|r| r.primary_prefix).map(i64::from))
        .bind(r.and_then(|r| r.ipv6.as_ref()).map(|s| s.address.to_string()))
        .bind(r.and_then(|r| r.ipv6.as_ref()).map(|s| s.gateway.to_string()))
        .bind(r.map(|r| r.ndp_proxy.as_str()))
        .bind(self.now().0)
        .bind(node.uplink_mac.map(|m| m.to_string()))
        .bind(super::dns_text(r.and_then(|r| r.dns.as_ref())))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?
        .ok_or_else(|| Error::conflict("name", &node.name, "a node with this name exists"))?;
        let id = row.int("id")?;
        let mut own: Vec<(&str, IpAddr)> = vec![("address", node.address)];
        if let Some(r) = r {
            if r.primary_ip != node.address {
                own.push(("primary-ip", r.primary_ip));
            }
            if let Some(six) = &r.ipv6 {
                own.push(("ipv6", IpAddr::V6(six.address)));
            }
        }
        for (field, ip) in own {
            self.claim_node_address(tx, &c, id, &node.name, field, ip)
                .await?;
        }
        // The provider's router inside the node's /64 (other than ::1,
        // which is always held back) is never a VM's.
        let gateway_hole = |role: BlockRole| -> Vec<(Range, &str)> {
            match r.and_then(|r| r.ipv6.as_ref()) {
                Some(six)
                    if role == BlockRole::NodeIpv6
                        && six.network.contains(IpAddr::V6(six.gateway)) =>
                {
                    vec![(
                        Range::single(key::key(IpAddr::V6(six.gateway))),
                        "the node's IPv6 gateway (the provider's router)",
                    )]
                }
                _ => Vec::new(),
            }
        };
        // Blocks after the addresses: insert_block carves out node addresses.
        for b in &blocks {
            let field = match b.role {
                BlockRole::NodeRange => "range",
                BlockRole::NodeIpv6 => "ipv6",
                _ => "subnet",
            };
            self.insert_block(
                tx,
                cid,
                &c,
                Some(id),
                b.role,
                b.range,
                b.cidr,
                None,
                &gateway_hole(b.role),
                field,
            )
            .await?;
        }
        self.log_change(
            tx,
            "node.add",
            &node.name,
            Some(cluster),
            Reach::Nodes(&[&node.name]),
            &json!({"cluster": cluster}),
        );
        self.node_view(tx, id, node).await
    }

    pub(crate) async fn nodes_tx(
        &self,
        tx: &mut Tx,
        cluster: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NodeView>> {
        let size = page.size()?;
        let probe = i64::try_from(size + 1).unwrap_or(i64::MAX);
        let after = page.after.clone().unwrap_or_default();
        let rows = match cluster {
            Some(c) => {
                let (cid, _) = self.load_cluster(tx, c).await?;
                let sql = format!(
                    "SELECT {NODE_COLS} FROM nodes n JOIN clusters c ON c.id = n.cluster_id WHERE n.cluster_id = $1 AND n.name > $2 ORDER BY n.name LIMIT $3"
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
                    "SELECT {NODE_COLS} FROM nodes n JOIN clusters c ON c.id = n.cluster_id WHERE n.name > $1 ORDER BY n.name LIMIT $2"
                );
                sqlx::query(SqlStore::dynamic(sql))
                    .bind(after)
                    .bind(probe)
                    .fetch_all(&mut **tx)
                    .await
            }
        }
        .map_err(db)?;
        let nodes = rows.iter().map(node_from_row).collect::<Result<Vec<_>>>()?;
        let page = Page::from_probe(nodes, size, |(_, n)| n.name.clone());
        let mut items = Vec::with_capacity(page.items.len());
        for (id, n) in page.items {
            items.push(self.node_view(tx, id, n).await?);
        }
        Ok(Page {
            items,
            next: page.next,
        })
    }

    pub(crate) async fn node_tx(&self, tx: &mut Tx, name: &str) -> Result<NodeView> {
        let (id, n) = self.load_node(tx, name).await?;
        self.node_view(tx, id, n).await
    }

    /// Give a routing node one more subnet or range, while its VMs run:
    /// validated as if the node were added with it (same rules, same
    /// messages), carved like a new node's, reaching only this node's plan.
    pub(crate) async fn add_node_block_tx(
        &self,
        tx: &mut Tx,
        name: &str,
        kind: NodeBlockKind,
        text: &str,
    ) -> Result<NodeView> {
        let (id, node) = self.load_node(tx, name).await?;
        let (cid, c) = self.load_cluster(tx, &node.cluster).await?;
        let field = kind.field();
        if c.network_type != NetworkType::Routing {
            return Err(Error::invalid(
                field,
                text,
                format!(
                    "only nodes of routing clusters have their own {field}s; cluster {} is {} and takes VM addresses from its networks (`network add`)",
                    c.name, c.network_type
                ),
            ));
        }
        let mut input = NodeInput::of(&node);
        match kind {
            NodeBlockKind::Subnet => input.subnets.push(text.to_string()),
            NodeBlockKind::Range => input.ranges.push(text.to_string()),
        }
        let (_, blocks) = input.validate(&c)?;
        let role = match kind {
            NodeBlockKind::Subnet => BlockRole::NodeSubnet,
            NodeBlockKind::Range => BlockRole::NodeRange,
        };
        let Some(b) = blocks.iter().find(|b| b.role == role) else {
            return Err(super::corrupt("a validated node block vanished"));
        };
        // The node's IPv6 gateway inside its /64 is carved when the /64 is
        // added; a subnet or range carries no router of the provider.
        self.insert_block(
            tx,
            cid,
            &c,
            Some(id),
            b.role,
            b.range,
            b.cidr,
            None,
            &[],
            field,
        )
        .await?;
        self.log_change(
            tx,
            &format!("node.add-{field}"),
            name,
            Some(&c.name),
            Reach::Nodes(&[name]),
            &json!({"cluster": c.name, "after": b.text()}),
        );
        self.node_view(tx, id, node).await
    }

    /// Take a subnet or range (not the /64: `remove-ipv6`) from a routing
    /// node; refused, naming the holders, while anything holds an address
    /// in it.
    pub(crate) async fn remove_node_block_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
        text: &str,
        force: bool,
    ) -> Result<NodeView> {
        let (id, node) = self.load_node(tx, name).await?;
        let range =
            SqlStore::block_text("block", text, "a subnet (CIDR) or range (A-B) of the node")?;
        let sql = format!(
            "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.node_id = $1 AND b.first = $2 AND b.last = $3"
        );
        let row = sqlx::query(SqlStore::dynamic(sql))
            .bind(id)
            .bind(kb(range.first))
            .bind(kb(range.last))
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?
            .ok_or_else(|| Error::not_found("block", format!("{text} of node {name}")))?;
        let b = block_from_row(&row)?;
        if b.role == BlockRole::NodeIpv6 {
            return Err(Error::invalid(
                "block",
                text,
                "this is the node's IPv6 /64; it goes with the node's IPv6 address (`node remove-ipv6`)",
            ));
        }
        if force {
            self.release_holders(tx, counters, &b, "block").await?;
        }
        self.check_block_empty(tx, &b, "block", &b.text()).await?;
        sqlx::query("DELETE FROM blocks WHERE id = $1")
            .bind(b.id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        let kind = if b.role == BlockRole::NodeRange {
            "range"
        } else {
            "subnet"
        };
        self.log_change(
            tx,
            &format!("node.remove-{kind}"),
            name,
            Some(&node.cluster),
            Reach::Nodes(&[name]),
            &json!({"cluster": node.cluster, "before": b.text()}),
        );
        self.node_view(tx, id, node).await
    }

    /// Give a routing node its IPv6 /64 (the seed: Nodes → node → IP
    /// addresses → IPv6 → add `::2/64`) while its VMs run: the node's own
    /// address and the provider's router are carved out, VMs may then get
    /// IPv6 addresses (`vm add-address --ipv6`).
    pub(crate) async fn add_node_ipv6_tx(
        &self,
        tx: &mut Tx,
        name: &str,
        text: &str,
        gateway: Option<&str>,
    ) -> Result<NodeView> {
        let (id, node) = self.load_node(tx, name).await?;
        let (cid, c) = self.load_cluster(tx, &node.cluster).await?;
        if c.network_type != NetworkType::Routing {
            return Err(Error::invalid(
                "ipv6",
                text,
                format!(
                    "only nodes of routing clusters take --ipv6; cluster {} is {} and takes VM addresses from its networks (`network add`)",
                    c.name, c.network_type
                ),
            ));
        }
        if let Some(six) = node.routing.as_ref().and_then(|r| r.ipv6.as_ref()) {
            return Err(Error::conflict(
                "ipv6",
                text,
                format!(
                    "node {name} has the IPv6 /64 {} already (node remove-ipv6 first)",
                    six.network
                ),
            ));
        }
        let mut input = NodeInput::of(&node);
        input.ipv6 = Some(text.to_string());
        input.ipv6_gateway = gateway.map(String::from);
        let (new, blocks) = input.validate(&c)?;
        let (Some(six), Some(b)) = (
            new.routing.as_ref().and_then(|r| r.ipv6.clone()),
            blocks.iter().find(|b| b.role == BlockRole::NodeIpv6),
        ) else {
            return Err(super::corrupt("a validated IPv6 /64 vanished"));
        };
        sqlx::query("UPDATE nodes SET ipv6_address = $1, ipv6_gateway = $2 WHERE id = $3")
            .bind(six.address.to_string())
            .bind(six.gateway.to_string())
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        self.claim_node_address(tx, &c, id, name, "ipv6", IpAddr::V6(six.address))
            .await?;
        let hole: Vec<(Range, &str)> = if six.network.contains(IpAddr::V6(six.gateway)) {
            vec![(
                Range::single(key::key(IpAddr::V6(six.gateway))),
                "the node's IPv6 gateway (the provider's router)",
            )]
        } else {
            Vec::new()
        };
        self.insert_block(
            tx,
            cid,
            &c,
            Some(id),
            b.role,
            b.range,
            b.cidr,
            None,
            &hole,
            "ipv6",
        )
        .await?;
        self.log_change(
            tx,
            "node.add-ipv6",
            name,
            Some(&c.name),
            Reach::Nodes(&[name]),
            &json!({"cluster": c.name, "after": {"address": six.address.to_string(), "network": six.network.to_string(), "gateway": six.gateway.to_string()}}),
        );
        self.node_view(tx, id, new).await
    }

    /// Take a routing node's IPv6 /64: refused while any address in it is
    /// held, or while the node has IPv6 subnets or ranges (their VMs' gateway
    /// is the node's IPv6 address).
    pub(crate) async fn remove_node_ipv6_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
        force: bool,
    ) -> Result<NodeView> {
        let (id, node) = self.load_node(tx, name).await?;
        let Some(six) = node.routing.as_ref().and_then(|r| r.ipv6.clone()) else {
            return Err(Error::not_found("ipv6", format!("/64 of node {name}")));
        };
        let view = self.node_view(tx, id, node.clone()).await?;
        if let Some(other) = view
            .ranges
            .iter()
            .find(|b| b.role != BlockRole::NodeIpv6 && b.family() == vmfabric_ipam::Family::V6)
        {
            return Err(Error::conflict(
                "ipv6",
                six.network,
                format!(
                    "{} of node {name} uses the node's IPv6 address as its VMs' gateway; remove it first",
                    other.label()
                ),
            ));
        }
        let Some(b) = view.ranges.iter().find(|b| b.role == BlockRole::NodeIpv6) else {
            return Err(super::corrupt("a node's IPv6 /64 without its block"));
        };
        if force {
            self.release_holders(tx, counters, b, "ipv6").await?;
        }
        self.check_block_empty(tx, b, "ipv6", &b.text()).await?;
        sqlx::query("DELETE FROM blocks WHERE id = $1")
            .bind(b.id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        sqlx::query("DELETE FROM node_addresses WHERE address = $1 AND node_id = $2")
            .bind(kb(key::key(IpAddr::V6(six.address))))
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE nodes SET ipv6_address = NULL, ipv6_gateway = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        self.log_change(
            tx,
            "node.remove-ipv6",
            name,
            Some(&node.cluster),
            Reach::Nodes(&[name]),
            &json!({"cluster": node.cluster, "before": {"address": six.address.to_string(), "network": six.network.to_string(), "gateway": six.gateway.to_string()}}),
        );
        let (_, node) = self.load_node(tx, name).await?;
        self.node_view(tx, id, node).await
    }

    /// Change a node's uplink, its MAC, bridge or NDP proxy mode in place
    /// (validated as a creation with them); only its plan changes.
    pub(crate) async fn update_node_tx(
        &self,
        tx: &mut Tx,
        name: &str,
        patch: &NodePatch,
    ) -> Result<NodeView> {
        let (id, node) = self.load_node(tx, name).await?;
        let (_, c) = self.load_cluster(tx, &node.cluster).await?;
        let before = self.node_view(tx, id, node.clone()).await?;
        let new = patch.apply(&node, &c, &before.ranges)?;
        // Own addresses that change: the old ones are given back, the new
        // ones claimed by the rules of a new node.
        let (was, now) = (node.own_addresses(), new.own_addresses());
        for ip in was.iter().filter(|ip| !now.contains(ip)) {
            self.unclaim_node_address(tx, id, *ip).await?;
        }
        for ip in now.iter().filter(|ip| !was.contains(ip)) {
            let field = if *ip == new.address {
                "address"
            } else {
                "primary-ip"
            };
            self.claim_node_address(tx, &c, id, name, field, *ip)
                .await?;
        }
        let moved = was != now;
        if moved {
            let r = new.routing.as_ref();
            sqlx::query("UPDATE nodes SET address = $1, address_prefix = $2, primary_ip = $3, primary_prefix = $4 WHERE id = $5")
                .bind(new.address.to_string())
                .bind(new.address_prefix.map(i64::from))
                .bind(r.map(|r| r.primary_ip.to_string()))
                .bind(r.and_then(|r| r.primary_prefix).map(i64::from))
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("UPDATE nodes SET uplink = $1, bridge = $2, uplink_mac = $3, ndp_proxy = $4, dns = $5 WHERE id = $6")
            .bind(new.uplink.as_str())
            .bind(new.bridge.as_str())
            .bind(new.uplink_mac.map(|m| m.to_string()))
            .bind(new.routing.as_ref().map(|r| r.ndp_proxy.as_str()))
            .bind(super::dns_text(new.routing.as_ref().and_then(|r| r.dns.as_ref())))
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        // A node's address is in every plan of its cluster (the bridge's
        // peers, the reflectors' neighbours, routing VMs' gateway).
        let reach = if moved {
            Reach::Cluster
        } else {
            Reach::Nodes(&[name])
        };
        self.log_change(
            tx,
            "node.set",
            name,
            Some(&c.name),
            reach,
            &json!({"cluster": c.name, "before": before.node, "after": new}),
        );
        self.node_view(tx, id, new).await
    }

    pub(crate) async fn remove_node_tx(
        &self,
        tx: &mut Tx,
        counters: &mut Counters,
        name: &str,
        force: bool,
    ) -> Result<NodeView> {
        let (id, n) = self.load_node(tx, name).await?;
        let mut view = self.node_view(tx, id, n.clone()).await?;
        if force && view.vms > 0 {
            // Each VM deleted as `vm delete` would: history and change log.
            let rows =
                sqlx::query("SELECT name FROM vms WHERE node_id = $1 ORDER BY name LIMIT $2")
                    .bind(id)
                    .bind(super::clusters::MAX_FORCED + 1)
                    .fetch_all(&mut **tx)
                    .await
                    .map_err(db)?;
            if rows.len() > usize::try_from(super::clusters::MAX_FORCED).unwrap_or(usize::MAX) {
                return Err(Error::conflict(
                    "node",
                    name,
                    format!(
                        "{} VMs run on this node; --force deletes at most {} at once: delete some first",
                        view.vms,
                        super::clusters::MAX_FORCED
                    ),
                ));
            }
            for row in rows {
                self.delete_vm_tx(tx, counters, &row.text("name")?).await?;
            }
            counters.flush(tx).await?;
            view = self.node_view(tx, id, n).await?;
        }
        if force {
            for b in &view.ranges {
                self.release_holders(tx, counters, b, "node").await?;
            }
        }
        if view.vms > 0 {
            return Err(Error::conflict(
                "node",
                name,
                format!(
                    "{} VMs run on this node; migrate or delete them first, or --force to delete them (each recorded)",
                    view.vms
                ),
            ));
        }
        for b in &view.ranges {
            self.check_block_empty(tx, b, "node", name).await?;
        }
        sqlx::query("DELETE FROM blocks WHERE node_id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        // The node's addresses inside cluster networks become free again.
        let carved = sqlx::query("SELECT block_id, first FROM exclusions WHERE node_id = $1")
            .bind(id)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        for row in carved {
            let (block, k) = (row.int("block_id")?, row.key("first")?);
            // Held back for another reason too (network address, gateway,
            // operator exclusion, route reflector): it stays held back.
            let other = sqlx::query(
                "SELECT COUNT(*) AS n FROM exclusions WHERE block_id = $1 AND first <= $2 AND last >= $2 AND (node_id IS NULL OR node_id <> $3)",
            )
            .bind(block)
            .bind(kb(k))
            .bind(id)
            .fetch_one(&mut **tx)
            .await
            .map_err(db)?
            .int("n")?;
            if other == 0 {
                alloc::free_one(tx, block, k).await?;
            }
        }
        self.revoke_node_tokens(tx, id).await?;
        for sql in [
            "DELETE FROM exclusions WHERE node_id = $1",
            "DELETE FROM nodes WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        self.log_change(
            tx,
            "node.remove",
            name,
            Some(&view.node.cluster),
            Reach::Nodes(&[name]),
            &json!({}),
        );
        Ok(view)
    }

    pub(crate) async fn plan_input_tx(
        &self,
        tx: &mut Tx,
        name: &str,
    ) -> Result<vmfabric_plan::PlanInput> {
        let (nid, node) = self.load_node(tx, name).await?;
        let (cid, cluster) = self.load_cluster(tx, &node.cluster).await?;
        let sql = format!(
            "SELECT {BLOCK_COLS} FROM {BLOCK_FROM} WHERE b.cluster_id = $1 AND b.node_id IS NULL ORDER BY b.first"
        );
        let rows = sqlx::query(SqlStore::dynamic(sql))
            .bind(cid)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let networks = rows
            .iter()
            .map(block_from_row)
            .collect::<Result<Vec<_>>>()?;
        let vms = self
            .vms_of_node(tx, nid, (&cluster, &node, &networks))
            .await?;
        Ok(vmfabric_plan::PlanInput {
            cluster,
            node,
            networks,
            vms,
        })
    }

    /// In words, why `k` of `block` cannot be taken.
    pub(crate) async fn describe_unavailable(
        &self,
        tx: &mut Tx,
        block: &vmfabric_model::Block,
        k: vmfabric_ipam::Key,
    ) -> Result<String> {
        if let Some(a) = self.active_holder(tx, k).await? {
            return Ok(format!("held by {}", a.describe()));
        }
        let row = sqlx::query(
            "SELECT reason FROM exclusions WHERE block_id = $1 AND first <= $2 AND last >= $2 ORDER BY first LIMIT 1",
        )
        .bind(block.id)
        .bind(kb(k))
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        if let Some(r) = row {
            return Ok(format!(
                "never handed out: {} of {}",
                r.text("reason")?,
                block.label()
            ));
        }
        Ok(format!("not free in {}", block.label()))
    }
}
