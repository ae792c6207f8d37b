//! The controller's REST API as a [`Store`]: the CLI with `--server` runs
//! the very same commands over it as over a local database, and the agent
//! long-polls its plan through it. Problem documents come back as the same
//! [`Error`] the store would have returned, so output and exit codes match.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use vmfabric_model::view::{
    Allocation, ClusterSummary, FreeSpace, HistoryEntry, NetworkView, ReleaseResult, Usage,
};
use vmfabric_model::{
    AgentStatus, Cluster, ClusterInput, ClusterPatch, Error, NetworkInput, NetworkPatch, NewToken,
    NodeInput, NodePatch, Result, Timestamp, TokenInfo, TokenInput, Vm, VmInput,
};
use vmfabric_plan::PlanInput;
use vmfabric_store::{
    AddressFilter, Change, ChangeFilter, CheckReport, Clock, NodeBlockKind, NodeView, Page,
    PageRequest, ReserveNext, Store, SystemClock, VmRequest,
};

/// A node's plan as the controller sends it to agents.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PlanResponse {
    pub revision: i64,
    pub hash: String,
    pub plan: vmfabric_plan::NodePlan,
}

/// Choose the process's TLS crypto (ring) once, before any client is built.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A connection to a controller.
#[derive(Debug, Clone)]
pub struct RemoteStore {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Percent-encode one path segment or query value.
/// The `force=true` query parameter, after `sep`, when asked for.
fn forced(force: bool, sep: char) -> String {
    if force {
        format!("{sep}force=true")
    } else {
        String::new()
    }
}

fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// The query string of a listing: its filters and its page.
fn list_query(f: &AddressFilter, page: &PageRequest) -> String {
    let mut q = Vec::new();
    if let Some(c) = &f.cluster {
        q.push(format!("cluster={}", enc(c)));
    }
    if let Some(n) = &f.node {
        q.push(format!("node={}", enc(n)));
    }
    if f.reserved {
        q.push("reserved=true".to_string());
    }
    if let Some(a) = &page.after {
        q.push(format!("after={}", enc(a)));
    }
    if let Some(l) = page.limit {
        q.push(format!("limit={l}"));
    }
    q.join("&")
}

fn cluster_filter(cluster: Option<&str>) -> AddressFilter {
    AddressFilter {
        cluster: cluster.map(String::from),
        ..AddressFilter::default()
    }
}

impl RemoteStore {
    /// A client of the controller at `url` (http:// or https://), with
    /// `token`. `ca` adds a CA certificate (PEM) to trust, for controllers
    /// with a certificate of the operator's own CA.
    pub fn new(url: &str, token: &str, ca: Option<&Path>) -> Result<RemoteStore> {
        let url = url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::invalid(
                "server",
                url,
                "the controller's URL starts with http:// or https://",
            ));
        }
        if token.trim().is_empty() {
            return Err(Error::invalid(
                "token",
                "",
                "--server needs --token (or $VMFABRIC_TOKEN): vmfabric token create",
            ));
        }
        install_crypto();
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(ca) = ca {
            let pem = std::fs::read(ca).map_err(|e| {
                Error::invalid("ca-cert", ca.display(), format!("cannot read: {e}"))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                Error::invalid(
                    "ca-cert",
                    ca.display(),
                    format!("not a PEM certificate: {e}"),
                )
            })?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| Error::storage(format!("cannot set up HTTP: {e}")))?;
        Ok(RemoteStore {
            http,
            base: format!("{url}/api/v1"),
            token: token.trim().to_string(),
        })
    }

    async fn call<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, String)],
    ) -> Result<T> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            Error::unavailable(format!(
                "cannot reach the controller at {url}: {}",
                chain(&e)
            ))
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Error::unavailable(format!("the controller's answer broke off: {e}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::storage(format!("the controller's answer is not what this client expects (versions differ?): {e}"))
            });
        }
        Err(problem(status, &bytes))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::GET, path, None, &[]).await
    }

    async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T> {
        self.call(Method::PATCH, path, Some(body), &[]).await
    }

    async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call::<(), T>(Method::DELETE, path, None, &[]).await
    }

    /// Create a VM with an idempotency key: a retry with the same key gets
    /// the same VM.
    pub async fn create_vm_idempotent(&self, cluster: &str, vm: &VmInput, key: &str) -> Result<Vm> {
        self.call(
            Method::POST,
            &format!("/clusters/{}/vms", enc(cluster)),
            Some(vm),
            &[("Idempotency-Key", key.to_string())],
        )
        .await
    }

    /// The node's plan; with `have` (the hash of the plan the caller has),
    /// waits up to `wait` for a different one.
    pub async fn plan(
        &self,
        node: &str,
        have: Option<&str>,
        wait: Duration,
    ) -> Result<PlanResponse> {
        let mut path = format!("/nodes/{}/plan?wait={}", enc(node), wait.as_secs());
        if let Some(h) = have {
            path.push_str(&format!("&have={}", enc(h)));
        }
        self.get(&path).await
    }

    /// A rendered file of the node's plan (`frr`, `nft`, `ndppd`, …).
    pub async fn plan_file(&self, node: &str, format: &str) -> Result<vmfabric_plan::files::File> {
        self.get(&format!("/nodes/{}/plan/{}", enc(node), enc(format)))
            .await
    }
}

