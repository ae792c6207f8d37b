//! OpenAPI 3.1 schemas (utoipa) of the values that travel as text or as
//! big numbers in JSON. The structs and enums of the API derive
//! `utoipa::ToSchema` next to their serde derives; what serde writes in a
//! form of its own is described here by hand, so the schema says what the
//! wire carries, not what the Rust type looks like:
//!
//! - this crate's text types (`Timestamp`, `Seconds`, `IfName`, `Mac`,
//!   `Community`), which serialize through `Display`;
//! - types of other crates, through the marker types below, named in
//!   `#[schema(value_type = ...)]` on the fields that hold them.

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::cluster::Community;
use crate::names::{IfName, Mac};
use crate::time::{Seconds, Timestamp};

/// A string schema with a description, examples and optional constraints.
fn text(
    description: &str,
    format: Option<KnownFormat>,
    pattern: Option<&str>,
    examples: &[&str],
) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format.map(SchemaFormat::KnownFormat))
        .pattern(pattern)
        .description(Some(description))
        .examples(examples.iter().map(|e| json!(e)))
}

/// `ToSchema` for a type whose schema is `$schema` (an `ObjectBuilder`),
/// named `$name` in `components/schemas`.
macro_rules! schema {
    ($t:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $t {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::from($schema.build()))
            }
        }
        impl ToSchema for $t {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

schema!(
    Timestamp,
    "Timestamp",
    text(
        "A point in time: RFC 3339 in UTC with microseconds, as written by the API. Requests may also give an offset (+02:00), fewer digits, \"2026-05-03 14:00\" or \"2026-05-03\" (read as UTC).",
        Some(KnownFormat::DateTime),
        None,
        &["2026-05-03T14:00:00.000000Z"],
    )
);

schema!(
    Seconds,
    "Seconds",
    text(
        "A duration in whole seconds, written with its largest exact unit s, m, h or d (0s, 90s, 15m, 1h, 7d); a number without a unit is read as seconds. At most 10 years.",
        None,
        Some("^[0-9]+[smhd]?$"),
        &["0s", "15m", "1h", "7d"],
    )
);

schema!(
    IfName,
    "IfName",
    text(
        "A Linux interface name: 1 to 15 bytes from A-Z a-z 0-9 _ . - (IFNAMSIZ), not . or ..",
        None,
        Some("^[A-Za-z0-9_.-]{1,15}$"),
        &["vmbr0", "vm12_net0"],
    )
    .min_length(Some(1))
    .max_length(Some(15))
);

schema!(
    Mac,
    "Mac",
    text(
        "A MAC address: six hex octets separated by colons, written in lower case.",
        None,
        Some("^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"),
        &["aa:95:73:2e:30:5f"],
    )
);

schema!(
    Community,
    "Community",
    text(
        "A standard BGP community ASN:VALUE (RFC 1997), both parts whole numbers from 0 to 65535.",
        None,
        Some("^[0-9]{1,5}:[0-9]{1,5}$"),
        &["65000:100"],
    )
);

/// Schema of `std::net::IpAddr`: an IPv4 or IPv6 address as text.
#[derive(Debug, Clone, Copy)]
pub enum IpAddress {}

schema!(
    IpAddress,
    "IpAddress",
    text(
        "An IPv4 address in dotted-quad form or an IPv6 address in RFC 5952 form.",
        None,
        None,
        &["192.0.2.10", "2001:db8::10"],
    )
);

/// Schema of `std::net::Ipv4Addr`.
#[derive(Debug, Clone, Copy)]
pub enum Ipv4Address {}

schema!(
    Ipv4Address,
    "Ipv4Address",
    text(
        "An IPv4 address.",
        Some(KnownFormat::Ipv4),
        None,
        &["10.0.0.1"]
    )
);

/// Schema of `std::net::Ipv6Addr`.
#[derive(Debug, Clone, Copy)]
pub enum Ipv6Address {}

schema!(
    Ipv6Address,
    "Ipv6Address",
    text(
        "An IPv6 address.",
        Some(KnownFormat::Ipv6),
        None,
        &["fe80::1"]
    )
);

/// Schema of `vmfabric_ipam::Cidr` as written by `serde_text`.
#[derive(Debug, Clone, Copy)]
pub enum CidrText {}

schema!(
    CidrText,
    "Cidr",
    text(
        "A block in CIDR notation ADDRESS/PREFIX, without host bits.",
        None,
        None,
        &["192.0.2.0/27", "2a01:4f8:13b:9a7::/64"],
    )
);

/// Schema of `vmfabric_ipam::Range` as written by `serde_text`.
#[derive(Debug, Clone, Copy)]
pub enum RangeText {}

schema!(
    RangeText,
    "AddressRange",
    text(
        "An inclusive range of addresses FIRST-LAST, or a single ADDRESS when first and last are equal.",
        None,
        None,
        &["203.0.113.40-203.0.113.44", "192.0.2.7"],
    )
);

/// Schema of `vmfabric_ipam::Reuse` as written by the cluster's `reuse` field.
#[derive(Debug, Clone, Copy)]
pub enum ReuseOrder {}

schema!(
    ReuseOrder,
    "ReuseOrder",
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["last", "first-free"]))
        .description(Some(
            "Which free address automatic allocation takes: last (never-used addresses first, then the least recently released) or first-free (the lowest free address).",
        ))
);

/// Schema of a `u128` address count: a JSON number (serde_json's
/// arbitrary precision), not a string.
#[derive(Debug, Clone, Copy)]
pub enum AddressCount {}

schema!(
    AddressCount,
    "AddressCount",
    utoipa::openapi::OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .minimum(Some(0))
                .maximum(Some(9_007_199_254_740_991_i64))
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[0-9]+$"))
        )
        .description(Some(
            "A number of addresses (an IPv6 /48 has 2^80): a JSON number up to 2^53 - 1, the largest integer JavaScript and jq hold exactly, and a decimal string above it.",
        ))
        .examples([json!(8), json!("18446744073709551616")])
);
