//! One ordered key space for IPv4 and IPv6: every address is a `u128`.
//!
//! IPv6 addresses are their own 128-bit value; IPv4 addresses are mapped into
//! `::ffff:0:0/96` (RFC 4291 IPv4-mapped addresses). One key space lets the
//! installation check overlaps, uniqueness and order with one comparison, and
//! lets a store keep every address in one indexed column. The model refuses
//! IPv6 blocks inside `::ffff:0:0/96`, so the two families never alias.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address as a number in the shared key space.
pub type Key = u128;

/// First key of the IPv4 part of the key space (`::ffff:0.0.0.0`).
pub const V4_FIRST: Key = 0xffff_0000_0000;
/// Last key of the IPv4 part of the key space (`::ffff:255.255.255.255`).
pub const V4_LAST: Key = 0xffff_ffff_ffff;

/// Address family of a key or a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Number of bits in an address of this family.
    pub const fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The key of an address.
pub fn key(ip: IpAddr) -> Key {
    match ip {
        IpAddr::V4(a) => V4_FIRST | Key::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of a key (keys inside `::ffff:0:0/96` are IPv4).
pub fn addr(k: Key) -> IpAddr {
    if (V4_FIRST..=V4_LAST).contains(&k) {
        // Truncation keeps exactly the low 32 bits, which is the IPv4 address.
        IpAddr::V4(Ipv4Addr::from((k & 0xffff_ffff) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(k))
    }
}

/// Family of a key.
pub fn family(k: Key) -> Family {
    if (V4_FIRST..=V4_LAST).contains(&k) {
        Family::V4
    } else {
        Family::V6
    }
}

/// Big-endian bytes: byte-wise order equals numeric order, which SQLite BLOB
/// and PostgreSQL BYTEA comparisons both follow.
pub fn to_bytes(k: Key) -> [u8; 16] {
    k.to_be_bytes()
}

/// Inverse of [`to_bytes`]; `None` unless exactly 16 bytes.
pub fn from_bytes(b: &[u8]) -> Option<Key> {
    let arr: [u8; 16] = b.try_into().ok()?;
    Some(Key::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_round_trip_and_order() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(addr(key(a)), a);
        assert!(key(a) < key(b));
        assert_eq!(family(key(a)), Family::V4);
    }

    #[test]
    fn v6_round_trip() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr(key(a)), a);
        assert_eq!(family(key(a)), Family::V6);
    }

    #[test]
    fn bytes_order_is_numeric_order() {
        let a = key("10.0.0.255".parse().unwrap());
        let b = key("10.0.1.0".parse().unwrap());
        assert!(to_bytes(a) < to_bytes(b));
        assert_eq!(from_bytes(&to_bytes(b)), Some(b));
        assert_eq!(from_bytes(&[1, 2, 3]), None);
    }
}
