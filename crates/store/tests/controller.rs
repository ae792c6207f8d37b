//! What the controller keeps in the store, on both backends: tokens (only
//! a hash), idempotent VM creation, the revision agents wait on, and the
//! agents' reports.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::{Access, Role, TokenInput};
use vmfabric_store::ListAll;
use vmfabric_store::{AddressFilter, Store, VmRequest};

#[tokio::test]
async fn controller_state() {
    for t in stores().await {
        tokens(&t).await;
        idempotency(&t).await;
        revision_and_reports(&t).await;
    }
}

async fn tokens(t: &TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("fab", "ip-fabric"))
        .await
        .unwrap();
    s.add_network("fab", &network("198.51.100.0/24"))
        .await
        .unwrap();
    s.add_node("fab", &node("n1", "10.1.0.1")).await.unwrap();

    let admin = s
        .create_token(&TokenInput {
            name: "ops".into(),
            role: "admin".into(),
            node: None,
        })
        .await
        .unwrap();
    assert!(
        admin.secret.starts_with("vmf_") && admin.secret.len() == 68,
        "{b}"
    );
    let agent = s
        .create_token(&TokenInput {
            name: "agent n1".into(),
            role: "node".into(),
            node: Some("n1".into()),
        })
        .await
        .unwrap();
    assert_ne!(admin.secret, agent.secret, "{b}");

    // The secret is found by its hash; the database never holds it.
    let found = s.authenticate(&agent.secret).await.unwrap().unwrap();
    assert_eq!(found.role, Role::Node, "{b}");
    assert!(found.allows(Access::Node("n1")) && !found.allows(Access::Node("n2")));
    assert!(s.authenticate("vmf_00").await.unwrap().is_none(), "{b}");
    assert!(
        s.authenticate("not-a-token").await.unwrap().is_none(),
        "{b}"
    );

    // Bad input changes nothing.
    let before = s.all_tokens().await.unwrap();
    for bad in [
        TokenInput {
            role: "root".into(),
            ..TokenInput::default()
        },
        TokenInput {
            role: "node".into(),
            ..TokenInput::default()
        },
        TokenInput {
            role: "viewer".into(),
            node: Some("n1".into()),
            ..TokenInput::default()
        },
    ] {
        assert_eq!(s.create_token(&bad).await.unwrap_err().kind(), "invalid");
    }
    let missing = TokenInput {
        role: "node".into(),
        node: Some("nope".into()),
        ..TokenInput::default()
    };
    assert_eq!(
        s.create_token(&missing).await.unwrap_err().kind(),
        "not-found"
    );
    assert_eq!(s.all_tokens().await.unwrap(), before, "{b}");

    let revoked = s.revoke_token(agent.info.id).await.unwrap();
    assert!(revoked.revoked_at.is_some(), "{b}");
    let found = s.authenticate(&agent.secret).await.unwrap().unwrap();
    assert!(!found.allows(Access::Node("n1")), "{b}: revoked");
    assert_eq!(
        s.revoke_token(9999).await.unwrap_err().kind(),
        "not-found",
        "{b}"
    );
}

async fn idempotency(t: &TestStore) {
    let s = &t.store;
    let b = t.backend;
    let mut req = VmRequest::new("fab", vm("web1", "n1"));
    req.idempotency_key = Some("6f1c2d5e-retry".into());
    let first = s.create_vms(std::slice::from_ref(&req)).await.unwrap();
    let first = first.into_iter().next().unwrap().unwrap();
    // The retry (alone, and twice in one batch) returns the same VM and
    // allocates nothing.
    let again = s
        .create_vms(&[req.clone(), req.clone()])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect::<Vec<_>>();
    assert_eq!(again, vec![first.clone(), first.clone()], "{b}");
    let allocs = s.all_allocations(&AddressFilter::default()).await.unwrap();
    assert_eq!(allocs.len(), 1, "{b}: {allocs:?}");

    // The same key for another request is refused and changes nothing.
    let mut other = VmRequest::new("fab", vm("web2", "n1"));
    other.idempotency_key = req.idempotency_key.clone();
    let e = s.create_vms(&[other]).await.unwrap().remove(0).unwrap_err();
    assert_eq!(e.kind(), "conflict", "{b}: {e}");
    assert!(e.to_string().contains("idempotency_key"), "{b}: {e}");
    // Two new keys in one batch, one reused: one VM each, the reuse gets the first.
    let mut a = VmRequest::new("fab", vm("web3", "n1"));
    a.idempotency_key = Some("k-a".into());
    let mut bad = VmRequest::new("fab", vm("web4", "n1"));
    bad.idempotency_key = Some("has space".into());
    let got = s.create_vms(&[a.clone(), bad, a]).await.unwrap();
    assert!(got[0].is_ok() && got[1].is_err(), "{b}: {got:?}");
    assert_eq!(got[0], got[2], "{b}");
    assert_eq!(
        s.all_allocations(&AddressFilter::default())
            .await
            .unwrap()
            .len(),
        2,
        "{b}"
    );
    assert_consistent(s).await;

    // Keys are forgotten after their time: the retry then is a new request
    // (here refused, the VM exists), and nothing else changes.
    t.clock.advance_secs(10);
    let forgotten = s
        .forget_idempotency(vmfabric_model::Timestamp(s.now().0 - 5_000_000))
        .await
        .unwrap();
    assert_eq!(forgotten, 2, "{b}");
    let e = s.create_vms(&[req]).await.unwrap().remove(0).unwrap_err();
    assert_eq!(e.kind(), "conflict", "{b}: {e}");
    assert!(e.to_string().contains("web1"), "{b}: {e}");
}

async fn revision_and_reports(t: &TestStore) {
    let s = &t.store;
    let b = t.backend;
    let r0 = s.revision().await.unwrap();
    s.create_vm("fab", &vm("db1", "n1")).await.unwrap();
    let r1 = s.revision().await.unwrap();
    assert!(r1 > r0, "{b}: a commit moves the revision");
    // Reads, refusals and reports leave it alone.
    s.all_vms(&AddressFilter::default()).await.unwrap();
    s.create_vm("fab", &vm("db1", "n1")).await.unwrap_err();
    let report = serde_json::json!({"revision": r1, "changes": 3, "failures": []});
    let st = s.report_status("n1", &report).await.unwrap();
    assert_eq!(st.report, report, "{b}");
    assert_eq!(s.revision().await.unwrap(), r1, "{b}");
    s.report_status("n1", &serde_json::json!({"changes": 0}))
        .await
        .unwrap();
    let all = s.all_agent_statuses().await.unwrap();
    assert_eq!(all.len(), 1, "{b}");
    assert_eq!(all[0].report["changes"], 0, "{b}");
    assert_eq!(
        s.report_status("ghost", &report).await.unwrap_err().kind(),
        "not-found"
    );
    s.delete_vm("db1").await.unwrap();
    assert!(s.revision().await.unwrap() > r1, "{b}");
}
