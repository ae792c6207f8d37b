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
    AgentStatus, Block, Cluster, ClusterInput, ClusterPatch, NetworkInput, NetworkPatch, NewToken,
    Node, NodeInput, NodePatch, Result, Timestamp, TokenInfo, TokenInput, Vm, VmInput,
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

/// Which addresses (or VMs) a listing covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct AddressFilter {
    pub cluster: Option<String>,
    pub node: Option<String>,
    /// Only reservations (address listings).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reserved: bool,
}

impl AddressFilter {
    pub fn cluster(name: &str) -> AddressFilter {
        AddressFilter {
            cluster: Some(name.to_string()),
            ..AddressFilter::default()
        }
    }

    pub fn node(name: &str) -> AddressFilter {
        AddressFilter {
            node: Some(name.to_string()),
            ..AddressFilter::default()
        }
    }
}

/// Items of a page when the caller does not say.
pub const DEFAULT_PAGE: usize = 1000;
/// The most items of one page: no answer is unbounded.
pub const MAX_PAGE: usize = 10_000;

/// Which page of a listing: the items after the cursor `after` (the
/// `next` of the previous page; none for the first), at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: Option<usize>,
}

impl PageRequest {
    /// The first page, of `limit` items.
    pub fn first(limit: usize) -> PageRequest {
        PageRequest {
            after: None,
            limit: Some(limit),
        }
    }

    /// The page after cursor `after`, as long as this one.
    pub fn next(&self, after: String) -> PageRequest {
        PageRequest {
            after: Some(after),
            limit: self.limit,
        }
    }

    /// The number of items asked for: the default when none, refused above
    /// [`MAX_PAGE`] or at 0.
    pub fn size(&self) -> Result<usize> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(n) => Err(vmfabric_model::Error::invalid(
                "limit",
                n,
                format!("a page holds 1 to {MAX_PAGE} items"),
            )),
        }
    }
}

/// One page of a listing, in the listing's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page (`after`); none when this is the last.
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The page of `items` fetched with one more than `size` asked for:
    /// the extra one only tells that there is a next page, whose cursor
    /// `cursor` makes from the last item kept.
    pub fn from_probe(mut items: Vec<T>, size: usize, cursor: impl Fn(&T) -> String) -> Page<T> {
        let more = items.len() > size;
        items.truncate(size);
        let next = if more { items.last().map(cursor) } else { None };
        Page { items, next }
    }
}

/// Every item of a paged listing, following the cursor: for tests and for
/// callers that need all of a bounded set (a cluster's nodes for its route
/// reflector's configuration).
pub async fn all_pages<T, F, Fut>(mut fetch: F) -> Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = Result<Page<T>>>,
{
    let mut out = Vec::new();
    let mut req = PageRequest::first(MAX_PAGE);
    loop {
        let page = fetch(req.clone()).await?;
        out.extend(page.items);
        match page.next {
            Some(n) => req = req.next(n),
            None => return Ok(out),
        }
    }
}

/// One entry of the change log: what changed, when, in which cluster, and
/// whose plans it may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Change {
    /// The revision of the commit that made it (several changes of one
    /// commit share it).
    pub revision: i64,
    /// Its place within the commit.
    pub seq: i64,
    pub at: Timestamp,
    /// What happened: `vm.create`, `vm.migrate`, `network.add`, ...
    pub kind: String,
    /// What it happened to: a VM, a node, an address, a block.
    pub subject: String,
    /// Who: a token (role, id and name), or `local` for the command line
    /// on the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Whose plans it may have changed.
    pub reach: Reach,
}

/// Where `reserve --next` takes an address from: exactly one of a cluster
/// (to-cluster types), a node (its ranges, or its cluster's pool) or a
/// network or node range; IPv4 unless `ipv6` (a network names its family).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct ReserveNext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A network (CIDR) or node range (A-B).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub ipv6: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What kind of block `add_node_block` adds to a routing node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum NodeBlockKind {
    /// An additional subnet routed to the node (CIDR; all addresses usable).
    Subnet,
    /// An explicit range (A-B).
    Range,
}

