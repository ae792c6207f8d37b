//! The routes of `/api/v1`: one store call each, behind the role it needs.
//! Bodies and queries are parsed here (not by extractors) so that every
//! malformed request gets a problem document naming what was wrong.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vmfabric_model::{
    Access, ClusterInput, ClusterPatch, Error, NetworkInput, NetworkPatch, NodeInput, NodePatch,
    Timestamp, TokenInfo, TokenInput, VmInput,
};
use vmfabric_plan::{NodePlan, build, files};
use vmfabric_store::{
    AddressFilter, Change, ChangeFilter, ListAll, NodeBlockKind, Page, PageRequest, ReserveNext,
    VmRequest,
};

use utoipa::ToSchema;
use vmfabric_model::view::{
    Allocation, BlockMap, ClusterSummary, FreeSpace, HistoryEntry, NetworkView, ReleaseResult,
    Usage,
};
use vmfabric_model::{AgentStatus, Cluster, NewToken, Vm};
use vmfabric_store::{CheckReport, NodeView};

use crate::Ctl;
use crate::auth::require;
use crate::problem::{ApiResult, Problem};

pub fn routes() -> Router<Ctl> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/revision", get(revision))
        .route("/api/v1/changes", get(changes))
        .route("/api/v1/clusters", get(clusters).post(create_cluster))
        .route(
            "/api/v1/clusters/{name}",
            get(cluster).patch(update_cluster).delete(delete_cluster),
        )
        .route("/api/v1/clusters/{name}/rr-config", get(rr_config))
        .route(
            "/api/v1/clusters/{name}/networks",
            post(add_network)
                .patch(update_network)
                .delete(remove_network),
        )
        .route("/api/v1/clusters/{name}/nodes", post(add_node))
        .route("/api/v1/clusters/{name}/vms", post(create_vm))
        .route("/api/v1/networks", get(networks))
        .route("/api/v1/nodes", get(nodes))
        .route(
            "/api/v1/nodes/{name}",
            get(node).patch(update_node).delete(remove_node),
        )
        .route(
            "/api/v1/nodes/{name}/blocks",
            post(add_node_block).delete(remove_node_block),
        )
        .route(
            "/api/v1/nodes/{name}/ipv6",
            post(add_node_ipv6).delete(remove_node_ipv6),
        )
        .route("/api/v1/nodes/{name}/plan", get(plan))
        .route("/api/v1/nodes/{name}/plan/{format}", get(plan_file))
        .route("/api/v1/nodes/{name}/plan-input", get(plan_input))
        .route(
            "/api/v1/nodes/{name}/status",
            get(agent_status).post(report_status),
        )
        .route("/api/v1/agents", get(agents))
        .route("/api/v1/vms", get(vms))
        .route("/api/v1/vms/batch", post(create_vms))
        .route("/api/v1/vms/{name}", get(vm).delete(delete_vm))
        .route("/api/v1/vms/{name}/migrate", post(migrate_vm))
        .route("/api/v1/vms/{name}/nics", post(add_nic))
        .route("/api/v1/vms/{name}/nics/{index}", delete(remove_nic))
        .route("/api/v1/vms/{name}/addresses", post(add_vm_address))
        .route(
            "/api/v1/vms/{name}/addresses/{ip}",
            delete(remove_vm_address),
        )
        .route("/api/v1/vms/{name}/guest-config", get(guest_config))
        .route("/api/v1/addresses", get(addresses))
        .route("/api/v1/addresses/free", get(free_space))
        .route("/api/v1/addresses/reservations", post(reserve))
        .route("/api/v1/addresses/release", post(release))
        .route("/api/v1/addresses/{ip}/history", get(history))
        .route("/api/v1/usage", get(usage))
        .route("/api/v1/blocks/{ip}/map", get(block_map))
        .route("/api/v1/check", get(check))
        .route("/api/v1/tokens", get(tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
        .route("/metrics", get(metrics))
}

/// A JSON body, or 422 naming what is wrong with it.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        if let Some(p) = unknown_field(&e.to_string(), "field") {
            return p;
        }
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        Problem(Error::invalid(
            "body",
            shown,
            format!("not the JSON this call takes: {e}"),
        ))
    })
}

/// A misspelt field or parameter, named as such: ignored, it would have
/// made something with defaults the client did not ask for.
fn unknown_field(serde_error: &str, what: &str) -> Option<Problem> {
    let rest = serde_error.strip_prefix("unknown field `")?;
    let (field, expected) = rest.split_once('`')?;
    let expected = expected
        .trim_start_matches(", ")
        .split(" at line")
        .next()
        .unwrap_or_default();
    Some(Problem(Error::invalid(
        field,
        field,
        format!("this call takes no {what} {field:?}; {expected}"),
    )))
}

