//! The kernel side of the agent, through rtnetlink (no `ip` processes):
//! dumps of links, addresses, routes and neighbour proxies, and changes
//! sent many at a time on one netlink socket. Taps come from the TUNSETIFF
//! ioctl (`tap.rs`), sysctls from /proc/sys.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::stream::{self, StreamExt, TryStreamExt};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoVeth};
use netlink_packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourFlags};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};
use vmfabric_plan::{Address, LinkKind, NeighbourProxy, NodePlan, Route};

use crate::reconcile::{Action, Observed, ObservedLink};
use crate::{Error, sysctl, tap};

/// How many netlink requests are in flight at once.
const IN_FLIGHT: usize = 128;

/// The kernel, as far as the agent reads and writes it.
#[allow(async_fn_in_trait)]
pub trait Dataplane {
    /// Read what the plan depends on.
    async fn observe(&self, plan: &NodePlan) -> Result<Observed, Error>;
    /// Apply actions in order (phases run one after another; actions within
    /// a phase concurrently). Every failure is reported, none stops the rest.
    async fn apply(&self, observed: &Observed, actions: &[Action]) -> Vec<(Action, String)>;
}

/// The real kernel of the network namespace the agent runs in.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
    protocol: u8,
}

fn mac_bytes(s: &str) -> Result<Vec<u8>, String> {
    let v: Result<Vec<u8>, _> = s.split(':').map(|p| u8::from_str_radix(p, 16)).collect();
    match v {
        Ok(b) if b.len() == 6 => Ok(b),
        _ => Err(format!("bad MAC {s}")),
    }
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), String> {
    let (a, l) = s.split_once('/').ok_or_else(|| format!("bad CIDR {s}"))?;
    let ip: IpAddr = a.parse().map_err(|_| format!("bad address {s}"))?;
    let len: u8 = l.parse().map_err(|_| format!("bad prefix {s}"))?;
    Ok((ip, len))
}

impl Netlink {
    /// Open a netlink connection in the current network namespace.
    pub fn connect(protocol: u8) -> Result<Netlink, Error> {
        // Strict checking lets the kernel filter dumps (routes by protocol)
        // instead of sending everything for us to throw away.
        let (conn, handle, _) = rtnetlink::new_connection_with_strict_check()
            .map_err(|e| Error::Kernel(format!("cannot open a netlink socket: {e}")))?;
        tokio::spawn(conn);
        Ok(Netlink { handle, protocol })
    }

    async fn links(&self) -> Result<Vec<ObservedLink>, Error> {
        crate::linkdump::dump()
    }

