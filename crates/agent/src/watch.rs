//! Link notifications (rtnetlink's RTNLGRP_LINK): the agent learns within
//! milliseconds that a guest started or stopped — its tap or veth gained or
//! lost carrier — instead of at its next interval, so a stopped guest's
//! routes leave the reflectors at once and a started one is announced at
//! once.
//!
//! [`Carriers`] is the pure part: it remembers each link's carrier and says
//! whether a notification changes a VM link's. Notifications that change
//! nothing the agent acts on (its own MAC or up changes, statistics,
//! other links) wake nobody, so the agent never wakes itself.

use std::collections::{BTreeSet, HashMap};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::sys::SocketAddr;
use rtnetlink::{MulticastGroup, new_multicast_connection};

use crate::Error;

/// The carrier of every link of the namespace, as last reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carriers {
    known: HashMap<String, bool>,
}

impl Carriers {
    /// Start from a dump of the links: (name, carrier).
    pub fn new<'a>(links: impl IntoIterator<Item = (&'a str, bool)>) -> Carriers {
        Carriers {
            known: links.into_iter().map(|(n, c)| (n.to_string(), c)).collect(),
        }
    }

    /// Take in one link's new state (`None`: the link is gone); whether
    /// one of `vm_links` gained or lost carrier by it. A link not seen
    /// before counts as having had none (a new tap waits for its guest).
    pub fn update(
        &mut self,
        name: &str,
        carrier: Option<bool>,
        vm_links: &BTreeSet<String>,
    ) -> bool {
        let before = match carrier {
            Some(c) => self.known.insert(name.to_string(), c),
            None => self.known.remove(name),
        }
        .unwrap_or(false);
        vm_links.contains(name) && before != carrier.unwrap_or(false)
    }
}

/// The name and carrier of a link notification (`None` for a removal).
fn link_state(msg: &NetlinkMessage<RouteNetlinkMessage>) -> Option<(&str, Option<bool>)> {
    let (m, gone): (&LinkMessage, bool) = match &msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => (m, false),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => (m, true),
        _ => return None,
    };
    let name = m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })?;
    let carrier = m.header.flags.contains(LinkFlags::LowerUp);
    Some((name, (!gone).then_some(carrier)))
}

/// A subscription to the namespace's link notifications.
#[derive(Debug)]
pub struct LinkWatch {
    messages: UnboundedReceiver<(NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>,
    carriers: Carriers,
}

impl LinkWatch {
    /// Subscribe, then read every link's carrier (in this order, so no
    /// change falls between the two).
    pub fn start() -> Result<LinkWatch, Error> {
        let (conn, _, messages) = new_multicast_connection(&[MulticastGroup::Link])
            .map_err(|e| Error::Kernel(format!("cannot subscribe to link notifications: {e}")))?;
        tokio::spawn(conn);
        let mut w = LinkWatch {
            messages,
            carriers: Carriers::default(),
        };
        w.resync()?;
        Ok(w)
    }

    /// Wait until one of `vm_links` gains or loses carrier. Safe to cancel
    /// (e.g. by the interval's timer): each notification is taken in whole.
    /// Fails only when the subscription ended.
    pub async fn changed(&mut self, vm_links: &BTreeSet<String>) -> Result<(), Error> {
        loop {
            let Some((msg, _)) = self.messages.next().await else {
                return Err(Error::Kernel("link notifications ended".into()));
            };
            if let NetlinkPayload::Overrun(_) = msg.payload {
                // The kernel dropped notifications (a burst filled the
                // socket): read every link again, and let a round look
                // (which reports the kernel's error, if the dump fails).
                let _ = self.resync();
                return Ok(());
            }
            if let Some((name, carrier)) = link_state(&msg)
                && self.carriers.update(name, carrier, vm_links)
            {
                return Ok(());
            }
        }
    }

    /// Take in the notifications already queued, without waiting (after a
    /// debounce: what they report is read by the round about to run).
    pub fn drain(&mut self, vm_links: &BTreeSet<String>) {
        while let Ok((msg, _)) = self.messages.try_recv() {
            if let NetlinkPayload::Overrun(_) = msg.payload {
                let _ = self.resync();
            } else if let Some((name, carrier)) = link_state(&msg) {
                self.carriers.update(name, carrier, vm_links);
            }
        }
    }

    fn resync(&mut self) -> Result<(), Error> {
        let links = crate::linkdump::dump()?;
        self.carriers = Carriers::new(links.iter().map(|l| (l.name.as_str(), l.carrier)));
        Ok(())
    }
}

/// The VM links of a plan: the links whose carrier the agent follows.
pub fn vm_links(plan: &vmfabric_plan::NodePlan) -> BTreeSet<String> {
    plan.links
        .iter()
        .filter(|l| l.vm.is_some())
        .map(|l| l.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vms() -> BTreeSet<String> {
        ["vm1_net0".to_string()].into()
    }

    #[test]
    fn only_a_vm_links_carrier_change_wakes() {
        let mut c = Carriers::new([("vm1_net0", false), ("uplink0", true)]);
        // The agent's own changes (MAC, up) repeat the carrier: no wake.
        assert!(!c.update("vm1_net0", Some(false), &vms()));
        // QEMU opens the tap.
        assert!(c.update("vm1_net0", Some(true), &vms()));
        assert!(!c.update("vm1_net0", Some(true), &vms()));
        // Other links never wake the agent.
        assert!(!c.update("uplink0", Some(false), &vms()));
        assert!(!c.update("docker0", Some(true), &vms()));
        // QEMU exits.
        assert!(c.update("vm1_net0", Some(false), &vms()));
        // A link with carrier that goes away (a container's veth deleted
        // with its namespace) is a change; one without is not.
        assert!(c.update("vm1_net0", Some(true), &vms()));
        assert!(c.update("vm1_net0", None, &vms()));
        assert!(!c.update("vm1_net0", None, &vms()));
        // A new VM link without carrier changes nothing; with carrier it does.
        assert!(!c.update("vm1_net0", Some(false), &vms()));
        let mut fresh = Carriers::default();
        assert!(fresh.update("vm1_net0", Some(true), &vms()));
    }

    #[test]
    fn notifications_are_read_for_name_and_carrier() {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName("vm1_net0".into()));
        m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        let new = NetlinkMessage::from(RouteNetlinkMessage::NewLink(m.clone()));
        assert_eq!(link_state(&new), Some(("vm1_net0", Some(true))));
        m.header.flags = LinkFlags::Up;
        let new = NetlinkMessage::from(RouteNetlinkMessage::NewLink(m.clone()));
        assert_eq!(link_state(&new), Some(("vm1_net0", Some(false))));
        let del = NetlinkMessage::from(RouteNetlinkMessage::DelLink(m));
        assert_eq!(link_state(&del), Some(("vm1_net0", None)));
    }
}
