//! Listings longer than a page: the API answers them page by page with a
//! cursor and refuses pages it cannot serve; the CLI prints them whole,
//! one page after another, the same on the database and through the
//! controller (one JSON array, or one table with one header).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::process::Stdio;

use common::controller::{http, remote, serve, token};
use common::*;
use serde_json::Value;

/// 2,500 VMs on two nodes of the seed's fabric cluster.
fn world() -> Env {
    let env = Env::new();
    env.seed_world();
    env.ok(&["network", "add", "fab", "10.64.0.0/20"]);
    let mut lines = String::new();
    for i in 0..2500 {
        let node = if i % 3 == 0 { "node2" } else { "node1" };
        lines.push_str(&format!(
            "{{\"cluster\":\"fab\",\"name\":\"bulk{i:04}\",\"node\":\"{node}\"}}\n"
        ));
    }
    let mut child = env
        .cmd()
        .args(["vm", "import", "--batch", "500"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    env
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn long_listings_come_whole_from_the_cli_and_page_by_page_from_the_api() {
    let env = world();
    let db = env.db.to_string_lossy().to_string();
    // The CLI on the database: one JSON array of every VM, by name.
    let all = env.ok(&["vm", "list"]);
    let got = names(&all);
    assert_eq!(got.len(), 2500);
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    // As text: one header, then a line per VM.
    let out = env.cmd().args(["vm", "list"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2501);
    assert_eq!(text.lines().filter(|l| l.starts_with("NAME")).count(), 1);
    // Of one node, and the addresses of the cluster: every page.
    let node2 = env.ok(&["vm", "list", "--node", "node2"]);
    assert_eq!(node2.as_array().unwrap().len(), 834);
    let addrs = env.ok(&["ip", "list", "--cluster", "fab"]);
    assert_eq!(addrs.as_array().unwrap().len(), 2500);
    // A reader that stops early ends the listing quietly.
    let mut head = env
        .cmd()
        .args(["vm", "list"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    drop(head.stdout.take());
    assert!(head.wait().unwrap().success(), "a closed pipe is no error");

    // Through the controller: the same answers.
    let viewer = token(&db, "viewer", None);
    let srv = serve(&db, &[]);
    let r = remote(&srv.url, &viewer, &["vm", "list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json, all);
    let r = remote(&srv.url, &viewer, &["vm", "list", "--cluster", "fab"]);
    assert_eq!(r.json.as_array().unwrap().len(), 2500);

    // The API itself: pages of at most `limit`, a cursor to the next.
    let api = format!("{}/api/v1", srv.url);
    let (s, first, _) = http("GET", &format!("{api}/vms"), Some(&viewer), &[], None);
    assert_eq!(s, 200);
    assert_eq!(
        first["items"].as_array().unwrap().len(),
        1000,
        "the default page"
    );
    let mut seen = 0;
    let mut url = format!("{api}/vms?limit=900&cluster=fab");
    loop {
        let (s, page, _) = http("GET", &url, Some(&viewer), &[], None);
        assert_eq!(s, 200, "{page}");
        seen += page["items"].as_array().unwrap().len();
        match page["next"].as_str() {
            Some(next) => url = format!("{api}/vms?limit=900&cluster=fab&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, 2500);
    // Pages it cannot serve: a problem naming the field, nothing else.
    for (q, field) in [
        ("limit=0", "limit"),
        ("limit=10001", "limit"),
        ("cluster=fab&after=no-slash-here", "after"),
    ] {
        let (s, p, _) = http("GET", &format!("{api}/vms?{q}"), Some(&viewer), &[], None);
        assert_eq!((s, p["field"].as_str()), (422, Some(field)), "{q}: {p}");
    }
    let (s, p, _) = http(
        "GET",
        &format!("{api}/addresses?after=not-an-address"),
        Some(&viewer),
        &[],
        None,
    );
    assert_eq!((s, p["field"].as_str()), (422, Some("after")), "{p}");
    // The change log: newest first, the imports of a commit together
    // (after the tokens made since, which are logged too).
    let (s, log, _) = http(
        "GET",
        &format!("{api}/changes?limit=10"),
        Some(&viewer),
        &[],
        None,
    );
    assert_eq!(s, 200);
    let items: Vec<&Value> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] != "token.create")
        .collect();
    assert!(items.len() >= 3, "{log}");
    assert_eq!(items[0]["kind"], "vm.create");
    assert_eq!(items[0]["revision"], items[1]["revision"], "{log}");
    assert!(items[0]["seq"].as_i64() > items[1]["seq"].as_i64());
    assert_eq!(items[0]["reach"]["scope"], "nodes");
}
