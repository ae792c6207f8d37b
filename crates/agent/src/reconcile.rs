//! The pure heart of the agent: given the plan, what the kernel has, and
//! what the agent created before, which changes make the kernel match the
//! plan. Nothing here touches the kernel, so it is tested without root.
//!
//! Ownership, the agent's first rule: it changes only what it owns —
//! links it created (recorded in its state) or that the plan names, routes
//! with its protocol number, neighbour proxies it added (recorded), and
//! addresses on links it owns. The uplink is never created, deleted or
//! re-addressed; it is only made a bridge port when the plan says so.
//!
//! Guests that are off: a VM's routes stay in the kernel only while its
//! link has carrier (see [`withheld`]); the link itself, its MAC, master
//! and addresses stay whatever the hypervisor does, so the tap or veth the
//! hypervisor holds is never deleted and recreated (make-before-break).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use vmfabric_plan::{Address, Link, LinkKind, NeighbourProxy, NodePlan, Route, Sysctl};

/// A link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedLink {
    pub index: u32,
    pub name: String,
    /// `bridge`, `veth`, `tun` (taps), or whatever else the kernel says.
    pub kind: String,
    pub master: Option<String>,
    pub mac: Option<String>,
    pub up: bool,
    /// The link has carrier (IFF_LOWER_UP): for a VM's tap, a hypervisor
    /// holds it open; for its veth, the peer is up (the container runs).
    #[serde(default)]
    pub carrier: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// What the agent reads from the kernel before deciding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub links: Vec<ObservedLink>,
    /// Addresses (dev, cidr) on every link.
    pub addresses: Vec<Address>,
    /// Routes with vmfabric's protocol number only.
    pub routes: Vec<Route>,
    /// Every neighbour proxy entry.
    pub proxies: Vec<NeighbourProxy>,
    /// Current values of the sysctls the plan names (missing: not readable).
    pub sysctls: BTreeMap<String, String>,
}

impl Observed {
    pub fn link(&self, name: &str) -> Option<&ObservedLink> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// Observed links by name, for lookups in loops over the plan.
fn by_name(observed: &Observed) -> BTreeMap<&str, &ObservedLink> {
    observed
        .links
        .iter()
        .map(|l| (l.name.as_str(), l))
        .collect()
}

/// What the agent remembers between rounds (its state file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owned {
    /// Links the agent created.
    pub links: BTreeSet<String>,
    /// Neighbour proxy entries the agent added.
    pub proxies: BTreeSet<(String, IpAddr)>,
}

/// One change to the kernel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    DeleteRoute {
        route: Route,
    },
    DeleteProxy {
        proxy: NeighbourProxy,
    },
    DeleteAddress {
        address: Address,
    },
    DeleteLink {
        name: String,
    },
    CreateLink {
        link: Link,
    },
    /// Make `name` a port of `master` (or of none).
    SetMaster {
        name: String,
        master: Option<String>,
    },
    SetMac {
        name: String,
        mac: String,
    },
    SetMtu {
        name: String,
        mtu: u16,
    },
    SetUp {
        name: String,
    },
    AddAddress {
        address: Address,
    },
    AddRoute {
        route: Route,
    },
    AddProxy {
        proxy: NeighbourProxy,
    },
    SetSysctl {
        sysctl: Sysctl,
    },
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use vmfabric_plan::diff as d;
        match self {
            Action::DeleteRoute { route } => write!(f, "- {}", d::route(route)),
            Action::DeleteProxy { proxy } => write!(f, "- {}", d::proxy(proxy)),
            Action::DeleteAddress { address } => write!(f, "- {}", d::address(address)),
            Action::DeleteLink { name } => write!(f, "- link {name}"),
            Action::CreateLink { link } => write!(f, "+ {}", d::link(link)),
            Action::SetMaster { name, master } => match master {
                Some(m) => write!(f, "~ link {name} master {m}"),
                None => write!(f, "~ link {name} nomaster"),
            },
            Action::SetMac { name, mac } => write!(f, "~ link {name} mac {mac}"),
            Action::SetMtu { name, mtu } => write!(f, "~ link {name} mtu {mtu}"),
            Action::SetUp { name } => write!(f, "~ link {name} up"),
            Action::AddAddress { address } => write!(f, "+ {}", d::address(address)),
            Action::AddRoute { route } => write!(f, "+ {}", d::route(route)),
            Action::AddProxy { proxy } => write!(f, "+ {}", d::proxy(proxy)),
            Action::SetSysctl { sysctl } => write!(f, "~ {}", d::sysctl(sysctl)),
        }
    }
}

