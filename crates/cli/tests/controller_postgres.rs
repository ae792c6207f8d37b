//! Two controllers on one PostgreSQL, 32 clients creating and deleting
//! VMs in the same pools for a minute (VMFABRIC_SOAK_SECONDS to change),
//! and `kill -9` of one controller half-way. No address is ever held by
//! two VMs that the clients were told exist, nothing acknowledged is lost,
//! and at the end every address is free or held by exactly one VM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::FABRIC_CLUSTER;
use common::controller::{serve, token};
use serde_json::{Value, json};

fn admin_url() -> String {
    std::env::var("VMFABRIC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://vmfabric:vmfabric@127.0.0.1:5432/postgres".into())
}

/// A database of this test's own on the test server, dropped at the end.
struct PgDb {
    name: String,
    url: String,
}

impl PgDb {
    fn new(tag: &str) -> PgDb {
        let name = format!("vmf_{tag}_{}", std::process::id());
        let psql = |sql: &str| {
            Command::new("psql")
                .arg(admin_url())
                .arg("-qc")
                .arg(sql)
                .output()
                .expect("this test needs psql and a PostgreSQL server: apt-get install postgresql postgresql-client (scripts/test starts it)")
        };
        psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        let out = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "cannot create a database on {} ({}): scripts/test installs and starts PostgreSQL",
            admin_url(),
            String::from_utf8_lossy(&out.stderr)
        );
        let (base, _) = admin_url()
            .rsplit_once('/')
            .map(|(b, d)| (b.to_string(), d.to_string()))
            .unwrap();
        PgDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(admin_url())
            .arg("-qc")
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .output();
    }
}

