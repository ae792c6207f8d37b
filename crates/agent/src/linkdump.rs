//! A lean dump of the links of this network namespace: only the four
//! attributes the agent needs (name, MAC, master, kind) and the flags
//! (up, carrier) are decoded.
//!
//! Why not rtnetlink's dump: it decodes every attribute of every link
//! (IPv6 settings, statistics, ...) into owned values, which on a node
//! with a thousand VMs took most of a no-op round (BENCHMARKS.md).

use std::collections::HashMap;

use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

use crate::Error;
use crate::reconcile::ObservedLink;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_INFO_KIND: u16 = 1;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
const IFF_UP: u32 = 0x1;
const IFF_LOWER_UP: u32 = 0x1_0000;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Attributes (type, payload) of a netlink attribute stream.
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(b, 0)?);
        let kind = u16_at(b, 2)? & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

fn text(p: &[u8]) -> String {
    String::from_utf8_lossy(p.split(|c| *c == 0).next().unwrap_or(&[])).to_string()
}

/// Every link of the namespace.
pub fn dump() -> Result<Vec<ObservedLink>, Error> {
    let err = |e: std::io::Error| Error::Kernel(format!("cannot list links: {e}"));
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(err)?;
    sock.bind_auto().map_err(err)?;
    // nlmsghdr + ifinfomsg (16 bytes) + IFLA_EXT_MASK (8 bytes).
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0u8; 16]);
    req.extend_from_slice(&8u16.to_ne_bytes());
    req.extend_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
    req.extend_from_slice(&RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    sock.send(&req, 0).map_err(err)?;

    // Links with their master's index, resolved to a name at the end.
    let mut raw: Vec<(ObservedLink, Option<u32>)> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    'outer: loop {
        let n = sock.recv(&mut &mut buf[..], 0).map_err(err)?;
        let mut at = 0;
        while at + 16 <= n {
            let len = u32_at(&buf, at).map_or(0, |l| l as usize);
            let kind = u16_at(&buf, at + 4).unwrap_or(0);
            if len < 16 || at + len > n {
                break;
            }
            let msg = &buf[at..at + len];
            match kind {
                NLMSG_DONE => break 'outer,
                NLMSG_ERROR => {
                    let code = msg
                        .get(16..20)
                        .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                    if code != 0 {
                        return Err(Error::Kernel(format!("cannot list links: errno {}", -code)));
                    }
                }
                RTM_NEWLINK if msg.len() >= 32 => {
                    let index = u32_at(msg, 20).unwrap_or(0);
                    let flags = u32_at(msg, 24).unwrap_or(0);
                    let (mut name, mut link_kind, mut master, mut mac, mut mtu) =
                        (String::new(), String::from("device"), None, None, None);
                    for (t, p) in attrs(&msg[32..]) {
                        match t {
                            IFLA_IFNAME => name = text(p),
                            IFLA_MASTER => master = u32_at(p, 0),
                            IFLA_MTU => mtu = u32_at(p, 0),
                            IFLA_ADDRESS if p.len() == 6 => {
                                mac = Some(
                                    p.iter()
                                        .map(|x| format!("{x:02x}"))
                                        .collect::<Vec<_>>()
                                        .join(":"),
                                );
                            }
                            IFLA_LINKINFO => {
                                for (it, ip) in attrs(p) {
                                    if it == IFLA_INFO_KIND {
                                        link_kind = text(ip);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    let link = ObservedLink {
                        index,
                        name,
                        kind: link_kind,
                        master: None,
                        mac,
                        up: flags & IFF_UP != 0,
                        carrier: flags & IFF_LOWER_UP != 0,
                        mtu,
                    };
                    raw.push((link, master));
                }
                _ => {}
            }
            at += (len + 3) & !3;
        }
    }
    let names: HashMap<u32, String> = raw.iter().map(|(l, _)| (l.index, l.name.clone())).collect();
    Ok(raw
        .into_iter()
        .map(|(mut l, master)| {
            l.master = master.and_then(|m| names.get(&m).cloned());
            l
        })
        .collect())
}
