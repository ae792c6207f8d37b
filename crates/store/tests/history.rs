//! History: every holding of an address is kept, with exact boundaries.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::view::Holder;
use vmfabric_model::{Timestamp, VmInput};
use vmfabric_store::ListAll;
use vmfabric_store::Store;

#[tokio::test]
async fn who_held_an_address_at_each_moment() {
    for t in stores().await {
        who_held_an_address_at_each_moment_on(t).await;
    }
}

async fn who_held_an_address_at_each_moment_on(t: TestStore) {
    let s = &t.store;
    s.create_cluster(&cluster("f", "ip-fabric")).await.unwrap();
    s.add_network("f", &network("198.51.100.0/30"))
        .await
        .unwrap();
    s.add_node("f", &node("n1", "172.16.0.11")).await.unwrap();
    s.add_node("f", &node("n2", "172.16.0.12")).await.unwrap();
    let ask = |name: &str| VmInput {
        ips: vec!["198.51.100.2".into()],
        ..vm(name, "n1")
    };
    let t0 = s.now();
    s.create_vm("f", &ask("alice")).await.unwrap();
    t.clock.advance_secs(3600);
    let tm = s.now();
    s.migrate_vm("alice", "n2").await.unwrap();
    t.clock.advance_secs(3600);
    let t1 = s.now();
    s.delete_vm("alice").await.unwrap();
    t.clock.advance_secs(60);
    let t2 = s.now();
    s.reserve("198.51.100.2", Some("abuse case 42"))
        .await
        .unwrap();
    t.clock.advance_secs(60);
    let t3 = s.now();
    s.release("198.51.100.2").await.unwrap();
    s.create_vm("f", &ask("bob")).await.unwrap();

    let all = s.all_history("198.51.100.2", None).await.unwrap();
    assert_eq!(all.len(), 4);
    // The migration splits alice's holding at the moment she moved, so
    // each entry names the node that really carried the address.
    for (e, node, since, until) in [(&all[0], "n1", t0, tm), (&all[1], "n2", tm, t1)] {
        assert!(matches!(&e.holder, Holder::Vm { vm, .. } if vm == "alice"));
        assert_eq!(
            (e.node.as_deref(), e.since, e.until),
            (Some(node), since, Some(until))
        );
    }
    assert!(matches!(&all[2].holder, Holder::Reserved { note: Some(n) } if n == "abuse case 42"));
    assert_eq!((all[2].since, all[2].until), (t2, Some(t3)));
    assert!(matches!(&all[3].holder, Holder::Vm { vm, .. } if vm == "bob"));
    assert_eq!(all[3].until, None);

    let at = |ts: Timestamp| async move { s.all_history("198.51.100.2", Some(ts)).await.unwrap() };
    assert!(at(Timestamp(t0.0 - 1)).await.is_empty());
    let h = at(t0).await;
    assert!(matches!(&h[..], [e] if matches!(&e.holder, Holder::Vm { vm, .. } if vm == "alice")));
    let node_at = |ts: Timestamp| async move {
        let h = at(ts).await;
        assert_eq!(h.len(), 1, "one holder at {ts:?}");
        h[0].node.clone()
    };
    assert_eq!(node_at(Timestamp(tm.0 - 1)).await.as_deref(), Some("n1"));
    assert_eq!(node_at(tm).await.as_deref(), Some("n2"));
    assert_eq!(at(Timestamp(t1.0 - 1)).await.len(), 1);
    // The end is exclusive: at the moment alice's holding ended, nobody had it.
    assert!(at(t1).await.is_empty());
    let h = at(Timestamp(t2.0 + 1)).await;
    assert!(matches!(&h[..], [e] if matches!(e.holder, Holder::Reserved { .. })));
    let h = at(t3).await;
    assert!(matches!(&h[..], [e] if matches!(&e.holder, Holder::Vm { vm, .. } if vm == "bob")));
    assert_consistent(s).await;
}

#[tokio::test]
async fn an_explicit_request_may_take_a_cooling_address() {
    for t in stores().await {
        an_explicit_request_may_take_a_cooling_address_on(t).await;
    }
}

async fn an_explicit_request_may_take_a_cooling_address_on(t: TestStore) {
    let s = &t.store;
    let c = vmfabric_model::ClusterInput {
        cooldown: Some("1h".into()),
        ..cluster("f", "ip-fabric")
    };
    s.create_cluster(&c).await.unwrap();
    s.add_network("f", &network("198.51.100.0/31"))
        .await
        .unwrap();
    s.add_node("f", &node("n1", "172.16.0.11")).await.unwrap();
    s.create_vm("f", &vm("a", "n1")).await.unwrap();
    s.create_vm("f", &vm("b", "n1")).await.unwrap();
    let r = s.release("198.51.100.0").await.unwrap();
    assert_eq!(r.usable_at.0 - s.now().0, 3_600_000_000);
    assert!(s.create_vm("f", &vm("c", "n1")).await.is_err());
    let asked = VmInput {
        ips: vec!["198.51.100.0".into()],
        ..vm("c", "n1")
    };
    let v = s.create_vm("f", &asked).await.unwrap();
    assert_eq!(v.nics[0].addresses[0].address.to_string(), "198.51.100.0");
    assert_consistent(s).await;
}
