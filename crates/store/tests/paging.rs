//! Every listing is paged: walking it page by page with a small page
//! returns exactly the listing read at once, in the same order, without a
//! gap or a repeat, whatever the filter; cursors that no listing handed out
//! and sizes out of range are refused. On SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Debug;

use common::*;
use vmfabric_model::{NodeInput, Timestamp, TokenInput};
use vmfabric_store::{AddressFilter, MAX_PAGE, Page, PageRequest, Store};

/// Page after page of `size` items, until the last.
async fn walk<T>(
    size: usize,
    fetch: impl AsyncFn(PageRequest) -> vmfabric_model::Result<Page<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut req = PageRequest::first(size);
    let mut pages = 0;
    loop {
        let page = fetch(req.clone()).await.unwrap();
        assert!(page.items.len() <= size, "a page holds at most its size");
        pages += 1;
        assert!(pages < 10_000, "the cursor does not advance");
        out.extend(page.items);
        match page.next {
            Some(n) => req = req.next(n),
            None => return out,
        }
    }
}

async fn same<T: PartialEq + Debug>(
    what: &str,
    fetch: impl AsyncFn(PageRequest) -> vmfabric_model::Result<Page<T>>,
) {
    let whole = fetch(PageRequest::first(MAX_PAGE)).await.unwrap();
    assert!(whole.next.is_none(), "{what}: more than one page");
    for size in [1, 2, 3, 7] {
        let paged = walk(size, &fetch).await;
        assert_eq!(paged, whole.items, "{what}, pages of {size}");
    }
}

/// Builds the installation; the address with a long history.
async fn world(t: &TestStore) -> String {
    let s = &t.store;
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("198.51.100.0/27"))
        .await
        .unwrap();
    s.add_network("fab", &network("2001:db8:6::/64"))
        .await
        .unwrap();
    s.add_network("fab", &network("203.0.113.0/28"))
        .await
        .unwrap();
    s.create_cluster(&cluster("hz", "routing")).await.unwrap();
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/26")).await.unwrap();
    // Nodes whose names sort unlike their creation order, some empty.
    for (i, n) in ["f3", "f1", "f4", "f2", "f0"].iter().enumerate() {
        s.add_node("fab", &node(n, &format!("172.16.0.{}", 10 + i)))
            .await
            .unwrap();
    }
    for (i, n) in ["h2", "h1"].iter().enumerate() {
        let input = NodeInput {
            subnets: vec![format!("203.0.113.{}/29", 16 + 8 * i)],
            ipv6: Some(format!("2a01:4f8:{i}::2/64")),
            ..node(n, &format!("123.45.12.{}", 48 + i))
        };
        s.add_node("hz", &input).await.unwrap();
    }
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();
    let mut k = 0;
    for (c, n, count) in [
        ("fab", "f3", 6),
        ("fab", "f1", 5),
        ("fab", "f2", 1),
        ("hz", "h1", 4),
        ("hz", "h2", 3),
        ("sw", "s1", 5),
    ] {
        for _ in 0..count {
            // Names that interleave across nodes.
            let mut input = vm(&format!("vm{:02}", (k * 7) % 100), n);
            input.ipv6 = k % 3 == 0 && c != "sw";
            s.create_vm(c, &input).await.unwrap();
            k += 1;
            t.clock.advance_secs(1);
        }
    }
    // History on one address; reservations; released addresses.
    let a = ip_of(s, "vm00").await;
    for i in 0..5 {
        s.release(&a).await.unwrap();
        t.clock.advance_secs(1);
        s.reserve(&a, Some(&format!("case {i}"))).await.unwrap();
        t.clock.advance_secs(1);
        s.release(&a).await.unwrap();
        t.clock.advance_secs(1);
        s.reserve(&a, None).await.unwrap();
    }
    s.reserve("198.51.100.30", None).await.unwrap();
    s.reserve("203.0.113.20", Some("routing")).await.unwrap();
    s.delete_vm("vm07").await.unwrap();
    s.migrate_vm("vm14", "f4").await.unwrap();
    for i in 0..5 {
        s.create_token(&TokenInput {
            name: format!("t{i}"),
            role: "viewer".into(),
            node: None,
        })
        .await
        .unwrap();
    }
    for n in ["f3", "f1", "h2", "s1"] {
        s.report_status(n, &serde_json::json!({"changes": []}))
            .await
            .unwrap();
    }
    a
}