fn vf(db: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .args(["--db", db, "-o", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// What the clients were told: live VMs and the address each holds.
#[derive(Default)]
struct Told {
    holder: HashMap<String, String>,
    vms: BTreeMap<String, String>,
    violations: Vec<String>,
    created: u64,
    deleted: u64,
    retried: u64,
}

enum Outcome {
    Answer(u16, Value),
    /// No answer: the controller went away mid-request.
    Lost,
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Outcome {
    let mut r = http
        .request(method, url)
        .bearer_auth(token)
        .timeout(Duration::from_secs(30));
    if let Some(k) = key {
        r = r.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    match r.send().await {
        Ok(resp) => {
            let s = resp.status().as_u16();
            match resp.bytes().await {
                Ok(b) => Outcome::Answer(s, serde_json::from_slice(&b).unwrap_or(Value::Null)),
                Err(_) => Outcome::Lost,
            }
        }
        Err(_) => Outcome::Lost,
    }
}

#[test]
fn two_controllers_32_clients_and_a_kill() {
    let pg = PgDb::new("soak");
    let db = pg.url.clone();
    // A new database gets its schema from init; every other command
    // refuses a database without one.
    vf(&db, &["init"]);
    vf(&db, FABRIC_CLUSTER);
    vf(&db, &["network", "add", "fab", "198.51.100.0/26"]);
    vf(
        &db,
        &["node", "add", "fab", "f1", "--address", "172.16.0.11"],
    );
    vf(
        &db,
        &["node", "add", "fab", "f2", "--address", "172.16.0.12"],
    );
    vf(&db, &["cluster", "create", "sw", "--type", "switching"]);
    vf(&db, &["network", "add", "sw", "192.0.2.0/26"]);
    vf(&db, &["node", "add", "sw", "s1", "--address", "192.0.2.2"]);
    let op = token(&db, "operator", None);
    let a = serve(&db, &[]);
    let b = serve(&db, &[]);
    let urls = [a.url.clone(), b.url.clone()];
    let a = Arc::new(Mutex::new(Some(a)));
    let secs: u64 = std::env::var("VMFABRIC_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let told = Arc::new(Mutex::new(Told::default()));
    let dead_a = Arc::new(std::sync::atomic::AtomicBool::new(false));

    vmfabric_client::install_crypto();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let start = Instant::now();
        let end = start + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..32usize {
            let (told, urls, op, dead_a) = (told.clone(), urls.clone(), op.clone(), dead_a.clone());
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut mine: Vec<String> = Vec::new();
                let mut n = 0u64;
                // Which controller this client talks to: its own until that
                // one dies, then the other.
                let pick = |attempt: u32| -> &str {
                    let first = c % 2;
                    let i = if dead_a.load(std::sync::atomic::Ordering::SeqCst) {
                        1
                    } else {
                        (first + attempt as usize) % 2
                    };
                    urls[i].as_str()
                };
                while Instant::now() < end {
                    if mine.len() >= 2 {
                        // Delete the oldest: forget it first, so its address
                        // may show up elsewhere as soon as the delete commits.
                        let vm = mine.remove(0);
                        {
                            let mut t = told.lock().unwrap();
                            if let Some(ip) = t.vms.remove(&vm) {
                                t.holder.remove(&ip);
                            }
                        }
                        let mut attempt = 0;
                        loop {
                            match call(
                                &http,
                                reqwest::Method::DELETE,
                                &format!("{}/api/v1/vms/{vm}", pick(attempt)),
                                &op,
                                None,
                                None,
                            )
                            .await
                            {
                                Outcome::Answer(200 | 404, _) => break,
                                Outcome::Answer(s, v) => panic!("delete {vm}: {s} {v}"),
                                Outcome::Lost => {
                                    attempt += 1;
                                    told.lock().unwrap().retried += 1;
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                        told.lock().unwrap().deleted += 1;
                        continue;
                    }
                    n += 1;
                    let name = format!("c{c}-{n}");
                    let (cluster, node) = match (c + n as usize) % 3 {
                        0 => ("sw", "s1"),
                        1 => ("fab", "f1"),
                        _ => ("fab", "f2"),
                    };
                    let key = format!("key-{name}");
                    let body = json!({"name": name, "node": node});
                    let mut attempt = 0;
                    let vm = loop {
                        match call(
                            &http,
                            reqwest::Method::POST,
                            &format!("{}/api/v1/clusters/{cluster}/vms", pick(attempt)),
                            &op,
                            Some(&key),
                            Some(&body),
                        )
                        .await
                        {
                            Outcome::Answer(201, v) => break Some(v),
                            // The pool is full right now: fine, try later.
                            Outcome::Answer(409, v) if v["kind"] == "exhausted" => break None,
                            Outcome::Answer(s, v) => panic!("create {name}: {s} {v}"),
                            Outcome::Lost => {
                                // Retry with the same key: never a second VM.
                                attempt += 1;
                                told.lock().unwrap().retried += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    };
                    let Some(vm) = vm else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    let ip = vm["nics"][0]["addresses"][0]["address"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    let mut t = told.lock().unwrap();
                    if let Some(other) = t.holder.get(&ip) {
                        let v = format!("{ip} given to {name} while {other} holds it");
                        t.violations.push(v);
                    }
                    t.holder.insert(ip.clone(), name.clone());
                    t.vms.insert(name.clone(), ip);
                    t.created += 1;
                    mine.push(name);
                }
            }));
        }
        // Half-way, controller A dies without a chance to finish anything.
        tokio::time::sleep(Duration::from_secs(secs / 2)).await;
        if let Some(mut a) = a.lock().unwrap().take() {
            a.child.kill().unwrap();
            a.child.wait().unwrap();
        }
        dead_a.store(true, std::sync::atomic::Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
    });

    let t = told.lock().unwrap();
    assert!(
        t.violations.is_empty(),
        "addresses given twice: {:?}",
        t.violations
    );
    assert!(
        t.created > 200,
        "only {} VMs created in {secs} s",
        t.created
    );
    eprintln!(
        "{} created, {} deleted, {} requests retried after the kill, {} VMs at the end",
        t.created,
        t.deleted,
        t.retried,
        t.vms.len()
    );
    // Nothing acknowledged is lost, nothing unacknowledged remains: the
    // database holds exactly the VMs the clients were told exist, with
    // the addresses they were told.
    let vms = vf(&db, &["vm", "list"]);
    let stored: BTreeMap<String, String> = vms
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                v["nics"][0]["addresses"][0]["address"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        stored, t.vms,
        "the database and the acknowledgements disagree"
    );
    // Every held address belongs to exactly one existing VM.
    let held = vf(&db, &["ip", "list"]);
    let held = held.as_array().unwrap();
    assert_eq!(held.len(), stored.len(), "{held:?}");
    for h in held {
        let ip = h["address"].as_str().unwrap();
        let vm = h["vm"].as_str().unwrap_or_default();
        assert_eq!(stored.get(vm).map(String::as_str), Some(ip), "{h}");
    }
    let check = vf(&db, &["check"]);
    assert_eq!(check["problems"], json!([]), "{check}");
    // The change log of both controllers is one order: followed from the
    // start it never goes back, and it holds exactly the creates and
    // deletes that committed, each with the token that asked.
    let log = vf(&db, &["log", "--since", "0"]);
    let log = log.as_array().unwrap();
    let keys: Vec<(i64, i64)> = log
        .iter()
        .map(|c| (c["revision"].as_i64().unwrap(), c["seq"].as_i64().unwrap()))
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "the log goes back");
    let count = |kind: &str| log.iter().filter(|c| c["kind"] == kind).count() as u64;
    assert_eq!(count("vm.create"), t.created, "creates in the log");
    assert_eq!(count("vm.delete"), t.deleted, "deletes in the log");
    assert!(
        log.iter()
            .filter(|c| c["kind"] == "vm.create")
            .all(|c| c["actor"].as_str().is_some_and(|a| a.contains(" token "))),
        "every create through a controller names its token"
    );
}
