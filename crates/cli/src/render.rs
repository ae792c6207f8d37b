//! Text output: aligned tables and short summaries. JSON output is the
//! serialised value itself; text is for people and may change.

use std::fmt::Write;

use vmfabric_model::view::{
    Allocation, ClusterSummary, FreeSpace, HistoryEntry, Holder, NetworkView, ReleaseResult, Usage,
};
use vmfabric_model::{Cluster, Vm};
use vmfabric_store::{CheckReport, NodeView};

/// Columns padded to their widest cell; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    Table::new(headers).page(rows)
}

/// A table printed page by page as a listing arrives: the header once,
/// each column as wide as its widest cell so far (a later page with a
/// wider cell widens the column from there on).
#[derive(Debug)]
pub struct Table {
    headers: Vec<String>,
    widths: Vec<usize>,
    started: bool,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            widths: headers.iter().map(|h| h.len()).collect(),
            started: false,
        }
    }

    /// The text of one page of rows (with the header, the first time).
    pub fn page(&mut self, rows: &[Vec<String>]) -> String {
        for r in rows {
            for (i, c) in r.iter().enumerate() {
                if i < self.widths.len() {
                    self.widths[i] = self.widths[i].max(c.chars().count());
                }
            }
        }
        let mut out = String::new();
        let widths = &self.widths;
        let line = |cells: Vec<&str>, out: &mut String| {
            let n = cells.len();
            for (i, c) in cells.into_iter().enumerate() {
                if i + 1 == n {
                    out.push_str(c);
                } else {
                    let _ = write!(out, "{c:<w$}  ", w = widths[i]);
                }
            }
            out.push('\n');
        };
        if !self.started {
            self.started = true;
            line(self.headers.iter().map(String::as_str).collect(), &mut out);
        }
        for r in rows {
            line(r.iter().map(String::as_str).collect(), &mut out);
        }
        out
    }
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}

pub fn cluster(c: &Cluster) -> String {
    let mut s = format!(
        "cluster {}  type {}  assignment {}  cooldown {}  reuse {}\n",
        c.name,
        c.network_type,
        c.assignment,
        c.cooldown,
        c.reuse.name()
    );
    if let Some(f) = &c.fabric {
        let rrs: Vec<String> = f.route_reflectors.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            s,
            "  vm gateway {} / {}  community {}  asn {}  route reflectors {}",
            f.vm_gateway,
            f.vm_gateway6,
            f.community,
            f.asn,
            rrs.join(", ")
        );
    }
    if !c.dns.is_empty() || c.mtu.is_some() {
        let mut line = String::from("  guests:");
        dns_words(&mut line, &c.dns);
        if let Some(m) = c.mtu {
            let _ = write!(line, "  mtu {m}");
        }
        let _ = writeln!(s, "{line}");
    }
    s
}

/// `  nameservers A, B  search X` (only the parts that are set).
fn dns_words(s: &mut String, d: &vmfabric_model::Dns) {
    if !d.nameservers.is_empty() {
        let ns: Vec<String> = d.nameservers.iter().map(ToString::to_string).collect();
        let _ = write!(s, "  nameservers {}", ns.join(", "));
    }
    if !d.search.is_empty() {
        let _ = write!(s, "  search {}", d.search.join(", "));
    }
}

pub fn cluster_summary(c: &ClusterSummary) -> String {
    let mut s = cluster(&c.cluster);
    let _ = writeln!(
        s,
        "  networks {}  nodes {}  vms {}",
        c.networks, c.nodes, c.vms
    );
    s
}

pub const CLUSTERS_HEADERS: &[&str] = &["NAME", "TYPE", "ASSIGNMENT", "NETWORKS", "NODES", "VMS"];

pub fn clusters_rows(cs: &[ClusterSummary]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = cs
        .iter()
        .map(|c| {
            vec![
                c.cluster.name.clone(),
                c.cluster.network_type.to_string(),
                c.cluster.assignment.to_string(),
                c.networks.to_string(),
                c.nodes.to_string(),
                c.vms.to_string(),
            ]
        })
        .collect();
    rows
}

pub const NETWORKS_HEADERS: &[&str] = &["CLUSTER", "NETWORK", "GATEWAY", "NEVER HANDED OUT"];

pub fn networks_rows(ns: &[NetworkView]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = ns
        .iter()
        .map(|n| {
            let ex: Vec<String> = n
                .exclusions
                .iter()
                .map(|e| format!("{} ({})", e.range, e.reason))
                .collect();
            vec![
                n.block.cluster.clone(),
                n.block.text(),
                opt(&n.block.gateway),
                ex.join(", "),
            ]
        })
        .collect();
    rows
}

pub fn networks(ns: &[NetworkView]) -> String {
    table(NETWORKS_HEADERS, &networks_rows(ns))
}

