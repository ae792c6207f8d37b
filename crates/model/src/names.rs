//! Names: of clusters, nodes and VMs; of Linux interfaces; of the per-VM
//! host interfaces `<vm>_net<N>`; and the MAC addresses of VM NICs.

use std::fmt;
use std::str::FromStr;

use crate::serde_text::text_serde;

use crate::error::{Error, Result};

/// Longest cluster, node or VM name: a DNS label, so names can become host names.
pub const MAX_NAME: usize = 63;
/// Linux `IFNAMSIZ` is 16 including the terminating NUL.
pub const MAX_IFNAME: usize = 15;
/// Highest NIC index, so `_net<N>` is at most 5 bytes.
pub const MAX_NIC_INDEX: u8 = 9;
/// Bytes left for the VM part of `<vm>_net<N>`.
pub const MAX_IF_PREFIX: usize = MAX_IFNAME - "_net0".len();

const NAME_RULE: &str =
    "names are 1 to 63 characters from A-Z a-z 0-9 _ . - and start with a letter or digit";

/// Check a cluster, node or VM name.
pub fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, name, NAME_RULE))
    }
}

/// The longest reservation note, in characters.
pub const MAX_NOTE: usize = 256;

/// Check a reservation note: 1 to 256 characters, none a control
/// character (a newline or escape in a note would forge lines in text
/// output and logs). The error shows only the note's start.
pub fn check_note(note: &str) -> Result<()> {
    let n = note.chars().count();
    let bad = note.chars().find(|c| c.is_control());
    if n == 0 || n > MAX_NOTE || bad.is_some() {
        let shown: String = note
            .chars()
            .take(40)
            .flat_map(char::escape_default)
            .collect();
        let shown = if n > 40 { format!("{shown}…") } else { shown };
        let why = match bad {
            Some(c) => format!(
                "control character {} is not allowed; a note is 1 to {MAX_NOTE} printable characters",
                c.escape_default()
            ),
            None => format!("a note is 1 to {MAX_NOTE} printable characters (this one has {n})"),
        };
        return Err(Error::invalid("note", shown, why));
    }
    Ok(())
}

/// A valid Linux interface name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IfName(String);

