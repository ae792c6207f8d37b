//! Real guests: a Debian guest (built from Debian's packages, cached) boots
//! with QEMU inside the lab's node namespaces on the tap the agent made,
//! takes its network from a NoCloud seed holding exactly what
//! `vmfabric vm guest-config` renders, and reports its addresses, routes
//! and pings on its serial console. QEMU runs with TCG: `/dev/kvm` here
//! fails on real guests (LAB.md). Needs root, mmdebstrap, qemu-system-x86
//! and xorriso (scripts/test installs them); a missing one fails the test
//! with what to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::lab::{vf, vmfabric};
use vmfabric_lab::qemu::{self, Boot, Guest};
use vmfabric_lab::{Lab, scenarios};

/// Boot and report deadline for one TCG guest on a shared machine.
const BOOT: Duration = Duration::from_secs(420);

struct Planned {
    name: &'static str,
    node: &'static str,
    address: String,
    gateway: String,
}

/// Ping each guest from `ns` until it answers; returns the seconds from
/// its QEMU start to its first answer, in the order of `guests`.
fn first_pings(lab: &Lab, ns: &str, guests: &[(&Guest, &str)]) -> Vec<f64> {
    let mut answered: Vec<Option<f64>> = vec![None; guests.len()];
    let end = Instant::now() + BOOT;
    while answered.iter().any(Option::is_none) && Instant::now() < end {
        for (i, (g, ip)) in guests.iter().enumerate() {
            if answered[i].is_some() {
                continue;
            }
            let ok = lab
                .exec(ns, "ping")
                .args(["-c", "1", "-W", "1", ip])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                answered[i] = Some(g.started.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    answered
        .iter()
        .zip(guests)
        .map(|(a, (g, ip))| {
            a.unwrap_or_else(|| {
                panic!(
                    "{} ({ip}) never answered a ping; console:\n{}",
                    g.name,
                    g.console_text()
                )
            })
        })
        .collect()
}

#[test]
fn switching_guests_take_their_network_from_vmfabric() {
    let t0 = Instant::now();
    let image = qemu::image().unwrap();
    eprintln!(
        "guest image {} ready in {:.1} s",
        image.dir.display(),
        t0.elapsed().as_secs_f64()
    );
    let mut lab = Lab::new("gu").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::switching_kvm(&mut lab, &vf_).unwrap();
    let dc = t.ns("dc").to_string();
    let planned: Vec<Planned> = [("vm1", "n1"), ("vm2", "n2")]
        .into_iter()
        .map(|(name, node)| {
            let nic = vf_.nic(name).unwrap();
            let a = &nic.addresses[0];
            Planned {
                name,
                node,
                address: format!("{}/{}", a.address, a.prefix_len),
                gateway: a.gateway.expect("switching VMs have a gateway").to_string(),
            }
        })
        .collect();
    let ip = |p: &Planned| -> IpAddr { p.address.split('/').next().unwrap().parse().unwrap() };

    let mut guests = Vec::new();
    for (i, p) in planned.iter().enumerate() {
        let nic = vf_.nic(p.name).unwrap();
        let config = vf(&lab, &["vm", "guest-config", p.name]);
        let config = config["text"].as_str().expect("guest-config text");
        // Each guest pings its gateway and the other guest across nodes.
        let other = &planned[1 - i];
        let gw: IpAddr = p.gateway.parse().unwrap();
        let seed =
            qemu::seed(&lab.dir, p.name, config, &qemu::user_data(&[gw, ip(other)])).unwrap();
        let g = qemu::boot(
            &mut lab,
            &image,
            &Boot {
                name: p.name,
                node_ns: t.ns(p.node),
                tap: &nic.host_interface,
                mac: &nic.mac,
                seed: &seed,
                append: "",
            },
        )
        .unwrap();
        guests.push(g);
    }

    // The router reaches each guest: the first ping measures the boot.
    let ips: Vec<String> = planned.iter().map(|p| ip(p).to_string()).collect();
    let pairs: Vec<(&Guest, &str)> = guests.iter().zip(ips.iter().map(String::as_str)).collect();
    let firsts = first_pings(&lab, &dc, &pairs);

    for ((g, p), first) in guests.iter().zip(&planned).zip(&firsts) {
        let r = g.report(BOOT).unwrap();
        let console = || g.console_text();
        assert_eq!(
            r.addresses("eth0"),
            std::slice::from_ref(&p.address),
            "{}: addresses in the guest are not the plan's; console:\n{}",
            p.name,
            console()
        );
        assert_eq!(
            r.default_route(false),
            Some((p.gateway.clone(), "eth0".to_string())),
            "{}: default route; routes {}",
            p.name,
            r.route4
        );
        for (target, ok, _) in &r.pings {
            assert!(
                ok,
                "{} could not ping {target}; console:\n{}",
                p.name,
                console()
            );
        }
        assert_eq!(r.pings.len(), 2, "{}: {:?}", p.name, r.pings);
        eprintln!(
            "{} on {}: router -> guest first ping {:.1} s after QEMU started; \
             guest report at uptime {:.1} s; guest pings {:?}",
            p.name, p.node, first, r.uptime, r.pings
        );
    }
    eprintln!("whole test {:.1} s", t0.elapsed().as_secs_f64());
}
