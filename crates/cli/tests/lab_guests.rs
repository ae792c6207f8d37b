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
/// the guest's prefix. The agents run as they do on a node (not one round
/// at a time): a guest's routes appear when QEMU opens its tap. Then vm1's
/// life as a hosting operator sees it (`guest_lifecycle`): stopped,
/// started again on the same tap, cold-migrated.
#[test]
fn fabric_guests_route_through_the_core_under_every_renderer() {
    let _one = one_at_a_time();
    let t0 = Instant::now();
    let image = qemu::image().unwrap();
    let mut lab = Lab::new("gf").expect("lab");
    let vf_ = vmfabric(&lab);
    let t = scenarios::fabric_dual_stack_kvm(&mut lab, &vf_).unwrap();
    let mut agents = Agents::start(&mut lab, &t, &["n1", "n2"]);
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
    // The other guests are done: stopped, they leave vm1's boots the
    // machine's cores.
    for g in &guests[1..] {
        g.stop(&mut lab, Duration::from_secs(10)).unwrap();
    }
    let t1 = Instant::now();
    guest_lifecycle(&mut lab, &mut agents, &image, &t, &guests[0], &specs[0]);
    eprintln!(
        "ip-fabric guest stop/start/migration: {:.1} s; whole test {:.1} s",
        t1.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// Long-running agents (`vmfabric agent --interval`), one per node, as on
/// a real node: they follow link notifications between their rounds. The
/// interval is long on purpose, so that anything faster than it was done
/// by a notification.
struct Agents {
    children: Vec<(String, std::process::Child)>,
}

/// The agents' interval: far longer than any reaction the tests expect.
const INTERVAL: &str = "60";

impl Agents {
    fn start(lab: &mut Lab, t: &Topology, nodes: &[&str]) -> Agents {
        let mut a = Agents {
            children: Vec::new(),
        };
        for n in nodes {
            a.spawn(lab, t, n);
        }
        a
    }

    fn spawn(&mut self, lab: &mut Lab, t: &Topology, node: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(lab.dir.join(format!("agent-{node}.log")))
            .unwrap();
        let child = common::lab::agent_cmd(lab, t.ns(node), node, &["--interval", INTERVAL])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        lab.track(child.id());
        self.children.push((node.to_string(), child));
    }

    /// Stop and start every agent: a new plan in the database (the agents
    /// here read it from there, not from a controller's long poll) is taken
    /// in by the first round of the new process.
    fn restart(&mut self, lab: &mut Lab, t: &Topology) {
        let nodes: Vec<String> = self.children.iter().map(|(n, _)| n.clone()).collect();
        for (_, mut c) in self.children.drain(..) {
            let _ = std::process::Command::new("kill")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
            lab.untrack(c.id());
        }
        for n in nodes {
            self.spawn(lab, t, &n);
        }
    }

    /// Rounds `node`'s agents reported so far (one line each).
    fn rounds(lab: &Lab, node: &str) -> usize {
        std::fs::read_to_string(lab.dir.join(format!("agent-{node}.log")))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with('{'))
            .count()
    }
}

/// The next hops of `prefix` in the FRR route reflector's BGP table.
fn frr_hops(lab: &Lab, t: &Topology, prefix: &str) -> Vec<String> {
    let family = if prefix.contains(':') { "ipv6" } else { "ipv4" };
    let text = t
        .frr("rr1")
        .unwrap()
        .vtysh(lab, &format!("show bgp {family} unicast {prefix} json"))
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut hops = Vec::new();
    for p in v["paths"].as_array().into_iter().flatten() {
        for h in p["nexthops"].as_array().into_iter().flatten() {
            if let Some(ip) = h["ip"].as_str() {
                hops.push(ip.to_string());
            }
        }
    }
    hops
}

/// Where each router has `prefix` (its IPv4 next hop or IPv6 route text):
/// the FRR reflector (rr1), the BIRD reflector (rr2), the core's kernel.
/// Empty text: not there.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    rr1: String,
    rr2: String,
    core: String,
}

