//! Concurrent writers on one installation (several controllers on one
//! PostgreSQL; on SQLite the single writer serializes them): whatever the
//! interleaving, an address is given back once, no holding outlives its
//! block, and a clash fails only the request that clashed.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::ClusterInput;
use vmfabric_store::{Store, VmRequest};

/// Rounds per race: each one a fresh chance for the bad interleaving.
const ROUNDS: usize = 12;

fn first_free(name: &str) -> ClusterInput {
    // first-free with no cool-down: a second give-back would put the
    // address into the free ranges twice (the damaging case).
    ClusterInput {
        reuse: Some("first-free".into()),
        ..cluster(name, "ip-fabric")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_releases_give_an_address_back_once() {
    for t in stores().await {
        let s = &t.store;
        let b = t.backend;
        s.create_cluster(&first_free("f")).await.unwrap();
        s.add_network("f", &network("198.51.100.0/28"))
            .await
            .unwrap();
        for _ in 0..ROUNDS {
            s.reserve("198.51.100.5", None).await.unwrap();
            let (x, y) = tokio::join!(s.release("198.51.100.5"), s.release("198.51.100.5"));
            assert_eq!(
                usize::from(x.is_ok()) + usize::from(y.is_ok()),
                1,
                "{b}: exactly one release succeeds: {x:?} {y:?}"
            );
            for r in [x, y] {
                if let Err(e) = r {
                    assert!(e.to_string().contains("nothing to release"), "{b}: {e}");
                }
            }
            assert_consistent(s).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_is_never_removed_under_a_new_reservation() {
    for t in stores().await {
        let s = &t.store;
        let b = t.backend;
        s.create_cluster(&first_free("f")).await.unwrap();
        for _ in 0..ROUNDS {
            s.add_network("f", &network("198.51.100.0/29"))
                .await
                .unwrap();
            let (r, n) = tokio::join!(
                s.reserve("198.51.100.2", None),
                s.remove_network("f", "198.51.100.0/29", false)
            );
            // Either order is fine; both at once is not.
            assert!(r.is_ok() != n.is_ok(), "{b}: {r:?} / {n:?}");
            assert_consistent(s).await;
            if r.is_ok() {
                s.release("198.51.100.2").await.unwrap();
                s.remove_network("f", "198.51.100.0/29", false)
                    .await
                    .unwrap();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_taken_concurrently_fails_only_its_own_request() {
    for t in stores().await {
        let s = &t.store;
        let b = t.backend;
        // Two clusters: their batches hold different blocks, so on
        // PostgreSQL nothing but the UNIQUE constraint orders them.
        s.create_cluster(&first_free("fa")).await.unwrap();
        s.add_network("fa", &network("198.51.100.0/24"))
            .await
            .unwrap();
        s.add_node("fa", &node("na", "192.168.60.1")).await.unwrap();
        let fb = ClusterInput {
            route_reflectors: vec!["172.16.0.3:65000".into()],
            vm_gateway: Some("10.0.0.2".into()),
            ..first_free("fb")
        };
        s.create_cluster(&fb).await.unwrap();
        s.add_network("fb", &network("203.0.113.0/24"))
            .await
            .unwrap();
        s.add_node("fb", &node("nb", "192.168.60.2")).await.unwrap();
        for i in 0..ROUNDS {
            let both = format!("both{i}");
            let batch = |c: &str, n: &str, own: String| {
                vec![
                    VmRequest::new(c, vm(&both, n)),
                    VmRequest::new(c, vm(&own, n)),
                ]
            };
            let (ra, rb) = (
                batch("fa", "na", format!("a{i}")),
                batch("fb", "nb", format!("b{i}")),
            );
            let (x, y) = tokio::join!(s.create_vms(&ra), s.create_vms(&rb));
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(x[1].is_ok() && y[1].is_ok(), "{b}: {x:?} {y:?}");
            assert_eq!(
                usize::from(x[0].is_ok()) + usize::from(y[0].is_ok()),
                1,
                "{b}: one of the two gets {both}: {x:?} {y:?}"
            );
            let loser = if x[0].is_ok() { &y[0] } else { &x[0] };
            let e = loser.as_ref().unwrap_err().to_string();
            assert!(e.contains("name"), "{b}: {e}");
        }
        assert_consistent(s).await;
    }
}
