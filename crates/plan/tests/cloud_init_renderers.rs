//! The cloud-init network-config vmfabric renders, converted by cloud-init
//! itself (`cloud-init devel net-convert`) for each of its renderers:
//! netplan, networkd, eni (ifupdown) and sysconfig. Each must keep the
//! addresses, the default route of each family and, for a gateway outside
//! the address's prefix, a direct route to the gateway (or a gateway the
//! renderer installs on-link). cloud-init must be installed (scripts/test
//! installs it); a missing tool is a failure that says so, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use vmfabric_model::{Dns, GuestNetwork, Vm};
use vmfabric_plan::render::guest;

/// Every file net-convert wrote for `renderer`, by path.
fn convert(config: &str, renderer: &str) -> BTreeMap<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("network-config");
    std::fs::write(&input, config).unwrap();
    let out = dir.path().join("out");
    // sysconfig has templates only for the RHEL family.
    let distro = if renderer == "sysconfig" {
        "rhel"
    } else {
        "debian"
    };
    let res = Command::new("cloud-init")
        .args(["devel", "net-convert", "-k", "yaml", "-p"])
        .arg(&input)
        .args(["-O", renderer, "-D", distro, "-d"])
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run cloud-init ({e}): apt-get install cloud-init"));
    assert!(
        res.status.success(),
        "net-convert -O {renderer} refused the rendered config:\n{}\n--- config ---\n{config}",
        String::from_utf8_lossy(&res.stderr)
    );
    let mut files = BTreeMap::new();
    collect(&out, &out, &mut files);
    assert!(!files.is_empty(), "net-convert -O {renderer} wrote nothing");
    files
}

fn collect(root: &Path, dir: &Path, files: &mut BTreeMap<String, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(root, &p, files);
        } else {
            let name = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
            files.insert(name, std::fs::read_to_string(&p).unwrap());
        }
    }
}

/// The `[Route]` sections of a systemd .network file, as key/value maps.
fn networkd_routes(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut routes = Vec::new();
    let mut current: Option<BTreeMap<String, String>> = None;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            routes.extend(current.take());
            if line == "[Route]" {
                current = Some(BTreeMap::new());
            }
        } else if let (Some(r), Some((k, v))) = (current.as_mut(), line.split_once('=')) {
            r.insert(k.to_string(), v.to_string());
        }
    }
    routes.extend(current);
    routes
}

/// What the guest must end up with on its first NIC: addresses, and per
/// family the gateway and whether it lies outside the address's prefix.
struct Expect {
    addresses: Vec<String>,
    gateways: Vec<(IpAddr, bool)>,
}

fn expect(vm: &Vm) -> Expect {
    let nic = &vm.nics[0];
    let mut gateways: Vec<(IpAddr, bool)> = Vec::new();
    for a in &nic.addresses {
        if let Some(g) = a.gateway
            && !gateways.iter().any(|(h, _)| h.is_ipv4() == g.is_ipv4())
        {
            let prefix = vmfabric_ipam::Cidr::containing(a.address, a.prefix_len);
            let link_local = matches!(g, IpAddr::V6(v) if v.is_unicast_link_local());
            gateways.push((g, !prefix.contains(g) && !link_local));
        }
    }
    Expect {
        addresses: nic
            .addresses
            .iter()
            .map(|a| format!("{}/{}", a.address, a.prefix_len))
            .collect(),
        gateways,
    }
}

