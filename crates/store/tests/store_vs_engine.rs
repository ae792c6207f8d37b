//! The allocator kept in tables must hand out exactly what the in-memory
//! engine (`vmfabric_ipam::Pool`, itself checked against a naive model)
//! hands out, for the same operations at the same times, under both reuse
//! orders and with a cool-down.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use proptest::prelude::*;
use vmfabric_ipam::{Cidr, Pool, PoolError, Reuse, key};
use vmfabric_model::{ClusterInput, Error};
use vmfabric_store::ListAll;
use vmfabric_store::Store;

#[derive(Debug, Clone)]
enum Op {
    /// Create a VM (next address).
    Create,
    /// Create several VMs in one commit; one of them asks for an address.
    Batch(u8, u8),
    /// Reserve this offset (explicit address).
    Reserve(u8),
    /// Release this offset (VM or reservation).
    Release(u8),
    /// Delete the n-th live VM.
    Delete(u8),
    Wait(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        5 => Just(Op::Create),
        2 => (1..5u8, 0..16u8).prop_map(|(n, at)| Op::Batch(n, at)),
        1 => (0..16u8).prop_map(Op::Reserve),
        2 => (0..16u8).prop_map(Op::Release),
        2 => (0..8u8).prop_map(Op::Delete),
        2 => (1..3u8).prop_map(Op::Wait),
    ];
    proptest::collection::vec(op, 1..50)
}

async fn run(t: TestStore, reuse: Reuse, cooldown: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let s = &t.store;
    let input = ClusterInput {
        cooldown: Some(format!("{cooldown}s")),
        reuse: Some(reuse.name().into()),
        ..cluster("c", "ip-fabric")
    };
    s.create_cluster(&input).await.unwrap();
    s.add_network("c", &network("198.51.100.0/28"))
        .await
        .unwrap();
    s.add_node("c", &node("n", "172.16.0.11")).await.unwrap();
    let block = "198.51.100.0/28".parse::<Cidr>().unwrap().range();
    let mut pool = Pool::new(block, reuse, cooldown * 1_000_000);
    let mut live: Vec<(String, u128)> = Vec::new();
    let mut n = 0;
    for op in ops {
        let now = s.now().0 as u64;
        match op {
            Op::Create => {
                n += 1;
                let name = format!("v{n}");
                let got = s.create_vm("c", &vm(&name, "n")).await;
                match (got, pool.allocate(now)) {
                    (Ok(v), Ok(k)) => {
                        prop_assert_eq!(v.nics[0].addresses[0].address, key::addr(k));
                        live.push((name, k));
                    }
                    (
                        Err(Error::Exhausted { used, cooling, .. }),
                        Err(PoolError::Exhausted { held, cooling: c }),
                    ) => {
                        prop_assert_eq!(used, held);
                        prop_assert_eq!(cooling, pool.usage(now).cooling);
                        let _ = c;
                    }
                    (a, b) => prop_assert!(false, "store {:?} engine {:?}", a, b),
                }
            }
            Op::Batch(count, at) => {
                // One VM asks for an address, the others take the next ones:
                // the engine does the same requests one after another.
                let mut reqs = Vec::new();
                let mut want = Vec::new();
                for j in 0..count {
                    n += 1;
                    let name = format!("v{n}");
                    let mut input = vm(&name, "n");
                    if j == 1 {
                        let k = block.first + u128::from(at);
                        input.ips = vec![key::addr(k).to_string()];
                        want.push((name.clone(), pool.allocate_at(k).map(|()| k)));
                    } else {
                        want.push((name.clone(), pool.allocate(now)));
                    }
                    reqs.push(vmfabric_store::VmRequest::new("c", input));
                }
                let got = s.create_vms(&reqs).await.unwrap();
                for (g, (name, w)) in got.into_iter().zip(want) {
                    match (g, w) {
                        (Ok(v), Ok(k)) => {
                            prop_assert_eq!(v.nics[0].addresses[0].address, key::addr(k));
                            live.push((name, k));
                        }
                        (Err(_), Err(_)) => {}
                        (a, b) => prop_assert!(false, "batch: store {:?} engine {:?}", a, b),
                    }
                }
            }
            Op::Reserve(i) => {
                let k = block.first + u128::from(i);
                let got = s.reserve(&key::addr(k).to_string(), None).await;
                let want = pool.allocate_at(k);
                prop_assert_eq!(
                    got.is_ok(),
                    want.is_ok(),
                    "reserve {}: {:?} {:?}",
                    i,
                    got,
                    want
                );
            }
            Op::Release(i) => {
                let k = block.first + u128::from(i);
                let got = s.release(&key::addr(k).to_string()).await;
                let want = pool.release(k, now);
                prop_assert_eq!(
                    got.is_ok(),
                    want.is_ok(),
                    "release {}: {:?} {:?}",
                    i,
                    got,
                    want
                );
            }
            Op::Delete(i) => {
                if live.is_empty() {
                    continue;
                }
                let (name, k) = live.remove(usize::from(i) % live.len());
                let v = s.delete_vm(&name).await.unwrap();
                // The VM may have lost its address to an `ip release` before.
                if !v.nics[0].addresses.is_empty() {
                    pool.release(k, now).unwrap();
                }
            }
            Op::Wait(secs) => t.clock.advance_secs(i64::from(secs)),
        }
        let now = s.now().0 as u64;
        let u = &s.all_usage(Some("c")).await.unwrap()[0];
        let e = pool.usage(now);
        prop_assert_eq!(u.used + u.reserved, e.held);
        prop_assert_eq!(u.cooling, e.cooling);
        prop_assert_eq!(u.free, e.free);
    }
    assert_consistent(s).await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_allocates_like_the_engine(
        reuse in prop_oneof![Just(Reuse::Last), Just(Reuse::FirstFree)],
        cooldown in prop_oneof![Just(0u64), Just(2u64)],
        ops in ops(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            run(store().await, reuse, cooldown, ops.clone()).await?;
            run(pg_store().await, reuse, cooldown, ops).await
        })?;
    }
}
