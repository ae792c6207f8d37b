//! The controller, through its real process on loopback: every role can do
//! exactly what it should, the CLI with --server answers like a local
//! database, retried creations never allocate twice, agents' long polls
//! wake on a change, and TLS works with the operator's certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::controller::{http, remote, serve, token};
use common::*;
use serde_json::{Value, json};

/// An agent's long poll of node1's plan in a thread: its status, answer
/// and how long it waited.
fn long_poll(
    api: &str,
    token: &str,
    have: &str,
    wait_s: u32,
) -> std::thread::JoinHandle<(u16, Value, Duration)> {
    let url = format!("{api}/nodes/node1/plan?have={have}&wait={wait_s}");
    let token = token.to_string();
    std::thread::spawn(move || {
        let t = Instant::now();
        let (s, p, _) = http("GET", &url, Some(&token), &[], None);
        (s, p, t.elapsed())
    })
}

#[test]
fn each_role_does_exactly_what_it_should() {
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let admin = token(&db, "admin", None);
    let operator = token(&db, "operator", None);
    let viewer = token(&db, "viewer", None);
    let node1 = token(&db, "node", Some("node1"));
    let srv = serve(&db, &[]);
    let u = srv.url.as_str();

    // (args, admin, operator, viewer, node1): whether each may.
    let cases: &[(&[&str], [bool; 4])] = &[
        (&["vm", "list"], [true, true, true, false]),
        (&["cluster", "list"], [true, true, true, false]),
        (&["pool", "usage"], [true, true, true, false]),
        (
            &["node", "plan", "node1", "--format", "json"],
            [true, true, true, true],
        ),
        (
            &["node", "plan", "node2", "--format", "json"],
            [true, true, true, false],
        ),
        (
            &["vm", "create", "fab", "r-op", "--node", "node1"],
            [true, true, false, false],
        ),
        (
            &["ip", "reserve", "198.51.100.200"],
            [true, true, false, false],
        ),
        (
            &["cluster", "create", "x", "--type", "switching"],
            [true, false, false, false],
        ),
        (&["token", "list"], [true, false, false, false]),
        (
            &["token", "create", "--role", "viewer"],
            [true, false, false, false],
        ),
    ];
    for (args, allowed) in cases {
        for (i, (tok, who)) in [
            (&admin, "admin"),
            (&operator, "operator"),
            (&viewer, "viewer"),
            (&node1, "node1"),
        ]
        .into_iter()
        .enumerate()
        {
            // Each caller writes its own object, so that one's success
            // does not make the next one's a conflict.
            let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            if a[0] == "vm" && a[1] == "create" {
                a[3] = format!("r-{who}");
            }
            if a[0] == "ip" && a[1] == "reserve" {
                a[2] = format!("198.51.100.{}", 200 + i);
            }
            if a[0] == "cluster" && a[1] == "create" {
                a[2] = format!("x-{who}");
            }
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let r = remote(u, tok, &a);
            if allowed[i] {
                assert_eq!(r.code, 0, "{who} {a:?}: {}", r.stderr);
            } else {
                assert_eq!(r.code, 6, "{who} {a:?} should be refused: {}", r.stdout);
                assert_eq!(r.err["error"]["kind"], "forbidden", "{who} {a:?}");
            }
        }
    }

    // A node token reports only its own node's status.
    let api = format!("{u}/api/v1");
    let report = json!({"changes": [], "failures": [], "revision": 1});
    let (s, _, _) = http(
        "POST",
        &format!("{api}/nodes/node1/status"),
        Some(&node1),
        &[],
        Some(&report),
    );
    assert_eq!(s, 200);
    let (s, p, _) = http(
        "POST",
        &format!("{api}/nodes/node2/status"),
        Some(&node1),
        &[],
        Some(&report),
    );
    assert_eq!(s, 403, "{p}");
    let (s, _, _) = http(
        "POST",
        &format!("{api}/nodes/node2/status"),
        Some(&viewer),
        &[],
        Some(&report),
    );
    assert_eq!(s, 403);
    let (s, p, _) = http(
        "GET",
        &format!("{api}/nodes/node2/plan"),
        Some(&node1),
        &[],
        None,
    );
    assert_eq!(s, 403, "a node token reads only its own plan: {p}");
    let (s, p, _) = http(
        "GET",
        &format!("{api}/nodes/node1/plan"),
        Some(&node1),
        &[],
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(p["plan"]["node"], "node1");

    // Nothing but health without a valid token.
    for path in [
        "/api/v1/vms",
        "/api/v1/openapi.json",
        "/metrics",
        "/api/v1/nodes/node1/plan",
    ] {
        let (s, p, raw) = http("GET", &format!("{u}{path}"), None, &[], None);
        assert_eq!(s, 401, "{path}");
        assert!(raw.starts_with("application/problem+json"), "{raw}");
        assert_eq!(p["kind"], "unauthenticated");
        let (s, _, _) = http("GET", &format!("{u}{path}"), Some("vmf_0000"), &[], None);
        assert_eq!(s, 401, "{path} with a made-up token");
    }
    for path in ["/healthz", "/readyz"] {
        let (s, _, _) = http("GET", &format!("{u}{path}"), None, &[], None);
        assert_eq!(s, 200, "{path}");
    }
    // Revocation takes effect on this controller at once.
    let list = remote(u, &admin, &["token", "list"]).json;
    let viewer_id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "viewer")
        .unwrap()["id"]
        .to_string();
    assert_eq!(remote(u, &viewer, &["vm", "list"]).code, 0);
    assert_eq!(remote(u, &admin, &["token", "revoke", &viewer_id]).code, 0);
    let r = remote(u, &viewer, &["vm", "list"]);
    assert_eq!(r.code, 6);
    assert!(r.stderr.contains("revoked"), "{}", r.stderr);
    // The store never saw a secret.
    assert!(
        !env.dump().contains(&admin[4..]),
        "a token secret is in the database"
    );
}

