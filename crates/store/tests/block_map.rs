//! The map of a block: each address with its holder up to a /22, runs
//! counted by state above; the counts agree with the block's usage; on
//! SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::view::{BlockMap, CellState};
use vmfabric_model::{ClusterInput, Error, NetworkPatch};
use vmfabric_store::{PageRequest, Store};

#[tokio::test]
async fn maps_name_each_address_and_count_large_blocks() {
    for t in stores().await {
        on(t).await;
    }
}

fn state_of(m: &BlockMap, ip: &str) -> (CellState, Option<String>) {
    let c = m
        .cells
        .iter()
        .find(|c| c.first.to_string() == ip)
        .unwrap_or_else(|| panic!("no cell {ip}"));
    (c.state, c.holder.clone())
}

async fn on(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&ClusterInput {
        cooldown: Some("1h".into()),
        ..cluster("sw", "switching")
    })
    .await
    .unwrap();
    s.add_network("sw", &network("192.0.2.0/27")).await.unwrap();
    s.add_node("sw", &node("k1", "192.0.2.2")).await.unwrap();
    s.create_vm("sw", &vm("web1", "k1")).await.unwrap();
    s.create_vm("sw", &vm("web2", "k1")).await.unwrap();
    s.reserve("192.0.2.20", Some("abuse hold")).await.unwrap();
    s.update_network(
        "sw",
        "192.0.2.0/27",
        &NetworkPatch {
            add_exclusions: vec!["192.0.2.25".into()],
            ..NetworkPatch::default()
        },
    )
    .await
    .unwrap();
    let web2 = ip_of(s, "web2").await;
    s.delete_vm("web2").await.unwrap();
    let web1 = ip_of(s, "web1").await;

    // Address by address, any address of the block names it.
    let m = s.block_map("192.0.2.17").await.unwrap();
    assert_eq!(
        (m.block.as_str(), m.cell_size, m.cells.len()),
        ("192.0.2.0/27", 1, 32),
        "{b}"
    );
    assert_eq!(
        state_of(&m, &web1),
        (CellState::Used, Some("VM web1 (eth0)".into())),
        "{b}"
    );
    assert_eq!(
        state_of(&m, "192.0.2.20"),
        (CellState::Reserved, Some("reserved: abuse hold".into())),
        "{b}"
    );
    assert_eq!(state_of(&m, "192.0.2.25").0, CellState::System, "{b}");
    assert_eq!(
        state_of(&m, "192.0.2.2").0,
        CellState::System,
        "{b}: the node's address"
    );
    assert_eq!(
        state_of(&m, "192.0.2.0").0,
        CellState::System,
        "{b}: network address"
    );
    let (st, h) = state_of(&m, &web2);
    assert_eq!(st, CellState::Cooling, "{b}");
    assert!(h.unwrap().starts_with("released, usable again at"), "{b}");
    assert_eq!(state_of(&m, "192.0.2.30"), (CellState::Free, None), "{b}");

    s.add_network("sw", &network("10.20.0.0/16")).await.unwrap();
    // The counts agree with the block's usage.
    let usage = s
        .usage(Some("sw"), &PageRequest::default())
        .await
        .unwrap()
        .items;
    for u in &usage {
        let first = u.block.split('/').next().unwrap();
        let m = s.block_map(first).await.unwrap();
        let sum =
            |f: fn(&vmfabric_model::view::MapCell) -> u128| m.cells.iter().map(f).sum::<u128>();
        assert_eq!(
            [
                sum(|c| c.used),
                sum(|c| c.reserved),
                sum(|c| c.cooling),
                sum(|c| c.system),
                sum(|c| c.free)
            ],
            [u.used, u.reserved, u.cooling, u.system, u.free],
            "{b}: {}",
            u.block
        );
    }

    // A /16: 256 runs of 256 addresses.
    s.reserve("10.20.7.9", None).await.unwrap();
    let m = s.block_map("10.20.0.0").await.unwrap();
    assert_eq!((m.cell_size, m.cells.len()), (256, 256), "{b}");
    let run = &m.cells[7];
    assert_eq!(
        (run.first.to_string(), run.last.to_string()),
        ("10.20.7.0".into(), "10.20.7.255".into()),
        "{b}"
    );
    assert_eq!(
        (run.reserved, run.free, run.state),
        (1, 255, CellState::Free),
        "{b}"
    );
    assert_eq!(
        m.cells[0].system, 2,
        "{b}: the network address and the gateway"
    );

    // Outside every block, and not an address: refused.
    assert!(
        matches!(
            s.block_map("198.51.100.1").await,
            Err(Error::NotFound { .. })
        ),
        "{b}"
    );
    assert!(
        matches!(
            s.block_map("10.20.0.0/16").await,
            Err(Error::Invalid { .. })
        ),
        "{b}"
    );
}
