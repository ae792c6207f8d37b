//! Real guests: a Debian guest (built from Debian's packages, cached) boots
//! with QEMU inside the lab's node namespaces on the tap the agent made,
//! takes its network from a NoCloud seed holding exactly what
//! `vmfabric vm guest-config` renders, and reports its addresses, routes
//! and pings on its serial console. QEMU runs with TCG: `/dev/kvm` here
//! fails on real guests (LAB.md). The guests of a test boot in parallel.
//! Needs root, mmdebstrap, qemu-system-x86 and xorriso (scripts/test
//! installs them); a missing one fails the test with what to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::lab::{vf, vmfabric};
use vmfabric_lab::Lab;
use vmfabric_lab::qemu::{self, Boot, Guest, Image, Report};
use vmfabric_lab::scenarios::{self, Topology, Vmfabric};

/// Boot and report deadline for one TCG guest on a shared machine.
const BOOT: Duration = Duration::from_secs(420);

/// One test's guests at a time: TCG guests share the machine's cores, and
/// more at once only make each boot slower.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A guest to boot: VM, node, cloud-init renderer, what it pings.
struct Spec {
    vm: &'static str,
    node: &'static str,
    renderer: &'static str,
    pings: Vec<IpAddr>,
}

/// What the plan says the guest's first NIC holds.
#[derive(Debug)]
struct Planned {
    addresses: Vec<String>,
    gateway4: Option<String>,
    gateway6: Option<String>,
}

fn planned(vf_: &Vmfabric, vm: &str) -> Planned {
    let nic = vf_.nic(vm).unwrap();
    let gw = |v6: bool| {
        nic.addresses
            .iter()
            .find(|a| a.address.is_ipv6() == v6)
            .and_then(|a| a.gateway)
            .map(|g| g.to_string())
    };
    Planned {
        addresses: nic
            .addresses
            .iter()
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect(),
        gateway4: gw(false),
        gateway6: gw(true),
    }
}

fn addr(vf_: &Vmfabric, vm: &str) -> IpAddr {
    vf_.ip_of(vm).unwrap().parse().unwrap()
}

fn addr6(vf_: &Vmfabric, vm: &str) -> IpAddr {
    vf_.ipv6_of(vm).unwrap().parse().unwrap()
}

/// Seed and boot every guest of `specs` at once.
fn boot_all(lab: &mut Lab, image: &Image, t: &Topology, specs: &[Spec]) -> Vec<Guest> {
    specs
        .iter()
        .map(|s| boot_one(lab, image, t, s, s.vm))
        .collect()
}

/// Seed and boot one guest; `run` names this run of it (console, log).
fn boot_one(lab: &mut Lab, image: &Image, t: &Topology, s: &Spec, run: &str) -> Guest {
    let vf_ = vmfabric(lab);
    let nic = vf_.nic(s.vm).unwrap();
    let config = vf(lab, &["vm", "guest-config", s.vm]);
    let config = config["text"].as_str().expect("guest-config text");
    let seed = qemu::seed(&lab.dir, s.vm, config, &qemu::user_data(&s.pings)).unwrap();
    let append = qemu::renderer_cmdline(s.renderer);
    let boot = Boot {
        name: run,
        node_ns: t.ns(s.node),
        tap: &nic.host_interface,
        mac: &nic.mac,
        seed: &seed,
        append: &append,
    };
    qemu::boot(lab, image, &boot).unwrap()
}