    async fn addresses(&self, names: &HashMap<u32, String>) -> Result<Vec<Address>, Error> {
        let msgs: Vec<AddressMessage> =
            self.handle
                .address()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::Kernel(format!("cannot list addresses: {e}")))?;
        let mut out = Vec::new();
        for m in msgs {
            let Some(dev) = names.get(&m.header.index) else {
                continue;
            };
            // IPv4: Local is the address, Address the peer; IPv6: Address.
            let ip = m
                .attributes
                .iter()
                .find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                })
                .or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                });
            if let Some(ip) = ip {
                out.push(Address {
                    dev: dev.clone(),
                    cidr: format!("{ip}/{}", m.header.prefix_len),
                });
            }
        }
        Ok(out)
    }

    async fn routes(&self, names: &HashMap<u32, String>) -> Result<Vec<Route>, Error> {
        let mut out = Vec::new();
        for mut req in [
            RouteMessageBuilder::<Ipv4Addr>::new().build(),
            RouteMessageBuilder::<Ipv6Addr>::new().build(),
        ] {
            req.header.protocol = RouteProtocol::Other(self.protocol);
            let msgs: Vec<RouteMessage> = self
                .handle
                .route()
                .get(req)
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::Kernel(format!("cannot list routes: {e}")))?;
            for m in msgs {
                if m.header.protocol != RouteProtocol::Other(self.protocol) {
                    continue;
                }
                let mut dst = None;
                let mut dev = None;
                let mut via = None;
                for a in &m.attributes {
                    match a {
                        RouteAttribute::Destination(RouteAddress::Inet(a)) => {
                            dst = Some(IpAddr::V4(*a))
                        }
                        RouteAttribute::Destination(RouteAddress::Inet6(a)) => {
                            dst = Some(IpAddr::V6(*a))
                        }
                        RouteAttribute::Oif(i) => dev = names.get(i).cloned(),
                        RouteAttribute::Gateway(RouteAddress::Inet(a)) => {
                            via = Some(IpAddr::V4(*a))
                        }
                        RouteAttribute::Gateway(RouteAddress::Inet6(a)) => {
                            via = Some(IpAddr::V6(*a))
                        }
                        _ => {}
                    }
                }
                let dst = dst.unwrap_or(if m.header.address_family == AddressFamily::Inet6 {
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                });
                out.push(Route {
                    dst: format!("{dst}/{}", m.header.destination_prefix_length),
                    dev: dev.unwrap_or_default(),
                    via,
                });
            }
        }
        Ok(out)
    }

    async fn proxies(&self, names: &HashMap<u32, String>) -> Result<Vec<NeighbourProxy>, Error> {
        let msgs: Vec<_> = self
            .handle
            .neighbours()
            .get()
            .proxies()
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::Kernel(format!("cannot list neighbour proxies: {e}")))?;
        let mut out = Vec::new();
        for m in msgs {
            let Some(dev) = names.get(&m.header.ifindex) else {
                continue;
            };
            for a in &m.attributes {
                let ip = match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => IpAddr::V4(*a),
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => IpAddr::V6(*a),
                    _ => continue,
                };
                out.push(NeighbourProxy {
                    dev: dev.clone(),
                    address: ip,
                });
            }
        }
        Ok(out)
    }

    fn route_message(&self, r: &Route, index: u32) -> Result<RouteMessage, String> {
        let (dst, len) = parse_cidr(&r.dst)?;
        let proto = RouteProtocol::Other(self.protocol);
        let scope = if r.via.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        let m = match (dst, r.via) {
            (IpAddr::V4(d), via) => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(d, len)
                    .output_interface(index)
                    .protocol(proto)
                    .scope(scope);
                if let Some(IpAddr::V4(g)) = via {
                    b = b.gateway(g);
                }
                b.build()
            }
            (IpAddr::V6(d), via) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(d, len)
                    .output_interface(index)
                    .protocol(proto)
                    .scope(scope);
                if let Some(IpAddr::V6(g)) = via {
                    b = b.gateway(g);
                }
                b.build()
            }
        };
        Ok(m)
    }

    /// One action; `idx` maps interface names to indexes.
    async fn one(&self, a: &Action, idx: &BTreeMap<String, u32>) -> Result<(), String> {
        let index = |name: &str| -> Result<u32, String> {
            idx.get(name)
                .copied()
                .ok_or_else(|| format!("no interface {name}"))
        };
        let err = |e: rtnetlink::Error| e.to_string();
        match a {
            Action::CreateLink { link } => match link.kind {
                LinkKind::Bridge => self
                    .handle
                    .link()
                    .add(LinkBridge::new(&link.name).build())
                    .execute()
                    .await
                    .map_err(err),
                LinkKind::Veth => {
                    let peer = link
                        .peer
                        .clone()
                        .unwrap_or_else(|| format!("{}p", link.name));
                    // The peer is born with the VM's MAC (one message, so
                    // no other MAC is ever seen on it).
                    let mut peer_msg = LinkUnspec::new_with_name(&peer);
                    if let Some(mac) = &link.peer_mac {
                        peer_msg = peer_msg.address(mac_bytes(mac)?);
                    }
                    let msg = LinkVeth::new(&link.name, &peer)
                        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg.build())))
                        .build();
                    self.handle.link().add(msg).execute().await.map_err(err)
                }
                LinkKind::Tap => tap::create(&link.name),
            },
            Action::DeleteLink { name } => self
                .handle
                .link()
                .del(index(name)?)
                .execute()
                .await
                .map_err(err),
            Action::SetMaster { name, master } => {
                let b = LinkUnspec::new_with_index(index(name)?);
                let msg = match master {
                    Some(m) => b.controller(index(m)?).build(),
                    None => b.nocontroller().build(),
                };
                self.handle.link().set(msg).execute().await.map_err(err)
            }
            Action::SetMac { name, mac } => {
                let msg = LinkUnspec::new_with_index(index(name)?)
                    .address(mac_bytes(mac)?)
                    .build();
                self.handle.link().set(msg).execute().await.map_err(err)
            }
            Action::SetMtu { name, mtu } => {
                let msg = LinkUnspec::new_with_index(index(name)?)
                    .mtu(u32::from(*mtu))
                    .build();
                self.handle.link().set(msg).execute().await.map_err(err)
            }
            Action::SetUp { name } => {
                let msg = LinkUnspec::new_with_index(index(name)?).up().build();
                self.handle.link().set(msg).execute().await.map_err(err)
            }
            Action::AddAddress { address } => {
                let (ip, len) = parse_cidr(&address.cidr)?;
                let mut req = self.handle.address().add(index(&address.dev)?, ip, len);
                if ip.is_ipv6() {
                    // No duplicate address detection: the address is ours by
                    // plan, and a tentative address would delay traffic.
                    let m = req.message_mut();
                    m.header.flags |= AddressHeaderFlags::Nodad;
                }
                req.execute().await.map_err(err)
            }
            Action::DeleteAddress { address } => {
                let (ip, len) = parse_cidr(&address.cidr)?;
                let mut m = AddressMessage::default();
                m.header.family = if ip.is_ipv4() {
                    AddressFamily::Inet
                } else {
                    AddressFamily::Inet6
                };
                m.header.prefix_len = len;
                m.header.index = index(&address.dev)?;
                m.attributes.push(AddressAttribute::Local(ip));
                m.attributes.push(AddressAttribute::Address(ip));
                self.handle.address().del(m).execute().await.map_err(err)
            }
            Action::AddRoute { route } => {
                let m = self.route_message(route, index(&route.dev)?)?;
                self.handle
                    .route()
                    .add(m)
                    .replace()
                    .execute()
                    .await
                    .map_err(err)
            }
            Action::DeleteRoute { route } => {
                // A route whose interface is gone went with it.
                let Ok(i) = index(&route.dev) else {
                    return Ok(());
                };
                let m = self.route_message(route, i)?;
                self.handle.route().del(m).execute().await.map_err(err)
            }
            Action::AddProxy { proxy } => self
                .handle
                .neighbours()
                .add(index(&proxy.dev)?, proxy.address)
                .flags(NeighbourFlags::Proxy)
                .replace()
                .execute()
                .await
                .map_err(err),
            Action::DeleteProxy { proxy } => {
                let mut m = netlink_packet_route::neighbour::NeighbourMessage::default();
                m.header.family = if proxy.address.is_ipv4() {
                    AddressFamily::Inet
                } else {
                    AddressFamily::Inet6
                };
                m.header.ifindex = index(&proxy.dev)?;
                m.header.flags = NeighbourFlags::Proxy;
                m.attributes
                    .push(NeighbourAttribute::Destination(match proxy.address {
                        IpAddr::V4(a) => NeighbourAddress::Inet(a),
                        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
                    }));
                self.handle.neighbours().del(m).execute().await.map_err(err)
            }
            Action::SetSysctl { sysctl: s } => sysctl::write(&s.key, &s.value),
        }
    }

    async fn index_map(&self) -> Result<BTreeMap<String, u32>, Error> {
        Ok(self
            .links()
            .await?
            .into_iter()
            .map(|l| (l.name, l.index))
            .collect())
    }
}

