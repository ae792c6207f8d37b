//! What changes between two plans of a node: the basis of the agent's
//! dry run and of `vmfabric node plan --diff-from`.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::types::{Address, Link, NeighbourProxy, NodePlan, Port, Route, Sysctl};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Remove,
    Add,
}

/// One item that appears or disappears.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub op: Op,
    pub item: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = match self.op {
            Op::Remove => '-',
            Op::Add => '+',
        };
        write!(f, "{sign} {}", self.item)
    }
}

pub fn link(l: &Link) -> String {
    let mut s = format!("link {} {:?}", l.name, l.kind).to_lowercase();
    if let Some(m) = &l.master {
        s.push_str(&format!(" master {m}"));
    }
    if let Some(m) = &l.mac {
        s.push_str(&format!(" mac {m}"));
    }
    if l.mac_from_uplink {
        s.push_str(" mac from uplink");
    }
    if let Some(p) = &l.peer {
        s.push_str(&format!(" peer {p}"));
    }
    if let Some(m) = &l.peer_mac {
        s.push_str(&format!(" peer mac {m}"));
    }
    if let Some(m) = l.mtu {
        s.push_str(&format!(" mtu {m}"));
    }
    s
}

pub fn address(a: &Address) -> String {
    format!("address {} dev {}", a.cidr, a.dev)
}

pub fn route(r: &Route) -> String {
    match r.via {
        Some(v) => format!("route {} via {} dev {}", r.dst, v, r.dev),
        None => format!("route {} dev {}", r.dst, r.dev),
    }
}

pub fn sysctl(s: &Sysctl) -> String {
    format!("sysctl {}={}", s.key, s.value)
}

pub fn proxy(p: &NeighbourProxy) -> String {
    format!("neighbour proxy {} dev {}", p.address, p.dev)
}

pub fn port(p: &Port) -> String {
    let addrs: Vec<String> = p
        .ipv4
        .iter()
        .map(ToString::to_string)
        .chain(p.ipv6.iter().map(ToString::to_string))
        .collect();
    format!(
        "firewall port {} vm {} mac {} addresses {}",
        p.ifname,
        p.vm,
        p.mac,
        addrs.join(",")
    )
}

fn sets<T>(old: &[T], new: &[T], f: fn(&T) -> String, out: &mut Vec<Change>) {
    let a: BTreeSet<String> = old.iter().map(f).collect();
    let b: BTreeSet<String> = new.iter().map(f).collect();
    for x in a.difference(&b) {
        out.push(Change {
            op: Op::Remove,
            item: x.clone(),
        });
    }
    for x in b.difference(&a) {
        out.push(Change {
            op: Op::Add,
            item: x.clone(),
        });
    }
}

fn whole<T: Serialize + PartialEq>(
    name: &str,
    old: &Option<T>,
    new: &Option<T>,
    out: &mut Vec<Change>,
) {
    if old == new {
        return;
    }
    let text = |v: &T| format!("{name} {}", serde_json::to_string(v).unwrap_or_default());
    if let Some(o) = old {
        out.push(Change {
            op: Op::Remove,
            item: text(o),
        });
    }
    if let Some(n) = new {
        out.push(Change {
            op: Op::Add,
            item: text(n),
        });
    }
}

/// Every item removed from `old` and added in `new`, removals first.
pub fn diff(old: &NodePlan, new: &NodePlan) -> Vec<Change> {
    let mut out = Vec::new();
    sets(&old.links, &new.links, link, &mut out);
    sets(&old.addresses, &new.addresses, address, &mut out);
    sets(&old.routes, &new.routes, route, &mut out);
    sets(&old.sysctls, &new.sysctls, sysctl, &mut out);
    sets(
        &old.neighbour_proxies,
        &new.neighbour_proxies,
        proxy,
        &mut out,
    );
    sets(&old.firewall.ports, &new.firewall.ports, port, &mut out);
    whole(
        "uplink guard",
        &old.firewall.uplink_guard,
        &new.firewall.uplink_guard,
        &mut out,
    );
    whole("bgp", &old.bgp, &new.bgp, &mut out);
    whole("ndp", &old.ndp, &new.ndp, &mut out);
    out.sort();
    out
}