/// Ping each guest from `ns` until it answers; returns the seconds from
/// its QEMU start to its first answer, in the order of `targets`.
fn first_pings(lab: &Lab, ns: &str, targets: &[(&Guest, IpAddr)]) -> Vec<f64> {
    let mut answered: Vec<Option<f64>> = vec![None; targets.len()];
    let end = Instant::now() + BOOT;
    while answered.iter().any(Option::is_none) && Instant::now() < end {
        for (i, (g, ip)) in targets.iter().enumerate() {
            if answered[i].is_none() && lab.ping_once(ns, &ip.to_string()) {
                answered[i] = Some(g.started.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    answered
        .iter()
        .zip(targets)
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

/// The guest's DNS and MTU against what the cluster (or node) says: the
/// kernel's MTU of eth0, and the resolver lines the renderer wrote.
fn check_dns_mtu(r: &Report, vm: &str, mtu: u64, words: &[&str]) {
    assert_eq!(r.mtu("eth0"), Some(mtu), "{vm}: MTU of eth0");
    let lines = r.dns.join("; ");
    for w in words {
        assert!(
            lines.contains(w),
            "{vm}: {w} not in the guest's resolver settings: {lines:?}"
        );
    }
}

/// The guest's own view against the plan: addresses on eth0, default
/// routes, the renderer it was told to use, and every ping it made.
fn check(g: &Guest, s: &Spec, p: &Planned) -> Report {
    let r = g.report(BOOT).unwrap();
    let console = || g.console_text();
    let mut have = r.addresses("eth0");
    have.sort();
    let mut want = p.addresses.clone();
    want.sort();
    assert_eq!(
        have,
        want,
        "{}: addresses in the guest are not the plan's; console:\n{}",
        s.vm,
        console()
    );
    for (v6, gw) in [(false, &p.gateway4), (true, &p.gateway6)] {
        let routes = if v6 { &r.route6 } else { &r.route4 };
        assert_eq!(
            r.default_route(v6),
            gw.clone().map(|g| (g, "eth0".to_string())),
            "{}: default route (IPv6: {v6}); routes {routes}",
            s.vm
        );
    }
    let file = qemu::renderer_file(s.renderer);
    assert!(
        r.files.iter().any(|f| f == file),
        "{}: cloud-init did not use {} ({file} missing): {:?}",
        s.vm,
        s.renderer,
        r.files
    );
    assert_eq!(r.pings.len(), s.pings.len(), "{}: {:?}", s.vm, r.pings);
    for (target, ok, _) in &r.pings {
        assert!(
            ok,
            "{} could not ping {target}; console:\n{}",
            s.vm,
            console()
        );
    }
    r
}

#[test]
fn switching_guests_take_their_network_from_vmfabric() {
    let _one = one_at_a_time();
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
    // The cluster's DNS and MTU, set in place before the guests boot.
    vf(
        &lab,
        &[
            "cluster",
            "set",
            "rack",
            "--nameserver",
            "192.0.2.53",
            "--search-domain",
            "example.com",
            "--mtu",
            "1400",
        ],
    );
    let gw: IpAddr = "192.0.2.1".parse().unwrap();
    // Each guest pings its gateway and the other guest across nodes.
    let specs = [
        Spec {
            vm: "vm1",
            node: "n1",
            renderer: "networkd",
            pings: vec![gw, addr(&vf_, "vm2")],
        },
        Spec {
            vm: "vm2",
            node: "n2",
            renderer: "networkd",
            pings: vec![gw, addr(&vf_, "vm1")],
        },
    ];
    let guests = boot_all(&mut lab, &image, &t, &specs);
    // The router reaches each guest: the first ping measures the boot.
    let targets: Vec<(&Guest, IpAddr)> = guests
        .iter()
        .zip(&specs)
        .map(|(g, s)| (g, addr(&vf_, s.vm)))
        .collect();
    let firsts = first_pings(&lab, t.ns("dc"), &targets);
    for ((g, s), first) in guests.iter().zip(&specs).zip(&firsts) {
        let r = check(g, s, &planned(&vf_, s.vm));
        check_dns_mtu(&r, s.vm, 1400, &["DNS=192.0.2.53", "Domains=example.com"]);
        eprintln!(
            "switching {} on {} ({}): router -> guest first ping {first:.1} s after QEMU \
             started; guest report at uptime {:.1} s; guest pings {:?}",
            s.vm, s.node, s.renderer, r.uptime, r.pings
        );
    }

    // Migration: vm1 stops on n1, moves to n2 with its address, starts
    // there from the same seed (the same instance), and is reached again.
    let before = addr(&vf_, "vm1");
    guests[0].stop(&mut lab, Duration::from_secs(10)).unwrap();
    vf(&lab, &["vm", "migrate", "vm1", "--to", "n2"]);
    for n in ["n1", "n2"] {
        common::lab::agent(&lab, t.ns(n), n);
    }
    assert_eq!(addr(&vf_, "vm1"), before);
    let moved = Spec {
        vm: "vm1",
        node: "n2",
        renderer: "networkd",
        pings: vec![gw, addr(&vf_, "vm2")],
    };
    let g = boot_one(&mut lab, &image, &t, &moved, "vm1-on-n2");
    let first = first_pings(&lab, t.ns("dc"), &[(&g, before)])[0];
    let r = check(&g, &moved, &planned(&vf_, "vm1"));
    eprintln!(
        "switching vm1 migrated to n2: router -> guest first ping {first:.1} s after QEMU \
         started; guest pings {:?}",
        r.pings
    );
    eprintln!(
        "switching guests: whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// IP-fabric, dual stack: /32 and /128 guests behind the on-link gateways
/// 10.0.0.1 and fe80::1, their routes announced through both reflectors
/// to the core; one guest per cloud-init renderer (networkd, eni, netplan),
/// each of which must install the default route through a gateway outside
/// the guest's prefix.
#[test]
fn fabric_guests_route_through_the_core_under_every_renderer() {
    let _one = one_at_a_time();
    let t0 = Instant::now();
    let image = qemu::image().unwrap();
    let mut lab = Lab::new("gf").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::fabric_dual_stack_kvm(&mut lab, &vf_).unwrap();
    let core4: IpAddr = "172.16.0.3".parse().unwrap();
    let core6: IpAddr = format!("{}3", scenarios::FABRIC6).parse().unwrap();
    let specs = [
        Spec {
            vm: "vm1",
            node: "n1",
            renderer: "networkd",
            pings: vec![core4, core6, addr(&vf_, "vm2"), addr6(&vf_, "vm2")],
        },
        Spec {
            vm: "vm2",
            node: "n2",
            renderer: "eni",
            pings: vec![core4, addr(&vf_, "vm1"), addr6(&vf_, "vm3")],
        },
        Spec {
            vm: "vm3",
            node: "n1",
            renderer: "netplan",
            pings: vec![core6, addr(&vf_, "vm2")],
        },
    ];
    let guests = boot_all(&mut lab, &image, &t, &specs);
    let core = t.ns("core");
    let targets: Vec<(&Guest, IpAddr)> = guests
        .iter()
        .zip(&specs)
        .map(|(g, s)| (g, addr(&vf_, s.vm)))
        .collect();
    let firsts = first_pings(&lab, core, &targets);
    for ((g, s), first) in guests.iter().zip(&specs).zip(&firsts) {
        let r = check(g, s, &planned(&vf_, s.vm));
        let v6 = addr6(&vf_, s.vm).to_string();
        assert!(lab.ping(core, &v6), "core -> {} {v6}", s.vm);
        eprintln!(
            "ip-fabric {} on {} ({}): core -> guest first ping {first:.1} s after QEMU \
             started; guest report at uptime {:.1} s; guest pings {:?}",
            s.vm, s.node, s.renderer, r.uptime, r.pings
        );
    }
    eprintln!(
        "ip-fabric guests: whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

/// Routing: guests behind the node's primary IP (an IPv4 /32 with the
/// off-prefix gateway 192.0.2.10) and on the provider's on-link /64 through
/// the kernel's NDP proxy, with port security on the provider's switch.
#[test]
fn routing_guests_reach_the_provider_through_the_node() {
    let _one = one_at_a_time();
    let t0 = Instant::now();
    let image = qemu::image().unwrap();
    let mut lab = Lab::new("gr").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::routing_kvm(&mut lab, &vf_, "kernel").unwrap();
    // The node's own resolvers replace the cluster's; the cluster's MTU.
    vf(
        &lab,
        &[
            "cluster",
            "set",
            "hz",
            "--nameserver",
            "192.0.2.53",
            "--mtu",
            "1450",
        ],
    );
    vf(
        &lab,
        &[
            "node",
            "set",
            "n1",
            "--nameserver",
            "198.51.100.53",
            "--search-domain",
            "dc1.example.net",
        ],
    );
    let gw4: IpAddr = "192.0.2.1".parse().unwrap();
    let gw6: IpAddr = "2001:db8:1:1::1".parse().unwrap();
    let specs = [
        Spec {
            vm: "vm1",
            node: "n1",
            renderer: "networkd",
            pings: vec![gw4, gw6, addr(&vf_, "vm2")],
        },
        Spec {
            vm: "vm2",
            node: "n1",
            renderer: "eni",
            pings: vec![gw4, addr(&vf_, "vm1")],
        },
    ];
    let guests = boot_all(&mut lab, &image, &t, &specs);
    let dc = t.ns("dc");
    let targets: Vec<(&Guest, IpAddr)> = guests
        .iter()
        .zip(&specs)
        .map(|(g, s)| (g, addr(&vf_, s.vm)))
        .collect();
    let firsts = first_pings(&lab, dc, &targets);
    for ((g, s), first) in guests.iter().zip(&specs).zip(&firsts) {
        let r = check(g, s, &planned(&vf_, s.vm));
        let dns: &[&str] = if s.renderer == "eni" {
            &[
                "dns-nameservers 198.51.100.53",
                "dns-search dc1.example.net",
            ]
        } else {
            &["DNS=198.51.100.53", "Domains=dc1.example.net"]
        };
        check_dns_mtu(&r, s.vm, 1450, dns);
        assert!(
            !r.dns.join(" ").contains("192.0.2.53"),
            "{}: the cluster's resolver, not the node's: {:?}",
            s.vm,
            r.dns
        );
        eprintln!(
            "routing {} on {} ({}): provider -> guest first ping {first:.1} s after QEMU \
             started; guest report at uptime {:.1} s; guest pings {:?}",
            s.vm, s.node, s.renderer, r.uptime, r.pings
        );
    }
    let v6 = addr6(&vf_, "vm1").to_string();
    assert!(
        lab.ping(dc, &v6),
        "provider -> vm1 {v6} through the NDP proxy"
    );
    eprintln!(
        "routing guests: whole test {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
