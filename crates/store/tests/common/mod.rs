//! Shared set-up for store tests: a fresh SQLite file per test.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use vmfabric_model::{ClusterInput, NetworkInput, NodeInput, Timestamp, VmInput};
use vmfabric_store::{Clock, ManualClock, SqlStore, Store};

pub struct TestStore {
    pub store: SqlStore,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

pub async fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let clock = ManualClock::new(Timestamp(1_780_000_000_000_000));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = SqlStore::open(&url, clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    TestStore {
        store,
        clock,
        _dir: dir,
    }
}

pub fn cluster(name: &str, t: &str) -> ClusterInput {
    let mut i = ClusterInput {
        name: name.into(),
        network_type: t.into(),
        ..ClusterInput::default()
    };
    if t == "ip-fabric" {
        i.vm_gateway = Some("10.0.0.1".into());
        i.bgp_community = Some("65000:100".into());
        i.route_reflectors = vec!["172.16.0.2:65000".into()];
    }
    i
}

pub fn network(cidr: &str) -> NetworkInput {
    NetworkInput {
        cidr: cidr.into(),
        ..NetworkInput::default()
    }
}

pub fn node(name: &str, address: &str) -> NodeInput {
    NodeInput {
        name: name.into(),
        address: address.into(),
        ..NodeInput::default()
    }
}

pub fn vm(name: &str, node: &str) -> VmInput {
    VmInput {
        name: name.into(),
        node: node.into(),
        ..VmInput::default()
    }
}

pub async fn ip_of(s: &SqlStore, vm: &str) -> String {
    s.vm(vm).await.unwrap().nics[0].addresses[0]
        .address
        .to_string()
}

pub async fn assert_consistent(s: &SqlStore) {
    let r = s.check().await.unwrap();
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
}
