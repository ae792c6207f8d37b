//! Every operation of the store, on both backends: listings, free space,
//! reservations, removals, deletion, and `check` after each step.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::{Error, NodeInput};
use vmfabric_store::{AddressFilter, Store};

#[tokio::test]
async fn the_whole_lifecycle() {
    for t in stores().await {
        lifecycle(t).await;
    }
}

async fn lifecycle(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/27")).await.unwrap();
    s.add_node("sw", &node("n1", "192.0.2.2")).await.unwrap();
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    let hz = NodeInput {
        subnets: vec!["203.0.113.40/29".into()],
        ipv6: Some("2a01:4f8:1::2/64".into()),
        ..node("h1", "123.45.12.48")
    };
    s.add_node("hz", &hz).await.unwrap();
    s.create_vm("sw", &vm("a", "n1")).await.unwrap();
    let mut six = vm("b", "h1");
    six.ipv6 = true;
    s.create_vm("hz", &six).await.unwrap();
    s.reserve("192.0.2.10", Some("router")).await.unwrap();
    assert_consistent(s).await;

    assert_eq!(s.clusters().await.unwrap().len(), 2, "{b}");
    assert_eq!(s.cluster("sw").await.unwrap().vms, 1, "{b}");
    assert_eq!(s.networks(Some("sw")).await.unwrap().len(), 1, "{b}");
    assert_eq!(s.nodes(None).await.unwrap().len(), 2, "{b}");
    assert_eq!(s.node("h1").await.unwrap().ranges.len(), 2, "{b}");
    assert_eq!(
        s.vms(&AddressFilter::default()).await.unwrap().len(),
        2,
        "{b}"
    );
    let all = s.allocations(&AddressFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4, "{b}: {all:?}");
    let h1 = AddressFilter {
        node: Some("h1".into()),
        ..AddressFilter::default()
    };
    assert_eq!(s.allocations(&h1).await.unwrap().len(), 2, "{b}");
    let free = s.free_space(&h1, 10).await.unwrap();
    assert_eq!(free.len(), 2, "{b}");
    let usage = s.usage(Some("hz")).await.unwrap();
    assert_eq!(usage.iter().map(|u| u.used).sum::<u128>(), 2, "{b}");
    assert_eq!(s.history("192.0.2.10", None).await.unwrap().len(), 1, "{b}");

    // Removals refuse while something is held, then succeed.
    assert!(
        matches!(
            s.remove_network("sw", "192.0.2.0/27").await,
            Err(Error::Conflict { .. })
        ),
        "{b}"
    );
    assert!(
        matches!(s.remove_node("h1").await, Err(Error::Conflict { .. })),
        "{b}"
    );
    assert!(
        matches!(s.delete_cluster("hz").await, Err(Error::Conflict { .. })),
        "{b}"
    );
    s.delete_vm("b").await.unwrap();
    s.remove_node("h1").await.unwrap();
    s.delete_cluster("hz").await.unwrap();
    s.delete_vm("a").await.unwrap();
    assert!(
        matches!(s.delete_cluster("sw").await, Err(Error::Conflict { .. })),
        "{b}: reservation"
    );
    s.release("192.0.2.10").await.unwrap();
    s.remove_node("n1").await.unwrap();
    s.remove_network("sw", "192.0.2.0/27").await.unwrap();
    s.delete_cluster("sw").await.unwrap();
    assert!(s.clusters().await.unwrap().is_empty(), "{b}");
    // History outlives everything.
    assert_eq!(s.history("192.0.2.10", None).await.unwrap().len(), 1, "{b}");
    assert_consistent(s).await;
}