/// The phase of an action: phases run in order, actions of one phase at once.
fn phase(a: &Action) -> u8 {
    match a {
        Action::DeleteRoute { .. } => 0,
        Action::DeleteProxy { .. } => 0,
        Action::DeleteAddress { .. } => 1,
        Action::DeleteLink { .. } => 2,
        Action::CreateLink { .. } => 3,
        // Bridges first get their MAC, ports then join them.
        Action::SetMac { .. } | Action::SetMtu { .. } => 4,
        Action::SetMaster { .. } => 5,
        Action::SetUp { .. } => 6,
        Action::AddAddress { .. } => 7,
        Action::AddRoute { .. } => 8,
        Action::AddProxy { .. } => 8,
        Action::SetSysctl { .. } => 9,
    }
}

impl Dataplane for Netlink {
    async fn observe(&self, plan: &NodePlan) -> Result<Observed, Error> {
        let links = self.links().await?;
        let names: HashMap<u32, String> = links.iter().map(|l| (l.index, l.name.clone())).collect();
        let mut sysctls = BTreeMap::new();
        for s in &plan.sysctls {
            if let Ok(v) = sysctl::read(&s.key) {
                sysctls.insert(s.key.clone(), v);
            }
        }
        Ok(Observed {
            addresses: self.addresses(&names).await?,
            routes: self.routes(&names).await?,
            proxies: self.proxies(&names).await?,
            links,
            sysctls,
        })
    }

    async fn apply(&self, observed: &Observed, actions: &[Action]) -> Vec<(Action, String)> {
        let mut failed = Vec::new();
        let mut idx: BTreeMap<String, u32> = observed
            .links
            .iter()
            .map(|l| (l.name.clone(), l.index))
            .collect();
        for p in 0..=9 {
            let batch: Vec<&Action> = actions.iter().filter(|a| phase(a) == p).collect();
            if batch.is_empty() {
                continue;
            }
            let results: Vec<(Action, Result<(), String>)> = stream::iter(batch)
                .map(|a| {
                    let idx = &idx;
                    async move { (a.clone(), self.one(a, idx).await) }
                })
                .buffer_unordered(IN_FLIGHT)
                .collect()
                .await;
            failed.extend(
                results
                    .into_iter()
                    .filter_map(|(a, r)| r.err().map(|e| (a, e))),
            );
            // New links need their indexes before anything refers to them.
            if p == 3
                && let Ok(i) = self.index_map().await
            {
                idx = i;
            }
        }
        failed
    }
}