impl NodeBlockKind {
    /// The input field (and CLI flag) that names such a block.
    pub fn field(self) -> &'static str {
        match self {
            NodeBlockKind::Subnet => "subnet",
            NodeBlockKind::Range => "range",
        }
    }
}

/// Which changes of the log: all, newest first; with `since`, those after
/// that revision, oldest first (to follow the log); with `object`, those of
/// one VM, node, address or block only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct ChangeFilter {
    pub since: Option<i64>,
    pub object: Option<String>,
}

/// The nodes whose plans a change may have changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case", tag = "scope", content = "nodes")]
pub enum Reach {
    /// No node's plan.
    None,
    /// These nodes' plans.
    Nodes(Vec<String>),
    /// Every node of the change's cluster.
    Cluster,
}

/// A VM to create, in a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VmRequest {
    pub cluster: String,
    pub vm: VmInput,
    /// A client's key for this request: a retry with the same key returns
    /// the VM the first one created instead of allocating again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[!-~]{1,255}$"))]
    pub idempotency_key: Option<String>,
    /// Who asks (the change log's `actor`): set by the controller from the
    /// request's token, never taken from a client.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub actor: Option<String>,
    /// Whose keys `idempotency_key` is among (the controller sets the
    /// token's id): one client's key never answers another's request.
    #[serde(skip)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub idempotency_scope: Option<String>,
}

impl VmRequest {
    pub fn new(cluster: &str, vm: VmInput) -> VmRequest {
        VmRequest {
            cluster: cluster.to_string(),
            vm,
            idempotency_key: None,
            actor: None,
            idempotency_scope: None,
        }
    }

    /// The key as stored: the client's key within its scope.
    pub fn stored_key(&self) -> Option<String> {
        let key = self.idempotency_key.as_deref()?;
        Some(match &self.idempotency_scope {
            Some(scope) => format!("{scope}:{key}"),
            None => key.to_string(),
        })
    }
}

tokio::task_local! {
    /// Who makes the changes of the current task: the controller sets it
    /// for each request from its token (`acting_as`).
    static ACTOR: String;
}

/// Run `f` with its changes logged as made by `actor`.
pub async fn acting_as<F: std::future::Future>(actor: String, f: F) -> F::Output {
    ACTOR.scope(actor, f).await
}