pub fn node(n: &NodeView) -> String {
    let node = &n.node;
    let mut s = format!(
        "node {}  cluster {}  address {}{}  uplink {}  bridge {}  vms {}\n",
        node.name,
        node.cluster,
        node.address,
        node.address_prefix
            .map(|p| format!("/{p}"))
            .unwrap_or_default(),
        node.uplink,
        node.bridge,
        n.vms
    );
    if let Some(r) = &node.routing {
        let _ = writeln!(s, "  primary ip {} (the VMs' gateway)", r.primary_ip);
        if let Some(six) = &r.ipv6 {
            let _ = writeln!(
                s,
                "  ipv6 {}/64  gateway {}  ndp proxy {}",
                six.address, six.gateway, r.ndp_proxy
            );
        }
        if let Some(d) = &r.dns {
            let mut line = String::from("  guests' dns (replacing the cluster's):");
            dns_words(&mut line, d);
            let _ = writeln!(s, "{line}");
        }
    }
    for b in &n.ranges {
        let _ = writeln!(s, "  range {} ({})", b.text(), b.role.as_str());
    }
    s
}

pub const NODES_HEADERS: &[&str] = &[
    "NAME", "CLUSTER", "ADDRESS", "UPLINK", "BRIDGE", "VMS", "RANGES",
];

pub fn nodes_rows(ns: &[NodeView]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = ns
        .iter()
        .map(|n| {
            let ranges: Vec<String> = n.ranges.iter().map(|b| b.text()).collect();
            vec![
                n.node.name.clone(),
                n.node.cluster.clone(),
                n.node.address.to_string(),
                n.node.uplink.to_string(),
                n.node.bridge.to_string(),
                n.vms.to_string(),
                ranges.join(", "),
            ]
        })
        .collect();
    rows
}

pub fn vm(v: &Vm) -> String {
    let mut s = format!("vm {}  cluster {}  node {}\n", v.name, v.cluster, v.node);
    for n in &v.nics {
        let _ = writeln!(
            s,
            "  nic {}  mac {}  host interface {}",
            n.index, n.mac, n.host_interface
        );
        for a in &n.addresses {
            let _ = writeln!(
                s,
                "    {}/{}  gateway {}",
                a.address,
                a.prefix_len,
                opt(&a.gateway)
            );
        }
    }
    s
}

pub const VMS_HEADERS: &[&str] = &["NAME", "CLUSTER", "NODE", "INTERFACE", "MAC", "ADDRESSES"];

pub fn vms_rows(vs: &[Vm]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = vs
        .iter()
        .map(|v| {
            let addrs: Vec<String> = v
                .nics
                .iter()
                .flat_map(|n| {
                    n.addresses
                        .iter()
                        .map(|a| format!("{}/{}", a.address, a.prefix_len))
                })
                .collect();
            let nic = v.nics.first();
            vec![
                v.name.clone(),
                v.cluster.clone(),
                v.node.clone(),
                nic.map_or("-".into(), |n| n.host_interface.to_string()),
                nic.map_or("-".into(), |n| n.mac.to_string()),
                addrs.join(", "),
            ]
        })
        .collect();
    rows
}

fn holder(h: &Holder) -> String {
    match h {
        Holder::Vm { vm, nic, .. } => format!("{vm} nic {nic}"),
        Holder::Reserved { note } => match note {
            Some(n) => format!("reserved: {n}"),
            None => "reserved".into(),
        },
    }
}

pub const ALLOCATIONS_HEADERS: &[&str] =
    &["ADDRESS", "HELD BY", "CLUSTER", "NODE", "BLOCK", "SINCE"];

pub fn allocations_rows(a: &[Allocation]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = a
        .iter()
        .map(|a| {
            vec![
                a.address.to_string(),
                holder(&a.holder),
                a.cluster.clone(),
                opt(&a.node),
                a.block.clone(),
                a.since.to_string(),
            ]
        })
        .collect();
    rows
}

pub const FREE_HEADERS: &[&str] = &["CLUSTER", "NODE", "BLOCK", "FREE", "COUNT", "STATE"];

pub fn free_rows(f: &[FreeSpace]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for b in f {
        for r in &b.ranges {
            let range = if r.first == r.last {
                r.first.to_string()
            } else {
                format!("{}-{}", r.first, r.last)
            };
            rows.push(vec![
                b.cluster.clone(),
                opt(&b.node),
                b.block.clone(),
                range,
                count(r.count),
                "never used".into(),
            ]);
        }
        for r in &b.released {
            rows.push(vec![
                b.cluster.clone(),
                opt(&b.node),
                b.block.clone(),
                r.address.to_string(),
                "1".into(),
                format!("released, usable from {}", r.usable_at),
            ]);
        }
        if b.more {
            rows.push(vec![
                b.cluster.clone(),
                opt(&b.node),
                b.block.clone(),
                "...".into(),
                "".into(),
                "more (raise --limit)".into(),
            ]);
        }
    }
    rows
}

pub const HISTORY_HEADERS: &[&str] = &[
    "ADDRESS", "HELD BY", "MAC", "CLUSTER", "NODE", "FROM", "UNTIL",
];

pub fn history_rows(h: &[HistoryEntry]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = h
        .iter()
        .map(|e| {
            let mac = match &e.holder {
                Holder::Vm { mac: Some(m), .. } => m.to_string(),
                _ => "-".into(),
            };
            vec![
                e.address.to_string(),
                holder(&e.holder),
                mac,
                e.cluster.clone(),
                opt(&e.node),
                e.since.to_string(),
                e.until.map_or_else(|| "now".into(), |u| u.to_string()),
            ]
        })
        .collect();
    rows
}

