//! What the store reports back: listings, address holders, history and pool
//! usage. Plain data, serialisable, shared by the CLI and the API.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockRole};
use crate::cluster::Cluster;
use crate::names::Mac;
use crate::time::{Seconds, Timestamp};

/// A cluster with the number of things in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterSummary {
    #[serde(flatten)]
    pub cluster: Cluster,
    pub networks: u64,
    pub nodes: u64,
    pub vms: u64,
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "holder", rename_all = "kebab-case")]
pub enum Holder {
    /// NIC `nic` of a VM.
    Vm {
        vm: String,
        nic: u8,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(nullable = false))]
        mac: Option<Mac>,
    },
    /// Kept out of allocation by an operator.
    Reserved {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[cfg_attr(feature = "openapi", schema(nullable = false))]
        note: Option<String>,
    },
}

impl Holder {
    pub fn describe(&self) -> String {
        match self {
            Holder::Vm { vm, nic, .. } => format!("VM {vm} (NIC {nic})"),
            Holder::Reserved { note: Some(n) } => format!("a reservation ({n})"),
            Holder::Reserved { note: None } => "a reservation".to_string(),
        }
    }
}

/// An address that is held now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Allocation {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub address: IpAddr,
    #[serde(flatten)]
    pub holder: Holder,
    pub cluster: String,
    /// The node of the VM now (or of the block, for node ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub node: Option<String>,
    pub block: String,
    pub since: Timestamp,
}

/// One holding of an address, past or present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub address: IpAddr,
    #[serde(flatten)]
    pub holder: Holder,
    pub cluster: String,
    /// The node the VM ran on when the holding began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub node: Option<String>,
    pub since: Timestamp,
    /// When the holding ended; `None` while it lasts.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub until: Option<Timestamp>,
}

/// Free space of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreeSpace {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub node: Option<String>,
    pub block: String,
    /// Never-used free ranges, lowest first (possibly cut short, see `more`).
    pub ranges: Vec<FreeRange>,
    /// Released addresses, with the time each may be handed out again.
    pub released: Vec<Released>,
    /// Whether the listing was cut at the limit.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FreeRange {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub first: IpAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub last: IpAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub count: u128,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Released {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub address: IpAddr,
    pub usable_at: Timestamp,
}

/// Counts of one block by state; `total = system + used + reserved +
/// cooling + free`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub node: Option<String>,
    pub block: String,
    pub role: BlockRole,
    /// The block's address family: `IPv4` or `IPv6`.
    #[cfg_attr(feature = "openapi", schema(example = "IPv4"))]
    pub family: String,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub total: u128,
    /// Never handed out: network, broadcast, gateway, node addresses, exclusions.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub system: u128,
    /// Held by VMs.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub used: u128,
    /// Held by operator reservations.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub reserved: u128,
    /// Released, waiting for the cool-down.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub cooling: u128,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub free: u128,
}

/// A network of a cluster's pool, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkView {
    #[serde(flatten)]
    pub block: Block,
    pub exclusions: Vec<Exclusion>,
}

/// Addresses of a block never handed out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Exclusion {
    pub range: String,
    pub reason: String,
}

/// A result of `ip release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReleaseResult {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub address: IpAddr,
    #[serde(flatten)]
    pub holder: Holder,
    /// When automatic allocation may hand the address out again.
    pub usable_at: Timestamp,
    pub cooldown: Seconds,
}
