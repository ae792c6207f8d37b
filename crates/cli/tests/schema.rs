//! The schema version, upgrades and backups, through the real binary:
//! a database of the previous release (tests/fixtures/schema8.db, made by
//! the binary of commit 6d1ea92 with make-schema8.sh) is refused until
//! `db migrate`, which takes a backup and keeps every address, history
//! line and token; a database of a newer release is refused by every
//! command; `db backup` copies a SQLite database while `serve` writes to
//! it, and `db restore` puts a copy back; a PostgreSQL dump restores to a
//! working controller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use common::controller::{http, serve};
use common::{FABRIC_CLUSTER, Run, parse};
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn vf(db: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .arg("--db")
        .arg(db)
        .args(["-o", "json"])
        .args(args)
        .env_remove("VMFABRIC_DB")
        .env_remove("VMFABRIC_SERVER")
        .env_remove("VMFABRIC_CONFIG")
        .output()
        .unwrap();
    parse(out)
}

fn ok(db: &Path, args: &[&str]) -> Value {
    let r = vf(db, args);
    assert_eq!(r.code, 0, "vmfabric {args:?}: {}", r.stderr);
    r.json
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

/// Everything `old` says is also in `new` (which may say more: fields a
/// later schema added).
fn within(old: &Value, new: &Value, path: &str) -> Result<(), String> {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, v) in o {
                let Some(nv) = n.get(k) else {
                    return Err(format!("{path}.{k}: gone"));
                };
                within(v, nv, &format!("{path}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(o), Value::Array(n)) => {
            if o.len() != n.len() {
                return Err(format!("{path}: {} items, now {}", o.len(), n.len()));
            }
            for (i, (a, b)) in o.iter().zip(n).enumerate() {
                within(a, b, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: {a} became {b}")),
    }
}

fn dump(db: &Path) -> String {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg(".dump")
        .output()
        .expect("this test needs sqlite3: apt-get install sqlite3");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn a_database_of_the_previous_release_is_refused_then_migrated_keeping_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vmfabric.db");
    std::fs::copy(fixtures().join("schema8.db"), &db).unwrap();
    let before = dump(&db);

    // Every command but init and db refuses it, saying what to do, and
    // changes nothing.
    for args in [
        &["cluster", "list"][..],
        &["vm", "create", "rack1", "x", "--node", "kvm1"],
        &["check"],
        &["init"],
    ] {
        let r = vf(&db, args);
        assert_eq!(r.code, 4, "{args:?}: {}", r.stderr);
        let m = r.err["error"]["message"].as_str().unwrap_or_default();
        assert!(
            m.contains("schema 8, this vmfabric needs 9") && m.contains("vmfabric db migrate"),
            "{args:?}: {m}"
        );
    }
    let s = Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .arg("--db")
        .arg(&db)
        .args(["serve", "--init", "--listen", "127.0.0.1:0"])
        .env_remove("VMFABRIC_CONFIG")
        .output()
        .unwrap();
    assert_eq!(
        s.status.code(),
        Some(4),
        "serve on an old schema must not start"
    );
    assert!(String::from_utf8_lossy(&s.stderr).contains("vmfabric db migrate"));
    assert_eq!(dump(&db), before, "a refused command changed the database");

    let st = ok(&db, &["db", "status"]);
    assert_eq!(st["state"], "behind");
    assert_eq!(st["version"], 8);
    assert_eq!(st["pending"][0]["version"], 9);

    let m = ok(&db, &["db", "migrate"]);
    assert_eq!(m["status"]["state"], "current");
    assert_eq!(m["applied"], json!([9]));
    let backup = PathBuf::from(m["backup"].as_str().unwrap());
    assert!(backup.starts_with(dir.path()), "{}", backup.display());
    // The backup is the database as it was: schema 8, the same rows.
    assert_eq!(dump(&backup), before);
    assert_eq!(ok(&db, &["db", "status"])["state"], "current");
    assert_eq!(ok(&db, &["db", "migrate"])["applied"], json!([]));

    let check = ok(&db, &["check"]);
    assert!(check["problems"].as_array().unwrap().is_empty(), "{check}");
    for (file, args) in [
        ("schema8.ip-list.json", &["ip", "list"][..]),
        ("schema8.vm-list.json", &["vm", "list"]),
        ("schema8.token-list.json", &["token", "list"]),
        ("schema8.log.json", &["log"]),
    ] {
        within(&fixture(file), &ok(&db, args), file).unwrap();
    }
    let history = fixture("schema8.history.json");
    for old in history.as_array().unwrap() {
        let ip = old[0]["address"].as_str().unwrap();
        within(old, &ok(&db, &["ip", "history", ip]), ip).unwrap();
    }
    // The tokens still work: the controller takes the old admin secret.
    let secret = fixture("schema8.admin-token.json")["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let srv = serve(db.to_str().unwrap(), &[]);
    let (status, body, _) = http(
        "GET",
        &format!("{}/api/v1/clusters", srv.url),
        Some(&secret),
        &[],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"].as_array().unwrap().len(), 3);
    // And the migrated database goes on working.
    drop(srv);
    ok(&db, &["vm", "create", "fabric", "vm13", "--node", "node2"]);
    ok(&db, &["check"]);
}

/// Databases of earlier releases recorded each migration's checksum; ours
/// must be the same, or those databases would read as damaged.
#[test]
fn checksums_are_those_the_previous_release_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    ok(&db, &["init"]);
    let sums = |p: &Path| {
        let out = Command::new("sqlite3")
            .arg(p)
            .arg("SELECT version, hex(checksum) FROM _sqlx_migrations WHERE version <= 8 ORDER BY version")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let old = sums(&fixtures().join("schema8.db"));
    assert_eq!(old.lines().count(), 8, "{old}");
    assert_eq!(sums(&db), old);
}

#[test]
fn a_database_of_a_newer_release_is_refused_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vmfabric.db");
    ok(&db, &["init"]);
    ok(&db, FABRIC_CLUSTER);
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99, 'future', 1, x'00', 1)")
        .output()
        .unwrap();
    assert!(out.status.success());
    let before = dump(&db);
    for args in [&["cluster", "list"][..], &["init"], &["db", "migrate"]] {
        let r = vf(&db, args);
        assert_eq!(r.code, 4, "{args:?}: {}", r.stderr);
        let m = r.err["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains("schema 99, written by a newer vmfabric"), "{m}");
    }
    assert_eq!(ok(&db, &["db", "status"])["state"], "ahead");
    assert_eq!(dump(&db), before);
}

/// `db backup` while the controller creates VMs: every copy is
/// consistent, holds every VM acknowledged before it started and none
/// that did not exist; `db restore` is refused while the controller has
/// the file open and afterwards puts the copy back.
#[test]
fn backup_while_serve_writes_and_restore() {
    const VMS: usize = 5000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("vmfabric.db");
    ok(&db, &["init"]);
    ok(&db, FABRIC_CLUSTER);
    ok(&db, &["network", "add", "fab", "10.128.0.0/14"]);
    ok(
        &db,
        &["node", "add", "fab", "node1", "--address", "172.16.0.11"],
    );
    // Many VMs first, in batches (one commit each), so the copy has
    // something to copy.
    let lines: String = (0..VMS)
        .map(|i| format!("{{\"cluster\":\"fab\",\"name\":\"pre{i}\",\"node\":\"node1\"}}\n"))
        .collect();
    let mut import = Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .arg("--db")
        .arg(&db)
        .args(["-o", "json", "vm", "import", "--batch", "500"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut import.stdin.take().unwrap(), lines.as_bytes()).unwrap();
    assert!(import.wait().unwrap().success());
    let token = common::controller::token(db.to_str().unwrap(), "admin", None);
    let srv = serve(db.to_str().unwrap(), &[]);

    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, url, token) =
            (acked.clone(), stop.clone(), srv.url.clone(), token.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let (status, body, _) = http(
                    "POST",
                    &format!("{url}/api/v1/clusters/fab/vms"),
                    Some(&token),
                    &[],
                    Some(&json!({"name": format!("live{i}"), "node": "node1"})),
                );
                assert_eq!(status, 201, "{body}");
                i += 1;
                acked.store(i, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut copies = Vec::new();
    for n in 0..3 {
        let file = dir.path().join(format!("copy{n}.db"));
        let low = acked.load(Ordering::SeqCst);
        let t = Instant::now();
        let b = ok(&db, &["db", "backup", file.to_str().unwrap()]);
        let ms = t.elapsed().as_millis();
        let high = acked.load(Ordering::SeqCst);
        println!(
            "backup of {} VMs while serve writes: {ms} ms (the command's own count: {} ms), {} KiB",
            VMS + low,
            b["millis"],
            std::fs::metadata(&file).unwrap().len() / 1024
        );
        copies.push((file, low, high));
    }
    // The same file again is refused: a backup never overwrites one.
    let again = vf(&db, &["db", "backup", copies[0].0.to_str().unwrap()]);
    assert_eq!(again.code, 2, "{}", again.stderr);
    assert!(
        acked.load(Ordering::SeqCst) > copies[0].1,
        "serve kept writing"
    );

    for (file, low, high) in &copies {
        assert_eq!(ok(file, &["db", "status"])["state"], "current");
        let check = ok(file, &["check"]);
        assert!(check["problems"].as_array().unwrap().is_empty(), "{check}");
        let live = ok(file, &["vm", "list"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["name"].as_str().unwrap().starts_with("live"))
            .count();
        // Acknowledged before the copy began: in it. At most the one
        // request in flight when it ended beyond what was acknowledged.
        assert!(
            live >= *low && live <= high + 1,
            "{}: {live} live VMs, acknowledged {low}..{high}",
            file.display()
        );
    }

    // Not while the controller has the file open.
    let (last, _, _) = copies.last().unwrap().clone();
    let r = vf(&db, &["db", "restore", last.to_str().unwrap()]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr.contains("in use by") && r.stderr.contains(&srv.child.id().to_string()),
        "{}",
        r.stderr
    );
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    drop(srv);

    let want = ok(&last, &["vm", "list"]).as_array().unwrap().len();
    let now = ok(&db, &["vm", "list"]).as_array().unwrap().len();
    assert!(now > want, "the database went on after the last copy");
    let r = ok(&db, &["db", "restore", last.to_str().unwrap()]);
    let replaced = PathBuf::from(r["replaced"].as_str().unwrap());
    assert_eq!(ok(&db, &["vm", "list"]).as_array().unwrap().len(), want);
    ok(&db, &["check"]);
    // The database it replaced is kept, whole.
    assert_eq!(
        ok(&replaced, &["vm", "list"]).as_array().unwrap().len(),
        now
    );
    // Not a vmfabric database: refused, nothing replaced.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not a database").unwrap();
    let r = vf(&db, &["db", "restore", junk.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(ok(&db, &["vm", "list"]).as_array().unwrap().len(), want);
}

fn pg_admin() -> String {
    std::env::var("VMFABRIC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://vmfabric:vmfabric@127.0.0.1:5432/postgres".into())
}

/// A database of this test's own on the test server, dropped at the end.
struct PgDb {
    name: String,
    url: String,
}

fn psql(sql: &str) -> std::process::Output {
    Command::new("psql")
        .arg(pg_admin())
        .arg("-qc")
        .arg(sql)
        .output()
        .expect("this test needs psql and a PostgreSQL server: apt-get install postgresql postgresql-client (scripts/test starts it)")
}

impl PgDb {
    fn new(tag: &str) -> PgDb {
        let name = format!("vmf_{tag}_{}", std::process::id());
        psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        let out = psql(&format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "cannot create a database on {} ({}): scripts/test installs and starts PostgreSQL",
            pg_admin(),
            String::from_utf8_lossy(&out.stderr)
        );
        let base = pg_admin().rsplit_once('/').unwrap().0.to_string();
        PgDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// PostgreSQL: `db backup` (pg_dump's custom format) restored with
/// pg_restore into another database serves the same installation.
#[test]
fn a_postgres_dump_restores_to_a_working_controller() {
    let from = PgDb::new("dump_from");
    let to = PgDb::new("dump_to");
    let db = Path::new(&from.url);
    ok(db, &["init"]);
    ok(db, FABRIC_CLUSTER);
    ok(db, &["network", "add", "fab", "198.51.100.0/24"]);
    ok(
        db,
        &["node", "add", "fab", "node1", "--address", "172.16.0.11"],
    );
    for i in 0..5 {
        ok(
            db,
            &["vm", "create", "fab", &format!("vm{i}"), "--node", "node1"],
        );
    }
    ok(db, &["vm", "delete", "vm2"]);
    let token = common::controller::token(&from.url, "admin", None);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vmfabric.dump");
    ok(db, &["db", "backup", file.to_str().unwrap()]);
    assert_ne!(vf(db, &["db", "backup", file.to_str().unwrap()]).code, 0);

    // As the README says: pg_restore into an empty database.
    let restore = Command::new("pg_restore")
        .args(["--no-owner", "--exit-on-error", "--dbname"])
        .arg(&to.url)
        .arg(&file)
        .output()
        .expect("pg_restore (postgresql-client)");
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let copy = Path::new(&to.url);
    assert_eq!(ok(copy, &["db", "status"])["state"], "current");
    ok(copy, &["check"]);
    let srv = serve(&to.url, &[]);
    let (status, _, _) = http("GET", &format!("{}/healthz", srv.url), None, &[], None);
    assert_eq!(status, 200);
    let (status, body, _) = http(
        "GET",
        &format!("{}/api/v1/vms", srv.url),
        Some(&token),
        &[],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["vm0", "vm1", "vm3", "vm4"]);
    // History came along: vm2's address has its line.
    let h = ok(copy, &["ip", "history", "198.51.100.2"]);
    assert_eq!(h[0]["vm"], "vm2", "{h}");
    // And the restored controller allocates on.
    let (status, body, _) = http(
        "POST",
        &format!("{}/api/v1/clusters/fab/vms", srv.url),
        Some(&token),
        &[],
        Some(&json!({"name": "vm5", "node": "node1"})),
    );
    assert_eq!(status, 201, "{body}");
}
