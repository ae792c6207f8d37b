//! A VM created with several NICs and several addresses per NIC, in one
//! transaction: every NIC has its own MAC and host interface, its
//! addresses are held in history under that NIC, the node's plan carries
//! every interface, and a request that cannot be met leaves nothing
//! behind; on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vmfabric_model::{Error, NicInput, VmInput};
use vmfabric_plan::build;
use vmfabric_store::{ChangeFilter, ListAll, Store, VmRequest};

#[tokio::test]
async fn a_vm_is_created_with_several_nics_and_addresses_at_once() {
    for t in stores().await {
        on(t).await;
    }
}

fn ips(v: &vmfabric_model::Vm, nic: usize) -> Vec<String> {
    v.nics[nic]
        .addresses
        .iter()
        .map(|a| a.address.to_string())
        .collect()
}

async fn on(t: TestStore) {
    let s = &t.store;
    let b = t.backend;
    s.create_cluster(&cluster("sw", "switching")).await.unwrap();
    s.add_network("sw", &network("192.0.2.0/28")).await.unwrap();
    s.add_network("sw", &network("2001:db8:5::/64"))
        .await
        .unwrap();
    s.add_node("sw", &node("s1", "192.0.2.2")).await.unwrap();

    // The simple form with extras and --nics 3.
    let three = VmInput {
        ipv6: true,
        extra_ipv4: 2,
        ..vm("web", "s1")
    }
    .with_nic_count(3);
    let v = s.create_vm("sw", &three).await.unwrap();
    assert_eq!(v.nics.len(), 3, "{b}");
    assert_eq!(
        ips(&v, 0),
        ["192.0.2.3", "192.0.2.4", "192.0.2.5", "2001:db8:5::2"],
        "{b}"
    );
    assert_eq!(ips(&v, 1), ["192.0.2.6", "2001:db8:5::3"], "{b}");
    assert_eq!(ips(&v, 2), ["192.0.2.7", "2001:db8:5::4"], "{b}");
    let names: Vec<&str> = v.nics.iter().map(|n| n.host_interface.as_str()).collect();
    assert_eq!(names, ["web_net0", "web_net1", "web_net2"], "{b}");
    let mut macs: Vec<_> = v.nics.iter().map(|n| n.mac).collect();
    macs.dedup();
    assert_eq!(macs.len(), 3, "{b}: {macs:?}");
    // What the store answers later is what creation answered.
    assert_eq!(s.vm("web").await.unwrap(), v, "{b}");
    // History holds each address under its NIC's MAC.
    let h = s.all_history("192.0.2.6", None).await.unwrap();
    assert_eq!(h.len(), 1, "{b}");
    assert_eq!(
        h[0].holder,
        vmfabric_model::view::Holder::Vm {
            vm: "web".into(),
            nic: 1,
            mac: Some(v.nics[1].mac)
        },
        "{b}"
    );
    // The node's plan has every NIC's interface and address.
    let plan = build(&s.plan_input("s1").await.unwrap());
    let text = format!("{plan:?}");
    for n in &v.nics {
        assert!(text.contains(n.host_interface.as_str()), "{b}: {n:?}");
    }
    // One change-log entry for the whole VM, listing each NIC.
    let log = s
        .all_changes(&ChangeFilter {
            since: None,
            object: Some("web".into()),
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 1, "{b}: {log:?}");
    assert_eq!(
        log[0].detail["nics"].as_array().map(Vec::len),
        Some(3),
        "{b}"
    );

    // A list of NICs: an exact address on net1, IPv6 only on net2.
    let listed = VmInput {
        nics: vec![
            NicInput::default(),
            NicInput {
                ips: vec!["192.0.2.12".into()],
                ..NicInput::default()
            },
            NicInput {
                no_ipv4: true,
                ipv6: true,
                ..NicInput::default()
            },
        ],
        ..vm("db", "s1")
    };
    let before = s.revision().await.unwrap();
    // Batched with two simple VMs: each gets what it asked for.
    let results = s
        .create_vms(&[
            VmRequest::new("sw", vm("a", "s1")),
            VmRequest::new("sw", listed),
            VmRequest::new("sw", vm("b", "s1")),
        ])
        .await
        .unwrap();
    let got: Vec<Vec<Vec<String>>> = results
        .iter()
        .map(|r| {
            let v = r.as_ref().unwrap();
            (0..v.nics.len()).map(|i| ips(v, i)).collect()
        })
        .collect();
    assert_eq!(
        got,
        [
            vec![vec!["192.0.2.8"]],
            vec![vec!["192.0.2.9"], vec!["192.0.2.12"], vec!["2001:db8:5::5"]],
            vec![vec!["192.0.2.10"]],
        ],
        "{b}"
    );
    assert_eq!(s.revision().await.unwrap(), before + 1, "{b}");

    // Not enough addresses for every NIC: nothing is taken, nothing
    // written; the VM of the same batch after it still gets its address.
    // Left: .11, .13, .14 (.15 is broadcast).
    let before = s.revision().await.unwrap();
    let free_before = s.all_allocations(&Default::default()).await.unwrap().len();
    let results = s
        .create_vms(&[
            VmRequest::new("sw", vm("big", "s1").with_nic_count(4)),
            VmRequest::new("sw", vm("c", "s1")),
        ])
        .await
        .unwrap();
    assert!(
        matches!(&results[0], Err(Error::Exhausted { .. })),
        "{b}: {:?}",
        results[0]
    );
    assert_eq!(ips(results[1].as_ref().unwrap(), 0), ["192.0.2.11"], "{b}");
    assert!(
        matches!(s.vm("big").await, Err(Error::NotFound { .. })),
        "{b}"
    );
    assert_eq!(
        s.all_allocations(&Default::default()).await.unwrap().len(),
        free_before + 1,
        "{b}"
    );
    assert_eq!(s.revision().await.unwrap(), before + 1, "{b}");

    // Refusals name the field and change nothing.
    let before = s.revision().await.unwrap();
    let bad = [
        (
            VmInput {
                nics: vec![NicInput::default(); 11],
                ..vm("x", "s1")
            },
            "nics",
        ),
        (
            VmInput {
                ipv6: true,
                nics: vec![NicInput::default()],
                ..vm("x", "s1")
            },
            "ipv6",
        ),
        (
            VmInput {
                nics: vec![
                    NicInput {
                        ips: vec!["192.0.2.13".into()],
                        ..NicInput::default()
                    },
                    NicInput {
                        ips: vec!["192.0.2.13".into()],
                        ..NicInput::default()
                    },
                ],
                ..vm("x", "s1")
            },
            "nics[1].ips",
        ),
        (
            VmInput {
                extra_ipv4: 64,
                ..vm("x", "s1")
            },
            "extra_ipv4",
        ),
        (
            VmInput {
                nics: vec![
                    NicInput::default(),
                    NicInput {
                        ips: vec!["203.0.113.9".into()],
                        ..NicInput::default()
                    },
                ],
                ..vm("x", "s1")
            },
            "nics[1].ip",
        ),
    ];
    for (input, field) in bad {
        match s.create_vm("sw", &input).await {
            Err(Error::Invalid { field: f, .. } | Error::Conflict { field: f, .. }) => {
                assert_eq!(f, field, "{b}")
            }
            other => panic!("{b}: {field}: {other:?}"),
        }
    }
    assert_eq!(s.revision().await.unwrap(), before, "{b}");

    // Deleting the VM releases every address of every NIC.
    s.delete_vm("web").await.unwrap();
    for ip in ["192.0.2.3", "192.0.2.7", "2001:db8:5::4"] {
        let h = s.all_history(ip, None).await.unwrap();
        assert!(h[0].until.is_some(), "{b}: {ip}: {h:?}");
    }
    assert_consistent(s).await;
}
