//! `/etc/ndppd.conf` for a routing node whose provider /64 is on-link.
//!
//! As in the seed (proxy the uplink, rule for the /64 answered through the
//! bridge), plus what the lab showed is needed on this kernel: the node's
//! own `::2` answered statically, and the provider's router `::1` answered
//! towards the VMs on the bridge.

use std::fmt::Write;

use crate::types::{NdpMode, NodePlan};

/// The config, or `None` when the node does not use ndppd.
pub fn conf(plan: &NodePlan) -> Option<String> {
    let n = plan.ndp.as_ref().filter(|n| n.mode == NdpMode::Ndppd)?;
    let mut s = String::new();
    let _ = writeln!(s, "# ndppd.conf of node {}, written by vmfabric", plan.node);
    s.push_str("route-ttl 30000\n\n");
    let _ = writeln!(
        s,
        "proxy {} {{\n  router yes\n  timeout 500\n  ttl 30000\n  rule {}/128 {{\n    static\n  }}\n  rule {} {{\n    iface {}\n  }}\n}}\n",
        n.uplink, n.node_address, n.network, n.bridge
    );
    let _ = writeln!(
        s,
        "proxy {} {{\n  router yes\n  timeout 500\n  ttl 30000\n  rule {}/128 {{\n    iface {}\n  }}\n}}",
        n.bridge, n.router, n.uplink
    );
    Some(s)
}