/// An error with its causes (reqwest's own message leaves out why, e.g.
/// which certificate check failed).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// The error a problem document describes.
fn problem(status: StatusCode, bytes: &[u8]) -> Error {
    if let Ok(e) = serde_json::from_slice::<Error>(bytes) {
        return e;
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
    match status {
        StatusCode::UNAUTHORIZED => Error::Unauthenticated { detail: text },
        StatusCode::FORBIDDEN => Error::Forbidden { detail: text },
        _ => Error::storage(format!("the controller answered {status}: {text}")),
    }
}

#[derive(serde::Deserialize)]
struct Revision {
    revision: i64,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum BatchResult {
    Vm(Vm),
    Problem(serde_json::Value),
}

#[async_trait]
impl Store for RemoteStore {
    fn now(&self) -> Timestamp {
        SystemClock.now()
    }

    async fn create_cluster(&self, input: &ClusterInput) -> Result<Cluster> {
        self.post("/clusters", input).await
    }
    async fn clusters(&self, page: &PageRequest) -> Result<Page<ClusterSummary>> {
        self.get(&format!(
            "/clusters?{}",
            list_query(&AddressFilter::default(), page)
        ))
        .await
    }
    async fn cluster(&self, name: &str) -> Result<ClusterSummary> {
        self.get(&format!("/clusters/{}", enc(name))).await
    }
    async fn update_cluster(&self, name: &str, patch: &ClusterPatch) -> Result<Cluster> {
        self.patch(&format!("/clusters/{}", enc(name)), patch).await
    }

    async fn delete_cluster(&self, name: &str) -> Result<Cluster> {
        self.delete(&format!("/clusters/{}", enc(name))).await
    }

    async fn add_network(&self, cluster: &str, input: &NetworkInput) -> Result<NetworkView> {
        self.post(&format!("/clusters/{}/networks", enc(cluster)), input)
            .await
    }
    async fn networks(
        &self,
        cluster: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<NetworkView>> {
        self.get(&format!(
            "/networks?{}",
            list_query(&cluster_filter(cluster), page)
        ))
        .await
    }
    async fn update_network(
        &self,
        cluster: &str,
        cidr: &str,
        patch: &NetworkPatch,
    ) -> Result<NetworkView> {
        self.patch(
            &format!("/clusters/{}/networks?cidr={}", enc(cluster), enc(cidr)),
            patch,
        )
        .await
    }

    async fn remove_network(&self, cluster: &str, cidr: &str, force: bool) -> Result<NetworkView> {
        self.delete(&format!(
            "/clusters/{}/networks?cidr={}{}",
            enc(cluster),
            enc(cidr),
            if force { "&force=true" } else { "" }
        ))
        .await
    }

    async fn add_node(&self, cluster: &str, input: &NodeInput) -> Result<NodeView> {
        self.post(&format!("/clusters/{}/nodes", enc(cluster)), input)
            .await
    }
    async fn nodes(&self, cluster: Option<&str>, page: &PageRequest) -> Result<Page<NodeView>> {
        self.get(&format!(
            "/nodes?{}",
            list_query(&cluster_filter(cluster), page)
        ))
        .await
    }
    async fn node(&self, name: &str) -> Result<NodeView> {
        self.get(&format!("/nodes/{}", enc(name))).await
    }
    async fn remove_node(&self, name: &str, force: bool) -> Result<NodeView> {
        self.delete(&format!("/nodes/{}{}", enc(name), forced(force, '?')))
            .await
    }

    async fn add_node_block(
        &self,
        node: &str,
        kind: NodeBlockKind,
        text: &str,
    ) -> Result<NodeView> {
        self.post(
            &format!("/nodes/{}/blocks", enc(node)),
            &serde_json::json!({ "kind": kind, "block": text }),
        )
        .await
    }

    async fn add_node_ipv6(
        &self,
        node: &str,
        ipv6: &str,
        gateway: Option<&str>,
    ) -> Result<NodeView> {
        self.post(
            &format!("/nodes/{}/ipv6", enc(node)),
            &serde_json::json!({ "ipv6": ipv6, "gateway": gateway }),
        )
        .await
    }

    async fn remove_node_ipv6(&self, node: &str, force: bool) -> Result<NodeView> {
        self.delete(&format!("/nodes/{}/ipv6{}", enc(node), forced(force, '?')))
            .await
    }

    async fn update_node(&self, name: &str, patch: &NodePatch) -> Result<NodeView> {
        self.patch(&format!("/nodes/{}", enc(name)), patch).await
    }

    async fn remove_node_block(&self, node: &str, text: &str, force: bool) -> Result<NodeView> {
        self.delete(&format!(
            "/nodes/{}/blocks?block={}{}",
            enc(node),
            enc(text),
            forced(force, '&')
        ))
        .await
    }

    async fn create_vm(&self, cluster: &str, input: &VmInput) -> Result<Vm> {
        self.post(&format!("/clusters/{}/vms", enc(cluster)), input)
            .await
    }
    async fn create_vms(&self, requests: &[VmRequest]) -> Result<Vec<Result<Vm>>> {
        let got: Vec<BatchResult> = self.post("/vms/batch", requests).await?;
        Ok(got
            .into_iter()
            .map(|r| match r {
                BatchResult::Vm(vm) => Ok(vm),
                BatchResult::Problem(p) => Err(serde_json::from_value::<Error>(p.clone())
                    .unwrap_or_else(|_| Error::storage(p.to_string()))),
            })
            .collect())
    }
    async fn vm(&self, name: &str) -> Result<Vm> {
        self.get(&format!("/vms/{}", enc(name))).await
    }
    async fn vms(&self, filter: &AddressFilter, page: &PageRequest) -> Result<Page<Vm>> {
        self.get(&format!("/vms?{}", list_query(filter, page)))
            .await
    }
    async fn migrate_vm(&self, name: &str, to: &str) -> Result<Vm> {
        self.post(
            &format!("/vms/{}/migrate", enc(name)),
            &serde_json::json!({ "to": to }),
        )
        .await
    }
    async fn add_vm_address(&self, vm: &str, nic: u8, ipv6: bool, ip: Option<&str>) -> Result<Vm> {
        self.post(
            &format!("/vms/{}/addresses", enc(vm)),
            &serde_json::json!({ "nic": nic, "ipv6": ipv6, "ip": ip }),
        )
        .await
    }

    async fn remove_vm_address(&self, vm: &str, ip: &str) -> Result<Vm> {
        self.delete(&format!("/vms/{}/addresses/{}", enc(vm), enc(ip)))
            .await
    }

    async fn add_nic(&self, vm: &str, ipv4: bool, ipv6: bool) -> Result<Vm> {
        self.post(
            &format!("/vms/{}/nics", enc(vm)),
            &serde_json::json!({ "ipv4": ipv4, "ipv6": ipv6 }),
        )
        .await
    }

    async fn remove_nic(&self, vm: &str, index: u8, force: bool) -> Result<Vm> {
        self.delete(&format!(
            "/vms/{}/nics/{index}{}",
            enc(vm),
            forced(force, '?')
        ))
        .await
    }

    async fn delete_vm(&self, name: &str) -> Result<Vm> {
        self.delete(&format!("/vms/{}", enc(name))).await
    }

    async fn allocations(
        &self,
        filter: &AddressFilter,
        page: &PageRequest,
    ) -> Result<Page<Allocation>> {
        self.get(&format!("/addresses?{}", list_query(filter, page)))
            .await
    }
    async fn free_space(
        &self,
        filter: &AddressFilter,
        limit: usize,
        page: &PageRequest,
    ) -> Result<Page<FreeSpace>> {
        self.get(&format!(
            "/addresses/free?{}&ranges={limit}",
            list_query(filter, page)
        ))
        .await
    }
    async fn reserve(&self, ip: &str, note: Option<&str>) -> Result<Allocation> {
        self.post(
            "/addresses/reservations",
            &serde_json::json!({ "ip": ip, "note": note }),
        )
        .await
    }
    async fn reserve_next(&self, r: &ReserveNext) -> Result<Allocation> {
        self.post("/addresses/reservations", r).await
    }
    async fn release(&self, ip: &str) -> Result<ReleaseResult> {
        self.post("/addresses/release", &serde_json::json!({ "ip": ip }))
            .await
    }
    async fn history(
        &self,
        ip: &str,
        at: Option<Timestamp>,
        page: &PageRequest,
    ) -> Result<Page<HistoryEntry>> {
        let mut path = format!(
            "/addresses/{}/history?{}",
            enc(ip),
            list_query(&AddressFilter::default(), page)
        );
        if let Some(at) = at {
            path.push_str(&format!("&at={}", at.0));
        }
        self.get(&path).await
    }
    async fn usage(&self, cluster: Option<&str>, page: &PageRequest) -> Result<Page<Usage>> {
        self.get(&format!(
            "/usage?{}",
            list_query(&cluster_filter(cluster), page)
        ))
        .await
    }

    async fn block_map(&self, ip: &str) -> Result<vmfabric_model::view::BlockMap> {
        self.get(&format!("/blocks/{}/map", enc(ip))).await
    }

    async fn plan_input(&self, node: &str) -> Result<PlanInput> {
        self.get(&format!("/nodes/{}/plan-input", enc(node))).await
    }

    async fn check(&self) -> Result<CheckReport> {
        self.get("/check").await
    }

    async fn revision(&self) -> Result<i64> {
        Ok(self.get::<Revision>("/revision").await?.revision)
    }

    async fn changes(&self, filter: &ChangeFilter, page: &PageRequest) -> Result<Page<Change>> {
        let mut q = list_query(&AddressFilter::default(), page);
        if let Some(since) = filter.since {
            q.push_str(&format!("&since={since}"));
        }
        if let Some(o) = &filter.object {
            q.push_str(&format!("&object={}", enc(o)));
        }
        self.get(&format!("/changes?{q}")).await
    }

    async fn changes_after(&self, _after: (i64, i64), _limit: usize) -> Result<Vec<Change>> {
        Err(Error::Forbidden {
            detail:
                "the change log is followed by the controller itself; read it with `vmfabric log`"
                    .into(),
        })
    }

    async fn create_token(&self, input: &TokenInput) -> Result<NewToken> {
        self.post("/tokens", input).await
    }
    async fn tokens(&self, page: &PageRequest) -> Result<Page<TokenInfo>> {
        self.get(&format!(
            "/tokens?{}",
            list_query(&AddressFilter::default(), page)
        ))
        .await
    }
    async fn revoke_token(&self, id: i64) -> Result<TokenInfo> {
        self.delete(&format!("/tokens/{id}")).await
    }
    async fn authenticate(&self, _secret: &str) -> Result<Option<TokenInfo>> {
        Err(Error::Forbidden {
            detail: "tokens are checked by the controller itself".into(),
        })
    }

    async fn forget_idempotency(&self, _before: Timestamp) -> Result<u64> {
        Err(Error::Forbidden {
            detail: "idempotency keys expire on the controller itself".into(),
        })
    }

    async fn report_status(&self, node: &str, report: &serde_json::Value) -> Result<AgentStatus> {
        self.post(&format!("/nodes/{}/status", enc(node)), report)
            .await
    }
    async fn agent_status(&self, node: &str) -> Result<Option<AgentStatus>> {
        self.get(&format!("/nodes/{}/status", enc(node))).await
    }

    async fn agent_statuses(&self, page: &PageRequest) -> Result<Page<AgentStatus>> {
        self.get(&format!(
            "/agents?{}",
            list_query(&AddressFilter::default(), page)
        ))
        .await
    }
}
