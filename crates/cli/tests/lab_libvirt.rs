//! The libvirt domain `vmfabric vm guest-config --format libvirt-domain`
//! renders, checked by libvirt itself: its schema (`virt-xml-validate`)
//! and a real libvirtd of the test's own (`virsh define`, then `virsh
//! dumpxml` keeps each NIC on the agent's tap with `managed='no'` and the
//! VM's MAC). The daemon runs in a lab namespace with its state in the
//! lab (`vmfabric_lab::libvirt`) and is killed by PID at the end, also on
//! failure. Needs root and libvirt-daemon, libvirt-daemon-driver-qemu,
//! libvirt-clients, libxml2-utils (scripts/test installs them); a missing
//! one fails the test with what to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Instant;

use common::lab::{agent, vf};
use vmfabric_lab::libvirt::{self, Libvirtd};
use vmfabric_lab::{Lab, worlds};

/// `virt-xml-validate FILE domain`: Ok, or what it said.
fn validate(path: &std::path::Path) -> Result<(), String> {
    let out = Command::new("virt-xml-validate")
        .arg(path)
        .arg("domain")
        .output()
        .expect("virt-xml-validate: apt-get install libvirt-clients libxml2-utils");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The `<interface>` elements of a domain's XML, each as one string.
fn interfaces(xml: &str) -> Vec<String> {
    xml.split("<interface ")
        .skip(1)
        .filter_map(|p| p.split("</interface>").next())
        .map(|p| format!("<interface {p}"))
        .collect()
}

#[test]
fn libvirt_defines_the_rendered_domain_on_the_agents_taps() {
    let t0 = Instant::now();
    libvirt::require_tools().unwrap();
    let mut lab = Lab::new("lv").expect("lab");
    let dc = worlds::switch(&mut lab, "dc").unwrap();
    let n1 = worlds::node(&mut lab, &dc, "n1", "eno1").unwrap();
    for args in [
        &[
            "cluster",
            "create",
            "k",
            "--type",
            "switching",
            "--virtualization",
            "kvm",
        ][..],
        &["network", "add", "k", "192.0.2.0/27"],
        &[
            "node",
            "add",
            "k",
            "n1",
            "--address",
            "192.0.2.2",
            "--uplink",
            "eno1",
        ],
        &["vm", "create", "k", "vm1", "--node", "n1"],
        &[
            "vm", "create", "k", "web.two", "--node", "n1", "--nics", "2",
        ],
    ] {
        vf(&lab, args);
    }
    agent(&lab, &n1, "n1");
    let daemon = Libvirtd::start(&lab, &n1).unwrap();
    let started = t0.elapsed().as_secs_f64();

    for (vm, disk) in [
        ("vm1", None),
        ("web.two", Some("/srv/vm disks/web.two.img")),
    ] {
        let shown = vf(&lab, &["vm", "show", vm]);
        let mut args = vec!["vm", "guest-config", vm, "--format", "libvirt-domain"];
        if let Some(d) = disk {
            args.extend(["--disk", d]);
        }
        let text = vf(&lab, &args)["text"].as_str().unwrap().to_string();
        let file = lab.dir.join(format!("{vm}.xml"));
        std::fs::write(&file, &text).unwrap();
        validate(&file).unwrap_or_else(|e| panic!("virt-xml-validate: {e}\n{text}"));
        daemon
            .virsh(&["define", &file.to_string_lossy()])
            .unwrap_or_else(|e| panic!("virsh define: {e}\n{text}"));
        let xml = daemon.virsh(&["dumpxml", vm]).unwrap();
        assert!(xml.contains(&format!("<name>{vm}</name>")), "{xml}");
        assert!(xml.contains("<domain type='kvm'"), "{xml}");
        // Every NIC as rendered: its tap (which the agent made, unmanaged
        // by libvirt), its MAC, virtio.
        let nics = shown["nics"].as_array().unwrap();
        let defined = interfaces(&xml);
        assert_eq!(defined.len(), nics.len(), "{xml}");
        for (nic, x) in nics.iter().zip(&defined) {
            let tap = nic["host_interface"].as_str().unwrap();
            let mac = nic["mac"].as_str().unwrap();
            assert!(x.starts_with("<interface type='ethernet'>"), "{x}");
            assert!(x.contains(&format!("<mac address='{mac}'/>")), "{x}");
            assert!(
                x.contains(&format!("<target dev='{tap}' managed='no'/>")),
                "{x}"
            );
            assert!(x.contains("<model type='virtio'/>"), "{x}");
            let d = lab.ip(&n1, &["-d", "link", "show", tap]).unwrap();
            assert!(d.contains("tun type tap") && d.contains("persist"), "{d}");
        }
        match disk {
            Some(d) => assert!(
                xml.contains(&format!("<source file='{d}'/>"))
                    && xml.contains("<driver name='qemu' type='raw'/>"),
                "{xml}"
            ),
            None => assert!(
                xml.contains(&format!(
                    "<source file='/var/lib/libvirt/images/{vm}.qcow2'/>"
                )),
                "{xml}"
            ),
        }
    }
    let listed = daemon.virsh(&["list", "--all", "--name"]).unwrap();
    let mut names: Vec<&str> = listed.split_whitespace().collect();
    names.sort_unstable();
    assert_eq!(names, ["vm1", "web.two"]);

    // The checks can fail: libvirt refuses what its schema refuses.
    let bad = lab.dir.join("bad.xml");
    let text = vf(
        &lab,
        &["vm", "guest-config", "vm1", "--format", "libvirt-domain"],
    )["text"]
        .as_str()
        .unwrap()
        .replace("managed='no'", "managed='maybe'")
        .replace("<name>vm1</name>", "<name>bad</name>");
    std::fs::write(&bad, &text).unwrap();
    assert!(
        validate(&bad).is_err(),
        "virt-xml-validate took managed='maybe'"
    );
    assert!(
        daemon
            .virsh(&["define", "--validate", &bad.to_string_lossy()])
            .is_err(),
        "virsh define --validate took managed='maybe'"
    );
    for vm in ["vm1", "web.two"] {
        daemon.virsh(&["undefine", vm]).unwrap();
    }
    eprintln!(
        "libvirt: daemon ready {started:.1} s after the test started; whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
