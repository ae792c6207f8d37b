//! Plans built from the store: every VM address held in the store appears
//! exactly once, in exactly one node's plan (its VM's node), whatever was
//! created, deleted and migrated before.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use common::*;
use proptest::prelude::*;
use vmfabric_model::NodeInput;
use vmfabric_model::view::Holder;
use vmfabric_plan::build;
use vmfabric_store::ListAll;
use vmfabric_store::{AddressFilter, Store};

const NODES: [(&str, &str); 6] = [
    ("sw", "s1"),
    ("sw", "s2"),
    ("fab", "f1"),
    ("fab", "f2"),
    ("hz", "h1"),
    ("hz", "h2"),
];

#[derive(Debug, Clone)]
enum Op {
    Create(u8, bool),
    Delete(u8),
    Migrate(u8),
}

async fn world(s: &vmfabric_store::SqlStore) {
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/27")).await.unwrap();
    s.add_network("sw", &network("2001:db8:5::/64"))
        .await
        .unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    s.add_node("sw", &node("s2", "192.0.2.3")).await.unwrap();
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("198.51.100.0/28"))
        .await
        .unwrap();
    s.add_network("fab", &network("2001:db8:6::/64"))
        .await
        .unwrap();
    s.add_node("fab", &node("f1", "172.16.0.11")).await.unwrap();
    s.add_node("fab", &node("f2", "172.16.0.12")).await.unwrap();
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    for (n, a, sub, six) in [
        ("h1", "123.45.12.48", "203.0.113.40/29", "2a01:4f8:1::2/64"),
        ("h2", "123.45.12.49", "203.0.113.48/29", "2a01:4f8:2::2/64"),
    ] {
        let input = NodeInput {
            subnets: vec![sub.into()],
            ipv6: Some(six.into()),
            ..node(n, a)
        };
        s.add_node("hz", &input).await.unwrap();
    }
}

async fn check_plans(s: &vmfabric_store::SqlStore) -> Result<(), TestCaseError> {
    // Where the store says each VM address is.
    let mut want: BTreeMap<IpAddr, String> = BTreeMap::new();
    for a in s.all_allocations(&AddressFilter::default()).await.unwrap() {
        if let Holder::Vm { .. } = a.holder {
            want.insert(a.address, a.node.clone().unwrap());
        }
    }
    // Where the plans put them.
    let mut got: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for (_, n) in NODES {
        let plan = build(&s.plan_input(n).await.unwrap());
        for p in &plan.firewall.ports {
            for a in p
                .ipv4
                .iter()
                .map(|a| IpAddr::V4(*a))
                .chain(p.ipv6.iter().map(|a| IpAddr::V6(*a)))
            {
                got.entry(a).or_default().push(n.to_string());
            }
        }
    }
    prop_assert_eq!(got.len(), want.len());
    for (addr, node) in &want {
        prop_assert_eq!(got.get(addr), Some(&vec![node.clone()]), "{}", addr);
    }
    Ok(())
}

async fn run(t: TestStore, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let s = &t.store;
    world(s).await;
    let mut live: Vec<(String, usize)> = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match op {
            Op::Create(n, six) => {
                let (c, node) = NODES[usize::from(n) % NODES.len()];
                let name = format!("v{i}");
                let mut input = vm(&name, node);
                input.ipv6 = six;
                if s.create_vm(c, &input).await.is_ok() {
                    live.push((name, usize::from(n) % NODES.len()));
                }
            }
            Op::Delete(k) if !live.is_empty() => {
                let (name, _) = live.remove(usize::from(k) % live.len());
                s.delete_vm(&name).await.unwrap();
            }
            Op::Migrate(k) if !live.is_empty() => {
                let idx = usize::from(k) % live.len();
                let (name, at) = live[idx].clone();
                // The other node of the same cluster.
                let to = at ^ 1;
                let moved = s.migrate_vm(&name, NODES[to].1).await;
                if NODES[at].0 == "hz" {
                    prop_assert!(moved.is_err(), "routing must refuse");
                } else {
                    prop_assert!(moved.is_ok());
                    live[idx].1 = to;
                    let plan = build(&s.plan_input(NODES[to].1).await.unwrap());
                    prop_assert!(plan.firewall.ports.iter().any(|p| p.vm == name));
                    let old = build(&s.plan_input(NODES[at].1).await.unwrap());
                    prop_assert!(!old.firewall.ports.iter().any(|p| p.vm == name));
                }
            }
            _ => {}
        }
    }
    check_plans(s).await
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (any::<u8>(), any::<bool>()).prop_map(|(n, six)| Op::Create(n, six)),
        1 => any::<u8>().prop_map(Op::Delete),
        2 => any::<u8>().prop_map(Op::Migrate),
    ];
    proptest::collection::vec(op, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn every_vm_address_is_in_exactly_one_plan(ops in ops()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            run(store().await, ops.clone()).await?;
            run(pg_store().await, ops).await
        })?;
    }
}
