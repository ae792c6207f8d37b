//! The change log: every change says who made it (the controller's token,
//! or `local`), can be followed from a revision on, and can be read for one
//! object; on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::{Error, TokenInput};
use vmfabric_store::{ChangeFilter, ListAll, PageRequest, Store, acting_as};

#[tokio::test]
async fn every_change_names_its_actor_and_the_log_can_be_followed() {
    for t in stores().await {
        on(t).await;
    }
}

async fn on(t: TestStore) {
    let s = &t.store;
    s.create_cluster(&cluster("f", "ip-fabric")).await.unwrap();
    s.add_network("f", &network("198.51.100.0/28"))
        .await
        .unwrap();
    s.add_node("f", &node("n1", "172.16.0.11")).await.unwrap();
    let mark = s.revision().await.unwrap();
    acting_as("operator token 7 (alice)".into(), async {
        s.create_vm("f", &vm("a", "n1")).await.unwrap();
        s.create_vm("f", &vm("b", "n1")).await.unwrap();
    })
    .await;
    let tok = s
        .create_token(&TokenInput {
            name: "billing".into(),
            role: "viewer".into(),
            node: None,
        })
        .await
        .unwrap();
    s.revoke_token(tok.info.id).await.unwrap();
    s.delete_vm("a").await.unwrap();

    // Newest first, each with its actor.
    let all = s
        .changes(&ChangeFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str)> = all
        .items
        .iter()
        .map(|c| {
            (
                c.kind.as_str(),
                c.subject.as_str(),
                c.actor.as_deref().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        seen[..5],
        [
            ("vm.delete", "a", "local"),
            ("token.revoke", &*format!("token {}", tok.info.id), "local"),
            ("token.create", &*format!("token {}", tok.info.id), "local"),
            ("vm.create", "b", "operator token 7 (alice)"),
            ("vm.create", "a", "operator token 7 (alice)"),
        ],
        "{}",
        t.backend
    );
    // Never a secret in the log.
    let text = serde_json::to_string(&all.items).unwrap();
    assert!(!text.contains(&tok.secret), "{}", t.backend);
    // A deletion records what was deleted.
    let before = &all.items[0].detail["before"];
    assert_eq!(before["name"], "a", "{}: {before}", t.backend);
    assert!(before["nics"][0]["mac"].is_string(), "{before}");

    // Following from a revision: oldest first, only what came after.
    let since = ChangeFilter {
        since: Some(mark),
        object: None,
    };
    let mut followed = Vec::new();
    let mut page = PageRequest {
        after: None,
        limit: Some(2),
    };
    loop {
        let p = s.changes(&since, &page).await.unwrap();
        followed.extend(p.items.into_iter().map(|c| c.kind));
        match p.next {
            Some(n) => page.after = Some(n),
            None => break,
        }
    }
    assert_eq!(
        followed,
        [
            "vm.create",
            "vm.create",
            "token.create",
            "token.revoke",
            "vm.delete"
        ],
        "{}",
        t.backend
    );

    // One object's changes.
    let of_a = ChangeFilter {
        since: None,
        object: Some("a".into()),
    };
    let kinds: Vec<String> = s
        .changes(&of_a, &PageRequest::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, ["vm.delete", "vm.create"], "{}", t.backend);
    let of_a_since = ChangeFilter {
        since: Some(mark),
        object: Some("a".into()),
    };
    let kinds: Vec<String> = s
        .all_changes(&of_a_since)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(kinds, ["vm.create", "vm.delete"], "{}", t.backend);

    // A revision below 0 is refused, naming the field.
    let bad = ChangeFilter {
        since: Some(-1),
        object: None,
    };
    match s.changes(&bad, &PageRequest::default()).await {
        Err(Error::Invalid { field, value, .. }) => {
            assert_eq!((field.as_str(), value.as_str()), ("since", "-1"))
        }
        other => panic!("{}: {other:?}", t.backend),
    }
}