/// Why the plan cannot be applied at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error(
        "interface {name} exists but is a {kind}, not the {want} vmfabric needs; rename or remove it, or give the node another --bridge"
    )]
    ForeignLink {
        name: String,
        kind: String,
        want: String,
    },
    #[error("uplink {0} does not exist on this node (check `node add --uplink`)")]
    NoUplink(String),
}

fn kernel_kind(k: LinkKind) -> &'static str {
    match k {
        LinkKind::Bridge => "bridge",
        LinkKind::Tap => "tun",
        LinkKind::Veth => "veth",
    }
}

/// The changes that make `observed` match `plan`, in the order they must
/// be applied: removals of routes, proxies, addresses and links first, then
/// links, their settings, addresses, routes, proxies and sysctls.
/// `uplink_mac` is the uplink's MAC as observed (for a bridge that takes it).
pub fn diff(plan: &NodePlan, observed: &Observed, owned: &Owned) -> Result<Vec<Action>, Conflict> {
    let mut out = Vec::new();
    let links = by_name(observed);
    let uplink = *links
        .get(plan.uplink.as_str())
        .ok_or_else(|| Conflict::NoUplink(plan.uplink.clone()))?;
    let wanted: BTreeMap<&str, &Link> = plan.links.iter().map(|l| (l.name.as_str(), l)).collect();

    // Links: a name in the plan held by a different kind of interface is
    // not ours to take over.
    for l in &plan.links {
        if let Some(o) = links.get(l.name.as_str())
            && o.kind != kernel_kind(l.kind)
        {
            return Err(Conflict::ForeignLink {
                name: l.name.clone(),
                kind: o.kind.clone(),
                want: kernel_kind(l.kind).to_string(),
            });
        }
    }
    let managed: BTreeSet<&str> = plan
        .links
        .iter()
        .map(|l| l.name.as_str())
        .chain(owned.links.iter().map(String::as_str))
        .collect();

    // Removals.
    let off = withheld(plan, observed);
    let want_routes: BTreeSet<&Route> = plan
        .routes
        .iter()
        .filter(|r| !off.contains(r.dev.as_str()))
        .collect();
    for r in &observed.routes {
        if !want_routes.contains(r) {
            out.push(Action::DeleteRoute { route: r.clone() });
        }
    }
    let want_proxies: BTreeSet<&NeighbourProxy> = plan.neighbour_proxies.iter().collect();
    for p in &observed.proxies {
        if owned.proxies.contains(&(p.dev.clone(), p.address)) && !want_proxies.contains(p) {
            out.push(Action::DeleteProxy { proxy: p.clone() });
        }
    }
    let want_addrs: BTreeSet<&Address> = plan.addresses.iter().collect();
    for a in &observed.addresses {
        // Only addresses on links vmfabric manages; IPv6 link-local
        // addresses the kernel gave an interface stay.
        if managed.contains(a.dev.as_str())
            && wanted.contains_key(a.dev.as_str())
            && !want_addrs.contains(a)
            && !a.cidr.to_ascii_lowercase().starts_with("fe80:")
        {
            out.push(Action::DeleteAddress { address: a.clone() });
        }
    }
    for name in &owned.links {
        if !wanted.contains_key(name.as_str()) && links.contains_key(name.as_str()) {
            out.push(Action::DeleteLink { name: name.clone() });
        }
    }

    // Links and their settings.
    for l in &plan.links {
        match links.get(l.name.as_str()) {
            None => {
                out.push(Action::CreateLink { link: l.clone() });
                // New links get master, MAC and up by the same rules below.
                if l.master.is_some() {
                    out.push(Action::SetMaster {
                        name: l.name.clone(),
                        master: l.master.clone(),
                    });
                }
                if let Some(mac) = desired_mac(l, uplink) {
                    out.push(Action::SetMac {
                        name: l.name.clone(),
                        mac,
                    });
                }
                if let Some(mtu) = l.mtu {
                    out.push(Action::SetMtu {
                        name: l.name.clone(),
                        mtu,
                    });
                }
                out.push(Action::SetUp {
                    name: l.name.clone(),
                });
            }
            Some(o) => {
                if o.master != l.master {
                    out.push(Action::SetMaster {
                        name: l.name.clone(),
                        master: l.master.clone(),
                    });
                }
                if let Some(mac) = desired_mac(l, uplink)
                    && o.mac.as_deref() != Some(mac.as_str())
                {
                    out.push(Action::SetMac {
                        name: l.name.clone(),
                        mac,
                    });
                }
                // The MTU changes in place, with the guest running (the
                // hypervisor keeps the tap).
                if let Some(mtu) = l.mtu
                    && o.mtu != Some(u32::from(mtu))
                {
                    out.push(Action::SetMtu {
                        name: l.name.clone(),
                        mtu,
                    });
                }
                if !o.up {
                    out.push(Action::SetUp {
                        name: l.name.clone(),
                    });
                }
                if let Some(a) = peer_mac(l, &links) {
                    out.push(a);
                }
            }
        }
    }
    // Switching: the uplink is a port of the bridge.
    if plan.network_type == "switching" && uplink.master.as_deref() != Some(plan.bridge.as_str()) {
        out.push(Action::SetMaster {
            name: plan.uplink.clone(),
            master: Some(plan.bridge.clone()),
        });
    }

    // Additions.
    let have_addrs: BTreeSet<&Address> = observed.addresses.iter().collect();
    for a in &plan.addresses {
        if !have_addrs.contains(a) {
            out.push(Action::AddAddress { address: a.clone() });
        }
    }
    let have_routes: BTreeSet<&Route> = observed.routes.iter().collect();
    for r in &plan.routes {
        if want_routes.contains(r) && !have_routes.contains(r) {
            out.push(Action::AddRoute { route: r.clone() });
        }
    }
    let have_proxies: BTreeSet<&NeighbourProxy> = observed.proxies.iter().collect();
    for p in &plan.neighbour_proxies {
        if !have_proxies.contains(p) {
            out.push(Action::AddProxy { proxy: p.clone() });
        }
    }
    for s in &plan.sysctls {
        if observed.sysctls.get(&s.key) != Some(&s.value) {
            out.push(Action::SetSysctl { sysctl: s.clone() });
        }
    }
    Ok(out)
}

