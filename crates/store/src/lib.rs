//! Durable state of vmfabric behind one trait, [`Store`].
//!
//! Every method is one transaction: it happens completely or not at all.
//! Allocation happens inside the database (free space is kept as ranges in a
//! table, see `sql::alloc`), so no process holds state that another could
//! contradict, and the cost of an allocation does not depend on the size or
//! the fill of the pool. A partial UNIQUE index on active allocations makes
//! a duplicate address impossible even if this code were wrong.
//!
//! One SQL implementation serves SQLite (embedded default, one file, WAL with
//! `synchronous=FULL`) and PostgreSQL, through sqlx's `Any` driver: the only
//! differences are the migrations and row locking, both kept in `sql`.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vmfabric_model::view::{
    Allocation, ClusterSummary, FreeSpace, HistoryEntry, NetworkView, ReleaseResult, Usage,
};
use vmfabric_model::{
    AgentStatus, Block, Cluster, ClusterInput, NetworkInput, NewToken, Node, NodeInput, Result,
    Timestamp, TokenInfo, TokenInput, Vm, VmInput,
};

pub mod sql;

pub use sql::SqlStore;

/// Where the time comes from. Tests use a clock they can move.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Timestamp(us)
    }
}

/// A clock that only moves when told to (for tests of cool-down and history).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    pub fn new(start: Timestamp) -> Arc<ManualClock> {
        Arc::new(ManualClock(std::sync::atomic::AtomicI64::new(start.0)))
    }

    pub fn advance_secs(&self, s: i64) {
        self.0
            .fetch_add(s * 1_000_000, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A node with the blocks it brings and the number of VMs on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeView {
    #[serde(flatten)]
    pub node: Node,
    pub ranges: Vec<Block>,
    pub vms: u64,
}

/// Which addresses a listing covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AddressFilter {
    pub cluster: Option<String>,
    pub node: Option<String>,
}

/// A VM to create, in a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VmRequest {
    pub cluster: String,
    pub vm: VmInput,
    /// A client's key for this request: a retry with the same key returns
    /// the VM the first one created instead of allocating again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[!-~]{1,255}$"))]
    pub idempotency_key: Option<String>,
}

impl VmRequest {
    pub fn new(cluster: &str, vm: VmInput) -> VmRequest {
        VmRequest {
            cluster: cluster.to_string(),
            vm,
            idempotency_key: None,
        }
    }
}

/// What `check` found: every invariant that does not hold, in words.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckReport {
    pub blocks: u64,
    pub active_allocations: u64,
    pub vms: u64,
    pub problems: Vec<String>,
}

/// The durable state of an installation.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The time the store stamps on changes.
    fn now(&self) -> Timestamp;

    async fn create_cluster(&self, input: &ClusterInput) -> Result<Cluster>;
    async fn clusters(&self) -> Result<Vec<ClusterSummary>>;
    async fn cluster(&self, name: &str) -> Result<ClusterSummary>;
    /// Delete a cluster that has no VMs and no reservations, with its
    /// networks and nodes.
    async fn delete_cluster(&self, name: &str) -> Result<Cluster>;

    async fn add_network(&self, cluster: &str, input: &NetworkInput) -> Result<NetworkView>;
    async fn networks(&self, cluster: Option<&str>) -> Result<Vec<NetworkView>>;
    /// Remove a network that holds no allocations or reservations.
    async fn remove_network(&self, cluster: &str, cidr: &str) -> Result<NetworkView>;

    async fn add_node(&self, cluster: &str, input: &NodeInput) -> Result<NodeView>;
    async fn nodes(&self, cluster: Option<&str>) -> Result<Vec<NodeView>>;
    async fn node(&self, name: &str) -> Result<NodeView>;
    /// Remove a node that has no VMs and no reservations in its ranges.
    async fn remove_node(&self, name: &str) -> Result<NodeView>;

    async fn create_vm(&self, cluster: &str, input: &VmInput) -> Result<Vm>;
    /// Create many VMs in one commit (group commit). Each request succeeds
    /// or fails on its own; a failed one leaves no trace.
    async fn create_vms(&self, requests: &[VmRequest]) -> Result<Vec<Result<Vm>>>;
    async fn vm(&self, name: &str) -> Result<Vm>;
    async fn vms(&self, filter: &AddressFilter) -> Result<Vec<Vm>>;
    async fn migrate_vm(&self, name: &str, to: &str) -> Result<Vm>;
    /// Delete a VM and release its addresses; returns it as it was.
    async fn delete_vm(&self, name: &str) -> Result<Vm>;

    async fn allocations(&self, filter: &AddressFilter) -> Result<Vec<Allocation>>;
    /// Free space per block, at most `limit` ranges and released addresses each.
    async fn free_space(&self, filter: &AddressFilter, limit: usize) -> Result<Vec<FreeSpace>>;
    async fn reserve(&self, ip: &str, note: Option<&str>) -> Result<Allocation>;
    /// End whatever holds `ip` now: a reservation, or a VM's claim on it.
    async fn release(&self, ip: &str) -> Result<ReleaseResult>;
    /// Every holding of `ip`, oldest first; with `at`, only the one active then.
    async fn history(&self, ip: &str, at: Option<Timestamp>) -> Result<Vec<HistoryEntry>>;
    async fn usage(&self, cluster: Option<&str>) -> Result<Vec<Usage>>;

    /// Everything the plan of `node` depends on.
    async fn plan_input(&self, node: &str) -> Result<vmfabric_plan::PlanInput>;

    /// Verify every invariant of the stored state.
    async fn check(&self) -> Result<CheckReport>;

    /// A number that grows with every committed change (plans may differ
    /// after it moved; they cannot have changed while it did not).
    async fn revision(&self) -> Result<i64>;

    /// Create an API token; the secret is returned once and not stored.
    async fn create_token(&self, input: &TokenInput) -> Result<NewToken>;
    async fn tokens(&self) -> Result<Vec<TokenInfo>>;
    async fn revoke_token(&self, id: i64) -> Result<TokenInfo>;
    /// The token whose secret this is, if any (revoked ones included, so
    /// that the caller can say why it is refused).
    async fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>>;

    /// Forget the idempotency keys of VM creations before `before`; a
    /// retry with such a key creates anew. Returns how many.
    async fn forget_idempotency(&self, before: Timestamp) -> Result<u64>;

    /// Record what `node`'s agent reports (replacing its last report).
    async fn report_status(&self, node: &str, report: &serde_json::Value) -> Result<AgentStatus>;
    async fn agent_statuses(&self) -> Result<Vec<AgentStatus>>;
}