fn check_vm(vm: &Vm, net: &GuestNetwork) {
    let config = guest::cloud_init(vm, net);
    let want = expect(vm);
    assert!(!want.gateways.is_empty(), "{} has no gateway", vm.name);
    let context = |r: &str, files: &BTreeMap<String, String>| {
        format!("renderer {r}\n--- config ---\n{config}\n--- output ---\n{files:#?}")
    };

    // netplan: cloud-init passes the document through.
    let files = convert(&config, "netplan");
    let text = files.values().cloned().collect::<String>();
    for (g, onlink) in &want.gateways {
        let key = if g.is_ipv4() { "gateway4" } else { "gateway6" };
        assert!(
            text.contains(&format!("{key}: {g}")),
            "{}",
            context("netplan", &files)
        );
        if *onlink {
            let host = if g.is_ipv4() { 32 } else { 128 };
            assert!(
                text.contains(&format!("to: {g}/{host}")) && text.contains("scope: link"),
                "no link-scope route to the gateway: {}",
                context("netplan", &files)
            );
        }
    }

    // networkd: the default route is a [Route] with Gateway= and no
    // destination; an off-prefix gateway needs a direct route to it, which
    // networkd (since v251) installs with scope link before it installs
    // the routes through that gateway.
    let files = convert(&config, "networkd");
    let (_, text) = files
        .iter()
        .find(|(p, _)| p.ends_with("eth0.network"))
        .unwrap_or_else(|| panic!("no eth0.network: {}", context("networkd", &files)));
    for a in &want.addresses {
        assert!(
            text.contains(&format!("Address={a}")),
            "{}",
            context("networkd", &files)
        );
    }
    let routes = networkd_routes(text);
    for (g, onlink) in &want.gateways {
        let default = routes.iter().any(|r| {
            r.get("Gateway") == Some(&g.to_string())
                && r.get("Destination")
                    .is_none_or(|d| d == "0.0.0.0/0" || d == "::/0")
        });
        assert!(
            default,
            "no default route via {g}: {}",
            context("networkd", &files)
        );
        if *onlink {
            let host = if g.is_ipv4() { 32 } else { 128 };
            let direct = routes.iter().any(|r| {
                r.get("Destination") == Some(&format!("{g}/{host}"))
                    && r.get("Gateway")
                        .is_none_or(|v| v.parse::<IpAddr>().is_ok_and(|v| v.is_unspecified()))
            });
            let flagged = routes.iter().any(|r| {
                r.get("Gateway") == Some(&g.to_string())
                    && r.get("GatewayOnLink")
                        .is_some_and(|v| v == "yes" || v == "true")
            });
            assert!(
                direct || flagged,
                "gateway {g} is off-prefix, but neither a direct route to it nor \
                 GatewayOnLink: {}",
                context("networkd", &files)
            );
        }
    }

    // eni: ifupdown adds the stanza's `gateway` with `onlink` (its inet and
    // inet6 static methods), so the gateway line is what must be there; a
    // route without a gateway would crash cloud-init's eni renderer (22.4)
    // before it wrote anything.
    let files = convert(&config, "eni");
    let text = files.values().cloned().collect::<String>();
    for a in &want.addresses {
        assert!(
            text.contains(&format!("address {a}")),
            "{}",
            context("eni", &files)
        );
    }
    for (g, _) in &want.gateways {
        assert!(
            text.contains(&format!("gateway {g}")),
            "{}",
            context("eni", &files)
        );
    }

    // sysconfig: the interface's gateways, and the direct route to an
    // off-prefix IPv4 gateway in route-eth0.
    let files = convert(&config, "sysconfig");
    let ifcfg = files
        .iter()
        .find(|(p, _)| p.ends_with("ifcfg-eth0"))
        .map(|(_, t)| t.as_str())
        .unwrap_or_else(|| panic!("no ifcfg-eth0: {}", context("sysconfig", &files)));
    for (g, onlink) in &want.gateways {
        let key = if g.is_ipv4() {
            "GATEWAY"
        } else {
            "IPV6_DEFAULTGW"
        };
        assert!(
            ifcfg.contains(&format!("{key}={g}")),
            "{}",
            context("sysconfig", &files)
        );
        if *onlink && g.is_ipv4() {
            let routes = files
                .iter()
                .find(|(p, _)| p.ends_with("route-eth0"))
                .map(|(_, t)| t.as_str())
                .unwrap_or_default();
            assert!(
                routes.contains(&format!("ADDRESS0={g}")),
                "{}",
                context("sysconfig", &files)
            );
        }
    }
}

/// The guests' DNS and MTU as each renderer writes them for eth0: the
/// lines that must appear in the renderer's files.
fn check_dns_mtu(vm: &Vm, net: &GuestNetwork) {
    let config = guest::cloud_init(vm, net);
    let ns: Vec<String> = net
        .dns
        .nameservers
        .iter()
        .map(ToString::to_string)
        .collect();
    let mtu = net.mtu.expect("a test MTU");
    let search = net.dns.search.join(" ");
    let v4: Vec<&String> = ns.iter().filter(|n| !n.contains(':')).collect();
    for (renderer, want) in [
        (
            "netplan",
            vec![
                format!("mtu: {mtu}"),
                format!("- {}", ns[1]),
                format!("- {}", net.dns.search[1]),
            ],
        ),
        (
            "networkd",
            vec![
                format!("MTUBytes={mtu}"),
                format!("DNS={}", ns.join(" ")),
                format!("Domains={search}"),
            ],
        ),
        (
            "eni",
            vec![
                format!("mtu {mtu}"),
                format!("dns-nameservers {}", ns.join(" ")),
                format!("dns-search {search}"),
            ],
        ),
        (
            "sysconfig",
            vec![
                format!("MTU={mtu}"),
                format!("nameserver {}", v4[0]),
                format!("search {search}"),
            ],
        ),
    ] {
        let files = convert(&config, renderer);
        let text = files.values().cloned().collect::<String>();
        for line in want {
            assert!(
                text.contains(&line),
                "renderer {renderer} lost {line:?}\n--- config ---\n{config}\n--- output ---\n{files:#?}"
            );
        }
    }
}

fn guest_network() -> GuestNetwork {
    let s = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    GuestNetwork {
        dns: Dns::parse(
            &s(&["192.0.2.53", "2001:db8::53"]),
            &s(&["example.com", "lab.example.net"]),
        )
        .unwrap(),
        mtu: Some(1400),
    }
}

#[test]
fn every_renderer_keeps_addresses_and_default_routes() {
    for input in [
        common::switching(),
        common::routing("kernel"),
        common::fabric("kvm"),
        common::fabric("lxd"),
    ] {
        assert!(!input.vms.is_empty());
        for vm in &input.vms {
            check_vm(vm, &GuestNetwork::default());
        }
        // DNS and MTU change nothing of the routes, and are kept.
        check_vm(&input.vms[0], &guest_network());
        check_dns_mtu(&input.vms[0], &guest_network());
    }
}

/// A config cloud-init cannot render must fail the check: the check can
/// fail.
#[test]
fn a_route_without_gateway_breaks_the_eni_renderer() {
    let config = "network:\n  version: 2\n  ethernets:\n    eth0:\n      addresses: [198.51.100.10/32]\n      routes:\n        - to: 10.0.0.1/32\n          scope: link\n";
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("network-config");
    std::fs::write(&input, config).unwrap();
    let out = Command::new("cloud-init")
        .args(["devel", "net-convert", "-k", "yaml", "-p"])
        .arg(&input)
        .args(["-O", "eni", "-D", "debian", "-d"])
        .arg(dir.path().join("out"))
        .output()
        .expect("apt-get install cloud-init");
    assert!(!out.status.success(), "eni took a route without gateway");
}