/// The repair of a veth peer's MAC (the VM's, given at creation) when the
/// peer is on the node with another one. A peer that is not on the node
/// is in its container (LXD moves it in on start and back on stop): the
/// pair stays as it is, nothing is created again.
fn peer_mac(l: &Link, links: &BTreeMap<&str, &ObservedLink>) -> Option<Action> {
    let (name, mac) = (l.peer.as_ref()?, l.peer_mac.as_ref()?);
    let o = links.get(name.as_str())?;
    let same = o
        .mac
        .as_deref()
        .is_some_and(|m| m.eq_ignore_ascii_case(mac));
    (o.kind == "veth" && !same).then(|| Action::SetMac {
        name: name.clone(),
        mac: mac.clone(),
    })
}

/// The VM links whose routes are withheld because the guest is off: the
/// link has no carrier (no hypervisor holds the tap; the veth's peer is
/// down or gone with its container), or does not exist yet.
///
/// Why only routes: in ip-fabric a VM's /32 and /128 on `<vm>_net0` are
/// what FRR redistributes, and zebra announces a `linkdown` kernel route
/// like any other, so a stopped guest kept attracting the core's traffic
/// and a migrated one stayed announced by its old node. Withdrawing both
/// families sends the reflectors and the core elsewhere (or nowhere) at
/// once. The gateway addresses on the link stay: they are not announced
/// (outside the pool) and the guest's first ARP/ND after boot needs them.
/// Switching has no per-VM routes; routing routes VM addresses to the
/// bridge and proxies NDP on the uplink, both of which the provider's
/// static routing makes pointless to withdraw (nothing is announced, and
/// the addresses stay the node's), so neither type changes while a guest
/// is off.
pub fn withheld<'a>(plan: &'a NodePlan, observed: &Observed) -> BTreeSet<&'a str> {
    let links = by_name(observed);
    plan.links
        .iter()
        .filter(|l| l.vm.is_some())
        .filter(|l| !links.get(l.name.as_str()).is_some_and(|o| o.carrier))
        .map(|l| l.name.as_str())
        .collect()
}