pub fn history(h: &[HistoryEntry]) -> String {
    if h.is_empty() {
        return "nobody\n".into();
    }
    table(HISTORY_HEADERS, &history_rows(h))
}

pub const USAGE_HEADERS: &[&str] = &[
    "CLUSTER", "NODE", "BLOCK", "USED", "RESERVED", "COOLING", "FREE", "SYSTEM", "TOTAL", "FULL",
];

/// A count of addresses for people: as is below a million, a power of two
/// as `2^N`, others with their digits grouped (an IPv6 /64 has
/// 18,446,744,073,709,551,616 addresses).
pub fn count(n: u128) -> String {
    if n < 1_000_000 {
        return n.to_string();
    }
    if n.is_power_of_two() {
        return format!("2^{}", n.trailing_zeros());
    }
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn usage_rows(u: &[Usage]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = u
        .iter()
        .map(|u| {
            let usable = u.total - u.system;
            let pct = if usable == 0 {
                "-".to_string()
            } else {
                format!(
                    "{:.1}%",
                    (u.used + u.reserved) as f64 * 100.0 / usable as f64
                )
            };
            vec![
                u.cluster.clone(),
                opt(&u.node),
                u.block.clone(),
                count(u.used),
                count(u.reserved),
                count(u.cooling),
                count(u.free),
                count(u.system),
                count(u.total),
                pct,
            ]
        })
        .collect();
    rows
}

pub fn usage(u: &[Usage]) -> String {
    table(USAGE_HEADERS, &usage_rows(u))
}

pub fn released(r: &ReleaseResult) -> String {
    format!(
        "released {} from {}; handed out again from {} (cool-down {})\n",
        r.address,
        r.holder.describe(),
        r.usable_at,
        r.cooldown
    )
}

pub fn check(r: &CheckReport) -> String {
    let mut s = format!(
        "checked {} blocks, {} VMs, {} held addresses: ",
        r.blocks, r.vms, r.active_allocations
    );
    if r.problems.is_empty() {
        s.push_str("consistent\n");
    } else {
        let _ = writeln!(s, "{} problems", r.problems.len());
        for p in &r.problems {
            let _ = writeln!(s, "  {p}");
        }
    }
    s
}

pub const TOKENS_HEADERS: &[&str] = &["ID", "ROLE", "NODE", "CREATED", "REVOKED", "NAME"];

pub fn tokens_rows(all: &[vmfabric_model::TokenInfo]) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.role.to_string(),
                t.node.clone().unwrap_or_else(|| "-".into()),
                t.created_at.to_string(),
                t.revoked_at
                    .map_or_else(|| "-".into(), |r| format!("revoked {r}")),
                t.name.clone(),
            ]
        })
        .collect();
    rows
}

pub const AGENT_REPORTS_HEADERS: &[&str] =
    &["NODE", "REPORTED", "REVISION", "CHANGES", "ERRORS", "BGP"];

pub fn agent_reports_rows(
    all: &[vmfabric_model::AgentStatus],
    now: vmfabric_model::Timestamp,
) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|a| {
            let r = &a.report;
            let count = |k: &str| r[k].as_array().map_or(0, Vec::len);
            let sessions = r["sessions"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .map(|x| {
                            format!(
                                "{} {}",
                                x["peer"].as_str().unwrap_or("?"),
                                x["state"].as_str().unwrap_or("?")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            vec![
                a.node.clone(),
                format!("{} s ago", (now.0 - a.at.0).max(0) / 1_000_000),
                r["revision"].to_string(),
                count("changes").to_string(),
                match (count("failures"), r["error"].as_str()) {
                    (_, Some(e)) => e.to_string(),
                    (0, None) => "-".into(),
                    (n, None) => format!("{n} failed"),
                },
                sessions,
            ]
        })
        .collect();
    rows
}

pub const CHANGES_HEADERS: &[&str] = &[
    "REVISION", "AT", "ACTOR", "KIND", "SUBJECT", "CLUSTER", "REACHES", "DETAIL",
];

pub fn changes_rows(all: &[vmfabric_store::Change]) -> Vec<Vec<String>> {
    all.iter()
        .map(|c| {
            let reach = match &c.reach {
                vmfabric_store::Reach::None => "-".to_string(),
                vmfabric_store::Reach::Cluster => "every node".to_string(),
                vmfabric_store::Reach::Nodes(n) => n.join(", "),
            };
            vec![
                format!("{}.{}", c.revision, c.seq),
                c.at.to_string(),
                opt(&c.actor),
                c.kind.clone(),
                c.subject.clone(),
                opt(&c.cluster),
                reach,
                c.detail.to_string(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn counts_read_well() {
        assert_eq!(super::count(8190), "8190");
        assert_eq!(super::count(1 << 64), "2^64");
        assert_eq!(super::count((1 << 64) - 3), "18,446,744,073,709,551,613");
        assert_eq!(super::count(16_777_214), "16,777,214");
    }
}
