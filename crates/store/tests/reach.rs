//! The change log says whose plans each change reaches, and the controller
//! wakes only those agents: so the log must name every node whose plan a
//! change alters (or it would never learn of it), and for changes of one
//! VM exactly those nodes (or agents would be woken for nothing). After
//! every operation of random sequences, on SQLite and PostgreSQL, the
//! plans of all nodes are rebuilt and compared with the log.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use proptest::prelude::*;
use vmfabric_model::NodeInput;
use vmfabric_plan::build;
use vmfabric_store::{ListAll, Reach, SqlStore, Store};

/// (cluster, node, its address): the nodes that may exist.
const NODES: [(&str, &str, &str); 6] = [
    ("sw", "s1", "192.0.2.2"),
    ("sw", "s2", "192.0.2.3"),
    ("fab", "f1", "172.16.0.11"),
    ("fab", "f2", "172.16.0.12"),
    ("hz", "h1", "123.45.12.48"),
    ("hz", "h2", "123.45.12.49"),
];

#[derive(Debug, Clone)]
enum Op {
    Create(u8, bool),
    Delete(u8),
    Migrate(u8),
    /// Release the VM's first address (it keeps running without it).
    Release(u8),
    Reserve(u8),
    AddNetwork(bool),
    RemoveNetwork(bool),
    /// Remove a node without VMs, or add it back.
    ToggleNode(u8),
}

fn routing_input(name: &str, addr: &str) -> NodeInput {
    let (sub, six) = if name == "h1" {
        ("203.0.113.40/29", "2a01:4f8:1::2/64")
    } else {
        ("203.0.113.48/29", "2a01:4f8:2::2/64")
    };
    NodeInput {
        subnets: vec![sub.into()],
        ipv6: Some(six.into()),
        ..node(name, addr)
    }
}

async fn world(s: &SqlStore) {
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/27")).await.unwrap();
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("198.51.100.0/28"))
        .await
        .unwrap();
    s.add_network("fab", &network("2001:db8:6::/64"))
        .await
        .unwrap();
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    for (c, n, a) in NODES {
        if c == "hz" {
            s.add_node(c, &routing_input(n, a)).await.unwrap();
        } else {
            s.add_node(c, &node(n, a)).await.unwrap();
        }
    }
}

/// The plan of every node that exists, as JSON text.
async fn plans(s: &SqlStore) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in s.all_nodes(None).await.unwrap() {
        let plan = build(&s.plan_input(&n.node.name).await.unwrap());
        out.insert(n.node.name, serde_json::to_string(&plan).unwrap());
    }
    out
}

async fn run(t: TestStore, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let s = &t.store;
    world(s).await;
    let mut live: Vec<(String, usize)> = Vec::new();
    let mut before = plans(s).await;
    let mut after_change = s
        .changes(&Default::default(), &Default::default())
        .await
        .unwrap()
        .items[0]
        .clone();
    for (i, op) in ops.into_iter().enumerate() {
        let mut one_vm = false;
        match op.clone() {
            Op::Create(n, six) => {
                let n = usize::from(n) % NODES.len();
                let (c, node, _) = NODES[n];
                let name = format!("v{i}");
                let input = vmfabric_model::VmInput {
                    ipv6: six,
                    ..vm(&name, node)
                };
                if s.create_vm(c, &input).await.is_ok() {
                    live.push((name, n));
                }
                one_vm = true;
            }
            Op::Delete(k) if !live.is_empty() => {
                let (name, _) = live.remove(usize::from(k) % live.len());
                s.delete_vm(&name).await.unwrap();
                one_vm = true;
            }
            Op::Migrate(k) if !live.is_empty() => {
                let idx = usize::from(k) % live.len();
                let (name, at) = live[idx].clone();
                let to = at ^ 1;
                if s.migrate_vm(&name, NODES[to].1).await.is_ok() {
                    live[idx].1 = to;
                }
                one_vm = true;
            }
            Op::Release(k) if !live.is_empty() => {
                let (name, _) = &live[usize::from(k) % live.len()];
                let v = s.vm(name).await.unwrap();
                if let Some(a) = v.nics[0].addresses.first() {
                    s.release(&a.address.to_string()).await.unwrap();
                }
                one_vm = true;
            }
            Op::Reserve(k) => {
                let _ = s.reserve(&format!("198.51.100.{}", k % 16), None).await;
            }
            Op::AddNetwork(fab) => {
                let (c, cidr) = if fab {
                    ("fab", "198.51.100.64/28")
                } else {
                    ("sw", "192.0.2.64/27")
                };
                let _ = s.add_network(c, &network(cidr)).await;
            }
            Op::RemoveNetwork(fab) => {
                let (c, cidr) = if fab {
                    ("fab", "198.51.100.64/28")
                } else {
                    ("sw", "192.0.2.64/27")
                };
                let _ = s.remove_network(c, cidr, false).await;
            }
            Op::ToggleNode(k) => {
                let n = usize::from(k) % NODES.len();
                let (c, name, addr) = NODES[n];
                if live.iter().all(|(_, at)| *at != n) && s.remove_node(name, false).await.is_err()
                {
                    let input = if c == "hz" {
                        routing_input(name, addr)
                    } else {
                        node(name, addr)
                    };
                    // Refused if a VM took its address meanwhile.
                    let _ = s.add_node(c, &input).await;
                }
            }
            _ => continue,
        }
        let after = plans(s).await;
        let changed: BTreeSet<String> = before
            .keys()
            .chain(after.keys())
            .filter(|n| before.get(*n) != after.get(*n))
            .cloned()
            .collect();
        // Every node the log says this operation reached.
        let log = s
            .changes_after((after_change.revision, after_change.seq), 100)
            .await
            .unwrap();
        let mut reached: BTreeSet<String> = BTreeSet::new();
        for c in &log {
            match &c.reach {
                Reach::None => {}
                Reach::Nodes(ns) => reached.extend(ns.iter().cloned()),
                Reach::Cluster => {
                    let cluster = c.cluster.as_deref().unwrap_or_default();
                    for (cl, n, _) in NODES {
                        if cl == cluster {
                            reached.insert(n.to_string());
                        }
                    }
                }
            }
        }
        if let Some(last) = log.last() {
            after_change = last.clone();
        }
        prop_assert!(
            changed.is_subset(&reached),
            "{op:?}: plans of {changed:?} changed, the log reached {reached:?}"
        );
        if one_vm {
            prop_assert_eq!(&changed, &reached, "{:?} reached more than it changed", op);
        }
        before = after;
    }
    Ok(())
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            4 => (any::<u8>(), any::<bool>()).prop_map(|(n, s)| Op::Create(n, s)),
            1 => any::<u8>().prop_map(Op::Delete),
            2 => any::<u8>().prop_map(Op::Migrate),
            1 => any::<u8>().prop_map(Op::Release),
            1 => any::<u8>().prop_map(Op::Reserve),
            1 => any::<bool>().prop_map(Op::AddNetwork),
            1 => any::<bool>().prop_map(Op::RemoveNetwork),
            1 => any::<u8>().prop_map(Op::ToggleNode),
        ],
        1..30,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn the_log_reaches_every_node_whose_plan_changed(ops in ops()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            for t in stores().await {
                run(t, ops.clone()).await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