/// The query string, or 422. A parameter with an empty value (`?at=`) is
/// one not given, as HTML forms and many clients send them.
fn query<T: DeserializeOwned + Default>(q: &Option<String>) -> Result<T, Problem> {
    let given: String = q
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty() && !kv.ends_with('='))
        .collect::<Vec<_>>()
        .join("&");
    match given.as_str() {
        "" => Ok(T::default()),
        q => serde_urlencoded::from_str(q).map_err(|e| {
            if let Some(p) = unknown_field(&e.to_string(), "parameter") {
                return p;
            }
            Problem(Error::invalid(
                "query",
                q,
                format!("not the parameters this call takes: {e}"),
            ))
        }),
    }
}

type Tok = Extension<TokenInfo>;

/// Formats of `cluster rr-config` (default frr).
#[derive(Debug, ToSchema)]
#[schema(as = RrFormat)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub enum RrFormatDoc {
    Frr,
    Bird,
}

/// Formats of a node's rendered plan.
#[derive(Debug, ToSchema)]
#[schema(as = PlanFormat)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub enum PlanFormatDoc {
    Json,
    Summary,
    Frr,
    Nft,
    Ndppd,
}

/// Formats of a VM's guest configuration (default cloud-init).
#[derive(Debug, ToSchema)]
#[schema(as = GuestFormat)]
#[allow(dead_code)]
#[serde(rename_all = "kebab-case")]
pub enum GuestFormatDoc {
    CloudInit,
    Libvirt,
    LibvirtDomain,
    Lxd,
}

/// A rendered file (`plan::files::File`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = File)]
pub struct FileDoc {
    pub format: String,
    pub text: String,
}

fn created<T: Serialize>(v: T) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", description = "This document.",  responses((status = 200, body = Object)))]
async fn openapi(Extension(t): Tok) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    Ok(Json(crate::openapi::document()).into_response())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revision {
    pub revision: i64,
}

#[utoipa::path(get, path = "/api/v1/revision", tag = "meta", description = "The store's revision: grows with every committed change.",  responses((status = 200, body = Revision)))]
async fn revision(State(c): State<Ctl>, Extension(t): Tok) -> ApiResult<Json<Revision>> {
    require(&t, Access::Read)?;
    Ok(Json(Revision {
        revision: c.store.revision().await?,
    }))
}

// --- clusters, networks, nodes (admin writes) ---

