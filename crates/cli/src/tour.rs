//! `vmfabric tour`: the three seed examples, run against a fresh SQLite
//! file, printed as a short story. It is the README's first command, so it
//! shows what the product does, with real results from the real store.

use std::fmt::Write;
use std::path::PathBuf;

use vmfabric_model::{ClusterInput, Error, NetworkInput, NodeInput, Result, VmInput};
use vmfabric_store::ListAll;
use vmfabric_store::{AddressFilter, SqlStore, Store};

use crate::args::TourArgs;
use crate::{Out, render};

fn vm(name: &str, node: &str, ipv6: bool) -> VmInput {
    VmInput {
        name: name.into(),
        node: node.into(),
        ipv6,
        ..VmInput::default()
    }
}

fn step(out: &mut String, title: &str, cmd: &str) {
    let _ = write!(out, "\n== {title}\n$ vmfabric {cmd}\n");
}

pub async fn run(a: TourArgs) -> Result<Out> {
    let mut tmp = None;
    let path: PathBuf = match a.keep {
        Some(p) => {
            if p.exists() {
                return Err(Error::invalid(
                    "keep",
                    p.display(),
                    "the tour starts from an empty database: give a path that does not exist yet",
                ));
            }
            p
        }
        None => {
            let dir = std::env::temp_dir().join(format!("vmfabric-tour-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let p = dir.join("tour.db");
            tmp = Some(dir);
            p
        }
    };
    let s = SqlStore::init_sqlite(&path).await?;
    let mut t = format!(
        "vmfabric tour: a fresh SQLite database at {}{}\n",
        path.display(),
        if tmp.is_some() {
            " (removed at the end; keep one with --keep PATH)"
        } else {
            ""
        }
    );

    // --- Switching: the seed's two /27 blocks, bridged nodes.
    step(
        &mut t,
        "Switching: a pool of 192.0.2.0/27 and 192.0.2.32/27; one address of the network is each node's, on vmbr0",
        "cluster create rack1 --type switching",
    );
    let c = s
        .create_cluster(&ClusterInput {
            name: "rack1".into(),
            network_type: "switching".into(),
            ..ClusterInput::default()
        })
        .await?;
    t.push_str(&render::cluster(&c));
    for cidr in ["192.0.2.0/27", "192.0.2.32/27"] {
        let _ = writeln!(t, "$ vmfabric network add rack1 {cidr}");
        s.add_network(
            "rack1",
            &NetworkInput {
                cidr: cidr.into(),
                ..NetworkInput::default()
            },
        )
        .await?;
    }
    for (n, addr) in [("kvm1", "192.0.2.2"), ("kvm2", "192.0.2.3")] {
        let _ = writeln!(t, "$ vmfabric node add rack1 {n} --address {addr}");
        s.add_node(
            "rack1",
            &NodeInput {
                name: n.into(),
                address: addr.into(),
                ..NodeInput::default()
            },
        )
        .await?;
    }
    for (v, n) in [("web1", "kvm1"), ("web2", "kvm2"), ("db1", "kvm1")] {
        let _ = writeln!(t, "$ vmfabric vm create rack1 {v} --node {n}");
        let vm = s.create_vm("rack1", &vm(v, n, false)).await?;
        t.push_str(&render::vm(&vm));
    }
    step(
        &mut t,
        "Migration keeps the address",
        "vm migrate web1 --to kvm2",
    );
    t.push_str(&render::vm(&s.migrate_vm("web1", "kvm2").await?));

    // --- Routing: Hetzner/OVH.
    step(
        &mut t,
        "Routing (Hetzner/OVH): primary IP 123.45.12.48, additional subnet 203.0.113.40/29, IPv6 ::2/64",
        "node add hetzner hz-node1 --address 123.45.12.48 --subnet 203.0.113.40/29 --ipv6 2a01:4f8:13b:9a7::2/64",
    );
    s.create_cluster(&ClusterInput {
        name: "hetzner".into(),
        network_type: "routing".into(),
        ..ClusterInput::default()
    })
    .await?;
    let n = s
        .add_node(
            "hetzner",
            &NodeInput {
                name: "hz-node1".into(),
                address: "123.45.12.48".into(),
                subnets: vec!["203.0.113.40/29".into()],
                ipv6: Some("2a01:4f8:13b:9a7::2/64".into()),
                ..NodeInput::default()
            },
        )
        .await?;
    t.push_str(&render::node(&n));
    for v in ["vm1", "vm2", "vm3"] {
        let _ = writeln!(t, "$ vmfabric vm create hetzner {v} --node hz-node1 --ipv6");
        t.push_str(&render::vm(
            &s.create_vm("hetzner", &vm(v, "hz-node1", true)).await?,
        ));
    }
    s.add_node(
        "hetzner",
        &NodeInput {
            name: "hz-node2".into(),
            address: "123.45.12.49".into(),
            subnets: vec!["203.0.113.48/29".into()],
            ..NodeInput::default()
        },
    )
    .await?;
    step(
        &mut t,
        "Routing pins addresses to their node",
        "vm migrate vm1 --to hz-node2",
    );
    match s.migrate_vm("vm1", "hz-node2").await {
        Err(e) => {
            let _ = writeln!(t, "error: {e}");
        }
        Ok(_) => {
            return Err(Error::storage(
                "the tour expected routing to refuse migration",
            ));
        }
    }

    // --- IP-fabric.
    step(
        &mut t,
        "IP-fabric: pool 198.51.100.0/24, VM gateway 10.0.0.1, routes announced with community 65000:100",
        "cluster create fabric --type ip-fabric --vm-gateway 10.0.0.1 --bgp-community 65000:100 --route-reflector 172.16.0.2:65000 --route-reflector 172.16.0.3:65000",
    );
    let c = s
        .create_cluster(&ClusterInput {
            name: "fabric".into(),
            network_type: "ip-fabric".into(),
            vm_gateway: Some("10.0.0.1".into()),
            bgp_community: Some("65000:100".into()),
            route_reflectors: vec!["172.16.0.2:65000".into(), "172.16.0.3:65000".into()],
            ..ClusterInput::default()
        })
        .await?;
    t.push_str(&render::cluster(&c));
    s.add_network(
        "fabric",
        &NetworkInput {
            cidr: "198.51.100.0/24".into(),
            ..NetworkInput::default()
        },
    )
    .await?;
    for (n, addr) in [("node1", "172.16.0.11"), ("node2", "172.16.0.12")] {
        s.add_node(
            "fabric",
            &NodeInput {
                name: n.into(),
                address: addr.into(),
                uplink: Some("uplink0".into()),
                ..NodeInput::default()
            },
        )
        .await?;
    }
    for (v, n) in [
        ("vm10", "node1"),
        ("vm11", "node2"),
        ("vm12", "node1"),
        ("customer-frontend-01", "node2"),
    ] {
        let _ = writeln!(t, "$ vmfabric vm create fabric {v} --node {n}");
        t.push_str(&render::vm(&s.create_vm("fabric", &vm(v, n, false)).await?));
    }

    // --- History.
    step(
        &mut t,
        "Deleting a VM keeps the history of its address",
        "vm delete vm11",
    );
    let gone = s.delete_vm("vm11").await?;
    let addr = gone
        .nics
        .first()
        .and_then(|n| n.addresses.first())
        .map(|a| a.address.to_string())
        .unwrap_or_default();
    let _ = writeln!(t, "$ vmfabric ip history {addr}");
    t.push_str(&render::history(&s.all_history(&addr, None).await?));

    step(&mut t, "Pool usage", "pool usage");
    let usage = s.all_usage(None).await?;
    t.push_str(&render::usage(&usage));
    let report = s.check().await?;
    step(&mut t, "Every invariant holds", "check");
    t.push_str(&render::check(&report));
    let all = s.all_allocations(&AddressFilter::default()).await?;
    let json = serde_json::json!({"database": path.display().to_string(), "allocations": all, "usage": usage});
    if let Some(dir) = tmp {
        let _ = std::fs::remove_dir_all(dir);
    }
    Out::new(&json, t)
}