/// Who makes the changes now: the token of the request the controller
/// serves, or `local` (the command line on the database itself).
pub fn actor() -> String {
    ACTOR
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "local".to_string())
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
    /// Clusters in name order.
    async fn clusters(&self, page: &PageRequest) -> Result<Page<ClusterSummary>>;
    async fn cluster(&self, name: &str) -> Result<ClusterSummary>;
    /// Delete a cluster that has no VMs and no reservations, with its
    /// networks and nodes.
    async fn delete_cluster(&self, name: &str) -> Result<Cluster>;
    /// One more address on a VM's NIC: `ip`, or the next by the cluster's
    /// rules (IPv6 with `ipv6`).
    async fn add_vm_address(&self, vm: &str, nic: u8, ipv6: bool, ip: Option<&str>) -> Result<Vm>;
    /// End a VM's claim on one of its addresses.
    async fn remove_vm_address(&self, vm: &str, ip: &str) -> Result<Vm>;
    /// One more NIC, with an IPv4 and/or IPv6 address by the cluster's rules.
    async fn add_nic(&self, vm: &str, ipv4: bool, ipv6: bool) -> Result<Vm>;
    /// Remove a NIC (not the first): refused while it holds addresses,
    /// unless `force`, which releases them first (recorded in history).
    async fn remove_nic(&self, vm: &str, index: u8, force: bool) -> Result<Vm>;
    /// Change a cluster's settings in place; every node gets the new plan.
    async fn update_cluster(&self, name: &str, patch: &ClusterPatch) -> Result<Cluster>;

    async fn add_network(&self, cluster: &str, input: &NetworkInput) -> Result<NetworkView>;
    /// Networks (pool blocks) in address order.
    async fn networks(
        &self,
        cluster: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NetworkView>>;
    /// Remove a network: refused while anything in it is held, unless
    /// `force`, which releases every holding first (recorded in history).
    async fn remove_network(&self, cluster: &str, cidr: &str, force: bool) -> Result<NetworkView>;
    /// Change a network's gateway or exclusions in place.
    async fn update_network(
        &self,
        cluster: &str,
        cidr: &str,
        patch: &NetworkPatch,
    ) -> Result<NetworkView>;

    async fn add_node(&self, cluster: &str, input: &NodeInput) -> Result<NodeView>;
    /// Nodes in name order.
    async fn nodes(&self, cluster: Option<&str>, page: &PageRequest) -> Result<Page<NodeView>>;
    async fn node(&self, name: &str) -> Result<NodeView>;
    /// Remove a node: refused while VMs run on it or its ranges hold
    /// reservations, unless `force`, which deletes those VMs and releases
    /// those reservations first (each recorded).
    async fn remove_node(&self, name: &str, force: bool) -> Result<NodeView>;
    /// Change a node's uplink, uplink MAC, bridge or NDP proxy mode.
    async fn update_node(&self, name: &str, patch: &NodePatch) -> Result<NodeView>;
    /// Give a routing node one more subnet or range (its VMs keep running).
    async fn add_node_block(&self, node: &str, kind: NodeBlockKind, text: &str)
    -> Result<NodeView>;
    /// Take a subnet or range from a routing node: refused while anything
    /// in it is held, unless `force` (every holding released, recorded).
    async fn remove_node_block(&self, node: &str, text: &str, force: bool) -> Result<NodeView>;
    /// Give a routing node its IPv6 /64 (`ADDR/64`, the node's own address,
    /// `::2` by convention), with the provider's router (default fe80::1).
    async fn add_node_ipv6(
        &self,
        node: &str,
        ipv6: &str,
        gateway: Option<&str>,
    ) -> Result<NodeView>;
    /// Take a routing node's IPv6 /64 (refused while held, unless `force`).
    async fn remove_node_ipv6(&self, node: &str, force: bool) -> Result<NodeView>;

    async fn create_vm(&self, cluster: &str, input: &VmInput) -> Result<Vm>;
    /// Create many VMs in one commit (group commit). Each request succeeds
    /// or fails on its own; a failed one leaves no trace.
    async fn create_vms(&self, requests: &[VmRequest]) -> Result<Vec<Result<Vm>>>;
    async fn vm(&self, name: &str) -> Result<Vm>;
    /// VMs in name order; of a cluster, node by node.
    async fn vms(&self, filter: &AddressFilter, page: &PageRequest) -> Result<Page<Vm>>;
    async fn migrate_vm(&self, name: &str, to: &str) -> Result<Vm>;
    /// Delete a VM and release its addresses; returns it as it was.
    async fn delete_vm(&self, name: &str) -> Result<Vm>;

    /// Addresses held now, in address order.
    async fn allocations(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Allocation>>;
    /// Free space per block in address order, at most `limit` ranges and
    /// released addresses each.
    async fn free_space(
        &self,
        filter: &AddressFilter,
        limit: usize,
        page: &PageRequest,
    ) -> Result<Page<FreeSpace>>;
    async fn reserve(&self, ip: &str, note: Option<&str>) -> Result<Allocation>;
    /// Reserve the next free address of a cluster's pool, a node's ranges
    /// or one network, by the rules and order of a VM allocation.
    async fn reserve_next(&self, r: &ReserveNext) -> Result<Allocation>;
    /// End whatever holds `ip` now: a reservation, or a VM's claim on it.
    async fn release(&self, ip: &str) -> Result<ReleaseResult>;
    /// Every holding of `ip`, oldest first; with `at`, only the one active then.
    async fn history(
        &self,
        ip: &str,
        at: Option<Timestamp>,
        page: &PageRequest,
    ) -> Result<Page<HistoryEntry>>;
    /// Usage per block, in address order.
    async fn usage(&self, cluster: Option<&str>, page: &PageRequest) -> Result<Page<Usage>>;
    /// The map of the block holding `ip`: each address up to a /22, runs
    /// of them above.
    async fn block_map(&self, ip: &str) -> Result<vmfabric_model::view::BlockMap>;

    /// Everything the plan of `node` depends on.
    async fn plan_input(&self, node: &str) -> Result<vmfabric_plan::PlanInput>;

    /// Verify every invariant of the stored state.
    async fn check(&self) -> Result<CheckReport>;

    /// A number that grows with every committed change (plans may differ
    /// after it moved; they cannot have changed while it did not).
    async fn revision(&self) -> Result<i64>;

    /// The change log: newest first, or after `since` oldest first.
    async fn changes(&self, filter: &ChangeFilter, page: &PageRequest) -> Result<Page<Change>>;

    /// The changes after the one numbered `after` (revision, seq), oldest
    /// first, at most `limit`: the controller wakes the agents whose plans
    /// they reach.
    async fn changes_after(&self, after: (i64, i64), limit: usize) -> Result<Vec<Change>>;

    /// Create an API token; the secret is returned once and not stored.
    async fn create_token(&self, input: &TokenInput) -> Result<NewToken>;
    /// Tokens by id.
    async fn tokens(&self, page: &PageRequest) -> Result<Page<TokenInfo>>;
    async fn revoke_token(&self, id: i64) -> Result<TokenInfo>;
    /// The token whose secret this is, if any (revoked ones included, so
    /// that the caller can say why it is refused).
    async fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>>;

    /// Forget the idempotency keys of VM creations before `before`; a
    /// retry with such a key creates anew. Returns how many.
    async fn forget_idempotency(&self, before: Timestamp) -> Result<u64>;

    /// Record what `node`'s agent reports (replacing its last report).
    async fn report_status(&self, node: &str, report: &serde_json::Value) -> Result<AgentStatus>;
    /// Agents' last reports, by node name.
    async fn agent_statuses(&self, page: &PageRequest) -> Result<Page<AgentStatus>>;
    /// The last report of `node`'s agent, if it ever reported.
    async fn agent_status(&self, node: &str) -> Result<Option<AgentStatus>>;
}

/// Whole listings, page after page: for tests, and for the few callers
/// that need every item of a set bounded by its nature (a cluster's nodes
/// for its reflectors' configuration, metrics over every block).
#[allow(async_fn_in_trait)]
pub trait ListAll: Store {
    async fn all_clusters(&self) -> Result<Vec<ClusterSummary>> {
        all_pages(|p| async move { self.clusters(&p).await }).await
    }
    async fn all_networks(&self, cluster: Option<&str>) -> Result<Vec<NetworkView>> {
        all_pages(|p| async move { self.networks(cluster, &p).await }).await
    }
    async fn all_nodes(&self, cluster: Option<&str>) -> Result<Vec<NodeView>> {
        all_pages(|p| async move { self.nodes(cluster, &p).await }).await
    }
    async fn all_vms(&self, filter: &AddressFilter) -> Result<Vec<Vm>> {
        all_pages(|p| async move { self.vms(filter, &p).await }).await
    }
    async fn all_allocations(&self, filter: &AddressFilter) -> Result<Vec<Allocation>> {
        all_pages(|p| async move { self.allocations(filter, &p).await }).await
    }
    async fn all_free_space(&self, filter: &AddressFilter, limit: usize) -> Result<Vec<FreeSpace>> {
        all_pages(|p| async move { self.free_space(filter, limit, &p).await }).await
    }
    async fn all_history(&self, ip: &str, at: Option<Timestamp>) -> Result<Vec<HistoryEntry>> {
        all_pages(|p| async move { self.history(ip, at, &p).await }).await
    }
    async fn all_usage(&self, cluster: Option<&str>) -> Result<Vec<Usage>> {
        all_pages(|p| async move { self.usage(cluster, &p).await }).await
    }
    async fn all_tokens(&self) -> Result<Vec<TokenInfo>> {
        all_pages(|p| async move { self.tokens(&p).await }).await
    }
    async fn all_agent_statuses(&self) -> Result<Vec<AgentStatus>> {
        all_pages(|p| async move { self.agent_statuses(&p).await }).await
    }
    async fn all_changes(&self, filter: &ChangeFilter) -> Result<Vec<Change>> {
        all_pages(|p| async move { self.changes(filter, &p).await }).await
    }
}

impl<S: Store + ?Sized> ListAll for S {}
