//! The domain of vmfabric: clusters of the three network types, their
//! networks and nodes, VMs and NICs, and the rules of the seed documents
//! that decide which address a VM gets. Pure: no I/O, no clock, no async.
//! Inputs arrive as text (`*Input`) and leave checked, so the CLI and the
//! API report the same errors for the same mistakes.

pub mod auth;
pub mod block;
pub mod cluster;
pub mod error;
pub mod guest;
pub mod names;
pub mod network;
pub mod node;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod serde_text;
pub mod time;
pub mod view;
pub mod vm;

pub use auth::{Access, AgentStatus, NewToken, Role, TokenInfo, TokenInput};
pub use block::{Block, BlockRole};
pub use cluster::{
    Assignment, Cluster, ClusterInput, ClusterPatch, Community, Fabric, NetworkType,
    RouteReflector, Virtualization,
};
pub use error::{Error, Result};
pub use guest::{Dns, GuestNetwork};
pub use names::{IfName, Mac};
pub use network::{NetworkInput, NetworkPatch, NetworkSpec};
pub use node::{NdpProxy, Node, NodeBlock, NodeInput, NodePatch};
pub use time::{Seconds, Timestamp};
pub use vm::{AddressRequest, Nic, NicAddress, NicInput, Vm, VmInput};
