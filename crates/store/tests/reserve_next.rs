//! `ip reserve --next`: an address for something that is not a VM (a VIP,
//! a router), taken by the same rules and in the same order as a VM's,
//! from a cluster's pool, a node's ranges or one network; on SQLite and
//! PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::view::Holder;
use vmfabric_model::{ClusterInput, Error, NodeInput};
use vmfabric_store::{ChangeFilter, ListAll, ReserveNext, Store};

fn next_of(cluster: Option<&str>, node: Option<&str>, network: Option<&str>) -> ReserveNext {
    ReserveNext {
        cluster: cluster.map(String::from),
        node: node.map(String::from),
        network: network.map(String::from),
        ipv6: false,
        note: Some("VIP".into()),
    }
}

#[tokio::test]
async fn the_next_address_follows_the_vm_rules_of_each_type() {
    for t in stores().await {
        on(t).await;
    }
}

async fn on(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    // Switching: .0 network, .1 gateway, .2 the node; .7 broadcast.
    s.create_cluster(&ClusterInput {
        cooldown: Some("1h".into()),
        ..cluster("sw", "switching")
    })
    .await
    .unwrap();
    s.add_network("sw", &network("192.0.2.0/29")).await.unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    let a = s
        .reserve_next(&next_of(Some("sw"), None, None))
        .await
        .unwrap();
    assert_eq!(a.address.to_string(), "192.0.2.3", "{b}");
    assert_eq!(
        a.holder,
        Holder::Reserved {
            note: Some("VIP".into())
        },
        "{b}"
    );
    // A VM then gets the address after it, as it would after another VM.
    s.create_vm("sw", &vm("v1", "s1")).await.unwrap();
    assert_eq!(ip_of(s, "v1").await, "192.0.2.4", "{b}");
    // A node of a to-cluster type takes from the cluster's pool.
    let a = s
        .reserve_next(&next_of(None, Some("s1"), None))
        .await
        .unwrap();
    assert_eq!(a.address.to_string(), "192.0.2.5", "{b}");
    let a = s
        .reserve_next(&next_of(None, None, Some("192.0.2.0/29")))
        .await
        .unwrap();
    assert_eq!(a.address.to_string(), "192.0.2.6", "{b}");
    // Full: a released address cools down and is not taken; the error
    // counts the pool and changes nothing.
    s.release("192.0.2.4").await.unwrap();
    let before = s.revision().await.unwrap();
    match s.reserve_next(&next_of(Some("sw"), None, None)).await {
        Err(Error::Exhausted {
            used,
            usable,
            cooling,
            ..
        }) => {
            assert_eq!((used, usable, cooling), (3, 4, 1), "{b}")
        }
        other => panic!("{b}: {other:?}"),
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");
    // After the cool-down it is the next one again.
    t.clock.advance_secs(3601);
    let a = s
        .reserve_next(&next_of(Some("sw"), None, None))
        .await
        .unwrap();
    assert_eq!(a.address.to_string(), "192.0.2.4", "{b}");

    // Routing: the node's subnet, all usable; IPv6 from its /64 (::2 is
    // the node's own, ::1 the provider's router).
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    s.add_node(
        "hz",
        &NodeInput {
            subnets: vec!["203.0.113.40/29".into()],
            ipv6: Some("2a01:4f8:1::2/64".into()),
            ..node("h1", "123.45.12.48")
        },
    )
    .await
    .unwrap();
    let a = s
        .reserve_next(&next_of(None, Some("h1"), None))
        .await
        .unwrap();
    assert_eq!(a.address.to_string(), "203.0.113.40", "{b}");
    assert_eq!(a.node.as_deref(), Some("h1"), "{b}");
    let six = ReserveNext {
        ipv6: true,
        ..next_of(None, Some("h1"), None)
    };
    let a = s.reserve_next(&six).await.unwrap();
    assert_eq!(a.address.to_string(), "2a01:4f8:1::3", "{b}");
    s.create_vm("hz", &vm("mail", "h1")).await.unwrap();
    assert_eq!(ip_of(s, "mail").await, "203.0.113.41", "{b}");

    // IP-fabric: the cluster pool.
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("198.51.100.0/30"))
        .await
        .unwrap();
    s.add_node("fab", &node("f1", "172.16.0.11")).await.unwrap();
    let a = s
        .reserve_next(&next_of(None, Some("f1"), None))
        .await
        .unwrap();
    s.create_vm("fab", &vm("f-vm", "f1")).await.unwrap();
    assert!(a.address.to_string() < ip_of(s, "f-vm").await, "{b}");

    // Recorded like any reservation: history and the change log.
    let h = s.all_history("203.0.113.40", None).await.unwrap();
    assert_eq!(h.len(), 1, "{b}");
    let log = s
        .all_changes(&ChangeFilter {
            since: None,
            object: Some("203.0.113.40".into()),
        })
        .await
        .unwrap();
    assert_eq!(log[0].kind, "ip.reserve", "{b}");
    assert_eq!(log[0].detail["note"], "VIP", "{b}");

    // Bad input: refused with the field, nothing changed.
    let before = s.revision().await.unwrap();
    for (r, field) in [
        (next_of(Some("hz"), None, None), "cluster"),
        (next_of(None, None, None), "next"),
        (next_of(Some("sw"), Some("s1"), None), "next"),
        (next_of(None, None, Some("not-a-net")), "network"),
        (next_of(None, None, Some("10.9.9.0/24")), "network"),
        (next_of(Some("nope"), None, None), "cluster"),
        (next_of(None, Some("nope"), None), "node"),
    ] {
        match s.reserve_next(&r).await {
            Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{b}: {r:?}"),
            Err(Error::NotFound { object, .. }) => assert_eq!(object, field, "{b}: {r:?}"),
            other => panic!("{b}: {r:?}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");
    assert_consistent(s).await;
}
