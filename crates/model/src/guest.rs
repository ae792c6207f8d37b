//! What a guest is told besides its addresses: the resolvers and search
//! domains it uses (per cluster, and per node in routing clusters, whose
//! nodes may sit in different data centres), and the MTU of its NICs (per
//! cluster: every node of a segment or fabric carries the same frames).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cluster::check_unicast;
use crate::error::{Error, Result};

/// resolv.conf uses at most three nameservers (glibc's MAXNS); more would
/// be written and silently ignored.
pub const MAX_NAMESERVERS: usize = 3;
/// glibc before 2.26 used six search domains; a short list also keeps
/// every lookup of a short name from trying a long chain of suffixes.
pub const MAX_SEARCH_DOMAINS: usize = 6;
/// IPv6 needs at least 1280 on every link; 9216 is the largest jumbo frame
/// common switches and NICs carry.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9216;

/// Resolvers and search domains handed to guests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::IpAddress>))]
    pub nameservers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.search.is_empty()
    }

    /// Check `nameservers` (`nameserver` in errors) and `search`
    /// (`search-domain`) as the user typed them.
    pub fn parse(nameservers: &[String], search: &[String]) -> Result<Dns> {
        if nameservers.len() > MAX_NAMESERVERS {
            return Err(Error::invalid(
                "nameserver",
                nameservers.join(","),
                format!("at most {MAX_NAMESERVERS} nameservers: resolv.conf ignores the rest"),
            ));
        }
        let mut ns: Vec<IpAddr> = Vec::new();
        for text in nameservers {
            let ip: IpAddr = text.trim().parse().map_err(|_| {
                Error::invalid(
                    "nameserver",
                    text,
                    "a nameserver is an IPv4 or IPv6 address, e.g. 192.0.2.53",
                )
            })?;
            check_unicast("nameserver", ip)?;
            if ns.contains(&ip) {
                return Err(Error::invalid("nameserver", text, "given twice"));
            }
            ns.push(ip);
        }
        if search.len() > MAX_SEARCH_DOMAINS {
            return Err(Error::invalid(
                "search-domain",
                search.join(","),
                format!("at most {MAX_SEARCH_DOMAINS} search domains"),
            ));
        }
        let mut domains: Vec<String> = Vec::new();
        for text in search {
            let d = check_domain("search-domain", text)?;
            if domains.contains(&d) {
                return Err(Error::invalid("search-domain", text, "given twice"));
            }
            domains.push(d);
        }
        Ok(Dns {
            nameservers: ns,
            search: domains,
        })
    }

    /// As the user would type them again (for validating changes as
    /// creations).
    pub fn texts(&self) -> (Vec<String>, Vec<String>) {
        (
            self.nameservers.iter().map(ToString::to_string).collect(),
            self.search.clone(),
        )
    }
}

/// A DNS domain name (RFC 1035 labels, letters, digits and hyphens; one
/// trailing dot allowed and dropped), lower-cased.
pub fn check_domain(field: &str, text: &str) -> Result<String> {
    let rule = "a domain name is dot-separated labels of 1 to 63 letters, digits or hyphens (not at either end of a label), at most 253 characters, e.g. example.com";
    let t = text.trim();
    let t = t.strip_suffix('.').unwrap_or(t);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if t.is_empty() || t.len() > 253 || !t.split('.').all(label_ok) {
        return Err(Error::invalid(field, text, rule));
    }
    Ok(t.to_ascii_lowercase())
}

/// `N` from 1280 to 9216, or `auto` (None: the guest's own default).
pub fn parse_mtu(field: &str, text: &str) -> Result<Option<u16>> {
    let t = text.trim();
    if t == "auto" {
        return Ok(None);
    }
    t.parse::<u16>()
        .ok()
        .filter(|m| MTU_RANGE.contains(m) && t.bytes().all(|b| b.is_ascii_digit()))
        .map(Some)
        .ok_or_else(|| {
            Error::invalid(
                field,
                text,
                format!(
                    "the MTU is a whole number from {} (the least IPv6 needs) to {} (jumbo frames), or auto for the guest's default",
                    MTU_RANGE.start(),
                    MTU_RANGE.end()
                ),
            )
        })
}

/// What a VM's guest config says besides addresses: the DNS of its node
/// (routing) or cluster, and the cluster's MTU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestNetwork {
    pub dns: Dns,
    pub mtu: Option<u16>,
}

impl GuestNetwork {
    /// A routing node's own DNS replaces the cluster's as a whole (its
    /// resolvers are those of its data centre).
    pub fn of(cluster: &crate::Cluster, node: Option<&crate::Node>) -> GuestNetwork {
        let node_dns = node
            .and_then(|n| n.routing.as_ref())
            .and_then(|r| r.dns.as_ref())
            .filter(|d| !d.is_empty());
        GuestNetwork {
            dns: node_dns.unwrap_or(&cluster.dns).clone(),
            mtu: cluster.mtu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn dns_is_checked() {
        let d = Dns::parse(&s(&["192.0.2.53", "2001:db8::53"]), &s(&["Example.COM."])).unwrap();
        assert_eq!(d.search, vec!["example.com"]);
        for (ns, search, field) in [
            (&["192.0.2.300"][..], &[][..], "nameserver"),
            (&["127.0.0.1"], &[], "nameserver"),
            (&["192.0.2.1", "192.0.2.1"], &[], "nameserver"),
            (
                &["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"],
                &[],
                "nameserver",
            ),
            (&[], &["-bad.example"], "search-domain"),
            (&[], &["a..b"], "search-domain"),
            (&[], &["under_score.example"], "search-domain"),
            (&[], &[""], "search-domain"),
        ] {
            match Dns::parse(&s(ns), &s(search)) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{ns:?} {search:?}"),
                other => panic!("{ns:?} {search:?}: {other:?}"),
            }
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(check_domain("d", &long).is_err());
    }

    #[test]
    fn mtu_is_checked() {
        assert_eq!(parse_mtu("mtu", "1400").unwrap(), Some(1400));
        assert_eq!(parse_mtu("mtu", "auto").unwrap(), None);
        for bad in ["1279", "9217", "+1500", "1500.0", "", "big"] {
            assert!(parse_mtu("mtu", bad).is_err(), "{bad}");
        }
    }
}