fn field(e: &vmfabric_model::Error) -> (&'static str, Option<&str>) {
    match e {
        vmfabric_model::Error::Invalid { field, .. } => ("invalid", Some(field.as_str())),
        other => (other.kind(), None),
    }
}

async fn run(t: TestStore) {
    let a = world(&t).await;
    let s = &t.store;
    let filters = [
        AddressFilter::default(),
        AddressFilter::cluster("fab"),
        AddressFilter::cluster("hz"),
        AddressFilter::cluster("sw"),
        AddressFilter::node("f1"),
        AddressFilter::node("f0"),
        AddressFilter::node("h1"),
        AddressFilter {
            reserved: true,
            ..AddressFilter::default()
        },
        AddressFilter {
            reserved: true,
            ..AddressFilter::cluster("hz")
        },
        AddressFilter {
            cluster: Some("fab".into()),
            node: Some("f3".into()),
            reserved: false,
        },
        AddressFilter {
            cluster: Some("hz".into()),
            node: Some("f3".into()),
            reserved: false,
        },
    ];
    for f in &filters {
        same(&format!("vms {f:?}"), async |p| s.vms(f, &p).await).await;
        same(&format!("addresses {f:?}"), async |p| {
            s.allocations(f, &p).await
        })
        .await;
        same(&format!("free space {f:?}"), async |p| {
            s.free_space(f, 2, &p).await
        })
        .await;
    }
    // A cluster's VMs come node by node, in name order within a node.
    let fab = s
        .vms(&AddressFilter::cluster("fab"), &PageRequest::first(100))
        .await
        .unwrap()
        .items;
    let order: Vec<(String, String)> = fab
        .iter()
        .map(|v| (v.node.clone(), v.name.clone()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "{}", t.backend);
    assert_eq!(fab.len(), 11, "{}", t.backend);
    for c in [None, Some("fab"), Some("hz")] {
        same("clusters", async |p| s.clusters(&p).await).await;
        same("networks", async |p| s.networks(c, &p).await).await;
        same("nodes", async |p| s.nodes(c, &p).await).await;
        same("usage", async |p| s.usage(c, &p).await).await;
    }
    let history = walk(3, async |p| s.history(&a, None, &p).await).await;
    assert_eq!(history.len(), 11, "{}", t.backend);
    same("history", async |p| s.history(&a, None, &p).await).await;
    let at = Timestamp(s.now().0 - 1);
    same("history at", async |p| s.history(&a, Some(at), &p).await).await;
    same("tokens", async |p| s.tokens(&p).await).await;
    same("agents", async |p| s.agent_statuses(&p).await).await;
    same("changes", async |p| {
        s.changes(&Default::default(), &p).await
    })
    .await;
    let log = walk(5, async |p| s.changes(&Default::default(), &p).await).await;
    assert!(
        log.windows(2)
            .all(|w| (w[0].revision, w[0].seq) > (w[1].revision, w[1].seq)),
        "the change log reads newest first"
    );

    // Bad pages are refused, naming the field.
    for bad in [0, MAX_PAGE + 1] {
        let e = s
            .vms(&AddressFilter::default(), &PageRequest::first(bad))
            .await
            .unwrap_err();
        assert_eq!(field(&e), ("invalid", Some("limit")), "{bad}");
    }
    let cursor = |a: &str| PageRequest {
        after: Some(a.into()),
        limit: None,
    };
    for (what, e) in [
        (
            "vms of a cluster",
            s.vms(&AddressFilter::cluster("fab"), &cursor("no-slash"))
                .await
                .err(),
        ),
        (
            "addresses",
            s.allocations(&AddressFilter::default(), &cursor("not-an-ip"))
                .await
                .err(),
        ),
        ("history", s.history(&a, None, &cursor("x")).await.err()),
        ("tokens", s.tokens(&cursor("seven")).await.err()),
        (
            "changes",
            s.changes(&Default::default(), &cursor("1-2")).await.err(),
        ),
        ("networks", s.networks(None, &cursor("10.0.0")).await.err()),
    ] {
        let e = e.unwrap_or_else(|| panic!("{what}: a bad cursor was taken"));
        assert_eq!(field(&e), ("invalid", Some("after")), "{what}");
    }
}

#[tokio::test]
async fn every_listing_pages_without_gaps_or_repeats() {
    for t in stores().await {
        run(t).await;
    }
}
