//! CIDR blocks and inclusive address ranges, parsed strictly.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::key::{self, Family, Key};

/// Why a text is not a valid block or range. The `Display` text is the rule
/// that was broken, written for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not of the form `ADDRESS/PREFIX`.
    NotCidr,
    /// The address part is not an IP address.
    BadAddress,
    /// The prefix length is not a number within the family's bits.
    BadPrefix { family: Family },
    /// Bits set below the prefix; carries the block the text probably meant.
    HostBits { network: Cidr },
    /// Not of the form `FIRST-LAST` or a single address.
    NotRange,
    /// A range whose ends are of different families.
    MixedFamilies,
    /// A range whose first address is above its last.
    Reversed,
    /// IPv6 text inside `::ffff:0:0/96`, which is IPv4 written as IPv6.
    Mapped,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotCidr => write!(f, "must be a block in CIDR notation ADDRESS/PREFIX"),
            ParseError::BadAddress => write!(f, "must be an IPv4 or IPv6 address"),
            ParseError::BadPrefix { family } => write!(
                f,
                "the prefix length must be a number from 0 to {} for {}",
                family.bits(),
                family.name()
            ),
            ParseError::HostBits { network } => write!(
                f,
                "host bits must be zero below the prefix length (did you mean {network}?)"
            ),
            ParseError::NotRange => {
                write!(f, "must be an address or a range FIRST-LAST of addresses")
            }
            ParseError::MixedFamilies => {
                write!(f, "both ends of a range must be of the same family")
            }
            ParseError::Reversed => write!(f, "the first address must not be above the last"),
            ParseError::Mapped => write!(
                f,
                "IPv4-mapped IPv6 addresses (::ffff:0:0/96) are IPv4 addresses: write them as IPv4"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// A CIDR block with no host bits set, e.g. `192.0.2.0/27`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// A block; fails if `len` is too long or host bits are set.
    pub fn new(addr: IpAddr, len: u8) -> Result<Cidr, ParseError> {
        let family = Family::of(addr);
        if len > family.bits() {
            return Err(ParseError::BadPrefix { family });
        }
        let network = Cidr::containing(addr, len);
        if network.addr != addr {
            return Err(ParseError::HostBits { network });
        }
        if family == Family::V6 && network.range().overlaps(&V4_SPACE) {
            return Err(ParseError::Mapped);
        }
        Ok(network)
    }

    /// The block of prefix length `len` that contains `addr` (host bits cleared).
    /// `len` is clamped to the family's bits.
    pub fn containing(addr: IpAddr, len: u8) -> Cidr {
        let family = Family::of(addr);
        let len = len.min(family.bits());
        let host_bits = u32::from(family.bits() - len);
        let addr = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Cidr { addr, len }
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn family(&self) -> Family {
        Family::of(self.addr)
    }

    /// The keys the block covers.
    pub fn range(&self) -> Range {
        let first = key::key(self.addr);
        let host_bits = u32::from(self.family().bits() - self.len);
        let span = 1u128.checked_shl(host_bits).map_or(u128::MAX, |n| n - 1);
        Range::new(first, first.saturating_add(span))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        Family::of(ip) == self.family() && self.range().contains(key::key(ip))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Cidr, ParseError> {
        let (a, l) = s.trim().split_once('/').ok_or(ParseError::NotCidr)?;
        let addr: IpAddr = a.parse().map_err(|_| ParseError::BadAddress)?;
        let family = Family::of(addr);
        // Reject signs and leading zeros' friends: only plain decimal digits.
        if l.is_empty()
            || l.len() > 3
            || !l.bytes().all(|b| b.is_ascii_digit())
            || (l.len() > 1 && l.starts_with('0'))
        {
            return Err(ParseError::BadPrefix { family });
        }
        let len: u8 = l.parse().map_err(|_| ParseError::BadPrefix { family })?;
        Cidr::new(addr, len)
    }
}

/// The IPv4 part of the key space.
const V4_SPACE: Range = Range::new(key::V4_FIRST, key::V4_LAST);

/// An inclusive range of keys `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Range {
    pub first: Key,
    pub last: Key,
}

impl Range {
    /// A range; the caller guarantees `first <= last`.
    pub const fn new(first: Key, last: Key) -> Range {
        debug_assert!(first <= last);
        Range { first, last }
    }

    pub const fn single(k: Key) -> Range {
        Range { first: k, last: k }
    }

    /// Number of keys (saturating at `u128::MAX` for the whole key space).
    pub const fn len(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// A range is never empty; provided for clippy's sake.
    pub const fn is_empty(&self) -> bool {
        false
    }

    pub const fn contains(&self, k: Key) -> bool {
        self.first <= k && k <= self.last
    }

    pub const fn overlaps(&self, other: &Range) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    pub const fn covers(&self, other: &Range) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    /// The overlap of two ranges, if any.
    pub fn intersect(&self, other: &Range) -> Option<Range> {
        let first = self.first.max(other.first);
        let last = self.last.min(other.last);
        (first <= last).then_some(Range { first, last })
    }

    /// What remains of `self` after removing the keys of `hole`: up to two
    /// pieces, left and right of the hole.
    pub fn minus(&self, hole: &Range) -> (Option<Range>, Option<Range>) {
        if !self.overlaps(hole) {
            return if hole.last < self.first {
                (None, Some(*self))
            } else {
                (Some(*self), None)
            };
        }
        let left = (hole.first > self.first).then(|| Range::new(self.first, hole.first - 1));
        let right = (hole.last < self.last).then(|| Range::new(hole.last + 1, self.last));
        (left, right)
    }

    /// Parse `A-B` or a single address `A`.
    pub fn parse(s: &str) -> Result<Range, ParseError> {
        let s = s.trim();
        let (a, b) = match s.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s, s),
        };
        let a: IpAddr = a.parse().map_err(|_| ParseError::NotRange)?;
        let b: IpAddr = b.parse().map_err(|_| ParseError::NotRange)?;
        if Family::of(a) != Family::of(b) {
            return Err(ParseError::MixedFamilies);
        }
        let v6 = Family::of(a) == Family::V6;
        let (a, b) = (key::key(a), key::key(b));
        if a > b {
            return Err(ParseError::Reversed);
        }
        let r = Range::new(a, b);
        if v6 && r.overlaps(&V4_SPACE) {
            return Err(ParseError::Mapped);
        }
        Ok(r)
    }

    pub fn family(&self) -> Family {
        key::family(self.first)
    }
}