impl IfName {
    /// Check a name for use as an interface: 1..=15 bytes of `[A-Za-z0-9_.-]`,
    /// not `.` or `..` (the kernel also refuses `/`, `:` and white space; we
    /// refuse everything a shell or a config file could misread).
    pub fn new(field: &str, name: &str) -> Result<IfName> {
        let chars_ok = name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if name.is_empty() || name.len() > MAX_IFNAME || !chars_ok || name == "." || name == ".." {
            return Err(Error::invalid(
                field,
                name,
                "interface names are 1 to 15 bytes from A-Z a-z 0-9 _ . - (Linux IFNAMSIZ), and not . or ..",
            ));
        }
        Ok(IfName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IfName {
    type Err = Error;
    fn from_str(s: &str) -> Result<IfName> {
        IfName::new("interface", s)
    }
}

text_serde!(IfName);
text_serde!(Mac);

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// FNV-1a, 64 bit: a hash whose output never changes between Rust versions
/// or platforms, because names and MACs derived from it must not.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in *p {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator, so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Whether `name` has the shape of a VM's interface on a node:
/// `<prefix>_net<N>` (the host side) or `<prefix>_g<N>` (an LXD veth peer
/// before it moves into the guest).
pub fn is_vm_interface(name: &str) -> bool {
    let Some((prefix, suffix)) = name.rsplit_once('_') else {
        return false;
    };
    let digits = suffix
        .strip_prefix("net")
        .or_else(|| suffix.strip_prefix('g'));
    !prefix.is_empty()
        && digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The part of a VM's host interface names before `_net<N>`, for the
/// `attempt`-th candidate. Attempt 0 is the VM name itself when it fits
/// (`vm12` gives `vm12_net0`, as in the seed); otherwise, and for later
/// attempts, it is the first 5 characters of the name, `-`, and 4 characters
/// of a hash of the name and the attempt: deterministic, valid, at most 10
/// bytes. The store takes the first candidate no other VM holds.
pub fn host_if_prefix(vm: &str, attempt: u32) -> String {
    if attempt == 0 && vm.len() <= MAX_IF_PREFIX {
        return vm.to_string();
    }
    let head: String = vm.chars().take(5).collect();
    let mut h = stable_hash(&[vm.as_bytes(), &attempt.to_le_bytes()]);
    let mut tag = String::with_capacity(4);
    for _ in 0..4 {
        tag.push(char::from(BASE32[(h & 31) as usize]));
        h >>= 5;
    }
    format!("{head}-{tag}")
}

/// The host interface of NIC `index` of a VM whose prefix is `prefix`.
pub fn host_ifname(prefix: &str, index: u8) -> Result<IfName> {
    if index > MAX_NIC_INDEX {
        return Err(Error::invalid(
            "nic",
            index,
            format!("a VM has at most {} NICs", u16::from(MAX_NIC_INDEX) + 1),
        ));
    }
    IfName::new("interface", &format!("{prefix}_net{index}"))
}

/// The first octet of every node-side NIC MAC, and of no guest MAC.
const HOST_SIDE_OCTET: u8 = 0xfe;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The MAC of NIC `index` of `vm` in installation `seed`, `attempt`-th
    /// candidate: locally administered (bit 1 of the first octet set) and
    /// unicast (bit 0 clear), so it can never clash with a vendor's MAC,
    /// and never starting with the host side's octet, so it can never equal
    /// its own host side (a bridge would take the guest's frames as its
    /// own). The store takes the first candidate no other NIC holds.
    pub fn for_nic(seed: u64, vm: &str, index: u8, attempt: u32) -> Mac {
        let h = stable_hash(&[
            &seed.to_le_bytes(),
            vm.as_bytes(),
            &[index],
            &attempt.to_le_bytes(),
        ]);
        let b = h.to_be_bytes();
        let mut first = (b[0] & 0xfc) | 0x02;
        if first == HOST_SIDE_OCTET {
            first = 0xfa;
        }
        Mac([first, b[1], b[2], b[3], b[4], b[5]])
    }

    /// The MAC of the node-side end of a NIC (tap or veth): the guest's
    /// with the first octet set to `fe`, as libvirt does for taps.
    pub fn host_side(&self) -> Mac {
        let mut m = self.0;
        m[0] = HOST_SIDE_OCTET;
        Mac(m)
    }

    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    pub fn is_unicast(&self) -> bool {
        self.0[0] & 0x01 == 0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mac> {
        let bad = || Error::invalid("mac", s, "a MAC is six hex octets separated by colons");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for o in &mut out {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seed_interface_name() {
        assert_eq!(host_if_prefix("vm12", 0), "vm12");
        assert_eq!(host_ifname("vm12", 0).unwrap().as_str(), "vm12_net0");
        assert!(check_note("abuse hold, ticket #42 — Jörg").is_ok());
        for bad in ["", "two\nlines", "esc\u{1b}[31m", &"x".repeat(257)] {
            let e = check_note(bad).unwrap_err().to_string();
            assert!(e.starts_with("note"), "{e}");
            assert!(e.len() < 200, "the error echoes at most the start: {e}");
        }
        for (name, vm) in [
            ("x_net0", true),
            ("web_g3", true),
            ("a_b_net12", true),
            ("eno1", false),
            ("vmbr0", false),
            ("_net0", false),
            ("x_net", false),
            ("x_gx", false),
            ("br_guest", false),
        ] {
            assert_eq!(is_vm_interface(name), vm, "{name}");
        }
    }

    #[test]
    fn long_names_are_shortened_deterministically() {
        let a = host_if_prefix("customer-web-001", 0);
        let b = host_if_prefix("customer-web-002", 0);
        assert_eq!(a, host_if_prefix("customer-web-001", 0));
        assert_ne!(a, b);
        assert!(a.starts_with("custo-"));
        assert_eq!(a.len(), MAX_IF_PREFIX);
        assert_ne!(a, host_if_prefix("customer-web-001", 1));
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "-x", ".x", "a b", "a/b", "ü", "a:b", &"a".repeat(64)] {
            assert!(check_name("vm", bad).is_err(), "{bad:?} accepted");
        }
        for good in ["vm1", "web-01.example", "A_b", &"a".repeat(63)] {
            check_name("vm", good).unwrap();
        }
    }

    #[test]
    fn ifnames_are_checked() {
        IfName::new("uplink", "enp3s0f0").unwrap();
        IfName::new("uplink", "a23456789012345").unwrap();
        for bad in ["", ".", "..", "a23456789012345x", "eth 0", "eth0:1", "a/b"] {
            assert!(IfName::new("uplink", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn macs_are_local_unicast_and_stable() {
        let m = Mac::for_nic(42, "vm1", 0, 0);
        assert!(m.is_locally_administered() && m.is_unicast());
        assert_eq!(m, Mac::for_nic(42, "vm1", 0, 0));
        assert_ne!(m, Mac::for_nic(42, "vm1", 0, 1));
        assert_ne!(m, Mac::for_nic(43, "vm1", 0, 0));
        assert_eq!(m.to_string().parse::<Mac>().unwrap(), m);
        // Pinned: a change here would renumber every existing NIC.
        assert_eq!(
            Mac::for_nic(0, "vm1", 0, 0).to_string(),
            "aa:95:73:2e:30:5f"
        );
    }

    /// One guest MAC in 64 used to start with `fe` and so equal its host
    /// side: the bridge kept that VM's frames for itself.
    #[test]
    fn a_guest_mac_never_equals_its_host_side() {
        for seed in 0..20_000u64 {
            let m = Mac::for_nic(seed, "vm1", 0, 0);
            assert!(m.is_locally_administered() && m.is_unicast(), "{m}");
            assert_ne!(m, m.host_side(), "seed {seed}");
        }
    }

    proptest! {
        #[test]
        fn every_valid_vm_name_gives_valid_interface_names(
            name in "[A-Za-z0-9][A-Za-z0-9_.-]{0,62}",
            attempt in 0u32..4,
            nic in 0u8..=MAX_NIC_INDEX,
        ) {
            check_name("vm", &name).unwrap();
            let prefix = host_if_prefix(&name, attempt);
            let ifname = host_ifname(&prefix, nic).unwrap();
            prop_assert!(ifname.as_str().len() <= MAX_IFNAME);
        }
    }
}
