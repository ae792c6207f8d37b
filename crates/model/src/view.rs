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

/// What one address of a block is, for its map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum CellState {
    Used,
    Reserved,
    Cooling,
    System,
    Free,
}

impl CellState {
    pub fn as_str(self) -> &'static str {
        match self {
            CellState::Used => "used",
            CellState::Reserved => "reserved",
            CellState::Cooling => "cooling",
            CellState::System => "system",
            CellState::Free => "free",
        }
    }
}

/// One cell of a block's map: one address, or (in blocks larger than
/// [`MAP_SINGLE_MAX`]) a run of them counted by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MapCell {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub first: IpAddr,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::IpAddress))]
    pub last: IpAddr,
    /// The address's state; for a run, the state most of it is in.
    pub state: CellState,
    /// Who or what holds a single address: `VM web1 (eth0)`, a
    /// reservation's note, the reason of an exclusion, the end of a
    /// cool-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub holder: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub used: u128,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub reserved: u128,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub cooling: u128,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub system: u128,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub free: u128,
}

impl MapCell {
    /// A run of `first..=last` with these counts, named by its largest.
    pub fn run(first: IpAddr, last: IpAddr, counts: [u128; 5]) -> MapCell {
        let states = [
            CellState::Used,
            CellState::Reserved,
            CellState::Cooling,
            CellState::System,
            CellState::Free,
        ];
        let mut state = CellState::Free;
        let mut most = 0;
        for (s, n) in states.into_iter().zip(counts) {
            if n > most {
                most = n;
                state = s;
            }
        }
        MapCell {
            first,
            last,
            state,
            holder: None,
            used: counts[0],
            reserved: counts[1],
            cooling: counts[2],
            system: counts[3],
            free: counts[4],
        }
    }
}

/// Blocks up to this many addresses (a /22) are mapped address by address.
pub const MAP_SINGLE_MAX: u128 = 1024;
/// Larger blocks are mapped in at most this many runs of equal size.
pub const MAP_RUNS: u128 = 256;

/// The map of one block: every address (up to a /22), or runs of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlockMap {
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub node: Option<String>,
    pub block: String,
    pub role: BlockRole,
    /// Addresses per cell (1: one cell per address).
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::AddressCount))]
    #[serde(with = "crate::serde_text::count")]
    pub cell_size: u128,
    pub cells: Vec<MapCell>,
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