/// The MAC a link must have, if the plan says.
fn desired_mac(l: &Link, uplink: &ObservedLink) -> Option<String> {
    if l.mac_from_uplink {
        return uplink.mac.clone();
    }
    l.mac.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmfabric_plan::{Firewall, ROUTE_PROTOCOL};

    fn plan() -> NodePlan {
        NodePlan {
            node: "n1".into(),
            cluster: "c".into(),
            network_type: "ip-fabric".into(),
            route_protocol: ROUTE_PROTOCOL,
            uplink: "eno1".into(),
            bridge: String::new(),
            links: vec![Link {
                name: "vm1_net0".into(),
                kind: LinkKind::Veth,
                master: None,
                mac: Some("fe:00:00:00:00:01".into()),
                mac_from_uplink: false,
                peer: Some("vm1_g0".into()),
                peer_mac: Some("52:54:00:00:00:01".into()),
                vm: Some("vm1".into()),
                mtu: Some(1500),
            }],
            addresses: vec![Address {
                dev: "vm1_net0".into(),
                cidr: "10.0.0.1/32".into(),
            }],
            routes: vec![Route {
                dst: "198.51.100.1/32".into(),
                dev: "vm1_net0".into(),
                via: None,
            }],
            sysctls: vec![Sysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into(),
            }],
            neighbour_proxies: Vec::new(),
            firewall: Firewall::default(),
            bgp: None,
            ndp: None,
        }
    }

    fn uplink() -> ObservedLink {
        ObservedLink {
            index: 2,
            name: "eno1".into(),
            kind: "veth".into(),
            master: None,
            mac: Some("02:00:00:00:00:aa".into()),
            up: true,
            carrier: true,
            mtu: None,
        }
    }

    /// What the kernel looks like after `plan` was applied.
    fn applied(p: &NodePlan) -> Observed {
        let mut o = Observed {
            links: vec![uplink()],
            addresses: p.addresses.clone(),
            routes: p.routes.clone(),
            proxies: p.neighbour_proxies.clone(),
            sysctls: p
                .sysctls
                .iter()
                .map(|s| (s.key.clone(), s.value.clone()))
                .collect(),
        };
        for (i, l) in p.links.iter().enumerate() {
            o.links.push(ObservedLink {
                index: 10 + i as u32,
                name: l.name.clone(),
                kind: kernel_kind(l.kind).into(),
                master: l.master.clone(),
                mac: l.mac.clone(),
                up: true,
                // A running guest: its hypervisor holds the link.
                carrier: true,
                mtu: l.mtu.map(u32::from),
            });
        }
        o
    }

    #[test]
    fn empty_node_gets_everything() {
        let p = plan();
        let o = Observed {
            links: vec![uplink()],
            ..Observed::default()
        };
        let a = diff(&p, &o, &Owned::default()).unwrap();
        let text: Vec<String> = a.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "+ link vm1_net0 veth mac fe:00:00:00:00:01 peer vm1_g0 peer mac 52:54:00:00:00:01 mtu 1500",
                "~ link vm1_net0 mac fe:00:00:00:00:01",
                "~ link vm1_net0 mtu 1500",
                "~ link vm1_net0 up",
                "+ address 10.0.0.1/32 dev vm1_net0",
                // No route yet: a new link has no guest behind it.
                "~ sysctl net.ipv4.ip_forward=1",
            ]
        );
    }

    #[test]
    fn applied_plan_needs_nothing() {
        let p = plan();
        let owned = Owned {
            links: ["vm1_net0".to_string()].into(),
            ..Owned::default()
        };
        assert!(diff(&p, &applied(&p), &owned).unwrap().is_empty());
    }

    #[test]
    fn drift_is_repaired_and_foreign_things_survive() {
        let p = plan();
        let mut o = applied(&p);
        o.routes.clear();
        o.addresses.clear();
        o.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
        // Someone else's interface and a stale one of ours.
        o.links.push(ObservedLink {
            index: 50,
            name: "docker0".into(),
            kind: "bridge".into(),
            master: None,
            mac: None,
            up: true,
            carrier: false,
            mtu: None,
        });
        o.links.push(ObservedLink {
            index: 51,
            name: "old_net0".into(),
            kind: "veth".into(),
            master: None,
            mac: None,
            up: true,
            carrier: false,
            mtu: None,
        });
        o.addresses.push(Address {
            dev: "docker0".into(),
            cidr: "172.17.0.1/16".into(),
        });
        let owned = Owned {
            links: ["vm1_net0".to_string(), "old_net0".to_string()].into(),
            ..Owned::default()
        };
        let a = diff(&p, &o, &owned).unwrap();
        let text: Vec<String> = a.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "- link old_net0",
                "+ address 10.0.0.1/32 dev vm1_net0",
                "+ route 198.51.100.1/32 dev vm1_net0",
                "~ sysctl net.ipv4.ip_forward=1",
            ]
        );
    }

    /// A cluster's new MTU reaches a running guest's link in place: one
    /// change, never a new link.
    #[test]
    fn a_changed_mtu_is_set_in_place() {
        let mut p = plan();
        let mut o = applied(&p);
        p.links[0].mtu = Some(9000);
        let got: Vec<String> = diff(&p, &o, &Owned::default())
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["~ link vm1_net0 mtu 9000"]);
        o.links[1].mtu = Some(9000);
        assert!(diff(&p, &o, &Owned::default()).unwrap().is_empty());
    }

    fn peer(mac: &str) -> ObservedLink {
        ObservedLink {
            index: 60,
            name: "vm1_g0".into(),
            kind: "veth".into(),
            master: None,
            mac: Some(mac.into()),
            up: false,
            carrier: false,
            mtu: None,
        }
    }

    #[test]
    fn a_veth_peer_on_the_node_gets_the_vm_mac_back() {
        let p = plan();
        let owned = Owned {
            links: ["vm1_net0".to_string()].into(),
            ..Owned::default()
        };
        // The hypervisor (or someone) gave the peer another MAC.
        let mut o = applied(&p);
        o.links.push(peer("0a:bb:cc:dd:ee:ff"));
        let text: Vec<String> = diff(&p, &o, &owned)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(text, ["~ link vm1_g0 mac 52:54:00:00:00:01"]);
        // The right MAC, in either case, needs nothing.
        let mut o = applied(&p);
        o.links.push(peer("52:54:00:00:00:01"));
        assert!(diff(&p, &o, &owned).unwrap().is_empty());
        let mut o = applied(&p);
        o.links
            .push(peer("52:54:00:00:00:01".to_uppercase().as_str()));
        assert!(diff(&p, &o, &owned).unwrap().is_empty());
        // Something else with the peer's name is not ours to change.
        let mut o = applied(&p);
        let mut other = peer("0a:bb:cc:dd:ee:ff");
        other.kind = "macvlan".into();
        o.links.push(other);
        assert!(diff(&p, &o, &owned).unwrap().is_empty());
    }

    #[test]
    fn a_veth_peer_in_its_container_leaves_the_pair_alone() {
        // `applied` has the host side only: the peer is in the container.
        let p = plan();
        let owned = Owned {
            links: ["vm1_net0".to_string()].into(),
            ..Owned::default()
        };
        let mut o = applied(&p);
        assert!(o.link("vm1_g0").is_none());
        assert!(diff(&p, &o, &owned).unwrap().is_empty());
        // Even with the host side down, the only change is bringing it up.
        o.links[1].up = false;
        let text: Vec<String> = diff(&p, &o, &owned)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(text, ["~ link vm1_net0 up"]);
    }

    #[test]
    fn a_foreign_interface_with_our_name_is_a_conflict() {
        let mut p = plan();
        p.links[0].kind = LinkKind::Bridge;
        let mut o = applied(&plan());
        o.links[1].kind = "dummy".into();
        assert!(matches!(
            diff(&p, &o, &Owned::default()),
            Err(Conflict::ForeignLink { .. })
        ));
        let o = Observed::default();
        assert_eq!(
            diff(&plan(), &o, &Owned::default()),
            Err(Conflict::NoUplink("eno1".into()))
        );
    }

    /// `plan()` with an IPv6 route too, as a dual-stack fabric VM has.
    fn dual_stack() -> NodePlan {
        let mut p = plan();
        p.addresses.push(Address {
            dev: "vm1_net0".into(),
            cidr: "fe80::1/64".into(),
        });
        p.routes.push(Route {
            dst: "2001:db8:77::10/128".into(),
            dev: "vm1_net0".into(),
            via: None,
        });
        p
    }

    fn owned() -> Owned {
        Owned {
            links: ["vm1_net0".to_string()].into(),
            ..Owned::default()
        }
    }

    fn texts(a: &[Action]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_stopped_guest_loses_its_routes_and_nothing_else() {
        let p = dual_stack();
        let mut o = applied(&p);
        o.links[1].carrier = false;
        let a = diff(&p, &o, &owned()).unwrap();
        assert_eq!(
            texts(&a),
            [
                "- route 198.51.100.1/32 dev vm1_net0",
                "- route 2001:db8:77::10/128 dev vm1_net0",
            ]
        );
        // Once withdrawn, an off guest needs nothing more, round after round.
        o.routes.clear();
        assert!(diff(&p, &o, &owned()).unwrap().is_empty());
        assert_eq!(withheld(&p, &o), BTreeSet::from(["vm1_net0"]));
    }

    #[test]
    fn a_started_guest_is_announced_again() {
        let p = dual_stack();
        let mut o = applied(&p);
        o.routes.clear();
        let a = diff(&p, &o, &owned()).unwrap();
        assert_eq!(
            texts(&a),
            [
                "+ route 198.51.100.1/32 dev vm1_net0",
                "+ route 2001:db8:77::10/128 dev vm1_net0",
            ]
        );
        assert!(withheld(&p, &o).is_empty());
    }

    /// Whatever state the hypervisor leaves a VM's link in — held or
    /// released, up or down, its MAC changed, a veth's peer away in a
    /// container — the agent never deletes or recreates it.
    #[test]
    fn the_link_a_hypervisor_holds_is_never_recreated() {
        for kind in [LinkKind::Tap, LinkKind::Veth] {
            let mut p = dual_stack();
            p.links[0].kind = kind;
            for (carrier, up, foreign_mac) in [
                (true, true, false),
                (false, true, false),
                (false, false, false),
                (true, true, true),
                (false, false, true),
            ] {
                // `applied` has no veth peer among the node's links: it
                // is in the container (or, for a tap, there is none).
                let mut o = applied(&p);
                o.links[1].carrier = carrier;
                o.links[1].up = up;
                if foreign_mac {
                    o.links[1].mac = Some("52:54:00:12:34:56".into());
                }
                let a = diff(&p, &o, &owned()).unwrap();
                let case = format!("{kind:?} carrier {carrier} up {up}: {:?}", texts(&a));
                assert!(
                    !a.iter().any(|x| matches!(
                        x,
                        Action::CreateLink { .. } | Action::DeleteLink { .. }
                    )),
                    "{case}"
                );
                assert_eq!(
                    a.iter().any(|x| matches!(x, Action::SetUp { .. })),
                    !up,
                    "{case}"
                );
                assert_eq!(
                    a.iter().any(|x| matches!(x, Action::SetMac { .. })),
                    foreign_mac,
                    "{case}"
                );
                let routes = a
                    .iter()
                    .filter(|x| matches!(x, Action::DeleteRoute { .. }))
                    .count();
                assert_eq!(routes, if carrier { 0 } else { 2 }, "{case}");
            }
        }
    }

    /// Routing VMs' routes point at the bridge and their IPv6 addresses
    /// are proxied on the uplink: a guest that is off changes neither.
    #[test]
    fn routing_keeps_an_off_guests_routes_and_proxies() {
        let mut p = plan();
        p.network_type = "routing".into();
        p.bridge = "vmbr0".into();
        p.links[0].master = Some("vmbr0".into());
        p.links.push(Link {
            name: "vmbr0".into(),
            kind: LinkKind::Bridge,
            master: None,
            mac: None,
            mac_from_uplink: false,
            peer: None,
            peer_mac: None,
            vm: None,
            mtu: None,
        });
        p.addresses = vec![Address {
            dev: "vmbr0".into(),
            cidr: "192.0.2.10/32".into(),
        }];
        p.routes = vec![Route {
            dst: "203.0.113.42/32".into(),
            dev: "vmbr0".into(),
            via: None,
        }];
        p.neighbour_proxies = vec![NeighbourProxy {
            dev: "eno1".into(),
            address: "2001:db8:1:1::10".parse().unwrap(),
        }];
        let mut o = applied(&p);
        for l in &mut o.links {
            l.carrier = l.name != "vm1_net0";
        }
        let owned = Owned {
            links: ["vm1_net0".to_string(), "vmbr0".to_string()].into(),
            proxies: [("eno1".to_string(), p.neighbour_proxies[0].address)].into(),
        };
        assert!(diff(&p, &o, &owned).unwrap().is_empty());
    }
}
