//! Shared set-up for store tests: a fresh SQLite file per test.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use vmfabric_model::{ClusterInput, NetworkInput, NodeInput, Timestamp, VmInput};
use vmfabric_store::{Clock, ManualClock, SqlStore, Store};

pub struct TestStore {
    pub store: SqlStore,
    /// The database URL the store was opened with.
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub backend: &'static str,
    _dir: tempfile::TempDir,
    /// The PostgreSQL database to drop afterwards.
    pg_db: Option<String>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(db) = &self.pg_db {
            let _ = std::process::Command::new("psql")
                .arg(admin_url())
                .arg("-qc")
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .output();
        }
    }
}

impl TestStore {
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Close every connection (their server processes end) and open the
    /// store again.
    pub async fn reopen(&mut self) {
        self.store.pool().close().await;
        // A closed connection's server process ends a moment later.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        self.store = SqlStore::open(&self.url, self.clock.clone() as Arc<dyn Clock>)
            .await
            .unwrap();
    }
}

/// The PostgreSQL server the tests use (scripts/test starts one).
pub fn admin_url() -> String {
    std::env::var("VMFABRIC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://vmfabric:vmfabric@127.0.0.1:5432/postgres".into())
}

fn clock() -> Arc<ManualClock> {
    ManualClock::new(Timestamp(1_780_000_000_000_000))
}

/// A fresh SQLite store.
pub async fn store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.db");
    let clock = clock();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = SqlStore::init(&url, clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    TestStore {
        store,
        url,
        clock,
        backend: "sqlite",
        _dir: dir,
        pg_db: None,
    }
}

/// A fresh PostgreSQL store in a database of its own.
pub async fn pg_store() -> TestStore {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let db = format!("vmf_test_{}_{n}", std::process::id());
    let out = std::process::Command::new("psql")
        .arg(admin_url())
        .arg("-qc")
        .arg(format!("CREATE DATABASE {db}"))
        .output()
        .expect("the tests need psql and a PostgreSQL server: apt-get install postgresql (scripts/test starts it)");
    assert!(
        out.status.success(),
        "cannot create a test database on {} ({}): scripts/test installs and starts PostgreSQL",
        admin_url(),
        String::from_utf8_lossy(&out.stderr)
    );
    let url = match admin_url().rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => panic!("VMFABRIC_TEST_POSTGRES is not a URL"),
    };
    let clock = clock();
    let store = SqlStore::init(&url, clock.clone() as Arc<dyn Clock>)
        .await
        .unwrap();
    TestStore {
        store,
        url,
        clock,
        backend: "postgres",
        _dir: tempfile::tempdir().unwrap(),
        pg_db: Some(db),
    }
}

/// One fresh store of each backend: every store test runs on both.
pub async fn stores() -> Vec<TestStore> {
    vec![store().await, pg_store().await]
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