impl FromStr for Range {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Range, ParseError> {
        Range::parse(s)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", key::addr(self.first))
        } else {
            write!(f, "{}-{}", key::addr(self.first), key::addr(self.last))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strict_cidr() {
        let c: Cidr = "192.0.2.32/27".parse().unwrap();
        assert_eq!(c.prefix_len(), 27);
        assert_eq!(c.range().len(), 32);
        assert_eq!(c.to_string(), "192.0.2.32/27");
        let c6: Cidr = "2001:db8::/48".parse().unwrap();
        assert_eq!(c6.range().len(), 1u128 << 80);
    }

    #[test]
    fn rejects_host_bits_and_says_what_was_meant() {
        let e = "192.0.2.1/27".parse::<Cidr>().unwrap_err();
        assert_eq!(
            e,
            ParseError::HostBits {
                network: "192.0.2.0/27".parse().unwrap()
            }
        );
        assert!(e.to_string().contains("192.0.2.0/27"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "192.0.2.0",
            "192.0.2.0/",
            "192.0.2.0/33",
            "192.0.2.0/-1",
            "192.0.2.0/+8",
            "300.0.0.0/8",
            "2001:db8::/129",
            "192.0.2.0/024",
            "192.0.2.0/00",
            "a/b",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn range_parse_and_minus() {
        let r = Range::parse("192.0.2.10-192.0.2.20").unwrap();
        assert_eq!(r.len(), 11);
        let hole = Range::parse("192.0.2.12").unwrap();
        let (l, rr) = r.minus(&hole);
        assert_eq!(l.unwrap().len(), 2);
        assert_eq!(rr.unwrap().len(), 8);
        assert_eq!(
            Range::parse("192.0.2.20-192.0.2.10"),
            Err(ParseError::Reversed)
        );
        assert_eq!(
            Range::parse("192.0.2.1-2001:db8::1"),
            Err(ParseError::MixedFamilies)
        );
    }

    #[test]
    fn ipv4_mapped_text_is_refused() {
        assert_eq!("::ffff:0:0/120".parse::<Cidr>(), Err(ParseError::Mapped));
        assert_eq!("::/0".parse::<Cidr>(), Err(ParseError::Mapped));
        assert_eq!(Range::parse("::ffff:1.2.3.4"), Err(ParseError::Mapped));
        assert_eq!(Range::parse("::1-::1:0:0:0"), Err(ParseError::Mapped));
    }

    #[test]
    fn slash_zero_does_not_overflow() {
        let all = Cidr::containing("::".parse().unwrap(), 0);
        assert_eq!(all.range().len(), u128::MAX);
        let v4: Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(v4.range().len(), 1u128 << 32);
    }
}
