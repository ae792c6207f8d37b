//! Sysctls through /proc/sys, in the agent's own network namespace.

use std::path::PathBuf;

/// `net.ipv4.conf.eno1.proxy_arp` → `/proc/sys/net/ipv4/conf/eno1/proxy_arp`.
/// Interface names may contain dots, so `conf.<ifname>.<key>` is split by
/// its known shape rather than at every dot.
pub fn path(key: &str) -> PathBuf {
    let mut p = PathBuf::from("/proc/sys");
    for family in ["net.ipv4.conf.", "net.ipv6.conf."] {
        if let Some(rest) = key.strip_prefix(family)
            && let Some((iface, param)) = rest.rsplit_once('.')
        {
            for part in family.trim_end_matches('.').split('.') {
                p.push(part);
            }
            p.push(iface);
            p.push(param);
            return p;
        }
    }
    for part in key.split('.') {
        p.push(part);
    }
    p
}

pub fn read(key: &str) -> Result<String, String> {
    std::fs::read_to_string(path(key))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cannot read sysctl {key}: {e}"))
}

pub fn write(key: &str, value: &str) -> Result<(), String> {
    std::fs::write(path(key), value).map_err(|e| format!("cannot set sysctl {key}={value}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_interface_names() {
        assert_eq!(
            path("net.ipv4.conf.eno1.100.proxy_arp"),
            PathBuf::from("/proc/sys/net/ipv4/conf/eno1.100/proxy_arp")
        );
        assert_eq!(
            path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            path("net.ipv6.conf.all.forwarding"),
            PathBuf::from("/proc/sys/net/ipv6/conf/all/forwarding")
        );
    }
}
