//! Every rendered configuration is accepted by the tool that will read it:
//! FRR (`vtysh --dryrun`), nftables (`nft -c`), BIRD (`bird -p`), libvirt's
//! schema (`virt-xml-validate`; `virsh define` against a real daemon is in
//! crates/cli/tests/lab_libvirt.rs). These
//! tools must be installed (scripts/test installs them); a missing tool is
//! a failure that says what to install, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use vmfabric_plan::build;
use vmfabric_plan::render::{bird, frr, libvirt, nft};

fn check(tool: &str, package: &str, args: &[&str], text: &str, ext: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("config.{ext}"));
    std::fs::write(&path, text).unwrap();
    let out = Command::new(tool)
        .args(args)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): apt-get install {package}"));
    assert!(
        out.status.success(),
        "{tool} refused the rendered file:\n{}{}\n--- file ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn frr_check(text: &str) {
    check("vtysh", "frr", &["--dryrun", "-f"], text, "conf");
}

fn nft_check(text: &str) {
    check("nft", "nftables", &["-c", "-f"], text, "nft");
}

#[test]
fn frr_accepts_node_and_reflector_configs() {
    let input = common::fabric("kvm");
    frr_check(&frr::node(&build(&input)).unwrap());
    let nodes = common::fabric_nodes();
    for rr in ["172.16.0.2", "172.16.0.3"] {
        let rr = rr.parse().unwrap();
        frr_check(&frr::reflector(&input.cluster, &nodes, rr, &[]).unwrap());
        frr_check(
            &frr::reflector(&input.cluster, &nodes, rr, &["172.16.0.9".parse().unwrap()]).unwrap(),
        );
    }
}

#[test]
fn a_broken_frr_config_is_refused() {
    // The check itself must be able to fail.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(
        &path,
        "router bgp 65000\n neighbor 1.2.3.4 remote-az 65000\n",
    )
    .unwrap();
    let out = Command::new("vtysh")
        .arg("--dryrun")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("apt-get install frr");
    assert!(!out.status.success());
}

#[test]
fn nft_accepts_every_ruleset() {
    for input in [
        common::switching(),
        common::routing("kernel"),
        common::routing("ndppd"),
        common::fabric("kvm"),
        common::fabric("lxd"),
    ] {
        let plan = build(&input);
        nft_check(&nft::ruleset(&plan, None));
        nft_check(&nft::ruleset(&plan, Some("02:00:00:00:00:01")));
    }
    // No VMs at all: empty sets are still a valid ruleset.
    let mut empty = common::switching();
    empty.vms.clear();
    nft_check(&nft::ruleset(&build(&empty), None));
}

#[test]
fn bird_accepts_reflector_configs() {
    let input = common::fabric("kvm");
    let nodes = common::fabric_nodes();
    let rr = "172.16.0.2".parse().unwrap();
    check(
        "bird",
        "bird2",
        &["-p", "-c"],
        &bird::reflector(&input.cluster, &nodes, rr, &["172.16.0.3".parse().unwrap()]).unwrap(),
        "conf",
    );
}

/// The protocol names of a BIRD config, in order.
fn bird_protocols(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("protocol bgp "))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// 10,000 nodes with names of the longest valid length (63), including
/// names that differ only in `-`, `.` and `_`: BIRD accepts the config
/// (every protocol name within its symbol limit), the names are unique,
/// and a node keeps its protocol name when other nodes come and go.
#[test]
fn bird_accepts_reflector_configs_with_long_names_and_many_nodes() {
    let input = common::fabric("kvm");
    let c = &input.cluster;
    let stem = "a".repeat(58);
    let nodes: Vec<_> = (0..10_000u32)
        .map(|i| {
            let sep = ['-', '.', '_'][(i % 3) as usize];
            let name = format!("{stem}{sep}{:04}", i / 3);
            assert_eq!(name.len(), 63);
            let address = format!("172.16.{}.{}", 100 + i / 250, 1 + i % 250);
            common::node(
                c,
                vmfabric_model::NodeInput {
                    name,
                    address,
                    ..vmfabric_model::NodeInput::default()
                },
            )
        })
        .collect();
    let rr = "172.16.0.2".parse().unwrap();
    let all = bird::reflector(c, &nodes, rr, &["172.16.0.3".parse().unwrap()]).unwrap();
    check("bird", "bird2", &["-p", "-c"], &all, "conf");
    let names = bird_protocols(&all);
    assert_eq!(names.len(), 10_001);
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "protocol names repeat");
    assert!(
        names.iter().all(|n| n.len() <= 63),
        "a name over 63 characters"
    );

    // Stable: without the first half of the nodes (and with a plain short
    // name), each remaining node has the name it had.
    let rest = bird::reflector(c, &nodes[5_000..], rr, &[]).unwrap();
    let rest_names = bird_protocols(&rest);
    assert_eq!(&rest_names[..], &names[5_000..10_000]);
    let short = common::fabric_nodes();
    let short_conf = bird::reflector(c, &short, rr, &[]).unwrap();
    check("bird", "bird2", &["-p", "-c"], &short_conf, "conf");
}

/// libvirt's schema check of a domain or interface file: `Ok` or what
/// virt-xml-validate said. It needs xmllint, which libvirt-clients does
/// not pull in.
fn virt_xml_validate(text: &str, schema: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("domain.xml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(&path)
        .arg(schema)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run virt-xml-validate ({e}): apt-get install libvirt-clients libxml2-utils"
            )
        });
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !said.contains("xmllint: not found"),
        "virt-xml-validate needs xmllint: apt-get install libxml2-utils"
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(said)
    }
}

#[test]
fn libvirt_accepts_every_domain() {
    let sw = common::switching();
    let fab = common::fabric("kvm");
    for vm in sw.vms.iter().chain(&fab.vms) {
        for disk in [
            None,
            Some("/var/lib/vms/a b'&.qcow2"),
            Some("/dev/vg0/disk"),
        ] {
            let text = libvirt::domain(vm, disk);
            virt_xml_validate(&text, "domain").unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
        // The interface elements are the domain's own (one function
        // writes both); libvirt's `interface` schema is for host
        // interfaces, not a domain's NICs, so they are checked in place.
        let domain = libvirt::domain(vm, None);
        for one in libvirt::interfaces_xml(vm)
            .lines()
            .filter(|l| !l.starts_with("<!--"))
        {
            assert!(domain.contains(one.trim()), "{one}");
        }
    }
    // The check itself can fail: a domain without its name is refused.
    let vm = &sw.vms[0];
    let broken = libvirt::domain(vm, None).replace(&format!("<name>{}</name>", vm.name), "");
    assert!(virt_xml_validate(&broken, "domain").is_err());
}
