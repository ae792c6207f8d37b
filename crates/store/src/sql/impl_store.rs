//! [`Store`] for [`SqlStore`]: each call is one transaction.

use async_trait::async_trait;
use vmfabric_model::view::{
    Allocation, ClusterSummary, FreeSpace, HistoryEntry, NetworkView, ReleaseResult, Usage,
};
use vmfabric_model::{
    AgentStatus, Cluster, ClusterInput, ClusterPatch, Error, NetworkInput, NetworkPatch, NewToken,
    NodeInput, NodePatch, Result, Timestamp, TokenInfo, TokenInput, Vm, VmInput,
};

use super::{Counters, SqlStore};
use crate::{
    AddressFilter, Change, ChangeFilter, CheckReport, NodeBlockKind, NodeView, Page, PageRequest,
    ReserveNext, Store, VmRequest,
};

/// Run `$body` in a write transaction with block counters, commit, return.
/// Any error drops the transaction, which rolls it back.
macro_rules! write {
    ($store:ident, |$tx:ident, $c:ident| $body:expr) => {{
        let mut tx = $store.begin().await?;
        let mut counters = Counters::default();
        let out = {
            let $tx = &mut tx;
            let $c = &mut counters;
            $body.await
        };
        match out {
            Ok(out) => {
                counters.flush(&mut tx).await?;
                tx.commit().await?;
                Ok(out)
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    }};
}

/// Run `$body` in a read transaction (one consistent snapshot).
macro_rules! read {
    ($store:ident, |$tx:ident| $body:expr) => {{
        let mut tx = $store.begin_read().await?;
        let out = {
            let $tx = &mut tx;
            $body.await
        };
        tx.rollback().await?;
        out
    }};
}

#[async_trait]
impl Store for SqlStore {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    async fn create_cluster(&self, input: &ClusterInput) -> Result<Cluster> {
        write!(self, |tx, _c| self.create_cluster_tx(tx, input))
    }

    async fn clusters(&self, page: &PageRequest) -> Result<Page<ClusterSummary>> {
        read!(self, |tx| self.clusters_tx(tx, page))
    }

    async fn cluster(&self, name: &str) -> Result<ClusterSummary> {
        read!(self, |tx| self.cluster_tx(tx, name))
    }

    async fn add_vm_address(&self, vm: &str, nic: u8, ipv6: bool, ip: Option<&str>) -> Result<Vm> {
        write!(self, |tx, c| self
            .add_vm_address_tx(tx, c, vm, nic, ipv6, ip))
    }

    async fn remove_vm_address(&self, vm: &str, ip: &str) -> Result<Vm> {
        write!(self, |tx, c| self.remove_vm_address_tx(tx, c, vm, ip))
    }

    async fn add_nic(&self, vm: &str, ipv4: bool, ipv6: bool) -> Result<Vm> {
        let with = super::vms::NewNicAddresses { ipv4, ipv6 };
        write!(self, |tx, c| self.add_nic_tx(tx, c, vm, with))
    }

    async fn remove_nic(&self, vm: &str, index: u8, force: bool) -> Result<Vm> {
        write!(self, |tx, c| self.remove_nic_tx(tx, c, vm, index, force))
    }

    async fn update_cluster(&self, name: &str, patch: &ClusterPatch) -> Result<Cluster> {
        write!(self, |tx, c| self.update_cluster_tx(tx, c, name, patch))
    }

    async fn delete_cluster(&self, name: &str) -> Result<Cluster> {
        write!(self, |tx, _c| self.delete_cluster_tx(tx, name))
    }

    async fn add_network(&self, cluster: &str, input: &NetworkInput) -> Result<NetworkView> {
        write!(self, |tx, _c| self.add_network_tx(tx, cluster, input))
    }

    async fn networks(
        &self,
        cluster: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NetworkView>> {
        read!(self, |tx| self.networks_tx(tx, cluster, page))
    }

    async fn update_network(
        &self,
        cluster: &str,
        cidr: &str,
        patch: &NetworkPatch,
    ) -> Result<NetworkView> {
        write!(self, |tx, c| self
            .update_network_tx(tx, c, cluster, cidr, patch))
    }

    async fn remove_network(&self, cluster: &str, cidr: &str, force: bool) -> Result<NetworkView> {
        write!(self, |tx, c| self
            .remove_network_tx(tx, c, cluster, cidr, force))
    }

    async fn add_node(&self, cluster: &str, input: &NodeInput) -> Result<NodeView> {
        write!(self, |tx, _c| self.add_node_tx(tx, cluster, input))
    }

    async fn nodes(&self, cluster: Option<&str>, page: &PageRequest) -> Result<Page<NodeView>> {
        read!(self, |tx| self.nodes_tx(tx, cluster, page))
    }

    async fn node(&self, name: &str) -> Result<NodeView> {
        read!(self, |tx| self.node_tx(tx, name))
    }

    async fn remove_node(&self, name: &str, force: bool) -> Result<NodeView> {
        write!(self, |tx, c| self.remove_node_tx(tx, c, name, force))
    }

    async fn create_vm(&self, cluster: &str, input: &VmInput) -> Result<Vm> {
        let request = [VmRequest::new(cluster, input.clone())];
        self.create_vms_batch(&request)
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::storage("no result for the VM")))
    }

    async fn create_vms(&self, requests: &[VmRequest]) -> Result<Vec<Result<Vm>>> {
        self.create_vms_batch(requests).await
    }

    async fn vm(&self, name: &str) -> Result<Vm> {
        read!(self, |tx| self.vm_tx(tx, name))
    }

    async fn vms(&self, filter: &AddressFilter, page: &PageRequest) -> Result<Page<Vm>> {
        read!(self, |tx| self.vms_tx(tx, filter, page))
    }

    async fn migrate_vm(&self, name: &str, to: &str) -> Result<Vm> {
        write!(self, |tx, _c| self.migrate_vm_tx(tx, name, to))
    }

    async fn delete_vm(&self, name: &str) -> Result<Vm> {
        write!(self, |tx, c| self.delete_vm_tx(tx, c, name))
    }

    async fn allocations(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Allocation>> {
        read!(self, |tx| self.allocations_tx(tx, filter, page))
    }

    async fn free_space(
        &self,
        filter: &AddressFilter,
        limit: usize,
        page: &PageRequest,
    ) -> Result<Page<FreeSpace>> {
        read!(self, |tx| self.free_space_tx(tx, filter, limit, page))
    }

    async fn reserve(&self, ip: &str, note: Option<&str>) -> Result<Allocation> {
        write!(self, |tx, c| self.reserve_tx(tx, c, ip, note))
    }

    async fn add_node_block(
        &self,
        node: &str,
        kind: NodeBlockKind,
        text: &str,
    ) -> Result<NodeView> {
        write!(self, |tx, _c| self.add_node_block_tx(tx, node, kind, text))
    }

    async fn add_node_ipv6(
        &self,
        node: &str,
        ipv6: &str,
        gateway: Option<&str>,
    ) -> Result<NodeView> {
        write!(self, |tx, _c| self
            .add_node_ipv6_tx(tx, node, ipv6, gateway))
    }

    async fn remove_node_ipv6(&self, node: &str, force: bool) -> Result<NodeView> {
        write!(self, |tx, c| self.remove_node_ipv6_tx(tx, c, node, force))
    }

    async fn update_node(&self, name: &str, patch: &NodePatch) -> Result<NodeView> {
        write!(self, |tx, _c| self.update_node_tx(tx, name, patch))
    }

    async fn remove_node_block(&self, node: &str, text: &str, force: bool) -> Result<NodeView> {
        write!(self, |tx, c| self
            .remove_node_block_tx(tx, c, node, text, force))
    }

    async fn reserve_next(&self, r: &ReserveNext) -> Result<Allocation> {
        write!(self, |tx, c| self.reserve_next_tx(tx, c, r))
    }

    async fn release(&self, ip: &str) -> Result<ReleaseResult> {
        write!(self, |tx, c| self.release_tx(tx, c, ip))
    }

    async fn history(
        &self,
        ip: &str,
        at: Option<Timestamp>,
        page: &PageRequest,
    ) -> Result<Page<HistoryEntry>> {
        read!(self, |tx| self.history_tx(tx, ip, at, page))
    }

    async fn usage(&self, cluster: Option<&str>, page: &PageRequest) -> Result<Page<Usage>> {
        read!(self, |tx| self.usage_tx(tx, cluster, page))
    }

    async fn block_map(&self, ip: &str) -> Result<vmfabric_model::view::BlockMap> {
        read!(self, |tx| self.block_map_tx(tx, ip))
    }

    async fn plan_input(&self, node: &str) -> Result<vmfabric_plan::PlanInput> {
        read!(self, |tx| self.plan_input_tx(tx, node))
    }

    async fn check(&self) -> Result<CheckReport> {
        read!(self, |tx| self.check_tx(tx))
    }

    async fn revision(&self) -> Result<i64> {
        self.revision_now().await
    }

    async fn changes(&self, filter: &ChangeFilter, page: &PageRequest) -> Result<Page<Change>> {
        self.changes_now(filter, page).await
    }

    async fn changes_after(&self, after: (i64, i64), limit: usize) -> Result<Vec<Change>> {
        self.changes_after_now(after, limit).await
    }

    async fn create_token(&self, input: &TokenInput) -> Result<NewToken> {
        self.create_token_now(input).await
    }

    async fn tokens(&self, page: &PageRequest) -> Result<Page<TokenInfo>> {
        self.tokens_now(page).await
    }

    async fn revoke_token(&self, id: i64) -> Result<TokenInfo> {
        self.revoke_token_now(id).await
    }

    async fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>> {
        self.authenticate_now(secret).await
    }

    async fn forget_idempotency(&self, before: Timestamp) -> Result<u64> {
        self.forget_idempotency_now(before).await
    }

    async fn report_status(&self, node: &str, report: &serde_json::Value) -> Result<AgentStatus> {
        self.report_status_now(node, report).await
    }

    async fn agent_statuses(&self, page: &PageRequest) -> Result<Page<AgentStatus>> {
        self.agent_statuses_now(page).await
    }

    async fn agent_status(&self, node: &str) -> Result<Option<AgentStatus>> {
        self.agent_status_now(node).await
    }
}