fn seen(lab: &Lab, t: &Topology, prefix: &str) -> Seen {
    let bird = vmfabric_lab::worlds::birdc(lab, t.ns("rr2"), &format!("show route {prefix} all"))
        .unwrap_or_default();
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    Seen {
        rr1: frr_hops(lab, t, prefix).join(" "),
        // The route's first line and its BGP next hop, or nothing when
        // BIRD says "Network not found".
        rr2: bird
            .lines()
            .filter(|l| l.contains(" unicast ") || l.contains("BGP.next_hop"))
            .collect::<Vec<_>>()
            .join(" | "),
        core: lab
            .ip(t.ns("core"), &[family, "route", "show", prefix])
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Wait until `ok` holds for `prefix` at rr1, rr2 and the core; returns
/// the seconds from `since` at which each first held (rr1, rr2, core).
fn until_everywhere(
    lab: &Lab,
    t: &Topology,
    prefix: &str,
    since: Instant,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> [f64; 3] {
    let mut at: [Option<f64>; 3] = [None; 3];
    let end = Instant::now() + Duration::from_secs(30);
    let mut last = seen(lab, t, prefix);
    while at.iter().any(Option::is_none) && Instant::now() < end {
        last = seen(lab, t, prefix);
        let now = since.elapsed().as_secs_f64();
        for (i, text) in [&last.rr1, &last.rr2, &last.core].into_iter().enumerate() {
            if at[i].is_none() && ok(text) {
                at[i] = Some(now);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match at {
        [Some(a), Some(b), Some(c)] => [a, b, c],
        _ => panic!("{prefix}: not {what} everywhere within 30 s: {last:?}"),
    }
}

/// The interface index of `dev` in `ns`.
fn ifindex(lab: &Lab, ns: &str, dev: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(&lab.ip(ns, &["-j", "link", "show", dev]).unwrap()).unwrap();
    v[0]["ifindex"].as_u64().unwrap()
}

/// vm1 (running on n1, announced) is stopped, started again on the same
/// tap, stopped and cold-migrated to n2. At each step the reflectors (FRR
/// and BIRD) and the core must show it: withdrawn while it is off,
/// announced again when QEMU opens its tap, via n2 after the migration and
/// never via n1 again. The tap QEMU used survives the agent's rounds.
fn guest_lifecycle(
    lab: &mut Lab,
    agents: &mut Agents,
    image: &Image,
    t: &Topology,
    g: &Guest,
    s: &Spec,
) {
    let vf_ = vmfabric(lab);
    let v4 = format!("{}/32", addr(&vf_, s.vm));
    let v6 = format!("{}/128", addr6(&vf_, s.vm));
    let tap = vf_.nic(s.vm).unwrap().host_interface;
    let n1 = t.ns("n1").to_string();
    let via = |hop: &'static str| move |x: &str| x.contains(hop);
    let gone = |x: &str| x.is_empty();
    until_everywhere(lab, t, &v4, Instant::now(), "via n1", via("172.16.0.11"));
    let index = ifindex(lab, &n1, &tap);
    let rounds = Agents::rounds(lab, "n1");

    // Stop: QEMU goes, the tap loses carrier, the agent withdraws.
    let stop = Instant::now();
    g.stop(lab, Duration::from_secs(10)).unwrap();
    let off4 = until_everywhere(lab, t, &v4, stop, "withdrawn", gone);
    let off6 = until_everywhere(lab, t, &v6, stop, "withdrawn", gone);
    eprintln!(
        "ip-fabric {} stopped: withdrawn (s after kill; rr1 FRR, rr2 BIRD, core) \
         IPv4 {off4:.2?} IPv6 {off6:.2?}",
        s.vm
    );
    assert!(
        off4[2] < 10.0 && off6[2] < 10.0,
        "withdrawal took the agent's interval, not a notification"
    );
    // The agent keeps the tap, and says why the routes are gone.
    let settled = lab.wait_for(Duration::from_secs(5), || {
        Agents::rounds(lab, "n1") > rounds
    });
    assert!(settled, "n1's agent made no round after the stop");
    let frr = lab.dir.join("frr").join(&n1);
    let status = vmfabric(lab)
        .run(&[
            "agent",
            "status",
            "--state-dir",
            &lab.dir.join("agent").join("n1").to_string_lossy(),
            "--frr-dir",
            &frr.to_string_lossy(),
            "--frr-socket",
            &frr.to_string_lossy(),
        ])
        .unwrap();
    assert!(status["guests_off"].to_string().contains(&tap), "{status}");
    assert_eq!(ifindex(lab, &n1, &tap), index, "{tap} was recreated");

    // Start again on the same tap: announced as soon as QEMU opens it.
    let again = boot_one(lab, image, t, s, "vm1-again");
    let on4 = until_everywhere(
        lab,
        t,
        &v4,
        again.started,
        "back via n1",
        via("172.16.0.11"),
    );
    let on6 = until_everywhere(lab, t, &v6, again.started, "back", |x| !x.is_empty());
    eprintln!(
        "ip-fabric {} started again: announced (s after QEMU started; rr1, rr2, core) \
         IPv4 {on4:.2?} IPv6 {on6:.2?}",
        s.vm
    );
    let ip = addr(&vf_, s.vm);
    let first = first_pings(lab, t.ns("core"), &[(&again, ip)])[0];
    eprintln!(
        "ip-fabric {} started again: core -> guest first ping {first:.1} s",
        s.vm
    );
    assert_eq!(ifindex(lab, &n1, &tap), index, "{tap} was recreated");
    assert!(
        Agents::rounds(lab, "n1") > rounds + 1,
        "no round on n1 since the stop"
    );

    // Cold migration: stop, move, start on n2.
    let stop = Instant::now();
    again.stop(lab, Duration::from_secs(10)).unwrap();
    let off = until_everywhere(lab, t, &v4, stop, "withdrawn", gone);
    eprintln!("ip-fabric {} stopped again: withdrawn {off:.2?}", s.vm);
    vf(lab, &["vm", "migrate", s.vm, "--to", "n2"]);
    agents.restart(lab, t);
    let moved = Spec {
        vm: s.vm,
        node: "n2",
        renderer: s.renderer,
        pings: Vec::new(),
    };
    let tap_up = lab.wait_for(Duration::from_secs(10), || {
        lab.ip(t.ns("n2"), &["link", "show", &tap]).is_ok()
    });
    assert!(tap_up, "n2's agent made {tap}");
    let on_n2 = boot_one(lab, image, t, &moved, "vm1-on-n2");
    let there = until_everywhere(lab, t, &v4, on_n2.started, "via n2", via("172.16.0.12"));
    eprintln!(
        "ip-fabric {} migrated to n2: announced {there:.2?} s after QEMU started",
        s.vm
    );
    // From now on n1 never announces it: sampled until the guest answers
    // the core's ping through n2.
    let end = Instant::now() + BOOT;
    let mut answered = None;
    while answered.is_none() && Instant::now() < end {
        let now = seen(lab, t, &v4);
        for (who, text) in [("rr1", &now.rr1), ("rr2", &now.rr2), ("core", &now.core)] {
            assert!(
                !text.contains("172.16.0.11") && !text.is_empty(),
                "{who} has {v4} {text:?} after the migration"
            );
        }
        if lab.ping_once(t.ns("core"), &ip.to_string()) {
            answered = Some(on_n2.started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let answered = answered.unwrap_or_else(|| {
        panic!(
            "{} on n2 never answered the core; console:\n{}",
            s.vm,
            on_n2.console_text()
        )
    });
    assert!(
        lab.ip(&n1, &["link", "show", &tap]).is_err(),
        "n1 still has {tap}"
    );
    eprintln!(
        "ip-fabric {} on n2: core -> guest first ping {answered:.1} s after QEMU started",
        s.vm
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
