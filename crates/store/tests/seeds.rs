//! The three seed examples through the store, plus the rules around them.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::{Error, NodeInput};
use vmfabric_store::Store;

#[tokio::test]
async fn switching_seed_example() {
    for t in stores().await {
        switching_seed_example_on(t).await;
    }
}

async fn switching_seed_example_on(t: TestStore) {
    let s = &t.store;
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/27")).await.unwrap();
    s.add_network("sw", &network("192.0.2.32/27"))
        .await
        .unwrap();
    // One of the network addresses is the node's, on vmbr0.
    s.add_node("sw", &node("n1", "192.0.2.2")).await.unwrap();
    s.add_node("sw", &node("n2", "192.0.2.3")).await.unwrap();
    let mut got = Vec::new();
    for i in 0..56 {
        let n = if i % 2 == 0 { "n1" } else { "n2" };
        s.create_vm("sw", &vm(&format!("vm{i}"), n)).await.unwrap();
        got.push(ip_of(s, &format!("vm{i}")).await);
    }
    // .0 network, .1 gateway, .2/.3 nodes, .31 broadcast; then .33.. of the second
    assert_eq!(got[0], "192.0.2.4");
    assert_eq!(got[26], "192.0.2.30");
    assert_eq!(got[27], "192.0.2.34");
    assert!(!got.iter().any(|a| ["192.0.2.31", "192.0.2.32", "192.0.2.33", "192.0.2.63"].contains(&a.as_str())));
    let e = s
        .create_vm("sw", &vm("one-too-many", "n1"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Exhausted {
                used: 56,
                usable: 56,
                ..
            }
        ),
        "{e}"
    );
    let v = s.vm("vm0").await.unwrap();
    assert_eq!(v.nics[0].addresses[0].prefix_len, 27);
    assert_eq!(
        v.nics[0].addresses[0].gateway.unwrap().to_string(),
        "192.0.2.1"
    );
    assert_eq!(v.nics[0].host_interface.as_str(), "vm0_net0");
    assert_consistent(s).await;
}

#[tokio::test]
async fn routing_seed_example() {
    for t in stores().await {
        routing_seed_example_on(t).await;
    }
}

async fn routing_seed_example_on(t: TestStore) {
    let s = &t.store;
    s.create_cluster(&cluster("hetzner", "routing"))
        .await
        .unwrap();
    let n = NodeInput {
        subnets: vec!["203.0.113.40/29".into()],
        uplink: Some("eno1".into()),
        ..node("node1", "123.45.12.48")
    };
    s.add_node("hetzner", &n).await.unwrap();
    let mut got = Vec::new();
    for i in 0..8 {
        s.create_vm("hetzner", &vm(&format!("vm{i}"), "node1"))
            .await
            .unwrap();
        got.push(ip_of(s, &format!("vm{i}")).await);
    }
    let want: Vec<String> = (40..48).map(|i| format!("203.0.113.{i}")).collect();
    assert_eq!(got, want);
    let v = s.vm("vm0").await.unwrap();
    let a = &v.nics[0].addresses[0];
    assert_eq!(
        (a.prefix_len, a.gateway.unwrap().to_string()),
        (32, "123.45.12.48".to_string())
    );
    let e = s
        .create_vm("hetzner", &vm("vm8", "node1"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("no free IPv4 address in the IPv4 ranges of node node1: 8 of 8"),
        "{e}"
    );
    assert_consistent(s).await;
}

#[tokio::test]
async fn fabric_seed_example() {
    for t in stores().await {
        fabric_seed_example_on(t).await;
    }
}

async fn fabric_seed_example_on(t: TestStore) {
    let s = &t.store;
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("198.51.100.0/24"))
        .await
        .unwrap();
    s.add_node("fab", &node("node1", "172.16.0.11"))
        .await
        .unwrap();
    s.add_node("fab", &node("node2", "172.16.0.12"))
        .await
        .unwrap();
    for (i, n) in [(1, "node1"), (2, "node2"), (3, "node1")] {
        let v = s.create_vm("fab", &vm(&format!("vm{i}"), n)).await.unwrap();
        let a = &v.nics[0].addresses[0];
        assert_eq!(a.address.to_string(), format!("198.51.100.{}", i - 1));
        assert_eq!(a.prefix_len, 32);
        assert_eq!(a.gateway.unwrap().to_string(), "10.0.0.1");
        assert_eq!(v.nics[0].host_interface.as_str(), format!("vm{i}_net0"));
    }
    let moved = s.migrate_vm("vm1", "node2").await.unwrap();
    assert_eq!(moved.node, "node2");
    assert_eq!(
        moved.nics[0].addresses[0].address.to_string(),
        "198.51.100.0"
    );
    assert_consistent(s).await;
}