#[test]
fn the_cli_through_the_controller_answers_like_the_database() {
    let env = Env::new();
    let db = env.db.to_string_lossy().to_string();
    let admin = token(&db, "admin", None);
    let srv = serve(&db, &[]);
    let u = srv.url.clone();
    let both = |args: &[&str]| -> (Value, Value) {
        let r = remote(&u, &admin, args);
        assert_eq!(r.code, 0, "--server {args:?}: {}", r.stderr);
        (r.json, env.ok(args))
    };
    // Build the seed world through the controller.
    let vms: &[&[&str]] = &[
        &["vm", "create", "sw", "web1", "--node", "kvm1"],
        &["vm", "create", "hz", "mail", "--node", "hz1", "--ipv6"],
        &["vm", "create", "fab", "vm1", "--node", "node1"],
        &["ip", "reserve", "192.0.2.10"],
    ];
    for args in SEED_WORLD.iter().chain(vms) {
        let r = remote(&u, &admin, args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    // The change log names the token that made each change, and `local`
    // for the command line on the database.
    env.ok(&["vm", "create", "sw", "web2", "--node", "kvm1"]);
    let log = remote(&u, &admin, &["log", "--object", "web1"]);
    assert_eq!(log.code, 0, "{}", log.stderr);
    let actor = log.json[0]["actor"].as_str().unwrap_or_default();
    assert!(actor.starts_with("admin token "), "{}", log.json);
    let log = remote(&u, &admin, &["log", "--object", "web2"]);
    assert_eq!(log.json[0]["actor"], "local", "{}", log.json);
    let since = remote(&u, &admin, &["log", "--since", "0"]);
    assert_eq!(
        (&since.json[0]["kind"], &since.json[1]["kind"]),
        (&json!("token.create"), &json!("cluster.create")),
        "{}",
        since.json
    );
    let bad = remote(&u, &admin, &["log", "--since=-3"]);
    assert_eq!(
        (bad.code, &bad.err["error"]["field"]),
        (2, &json!("since")),
        "{}",
        bad.stderr
    );
    env.ok(&["vm", "delete", "web2"]);
    // The next free address for something that is not a VM, through the
    // CLI and the API; the VM rules decide it (kvm1 holds .2, web1 .4).
    let r = remote(
        &u,
        &admin,
        &[
            "ip",
            "reserve",
            "--next",
            "--cluster",
            "sw",
            "--note",
            "VIP",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let vip = r.json["address"].as_str().unwrap_or_default().to_string();
    assert!(vip.starts_with("192.0.2."), "{}", r.json);
    let post = |body: Value| {
        http(
            "POST",
            &format!("{u}/api/v1/addresses/reservations"),
            Some(&admin),
            &[("content-type", "application/json")],
            Some(&body),
        )
    };
    let (st, a, raw) = post(json!({"node": "hz1", "ipv6": true}));
    assert_eq!(st, 201, "{raw}");
    assert_eq!(a["node"], "hz1", "{raw}");
    for (body, field) in [
        (json!({"ip": "192.0.2.20", "cluster": "sw"}), "ip"),
        (json!({"clustr": "sw"}), "clustr"),
        (json!({"cluster": "hz"}), "cluster"),
        (json!({}), "next"),
    ] {
        let before = env.dump();
        let (st, p, raw) = post(body.clone());
        assert_eq!((st, &p["field"]), (422, &json!(field)), "{body}: {raw}");
        assert_eq!(env.dump(), before, "{body}");
    }
    env.ok(&["ip", "release", &vip]);
    env.ok(&["ip", "release", a["address"].as_str().unwrap_or_default()]);
    for args in [
        &["vm", "show", "mail"][..],
        &["vm", "list"],
        &["ip", "list"],
        &["ip", "list", "--free"],
        &["ip", "history", "192.0.2.10"],
        &["pool", "usage"],
        &["cluster", "list"],
        &["node", "list"],
        &["network", "list"],
        &["node", "plan", "hz1", "--format", "json"],
        &["node", "plan", "node1", "--format", "frr"],
        &["vm", "guest-config", "mail"],
        &["cluster", "rr-config", "fab", "--format", "bird"],
        &["check"],
    ] {
        let (remote_out, local) = both(args);
        assert_eq!(remote_out, local, "{args:?}");
    }
    // Errors too: the same kind, field, value and rule, the same exit code.
    for (args, code) in [
        (&["vm", "create", "hz", "x", "--node", "nope"][..], 3),
        (&["vm", "migrate", "mail", "--to", "hz1"], 4),
        (&["network", "add", "sw", "192.0.2.16/28"], 4),
        (&["cluster", "create", "bad name", "--type", "switching"], 2),
        (&["vm", "create", "sw", "web1", "--node", "kvm1"], 4),
    ] {
        let r = remote(&u, &admin, args);
        let before = env.dump();
        let l = env.run(args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert_eq!(l.code, code, "{args:?}");
        assert_eq!(r.err["error"], l.err["error"], "{args:?}");
        assert_eq!(env.dump(), before, "{args:?} changed the database");
    }
    // A malformed body is a problem document naming the body.
    let (s, p, raw) = http(
        "POST",
        &format!("{u}/api/v1/clusters/sw/vms"),
        Some(&admin),
        &[("content-type", "application/json")],
        Some(&json!("not an object")),
    );
    assert_eq!(s, 422, "{raw}");
    assert_eq!(p["field"], "body");
    assert_eq!(p["status"], 422);

    // A list of NICs in the body: one VM, every NIC and address at once;
    // a NIC that cannot be met refuses the whole VM, naming the NIC.
    let url = format!("{u}/api/v1/clusters/sw/vms");
    let body = json!({"name": "multi", "node": "kvm1", "nics": [
        {"extra_ipv4": 1}, {"ips": ["192.0.2.30"]}
    ]});
    let (s, v, raw) = http("POST", &url, Some(&admin), &[], Some(&body));
    assert_eq!(s, 201, "{raw}");
    assert_eq!(v["nics"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(
        v["nics"][0]["addresses"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    assert_eq!(v["nics"][1]["addresses"][0]["address"], "192.0.2.30", "{v}");
    assert_eq!(v["nics"][1]["host_interface"], "multi_net1", "{v}");
    let before = env.dump();
    let body = json!({"name": "multi2", "node": "kvm1", "nics": [
        {}, {"ips": ["203.0.113.9"]}
    ]});
    let (s, p, raw) = http("POST", &url, Some(&admin), &[], Some(&body));
    assert_eq!(s, 422, "{raw}");
    assert_eq!(p["field"], "nics[1].ip", "{p}");
    assert_eq!(env.dump(), before, "a refused VM changed the database");

    // A misspelt field is refused by name, never ignored for a default.
    for (path, body, field) in [
        (
            "/api/v1/clusters",
            json!({"name": "c9", "type": "switching"}),
            "type",
        ),
        (
            "/api/v1/clusters/sw/vms",
            json!({"name": "x9", "node": "kvm1", "ipv7": true}),
            "ipv7",
        ),
        (
            "/api/v1/clusters/sw/vms",
            json!({"name": "x9", "node": "kvm1", "nics": [{"extra_ip": 2}]}),
            "extra_ip",
        ),
        (
            "/api/v1/tokens",
            json!({"name": "t", "role": "viewer", "expires": "never"}),
            "expires",
        ),
    ] {
        let (s, p, raw) = http(
            "POST",
            &format!("{u}{path}"),
            Some(&admin),
            &[],
            Some(&body),
        );
        assert_eq!(s, 422, "{path}: {raw}");
        assert_eq!(p["field"], field, "{path}: {p}");
        assert!(
            p["rule"]
                .as_str()
                .unwrap_or_default()
                .contains("network_type")
                || field != "type",
            "{p}"
        );
    }
    // Required fields are required: no VM named "" looked up on node "".
    for body in [json!([]), json!({}), json!({"name": "x9"})] {
        let (s, p, raw) = http(
            "POST",
            &format!("{u}/api/v1/clusters/sw/vms"),
            Some(&admin),
            &[],
            Some(&body),
        );
        assert_eq!(s, 422, "{body}: {raw}");
        assert!(!raw.contains("\"\""), "an empty value in the answer: {raw}");
        let _ = p;
    }
    let (s, p, raw) = http(
        "GET",
        &format!("{u}/api/v1/vms?clustr=sw"),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!(s, 422, "{raw}");
    assert_eq!(p["field"], "clustr", "{p}");
    assert_eq!(env.dump(), before, "a refused request changed the database");
}

#[test]
fn retries_never_allocate_twice_and_agents_wake_on_change() {
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let op = token(&db, "operator", None);
    let agent = token(&db, "node", Some("node1"));
    let srv = serve(&db, &[]);
    let api = format!("{}/api/v1", srv.url);
    let vm = json!({"name": "pay1", "node": "node1"});
    let key = [("Idempotency-Key", "8d0f2a3c-1")];
    let url = format!("{api}/clusters/fab/vms");
    let (s1, a, _) = http("POST", &url, Some(&op), &key, Some(&vm));
    let (s2, b, _) = http("POST", &url, Some(&op), &key, Some(&vm));
    assert_eq!((s1, s2), (201, 201), "{a} {b}");
    assert_eq!(a, b, "the retry answers with the same VM");
    let ips = env.ok(&["ip", "list", "--cluster", "fab"]);
    assert_eq!(ips.as_array().unwrap().len(), 1, "{ips}");
    // The same key for another VM is a conflict that changes nothing.
    let before = env.dump();
    let other = json!({"name": "pay2", "node": "node1"});
    let (s, p, _) = http("POST", &url, Some(&op), &key, Some(&other));
    assert_eq!(s, 409, "{p}");
    assert_eq!(p["field"], "idempotency_key");
    assert_eq!(env.dump(), before);
    // Keys belong to their token: another client's same key is a new
    // request (here refused by the name), never the first client's VM.
    let op2 = token(&db, "operator", None);
    let (s, p, _) = http("POST", &url, Some(&op2), &key, Some(&vm));
    assert_eq!((s, &p["field"]), (409, &json!("name")), "{p}");
    // Once its VM is deleted, a retry says so instead of answering with
    // a VM that is gone.
    env.ok(&["vm", "delete", "pay1"]);
    let (s, p, _) = http("POST", &url, Some(&op), &key, Some(&vm));
    assert_eq!(s, 409, "{p}");
    assert!(
        p["rule"]
            .as_str()
            .unwrap_or_default()
            .contains("was deleted"),
        "{p}"
    );
    env.ok(&["vm", "create", "fab", "pay1", "--node", "node1"]);

    // Long poll: the agent's wait ends soon after a change commits.
    let (_, first, _) = http(
        "GET",
        &format!("{api}/nodes/node1/plan"),
        Some(&agent),
        &[],
        None,
    );
    let hash = first["hash"].as_str().unwrap().to_string();
    let waiter = long_poll(&api, &agent, &hash, 30);
    std::thread::sleep(Duration::from_millis(500));
    let created = Instant::now();
    let (s, _, _) = http(
        "POST",
        &url,
        Some(&op),
        &[],
        Some(&json!({"name": "pay3", "node": "node1"})),
    );
    assert_eq!(s, 201);
    let acked = created.elapsed();
    let (s, p, waited) = waiter.join().unwrap();
    assert_eq!(s, 200);
    assert_ne!(p["hash"], hash, "the wait ended with the new plan");
    assert!(p["revision"].as_i64() > first["revision"].as_i64());
    assert!(
        serde_json::to_string(&p["plan"]).unwrap().contains("pay3"),
        "the new VM is in the plan"
    );
    // It did not wait out its 30 s: the change woke it.
    assert!(
        waited < Duration::from_secs(10),
        "waited {waited:?} (create took {acked:?})"
    );
    // A plan that did not change keeps the agent waiting until `wait`.
    let (_, now, _) = http(
        "GET",
        &format!("{api}/nodes/node1/plan"),
        Some(&agent),
        &[],
        None,
    );
    let t = Instant::now();
    let (_, again, _) = http(
        "GET",
        &format!(
            "{api}/nodes/node1/plan?have={}&wait=1",
            now["hash"].as_str().unwrap()
        ),
        Some(&agent),
        &[],
        None,
    );
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert_eq!(again["hash"], now["hash"]);
    // The agent reports a round with a failed change.
    let report = json!({"changes": ["+ route a", "+ route b"], "failures": ["+ route b: busy"], "revision": 3});
    let (s, _, _) = http(
        "POST",
        &format!("{api}/nodes/node1/status"),
        Some(&agent),
        &[],
        Some(&report),
    );
    assert_eq!(s, 200);
    // Metrics show the allocation, the pool and the agent's last round.
    let (s, _, text) = http("GET", &format!("{}/metrics", srv.url), Some(&op), &[], None);
    assert_eq!(s, 200);
    assert!(text.contains("vmfabric_vms_created_total 3"), "{text}");
    assert!(
        text.contains("vmfabric_pool_addresses{cluster=\"fab\",node=\"\",block=\"198.51.100.0/24\",role=\"network\",family=\"IPv4\",state=\"used\"} 2"),
        "{text}"
    );
    assert!(text.contains("vmfabric_api_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/clusters/{name}/vms\",status=\"201\"} 3"), "{text}");
    for line in [
        "vmfabric_agents_connected 0",
        "vmfabric_agent_connected{node=\"node1\"} 0",
        "vmfabric_agent_last_reconcile_ok{node=\"node1\"} 0",
        "vmfabric_agent_last_reconcile_changes{node=\"node1\"} 2",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(
        text.contains("vmfabric_agent_last_report_age_seconds{node=\"node1\"} "),
        "{text}"
    );
}

#[test]
fn tls_with_the_operators_certificate() {
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let viewer = token(&db, "viewer", None);
    let dir = env.dir.path();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("the TLS test needs openssl: apt-get install openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The operator's own CA, and the controller's certificate from it.
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "2",
                "-subj",
                "/CN=test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "key.pem",
                "-out",
                "req.pem",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "req.pem",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "cert.pem",
    ]);
    assert!(ca_key.exists());
    let srv = serve(
        &db,
        &[
            "--tls-cert",
            &cert.to_string_lossy(),
            "--tls-key",
            &key.to_string_lossy(),
        ],
    );
    assert!(srv.url.starts_with("https://127.0.0.1:"), "{}", srv.url);
    let ca = ca.to_string_lossy().to_string();
    let r = remote(&srv.url, &viewer, &["--ca-cert", &ca, "cluster", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json.as_array().unwrap().len(), 3);
    // Without trusting the certificate, the client refuses the server.
    let r = remote(&srv.url, &viewer, &["cluster", "list"]);
    assert_eq!(r.code, 7, "unavailable: {}", r.stderr);
    assert!(
        r.stderr.contains("cannot reach the controller"),
        "{}",
        r.stderr
    );
    // Plain HTTP to the TLS port gets nowhere.
    let plain = srv.url.replace("https://", "http://");
    let r = remote(&plain, &viewer, &["cluster", "list"]);
    assert_ne!(r.code, 0);
}

#[test]
fn a_stop_signal_ends_long_polls_and_the_controller_cleanly() {
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let agent = token(&db, "node", Some("node1"));
    let mut srv = serve(&db, &[]);
    let api = format!("{}/api/v1", srv.url);
    let (_, now, _) = http(
        "GET",
        &format!("{api}/nodes/node1/plan"),
        Some(&agent),
        &[],
        None,
    );
    let hash = now["hash"].as_str().unwrap().to_string();
    let waiter = long_poll(&api, &agent, &hash, 60);
    std::thread::sleep(Duration::from_millis(500));
    let pid = srv.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    // The waiting agent gets its (unchanged) plan at once instead of
    // waiting out its minute, and the controller exits by itself.
    let (s, p, waited) = waiter.join().unwrap();
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["hash"], now["hash"]);
    assert!(waited < Duration::from_secs(10), "waited {waited:?}");
    let t = Instant::now();
    loop {
        if let Some(status) = srv.child.try_wait().unwrap() {
            assert!(status.success(), "vmfabric serve exited with {status}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_batch_request_creates_each_vm_or_says_why() {
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let op = token(&db, "operator", None);
    let viewer = token(&db, "viewer", None);
    let srv = serve(&db, &[]);
    let url = format!("{}/api/v1/vms/batch", srv.url);
    let batch = json!([
        {"cluster": "fab", "vm": {"name": "bat1", "node": "node1"}},
        {"cluster": "fab", "vm": {"name": "bat1", "node": "node1"}},
        {"cluster": "fab", "vm": {"name": "bat2", "node": "nosuchnode"}},
        {"cluster": "fab", "vm": {"name": "bat3", "node": "node1"}},
    ]);
    // A viewer may not create, and nothing changes.
    let before = env.dump();
    let (s, _, _) = http("POST", &url, Some(&viewer), &[], Some(&batch));
    assert_eq!(s, 403);
    assert_eq!(env.dump(), before);

    let (s, r, _) = http("POST", &url, Some(&op), &[], Some(&batch));
    assert_eq!(s, 200, "{r}");
    let r = r.as_array().unwrap();
    assert_eq!(r.len(), 4, "one answer per VM, in order: {r:?}");
    assert_eq!(r[0]["vm"]["name"], "bat1");
    assert!(
        r[1].get("vm").is_none(),
        "a second bat1 is refused: {}",
        r[1]
    );
    assert!(r[1].to_string().contains("bat1"), "{}", r[1]);
    assert!(
        r[2].get("vm").is_none(),
        "an unknown node is refused: {}",
        r[2]
    );
    assert!(r[2].to_string().contains("nosuchnode"), "{}", r[2]);
    assert_eq!(r[3]["vm"]["name"], "bat3");
    // Exactly the two created VMs hold addresses.
    let ips = env.ok(&["ip", "list", "--cluster", "fab"]);
    let holders: Vec<&str> = ips
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["vm"].as_str())
        .collect();
    assert_eq!(holders.len(), 2, "{ips}");
    assert!(
        holders.contains(&"bat1") && holders.contains(&"bat3"),
        "{ips}"
    );
}

/// `serve --log-format json`: one line per request with its id, method,
/// route, status, duration and token name (never the secret); an error's
/// problem document carries the same id.
#[test]
fn every_request_is_logged_once_with_its_id() {
    use std::io::Read;
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vmfabric"));
    let t = env.ok(&["token", "create", "--role", "operator", "--name", "billing"]);
    let secret = t["secret"].as_str().unwrap().to_string();
    c.args([
        "--db",
        &db,
        "--log-format",
        "json",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ])
    .env("RUST_LOG", "info")
    .stderr(std::process::Stdio::piped());
    let mut srv = common::controller::serve_with(c);
    let (s, _, _) = http(
        "GET",
        &format!("{}/api/v1/clusters", srv.url),
        Some(&secret),
        &[],
        None,
    );
    assert_eq!(s, 200);
    let (s, p, _) = http(
        "POST",
        &format!("{}/api/v1/clusters/sw/vms", srv.url),
        Some(&secret),
        &[],
        Some(&json!({"name": "bad name", "node": "kvm1"})),
    );
    assert_eq!(s, 422);
    let id = p["request_id"].as_str().unwrap_or_default().to_string();
    assert!(!id.is_empty(), "{p}");
    let _ = srv.child.kill();
    let _ = srv.child.wait();
    let mut logs = String::new();
    srv.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(!logs.contains(&secret), "a secret in the logs:\n{logs}");
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &Value| v["message"] == "request")
        .collect();
    assert_eq!(lines.len(), 2, "{logs}");
    let ok = &lines[0];
    assert_eq!(
        (&ok["method"], &ok["route"], &ok["status"], &ok["token"]),
        (
            &json!("GET"),
            &json!("/api/v1/clusters"),
            &json!(200),
            &json!("billing")
        ),
        "{ok}"
    );
    assert!(ok["micros"].is_u64(), "{ok}");
    assert_eq!(lines[1]["request_id"], id, "{logs}");
    assert_eq!(lines[1]["status"], 422, "{logs}");
}

/// A node token dies with its node: after `node remove tmpn` and a new
/// `tmpn` in another cluster (which on SQLite may even get the old row id),
/// the old token reads nothing; the revocation is in the change log; a new
/// token for the new node works. The same when the node goes with its
/// cluster.
#[test]
fn a_node_token_ends_with_its_node() {
    let env = Env::new();
    env.seed_world();
    env.ok(&["node", "add", "fab", "tmpn", "--address", "172.16.0.13"]);
    let db = env.db.to_string_lossy().to_string();
    let admin = token(&db, "admin", None);
    let old = token(&db, "node", Some("tmpn"));
    let srv = serve(&db, &[]);
    let api = format!("{}/api/v1", srv.url);
    let plan = format!("{api}/nodes/tmpn/plan");

    let (s, _, text) = http("GET", &plan, Some(&old), &[], None);
    assert_eq!(s, 200, "{text}");
    let (s, _, text) = http(
        "DELETE",
        &format!("{api}/nodes/tmpn"),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!(s, 200, "{text}");
    let (s, _, text) = http(
        "POST",
        &format!("{api}/clusters/sw/nodes"),
        Some(&admin),
        &[],
        Some(&json!({"name": "tmpn", "address": "192.0.2.4"})),
    );
    assert_eq!(s, 201, "{text}");
    // At once: the controller that removed the node forgot its lookups.
    let (s, p, text) = http("GET", &plan, Some(&old), &[], None);
    assert_eq!(
        s, 401,
        "the removed node's token read the new node's plan: {text}"
    );
    assert!(
        p["detail"].as_str().unwrap_or_default().contains("revoked"),
        "{p}"
    );
    let (_, changes, _) = http("GET", &format!("{api}/changes"), Some(&admin), &[], None);
    let revoked = changes["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["kind"] == "token.revoke" && c["detail"]["node"] == "tmpn");
    assert!(revoked, "no token.revoke in the change log: {changes}");
    let fresh = token(&db, "node", Some("tmpn"));
    let (s, _, text) = http("GET", &plan, Some(&fresh), &[], None);
    assert_eq!(s, 200, "{text}");

    // Deleting the cluster takes its nodes, and their tokens.
    env.ok(&[
        "node",
        "add",
        "hz",
        "gone1",
        "--address",
        "123.45.12.50",
        "--subnet",
        "203.0.113.56/29",
    ]);
    let gone = token(&db, "node", Some("gone1"));
    let (s, _, text) = http(
        "GET",
        &format!("{api}/nodes/gone1/plan"),
        Some(&gone),
        &[],
        None,
    );
    assert_eq!(s, 200, "{text}");
    env.ok(&["cluster", "delete", "hz"]);
    // Deleted on the database, not through this controller: its cached
    // lookup lasts at most CACHE_FOR (2 s).
    std::thread::sleep(Duration::from_millis(2_100));
    let (s, _, text) = http(
        "GET",
        &format!("{api}/nodes/gone1/plan"),
        Some(&gone),
        &[],
        None,
    );
    assert_eq!(s, 401, "{text}");
}