#[utoipa::path(get, path = "/api/v1/clusters", tag = "clusters", description = "List clusters, by name.", params(("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<ClusterSummary>)))]
async fn clusters(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: PageQuery = query(&q)?;
    Ok(Json(c.store.clusters(&q.page()).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/clusters", tag = "clusters", description = "Create a cluster (admin).", request_body = ClusterInput, responses((status = 201, body = Cluster)))]
async fn create_cluster(State(c): State<Ctl>, Extension(t): Tok, b: Bytes) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let input: ClusterInput = body(&b)?;
    Ok(created(c.store.create_cluster(&input).await?))
}

#[utoipa::path(get, path = "/api/v1/clusters/{name}", tag = "clusters", description = "Show a cluster.", params(("name" = String, Path)), responses((status = 200, body = ClusterSummary)))]
async fn cluster(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    Ok(Json(c.store.cluster(&name).await?).into_response())
}

#[utoipa::path(patch, path = "/api/v1/clusters/{name}", tag = "clusters", description = "Change a cluster in place (admin): route reflectors (replace, add, remove), BGP community, ASN, VM gateways, cool-down, reuse order, the guests' DNS (nameservers, search domains) and MTU. Every node of the cluster gets the new plan; VMs keep their addresses.", params(("name" = String, Path)), request_body = ClusterPatch, responses((status = 200, body = Cluster)))]
async fn update_cluster(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let patch: ClusterPatch = body(&b)?;
    Ok(Json(c.store.update_cluster(&name, &patch).await?).into_response())
}

#[utoipa::path(delete, path = "/api/v1/clusters/{name}", tag = "clusters", description = "Delete a cluster without VMs or reservations (admin).", params(("name" = String, Path)), responses((status = 200, body = Cluster)))]
async fn delete_cluster(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let deleted = c.store.delete_cluster(&name).await?;
    // Its nodes' tokens were revoked: not one more request on this one.
    c.tokens.clear();
    Ok(Json(deleted).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RrQuery {
    format: Option<String>,
    reflector: Option<String>,
    /// Comma-separated non-client peers (e.g. the core).
    peers: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/clusters/{name}/rr-config", tag = "clusters", description = "A route reflector's configuration (ip-fabric).", params(("name" = String, Path), ("format" = Option<RrFormatDoc>, Query), ("reflector" = Option<String>, Query), ("peers" = Option<String>, Query, description = "comma-separated non-client peers")), responses((status = 200, body = FileDoc)))]
async fn rr_config(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: RrQuery = query(&q)?;
    let format: files::RrFormat = q.format.as_deref().unwrap_or("frr").parse()?;
    let cluster = c.store.cluster(&name).await?.cluster;
    // Every node of the cluster is a client of its reflectors: the file is
    // as long as the cluster is large, read page by page.
    let nodes: Vec<_> = c
        .store
        .all_nodes(Some(&name))
        .await?
        .into_iter()
        .map(|v| v.node)
        .collect();
    let peers: Vec<String> = q
        .peers
        .as_deref()
        .map(|p| {
            p.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let f = files::rr_file(&cluster, &nodes, format, q.reflector.as_deref(), &peers)?;
    Ok(Json(f).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ClusterQuery {
    cluster: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

impl ClusterQuery {
    fn page(&self) -> PageRequest {
        PageRequest {
            after: self.after.clone(),
            limit: self.limit,
        }
    }
}

/// A page of the change log.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ChangeQuery {
    since: Option<i64>,
    object: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

impl ChangeQuery {
    fn page(&self) -> PageRequest {
        PageRequest {
            after: self.after.clone(),
            limit: self.limit,
        }
    }
}

/// A page of a listing that has no filter.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PageQuery {
    after: Option<String>,
    limit: Option<usize>,
}

impl PageQuery {
    fn page(&self) -> PageRequest {
        PageRequest {
            after: self.after.clone(),
            limit: self.limit,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/networks", tag = "networks", description = "List networks, in address order.", params(("cluster" = Option<String>, Query), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<NetworkView>)))]
async fn networks(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: ClusterQuery = query(&q)?;
    Ok(Json(c.store.networks(q.cluster.as_deref(), &q.page()).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/clusters/{name}/networks", tag = "networks", description = "Add a network to a cluster's pool (admin).", request_body = NetworkInput, params(("name" = String, Path)), responses((status = 201, body = NetworkView)))]
async fn add_network(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let input: NetworkInput = body(&b)?;
    Ok(created(c.store.add_network(&name, &input).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CidrQuery {
    cidr: String,
}

#[utoipa::path(patch, path = "/api/v1/clusters/{name}/networks", tag = "networks", description = "Change a network in place (admin): its gateway, exclusions added (every address free) or removed (given back). Every node of the cluster gets the new plan.", params(("name" = String, Path), ("cidr" = String, Query)), request_body = NetworkPatch, responses((status = 200, body = NetworkView)))]
async fn update_network(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let q: CidrQuery = query(&q)?;
    let patch: NetworkPatch = body(&b)?;
    Ok(Json(c.store.update_network(&name, &q.cidr, &patch).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RemoveNetworkQuery {
    cidr: String,
    force: bool,
}

/// `?force=true` on a removal.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ForceQuery {
    force: bool,
}

#[utoipa::path(delete, path = "/api/v1/clusters/{name}/networks", tag = "networks", description = "Remove a network (admin); refused, naming the holders, while any address in it is held, unless force.", params(("name" = String, Path), ("cidr" = String, Query), ("force" = Option<bool>, Query, description = "release what is held first, each release recorded in history")), responses((status = 200, body = NetworkView)))]
async fn remove_network(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let q: RemoveNetworkQuery = query(&q)?;
    Ok(Json(c.store.remove_network(&name, &q.cidr, q.force).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", description = "List nodes, by name.", params(("cluster" = Option<String>, Query), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<NodeView>)))]
async fn nodes(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: ClusterQuery = query(&q)?;
    Ok(Json(c.store.nodes(q.cluster.as_deref(), &q.page()).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/clusters/{name}/nodes", tag = "nodes", description = "Add a node (admin).", request_body = NodeInput, params(("name" = String, Path)), responses((status = 201, body = NodeView)))]
async fn add_node(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let input: NodeInput = body(&b)?;
    Ok(created(c.store.add_node(&name, &input).await?))
}

#[utoipa::path(get, path = "/api/v1/nodes/{name}", tag = "nodes", description = "Show a node.", params(("name" = String, Path)), responses((status = 200, body = NodeView)))]
async fn node(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    Ok(Json(c.store.node(&name).await?).into_response())
}

#[utoipa::path(patch, path = "/api/v1/nodes/{name}", tag = "nodes", description = "Change a node's address, primary IP, uplink, uplink MAC, bridge, NDP proxy mode or (routing) its VMs' DNS in place (admin).", params(("name" = String, Path)), request_body = NodePatch, responses((status = 200, body = NodeView)))]
async fn update_node(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let patch: NodePatch = body(&b)?;
    Ok(Json(c.store.update_node(&name, &patch).await?).into_response())
}

#[utoipa::path(delete, path = "/api/v1/nodes/{name}", tag = "nodes", description = "Remove a node (admin); refused while VMs run on it or its ranges hold reservations, unless force (each VM deleted and each reservation released, recorded).", params(("name" = String, Path), ("force" = Option<bool>, Query, description = "release what is held first, each release recorded in history")), responses((status = 200, body = NodeView)))]
async fn remove_node(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let q: ForceQuery = query(&q)?;
    let removed = c.store.remove_node(&name, q.force).await?;
    // Its tokens were revoked: not one more request on this controller.
    c.tokens.clear();
    Ok(Json(removed).into_response())
}

/// A subnet or range to give a routing node.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeBlockBody {
    pub kind: NodeBlockKind,
    /// A subnet (CIDR) or a range (A-B).
    pub block: String,
}

#[utoipa::path(post, path = "/api/v1/nodes/{name}/blocks", tag = "nodes", description = "Give a routing node one more subnet or range while its VMs run (admin); only its agent's plan changes.", params(("name" = String, Path)), request_body = NodeBlockBody, responses((status = 200, body = NodeView)))]
async fn add_node_block(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let r: NodeBlockBody = body(&b)?;
    Ok(Json(c.store.add_node_block(&name, r.kind, &r.block).await?).into_response())
}

/// A routing node's IPv6 /64.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NodeIpv6Body {
    /// The node's own address with /64, e.g. 2a01:4f8:1:2::2/64.
    pub ipv6: String,
    /// The provider's router (default fe80::1).
    pub gateway: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/nodes/{name}/ipv6", tag = "nodes", description = "Give a routing node its IPv6 /64 while its VMs run (admin).", params(("name" = String, Path)), request_body = NodeIpv6Body, responses((status = 200, body = NodeView)))]
async fn add_node_ipv6(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let r: NodeIpv6Body = body(&b)?;
    Ok(Json(
        c.store
            .add_node_ipv6(&name, &r.ipv6, r.gateway.as_deref())
            .await?,
    )
    .into_response())
}

#[utoipa::path(delete, path = "/api/v1/nodes/{name}/ipv6", tag = "nodes", description = "Take a routing node's IPv6 /64 (admin); refused while any address in it is held, unless force.", params(("name" = String, Path), ("force" = Option<bool>, Query, description = "release what is held first, each release recorded in history")), responses((status = 200, body = NodeView)))]
async fn remove_node_ipv6(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let q: ForceQuery = query(&q)?;
    Ok(Json(c.store.remove_node_ipv6(&name, q.force).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct BlockQuery {
    block: String,
    force: bool,
}

#[utoipa::path(delete, path = "/api/v1/nodes/{name}/blocks", tag = "nodes", description = "Take a subnet or range from a routing node (admin); refused, naming the holders, while any address in it is held, unless force.", params(("name" = String, Path), ("block" = String, Query, description = "the subnet (CIDR) or range (A-B)"), ("force" = Option<bool>, Query, description = "release what is held first, each release recorded in history")), responses((status = 200, body = NodeView)))]
async fn remove_node_block(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let q: BlockQuery = query(&q)?;
    Ok(Json(c.store.remove_node_block(&name, &q.block, q.force).await?).into_response())
}

// --- plans: what agents long-poll ---

/// A node's plan with the revision it was built at and its hash, which
/// the agent sends back (`have`) to wait for the next change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanResponse {
    pub revision: i64,
    pub hash: String,
    /// The NodePlan: links, addresses, routes, sysctls, proxies, nftables, FRR, ndppd.
    #[schema(value_type = Object)]
    pub plan: NodePlan,
}

/// The hash of a plan as agents compare it.
pub fn plan_hash(plan: &NodePlan) -> String {
    let text = serde_json::to_string(plan).unwrap_or_default();
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct PlanQuery {
    /// The hash of the plan the caller has: answer when it differs.
    have: Option<String>,
    /// Seconds to wait for a change (at most 300).
    wait: Option<u64>,
}

const MAX_WAIT: u64 = 300;

#[utoipa::path(get, path = "/api/v1/nodes/{name}/plan", tag = "plans", description = "The node's plan; with `have`, waits up to `wait` seconds for a plan with another hash (long poll). For its agent's node token, viewers and up.", params(("name" = String, Path), ("have" = Option<String>, Query), ("wait" = Option<u64>, Query, maximum = 300)), responses((status = 200, body = PlanResponse)))]
async fn plan(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::NodeRead(&name))?;
    let q: PlanQuery = query(&q)?;
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT {
        return Err(Error::invalid("wait", wait, format!("at most {MAX_WAIT} seconds")).into());
    }
    c.metrics.plan_requests.fetch_add(1, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let mut stopping = c.stopping.clone();
    // In the watch before the first read: a change committed after the
    // read wakes this poll. Only changes that reach this node do.
    let mut waiter = c.watch.wait(&name);
    let mut woken = false;
    let out = async {
        loop {
            // A stopping controller answers at once; the agent asks again
            // (another controller, or this one restarted).
            let stop = *stopping.borrow_and_update();
            // The revision first: the plan read after it is at least as new.
            let revision = c.store.revision().await?;
            {
                // Nothing of the plan stays while the poll waits: a waiting
                // agent costs its connection and its place in the watch.
                let input = c.store.plan_input(&name).await?;
                waiter.placed(&input.cluster.name);
                let plan = build(&input);
                drop(input);
                let hash = plan_hash(&plan);
                if stop
                    || q.have.as_deref() != Some(hash.as_str())
                    || tokio::time::Instant::now() >= deadline
                {
                    return Ok::<_, Error>(PlanResponse {
                        revision,
                        hash,
                        plan,
                    });
                }
            }
            if woken {
                // A change reached the node but left its plan as it was.
                c.metrics
                    .plan_wakeups_unchanged
                    .fetch_add(1, Ordering::Relaxed);
            }
            tokio::select! {
                () = waiter.changed_after(revision) => woken = true,
                () = tokio::time::sleep_until(deadline) => woken = false,
                _ = stopping.changed() => woken = false,
            }
        }
    }
    .await;
    drop(waiter);
    Ok(Json(out?).into_response())
}

#[utoipa::path(get, path = "/api/v1/nodes/{name}/plan/{format}", tag = "plans", description = "The node's plan rendered: json, summary, frr, nft or ndppd.", params(("name" = String, Path), ("format" = PlanFormatDoc, Path)), responses((status = 200, body = FileDoc)))]
async fn plan_file(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path((name, format)): Path<(String, String)>,
) -> ApiResult<Response> {
    require(&t, Access::NodeRead(&name))?;
    let format: files::PlanFormat = format.parse()?;
    let plan = build(&c.store.plan_input(&name).await?);
    Ok(Json(files::plan_file(&plan, format)?).into_response())
}

#[utoipa::path(get, path = "/api/v1/nodes/{name}/plan-input", tag = "plans", description = "Everything the node's plan is built from.", params(("name" = String, Path)), responses((status = 200, body = Object)))]
async fn plan_input(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::NodeRead(&name))?;
    Ok(Json(c.store.plan_input(&name).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/nodes/{name}/status", tag = "plans", description = "The node's agent reports its last round (its node token, or admin).", request_body = Object, params(("name" = String, Path)), responses((status = 200, body = AgentStatus)))]
async fn report_status(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Node(&name))?;
    let report: serde_json::Value = body(&b)?;
    if !report.is_object() {
        return Err(Error::invalid("body", report, "a report is a JSON object").into());
    }
    Ok(Json(c.store.report_status(&name, &report).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/nodes/{name}/status", tag = "plans", description = "What the node's agent last reported; null if it never did.", params(("name" = String, Path)), responses((status = 200, body = Option<AgentStatus>)))]
async fn agent_status(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::NodeRead(&name))?;
    Ok(Json(c.store.agent_status(&name).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/agents", tag = "plans", description = "What every agent last reported, by node.", params(("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<AgentStatus>)))]
async fn agents(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: PageQuery = query(&q)?;
    Ok(Json(c.store.agent_statuses(&q.page()).await?).into_response())
}

// --- VMs (operator) ---

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct VmQuery {
    cluster: Option<String>,
    node: Option<String>,
    reserved: Option<bool>,
    /// Free space: ranges and released addresses per block.
    ranges: Option<usize>,
    after: Option<String>,
    limit: Option<usize>,
}

impl VmQuery {
    fn filter(&self) -> AddressFilter {
        AddressFilter {
            cluster: self.cluster.clone(),
            node: self.node.clone(),
            reserved: self.reserved.unwrap_or(false),
        }
    }

    fn page(&self) -> PageRequest {
        PageRequest {
            after: self.after.clone(),
            limit: self.limit,
        }
    }
}

#[utoipa::path(get, path = "/api/v1/vms", tag = "vms", description = "List VMs: by name; of a cluster, node by node.", params(("cluster" = Option<String>, Query), ("node" = Option<String>, Query), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<Vm>)))]
async fn vms(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: VmQuery = query(&q)?;
    Ok(Json(c.store.vms(&q.filter(), &q.page()).await?).into_response())
}

fn idempotency_key(h: &HeaderMap) -> Result<Option<String>, Problem> {
    match h.get("idempotency-key") {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.to_string())).map_err(|_| {
            Problem(Error::invalid(
                "Idempotency-Key",
                String::from_utf8_lossy(v.as_bytes()),
                "printable ASCII",
            ))
        }),
    }
}

#[utoipa::path(post, path = "/api/v1/clusters/{name}/vms", tag = "vms", description = "Create a VM and allocate its addresses (operator). A retry with the same Idempotency-Key returns the same VM and allocates nothing.", request_body = VmInput, params(("name" = String, Path), ("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "A retry with the same key and request returns the first VM")), responses((status = 201, body = Vm)))]
async fn create_vm(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(cluster): Path<String>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let vm: VmInput = body(&b)?;
    let mut req = VmRequest::new(&cluster, vm);
    req.idempotency_key = idempotency_key(&headers)?;
    req.idempotency_scope = Some(format!("token {}", t.id));
    Ok(created(c.batcher.create(req).await?))
}

/// One answer of a batch: the VM, or the problem with that request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchResult {
    Vm(vmfabric_model::Vm),
    Problem(serde_json::Value),
}

#[utoipa::path(post, path = "/api/v1/vms/batch", tag = "vms", description = "Create many VMs (operator); they share commits with concurrent creates, and each succeeds or fails on its own.", request_body = [VmRequest], responses((status = 200, body = [Object])))]
async fn create_vms(State(c): State<Ctl>, Extension(t): Tok, b: Bytes) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let mut reqs: Vec<VmRequest> = body(&b)?;
    for r in &mut reqs {
        r.idempotency_scope = Some(format!("token {}", t.id));
    }
    if reqs.len() > 10_000 {
        return Err(Error::invalid("body", reqs.len(), "at most 10000 VMs per batch").into());
    }
    // The committers count batches and created VMs.
    let out: Vec<BatchResult> = c
        .batcher
        .create_many(reqs)
        .await
        .into_iter()
        .map(|r| match r {
            Ok(vm) => BatchResult::Vm(vm),
            Err(e) => BatchResult::Problem(crate::problem::document(&e)),
        })
        .collect();
    Ok(Json(out).into_response())
}

#[utoipa::path(get, path = "/api/v1/vms/{name}", tag = "vms", description = "Show a VM.", params(("name" = String, Path)), responses((status = 200, body = Vm)))]
async fn vm(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    Ok(Json(c.store.vm(&name).await?).into_response())
}

#[utoipa::path(delete, path = "/api/v1/vms/{name}", tag = "vms", description = "Delete a VM and release its addresses (operator).", params(("name" = String, Path)), responses((status = 200, body = Vm)))]
async fn delete_vm(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let vm = c.store.delete_vm(&name).await?;
    c.metrics.vms_deleted.fetch_add(1, Ordering::Relaxed);
    Ok(Json(vm).into_response())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MigrateBody {
    /// The node to move to.
    pub to: String,
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/migrate", tag = "vms", description = "Move a VM to another node, keeping its addresses (switching, ip-fabric; operator).", request_body = MigrateBody, params(("name" = String, Path)), responses((status = 200, body = Vm)))]
async fn migrate_vm(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let m: MigrateBody = body(&b)?;
    Ok(Json(c.store.migrate_vm(&name, &m.to).await?).into_response())
}

/// A new NIC and which addresses it gets.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NicBody {
    /// An IPv4 address by the cluster's rules (default true).
    pub ipv4: bool,
    /// An IPv6 address by the cluster's rules.
    pub ipv6: bool,
}

impl Default for NicBody {
    fn default() -> Self {
        NicBody {
            ipv4: true,
            ipv6: false,
        }
    }
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/nics", tag = "vms", description = "Give a VM one more NIC (`<vm>_net<N>`, its own MAC) with addresses by the cluster's rules (operator); only the VM's node's plan changes.", request_body = NicBody, params(("name" = String, Path)), responses((status = 200, body = Vm)))]
async fn add_nic(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let n: NicBody = body(&b)?;
    Ok(Json(c.store.add_nic(&name, n.ipv4, n.ipv6).await?).into_response())
}

#[utoipa::path(delete, path = "/api/v1/vms/{name}/nics/{index}", tag = "vms", description = "Remove a NIC (not the first) (operator); refused while it holds addresses, unless force.", params(("name" = String, Path), ("index" = u8, Path), ("force" = Option<bool>, Query, description = "release what is held first, each release recorded in history")), responses((status = 200, body = Vm)))]
async fn remove_nic(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path((name, index)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let q: ForceQuery = query(&q)?;
    let index: u8 = index
        .parse()
        .map_err(|_| Error::invalid("index", &index, "a NIC index, 0 to 9"))?;
    Ok(Json(c.store.remove_nic(&name, index, q.force).await?).into_response())
}

/// One more address on a VM's NIC.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VmAddressBody {
    /// The NIC (default 0).
    pub nic: u8,
    /// The next IPv6 address instead of IPv4.
    pub ipv6: bool,
    /// This address instead of the next free one.
    pub ip: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/addresses", tag = "vms", description = "One more address on a VM's NIC: the one given, or the next by the cluster's rules (operator).", request_body = VmAddressBody, params(("name" = String, Path)), responses((status = 200, body = Vm)))]
async fn add_vm_address(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    b: Bytes,
) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let a: VmAddressBody = body(&b)?;
    Ok(Json(
        c.store
            .add_vm_address(&name, a.nic, a.ipv6, a.ip.as_deref())
            .await?,
    )
    .into_response())
}

#[utoipa::path(delete, path = "/api/v1/vms/{name}/addresses/{ip}", tag = "vms", description = "End a VM's claim on one of its addresses; it is recorded in history (operator).", params(("name" = String, Path), ("ip" = String, Path)), responses((status = 200, body = Vm)))]
async fn remove_vm_address(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path((name, ip)): Path<(String, String)>,
) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    Ok(Json(c.store.remove_vm_address(&name, &ip).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GuestQuery {
    format: Option<String>,
    disk: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/vms/{name}/guest-config", tag = "vms", description = "The VM's guest network configuration (cloud-init), its libvirt interfaces or domain (kvm clusters), or its LXD configuration (lxd clusters).", params(("name" = String, Path), ("format" = Option<GuestFormatDoc>, Query), ("disk" = Option<String>, Query, description = "libvirt-domain: the VM's disk image (absolute path)")), responses((status = 200, body = FileDoc)))]
async fn guest_config(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: GuestQuery = query(&q)?;
    let format: files::GuestFormat = q.format.as_deref().unwrap_or("cloud-init").parse()?;
    let vm = c.store.vm(&name).await?;
    let cluster = c.store.cluster(&vm.cluster).await?.cluster;
    let node = c.store.node(&vm.node).await?.node;
    let options = files::GuestOptions { disk: q.disk };
    Ok(Json(files::guest_file(&vm, &cluster, &node, format, &options)?).into_response())
}

// --- addresses ---

#[utoipa::path(get, path = "/api/v1/addresses", tag = "addresses", description = "Addresses held now, in address order; with `reserved=true`, only reservations.", params(("cluster" = Option<String>, Query), ("node" = Option<String>, Query), ("reserved" = Option<bool>, Query), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<Allocation>)))]
async fn addresses(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: VmQuery = query(&q)?;
    Ok(Json(c.store.allocations(&q.filter(), &q.page()).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/addresses/free", tag = "addresses", description = "Free space per block, in address order.", params(("cluster" = Option<String>, Query), ("node" = Option<String>, Query), ("ranges" = Option<usize>, Query, maximum = 10000, description = "free ranges and released addresses per block (default 100)"), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<FreeSpace>)))]
async fn free_space(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: VmQuery = query(&q)?;
    let ranges = q.ranges.unwrap_or(100).min(10_000);
    Ok(Json(c.store.free_space(&q.filter(), ranges, &q.page()).await?).into_response())
}

/// A reservation: of `ip`, or without it of the next free address of a
/// cluster's pool, a node's ranges or one network (exactly one of them).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReserveBody {
    pub ip: Option<String>,
    pub cluster: Option<String>,
    pub node: Option<String>,
    /// A network (CIDR) or node range (A-B).
    pub network: Option<String>,
    /// The next IPv6 address instead of IPv4 (with cluster or node).
    pub ipv6: bool,
    /// Why.
    pub note: Option<String>,
}

/// The address to release.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ReleaseBody {
    pub ip: String,
}

#[utoipa::path(post, path = "/api/v1/addresses/reservations", tag = "addresses", description = "Reserve an address (operator): the one given as `ip`, or the next free one of a cluster's pool, a node's ranges or a network, by the rules and order of a VM allocation.", request_body = ReserveBody, responses((status = 201, body = Allocation)))]
async fn reserve(State(c): State<Ctl>, Extension(t): Tok, b: Bytes) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let r: ReserveBody = body(&b)?;
    let next = ReserveNext {
        cluster: r.cluster,
        node: r.node,
        network: r.network,
        ipv6: r.ipv6,
        note: r.note,
    };
    match r.ip {
        Some(ip) if next.cluster.is_none() && next.node.is_none() && next.network.is_none() && !next.ipv6 => {
            Ok(created(c.store.reserve(&ip, next.note.as_deref()).await?))
        }
        Some(ip) => Err(Error::invalid(
            "ip",
            ip,
            "either an address or where to take the next one from (cluster, node, network, ipv6), not both",
        )
        .into()),
        None => Ok(created(c.store.reserve_next(&next).await?)),
    }
}

#[utoipa::path(post, path = "/api/v1/addresses/release", tag = "addresses", description = "End whatever holds an address (operator).", request_body = ReleaseBody, responses((status = 200, body = ReleaseResult)))]
async fn release(State(c): State<Ctl>, Extension(t): Tok, b: Bytes) -> ApiResult<Response> {
    require(&t, Access::Operate)?;
    let r: ReleaseBody = body(&b)?;
    Ok(Json(c.store.release(&r.ip).await?).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AtQuery {
    /// RFC 3339 time or microseconds since the epoch.
    at: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/addresses/{ip}/history", tag = "addresses", description = "Who held an address, and when, oldest first; with `at`, who held it then.", params(("ip" = String, Path), ("at" = Option<String>, Query, description = "RFC 3339 time or microseconds since the epoch"), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<HistoryEntry>)))]
async fn history(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(ip): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: AtQuery = query(&q)?;
    let at = match q.at.as_deref() {
        None => None,
        Some(text) => Some(match text.parse::<i64>() {
            Ok(us) => Timestamp(us),
            Err(_) => Timestamp::parse("at", text)?,
        }),
    };
    let page = PageRequest {
        after: q.after,
        limit: q.limit,
    };
    Ok(Json(c.store.history(&ip, at, &page).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/usage", tag = "addresses", description = "Used, free and total per network and node range, in address order.", params(("cluster" = Option<String>, Query), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<Usage>)))]
async fn usage(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: ClusterQuery = query(&q)?;
    Ok(Json(c.store.usage(q.cluster.as_deref(), &q.page()).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/blocks/{ip}/map", tag = "addresses", description = "The map of the block (network, node subnet, range or /64) holding `ip`: what each address is and who holds it, up to a /22; above, at most 256 equal runs counted by state.", params(("ip" = String, Path, description = "any address of the block")), responses((status = 200, body = BlockMap)))]
async fn block_map(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(ip): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    Ok(Json(c.store.block_map(&ip).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/check", tag = "meta", description = "Verify every invariant of the stored state.",  responses((status = 200, body = CheckReport)))]
async fn check(State(c): State<Ctl>, Extension(t): Tok) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    Ok(Json(c.store.check().await?).into_response())
}

// --- tokens (admin) ---

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", description = "List tokens, by id (admin).", params(("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<TokenInfo>)))]
async fn tokens(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let q: PageQuery = query(&q)?;
    Ok(Json(c.store.tokens(&q.page()).await?).into_response())
}

#[utoipa::path(get, path = "/api/v1/changes", tag = "meta", description = "The change log: what changed, when, by whom (token or `local`), before and after, and whose plans it reached. Newest first; with `since`, the changes after that revision oldest first (to follow the log).", params(("since" = Option<i64>, Query, minimum = 0, description = "only the changes after this revision, oldest first"), ("object" = Option<String>, Query, description = "only the changes of this VM, node, address or block (its name, address or CIDR)"), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("limit" = Option<usize>, Query, minimum = 1, maximum = 10000, description = "items per page (default 1000)")), responses((status = 200, body = Page<Change>)))]
async fn changes(
    State(c): State<Ctl>,
    Extension(t): Tok,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    let q: ChangeQuery = query(&q)?;
    let filter = ChangeFilter {
        since: q.since,
        object: q.object.clone(),
    };
    Ok(Json(c.store.changes(&filter, &q.page()).await?).into_response())
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", description = "Create a token (admin); the secret is in this answer only.", request_body = TokenInput, responses((status = 201, body = NewToken)))]
async fn create_token(State(c): State<Ctl>, Extension(t): Tok, b: Bytes) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let input: TokenInput = body(&b)?;
    Ok(created(c.store.create_token(&input).await?))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", description = "Revoke a token (admin).", params(("id" = i64, Path)), responses((status = 200, body = TokenInfo)))]
async fn revoke_token(
    State(c): State<Ctl>,
    Extension(t): Tok,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    require(&t, Access::Admin)?;
    let id: i64 = id
        .parse()
        .map_err(|_| Error::invalid("id", &id, "a token id is a number (vmfabric token list)"))?;
    let info = c.store.revoke_token(id).await?;
    c.tokens.clear();
    Ok(Json(info).into_response())
}

#[utoipa::path(get, path = "/metrics", tag = "meta", description = "Prometheus metrics (text).",  responses((status = 200, body = String, content_type = "text/plain")))]
async fn metrics(State(c): State<Ctl>, Extension(t): Tok) -> ApiResult<Response> {
    require(&t, Access::Read)?;
    // One sample per block and per agent: as long as the installation is
    // large, read page by page.
    let usage = c.store.all_usage(None).await?;
    let agents = c.store.all_agent_statuses().await?;
    let text = c.metrics.render(&usage, &agents, &c.watch, c.store.now().0);
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
