//! The web panel `vmfabric serve` shows at `/`: the seed documents'
//! "Networks section" of a cluster's pool and the node dashboard's "IP
//! addresses", plus VMs, address search and the route reflectors' config.
//!
//! Server-side HTML over the same store calls and role checks as the API
//! (no second path that could disagree): every write goes through
//! [`require`] with the access the API demands, then one store call, and a
//! refusal shows the problem's field, value and rule next to the field.
//! Signed in with an API token ([`session`]); every form carries the
//! session's CSRF secret and the cookie is SameSite=Strict.

pub mod session;
pub mod view;

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use vmfabric_model::view::Usage;
use vmfabric_model::{
    Access, Assignment, ClusterInput, Error, NetworkInput, NetworkPatch, NetworkType, NodeInput,
    Result, Timestamp, VmInput,
};
use vmfabric_plan::files;
use vmfabric_store::{AddressFilter, ListAll, NodeBlockKind, PageRequest};

use crate::Ctl;
use crate::auth::require;
use view::{Notice, Reader, enc};

/// Items per page of the panel's lists.
const PAGE: usize = 50;
/// Blocks (with their maps) per page of a cluster or node.
const BLOCKS: usize = 20;

pub fn routes() -> Router<Ctl> {
    Router::new()
        .route("/", get(home).post(create_cluster))
        .route("/assets/panel.css", get(css))
        .route("/assets/panel.js", get(js))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/clusters/{name}", get(cluster_get))
        .route("/clusters/{name}/rr-config", get(rr_config))
        .route("/clusters/{name}/networks", post(add_network))
        .route("/clusters/{name}/networks/remove", post(remove_network))
        .route("/clusters/{name}/networks/set", post(set_network))
        .route("/clusters/{name}/nodes", post(add_node))
        .route("/nodes/{name}", get(node_get))
        .route("/nodes/{name}/blocks", post(add_node_block))
        .route("/nodes/{name}/ipv6", post(add_node_ipv6))
        .route("/addresses/reserve", post(reserve))
        .route("/addresses/release", post(release))
        .route("/vms", get(vms_get).post(create_vm))
        .route("/vms/{name}", get(vm_get))
        .route("/vms/{name}/migrate", post(migrate_vm))
        .route("/vms/{name}/delete", post(delete_vm))
        .route("/search", get(search_get))
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", view::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", view::JS)
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// An HTML page with the headers every panel page carries: no framing by
/// other sites, no sniffing, scripts and styles only from here.
fn html_page(status: StatusCode, m: Markup) -> Response {
    let mut r = (status, axum::response::Html(m.into_string())).into_response();
    let h = r.headers_mut();
    for (k, v) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The signed-in reader of a request, or the way to the sign-in page.
async fn reader(c: &Ctl, headers: &HeaderMap) -> std::result::Result<Reader, Response> {
    let Some(s) = c.sessions.get(headers) else {
        return Err(see_other("/login"));
    };
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", s.secret)) {
        h.insert(header::AUTHORIZATION, v);
    }
    match c.tokens.authenticate(c.store.as_ref(), &h).await {
        Ok(token) => Ok(Reader {
            token,
            csrf: s.csrf,
        }),
        Err(_) => {
            // Revoked since: the session ends with its token.
            c.sessions.close(headers);
            Err(see_other("/login?expired=1"))
        }
    }
}

fn query_map(q: Option<&str>) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q.unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A form post, checked: signed in, the session's CSRF secret, and (when
/// the browser says) from this site.
async fn posted(
    c: &Ctl,
    headers: &HeaderMap,
    body: &Bytes,
) -> std::result::Result<(Reader, HashMap<String, String>), Response> {
    let r = reader(c, headers).await?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .unwrap_or_default()
        .into_iter()
        .collect();
    if !same_site(headers) || form.get("csrf") != Some(&r.csrf) {
        return Err(html_page(
            StatusCode::FORBIDDEN,
            view::page(
                "Refused",
                Some(&r),
                &Notice::error(Error::Forbidden {
                    detail: "this form did not come from this panel's page (CSRF check); reload the page and try again".into(),
                }),
                html! {},
            ),
        ));
    }
    Ok((r, form))
}

/// Whether a post comes from this site, when the browser says where it
/// comes from (every current browser does for posts).
fn same_site(headers: &HeaderMap) -> bool {
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (Some(o), Some(h)) => o
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, rest)| rest.to_string()))
            .is_some_and(|o| Some(o.as_str()) == h.to_str().ok()),
        _ => true,
    }
}

fn text<'a>(f: &'a HashMap<String, String>, k: &str) -> &'a str {
    f.get(k).map(|s| s.trim()).unwrap_or_default()
}

fn opt(f: &HashMap<String, String>, k: &str) -> Option<String> {
    Some(text(f, k)).filter(|s| !s.is_empty()).map(String::from)
}

/// A comma- or space-separated list field.
fn list(f: &HashMap<String, String>, k: &str) -> Vec<String> {
    text(f, k)
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Where a form goes back to: a path of this panel, never elsewhere.
fn back(f: &HashMap<String, String>, default: &str) -> String {
    match f.get("back") {
        Some(b) if b.starts_with('/') && !b.starts_with("//") && !b.contains('\\') => b.clone(),
        _ => default.to_string(),
    }
}

/// The outcome of a form: to its page with a message, or the page again
/// with the refusal beside the field.
async fn outcome<T>(
    c: &Ctl,
    r: &Reader,
    to: &str,
    result: Result<T>,
    done: impl FnOnce(&T) -> String,
) -> Response {
    match result {
        Ok(v) => {
            let sep = if to.contains('?') { '&' } else { '?' };
            see_other(&format!("{to}{sep}done={}", enc(&done(&v))))
        }
        Err(e) => {
            let status = crate::problem::status(&e);
            render_path(c, r, to, Notice::error(e), status).await
        }
    }
}

/// Run a store call as the reader, if its role has `access` (the API's
/// rule for the same call); the change log names the token.
async fn allowed<T>(
    r: &Reader,
    access: Access<'_>,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    require(&r.token, access)?;
    vmfabric_store::acting_as(crate::actor(&r.token), f).await
}

/// Render the panel page at `path` (a form's page) with `notice`.
async fn render_path(
    c: &Ctl,
    r: &Reader,
    path: &str,
    notice: Notice,
    status: StatusCode,
) -> Response {
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let q = query_map(Some(q));
    let seg: Vec<&str> = p.trim_matches('/').split('/').collect();
    let name = |i: usize| seg.get(i).map(|s| percent_decode(s)).unwrap_or_default();
    let page = match seg.as_slice() {
        ["clusters", _] => cluster_page(c, r, &name(1), &q, &notice).await,
        ["nodes", _] => node_page(c, r, &name(1), &q, &notice).await,
        ["vms"] => vms_page(c, r, &q, &notice).await,
        ["vms", _] => vm_page(c, r, &name(1), &notice).await,
        ["search"] => search_page(c, r, &q, &notice).await,
        _ => home_page(c, r, &q, &notice).await,
    };
    match page {
        Ok(m) => html_page(status, m),
        Err(e) => error_page(r, e),
    }
}

fn percent_decode(s: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={s}"))
        .ok()
        .and_then(|v| v.into_iter().next())
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn error_page(r: &Reader, e: Error) -> Response {
    let status = crate::problem::status(&e);
    html_page(
        status,
        view::page(
            "Not available",
            Some(r),
            &Notice::error(e),
            html! {
                p { a href="/" { "Back to the clusters" } }
            },
        ),
    )
}

/// A GET page's reader, query and the `done` message of the form before.
async fn prelude(
    c: &Ctl,
    headers: &HeaderMap,
    q: Option<&str>,
) -> std::result::Result<(Reader, HashMap<String, String>, Notice), Response> {
    let r = reader(c, headers).await?;
    let q = query_map(q);
    let notice = q.get("done").map(Notice::done).unwrap_or_default();
    Ok((r, q, notice))
}

fn finish(r: &Reader, page: Result<Markup>) -> Response {
    match page {
        Ok(m) => html_page(StatusCode::OK, m),
        Err(e) => error_page(r, e),
    }
}

// --- sign in and out ---

async fn login_page(RawQuery(q): RawQuery) -> Response {
    let q = query_map(q.as_deref());
    let notice = if q.contains_key("expired") {
        Notice::done(
            "Your session ended (signed out, idle, or its token was revoked). Sign in again.",
        )
    } else {
        Notice::default()
    };
    html_page(StatusCode::OK, login_form(&notice))
}

fn login_form(notice: &Notice) -> Markup {
    view::page(
        "Sign in",
        None,
        notice,
        html! {
            form.act method="post" action="/login" {
                div.field {
                    label for="f-token" { "API token" }
                    input id="f-token" name="token" type="password" autocomplete="off" required
                        aria-describedby="h-token";
                    p.hint id="h-token" { "A token made with " code { "vmfabric token create --role viewer|operator|admin" } ". What you may see and do is what the API allows its role." }
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

async fn login(State(c): State<Ctl>, headers: HeaderMap, body: Bytes) -> Response {
    // Another site must not sign a browser in (with its own token).
    if !same_site(&headers) {
        return html_page(
            StatusCode::FORBIDDEN,
            login_form(&Notice::error(Error::Forbidden {
                detail: "this sign-in did not come from this panel's page".into(),
            })),
        );
    }
    let form: HashMap<String, String> =
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .unwrap_or_default()
            .into_iter()
            .collect();
    let secret = text(&form, "token").to_string();
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {secret}")) {
        h.insert(header::AUTHORIZATION, v);
    }
    let token = match c.tokens.authenticate(c.store.as_ref(), &h).await {
        Ok(t) if t.allows(Access::Read) => t,
        Ok(t) => {
            return html_page(
                StatusCode::FORBIDDEN,
                login_form(&Notice::error(Error::Forbidden {
                    detail: format!(
                        "token {} is a node agent's token; the panel is for viewer, operator and admin tokens",
                        t.id
                    ),
                })),
            );
        }
        Err(e) => {
            let e = match e {
                Error::Unauthenticated { detail } => Error::invalid("token", "", detail),
                other => other,
            };
            return html_page(StatusCode::UNAUTHORIZED, login_form(&Notice::error(e)));
        }
    };
    let Some(id) = c.sessions.open(&secret) else {
        return html_page(
            StatusCode::SERVICE_UNAVAILABLE,
            login_form(&Notice::error(Error::Unavailable {
                detail: "no random numbers for a session id".into(),
            })),
        );
    };
    tracing::info!(token = token.id, "panel sign-in");
    let mut r = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(Some(&id), c.tls)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(c): State<Ctl>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(resp) = posted(&c, &headers, &body).await {
        return resp;
    }
    c.sessions.close(&headers);
    let mut r = see_other("/login");
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(None, c.tls)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// --- clusters ---

async fn home(State(c): State<Ctl>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (r, q, n) = match prelude(&c, &headers, q.as_deref()).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    finish(&r, home_page(&c, &r, &q, &n).await)
}

/// Used and total of a cluster's (or node's) blocks, by family.
fn totals(us: &[Usage]) -> String {
    let mut parts = Vec::new();
    for fam in ["IPv4", "IPv6"] {
        let (used, total) = us
            .iter()
            .filter(|u| u.family == fam)
            .fold((0u128, 0u128), |(a, b), u| {
                (a + u.used + u.reserved, b.saturating_add(u.total))
            });
        if total > 0 {
            parts.push(format!("{fam} {used} of {total}"));
        }
    }
    if parts.is_empty() {
        "no addresses yet".into()
    } else {
        parts.join(", ")
    }
}

async fn home_page(c: &Ctl, r: &Reader, q: &HashMap<String, String>, n: &Notice) -> Result<Markup> {
    let page = c.store.clusters(&page_of(q, PAGE)).await?;
    let mut rows = Vec::new();
    for s in &page.items {
        let us = c
            .store
            .usage(Some(&s.cluster.name), &PageRequest::first(1000))
            .await?;
        rows.push((s, totals(&us.items)));
    }
    let admin = r.may(Access::Admin);
    Ok(view::page(
        "Clusters",
        Some(r),
        n,
        html! {
            @if page.items.is_empty() {
                p { "No cluster yet." }
            } @else {
                table {
                    caption.hint { "Assignment: To cluster (a pool shared by the cluster, managed in its Networks section) or To node (each node's own addresses, on the node's page)." }
                    thead { tr { th { "Name" } th { "Type" } th { "Assignment" } th { "Networks" } th { "Nodes" } th { "VMs" } th { "Addresses held" } } }
                    tbody {
                        @for (s, usage) in &rows {
                            tr {
                                td { a href=(format!("/clusters/{}", enc(&s.cluster.name))) { (s.cluster.name) } }
                                td { (s.cluster.network_type) }
                                td { (assignment(s.cluster.assignment)) }
                                td.num { (s.networks) }
                                td.num { (s.nodes) }
                                td.num { (s.vms) }
                                td { (usage) }
                            }
                        }
                    }
                }
                (view::next_link("/", page.next.as_ref()))
            }
            @if admin {
                h2 { "Create a cluster" }
                (view::form(r, "/", "Create cluster", html! {
                    (view::field("Name", "name", "", n, None, true))
                    (view::select("Network type", "type", &[("switching", "Switching"), ("routing", "Routing"), ("ip-fabric", "IP-fabric")], "switching"))
                    (view::select("Virtualization", "virtualization", &[("kvm", "KVM"), ("lxd", "LXD")], "kvm"))
                    (view::field("VM gateway (ip-fabric)", "vm-gateway", "", n, Some("e.g. 10.0.0.1"), false))
                    (view::field("Route reflectors (ip-fabric)", "route-reflector", "", n, Some("ADDRESS:ASN, comma-separated, e.g. 172.16.0.2:65000, 172.16.0.3:65000"), false))
                    (view::field("BGP community (ip-fabric)", "bgp-community", "", n, Some("e.g. 65000:100"), false))
                    (view::field("ASN (ip-fabric)", "asn", "", n, Some("default: the reflectors' ASN"), false))
                    (view::field("Nameservers", "nameserver", "", n, Some("for the guests, comma-separated"), false))
                }))
            }
        },
    ))
}

fn assignment(a: Assignment) -> &'static str {
    match a {
        Assignment::ToCluster => "To cluster",
        Assignment::ToNode => "To node",
    }
}

fn page_of(q: &HashMap<String, String>, size: usize) -> PageRequest {
    PageRequest {
        after: q.get("after").cloned().filter(|a| !a.is_empty()),
        limit: Some(size),
    }
}

async fn create_cluster(State(c): State<Ctl>, headers: HeaderMap, body: Bytes) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let input = ClusterInput {
        name: text(&f, "name").into(),
        network_type: text(&f, "type").into(),
        virtualization: opt(&f, "virtualization"),
        vm_gateway: opt(&f, "vm-gateway"),
        bgp_community: opt(&f, "bgp-community"),
        route_reflectors: list(&f, "route-reflector"),
        asn: opt(&f, "asn"),
        nameservers: list(&f, "nameserver"),
        ..ClusterInput::default()
    };
    let result = allowed(&r, Access::Admin, c.store.create_cluster(&input)).await;
    let to = match &result {
        Ok(cl) => format!("/clusters/{}", enc(&cl.name)),
        Err(_) => "/".to_string(),
    };
    outcome(&c, &r, &to, result, |cl| {
        format!("Created cluster {}.", cl.name)
    })
    .await
}

async fn cluster_get(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (r, q, n) = match prelude(&c, &headers, q.as_deref()).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    finish(&r, cluster_page(&c, &r, &name, &q, &n).await)
}

async fn cluster_page(
    c: &Ctl,
    r: &Reader,
    name: &str,
    q: &HashMap<String, String>,
    n: &Notice,
) -> Result<Markup> {
    let s = c.store.cluster(name).await?;
    let cl = &s.cluster;
    let here = format!("/clusters/{}", enc(name));
    let admin = r.may(Access::Admin);
    let operate = r.may(Access::Operate);
    let pool = cl.assignment == Assignment::ToCluster;
    let usage = if pool {
        c.store.usage(Some(name), &page_of(q, BLOCKS)).await?
    } else {
        vmfabric_store::Page {
            items: Vec::new(),
            next: None,
        }
    };
    let nets = c.store.all_networks(Some(name)).await.unwrap_or_default();
    let mut maps = Vec::new();
    for u in usage.items.iter().filter(|u| u.node.is_none()) {
        let first = u.block.split(['/', '-']).next().unwrap_or_default();
        let net = nets.iter().find(|v| v.block.text() == u.block);
        maps.push((u, c.store.block_map(first).await?, net));
    }
    let nodes = c.store.nodes(Some(name), &PageRequest::first(PAGE)).await?;
    Ok(view::page(
        &format!("Cluster {name}"),
        Some(r),
        n,
        html! {
            dl.facts {
                dt { "Type" } dd { (cl.network_type) }
                dt { "Assignment" } dd { (assignment(cl.assignment)) }
                dt { "Virtualization" } dd { (cl.virtualization) }
                dt { "Cool-down" } dd { (cl.cooldown) }
                @if let Some(f) = &cl.fabric {
                    dt { "VM gateway" } dd { (f.vm_gateway) " / " (f.vm_gateway6) }
                    dt { "BGP" } dd { "AS " (f.asn) ", community " (f.community) }
                    dt { "Route reflectors" } dd {
                        @for rr in &f.route_reflectors { code { (rr) } " " }
                        " — config: "
                        a href=(format!("{here}/rr-config?format=frr")) { "FRR" } " · "
                        a href=(format!("{here}/rr-config?format=bird")) { "BIRD" }
                    }
                }
                @if !cl.dns.nameservers.is_empty() {
                    dt { "Guests' nameservers" } dd { @for ns in &cl.dns.nameservers { code { (ns) } " " } }
                }
                @if let Some(m) = cl.mtu { dt { "Guests' MTU" } dd { (m) } }
                dt { "VMs" } dd { a href=(format!("/vms?cluster={}", enc(name))) { (s.vms) " VMs" } }
            }
            @if pool {
                h2 id="networks" { "Networks" }
                p.hint { "The IP addresses of this cluster's pool: every VM of the cluster takes its address from these networks." }
                (view::legend())
                @if maps.is_empty() { p { "No network yet." } }
                @for (u, m, net) in &maps {
                    section aria-labelledby=(format!("b-{}", enc(&u.block))) {
                        h3 id=(format!("b-{}", enc(&u.block))) { (u.block) @if let Some(v) = net { @if let Some(g) = v.block.gateway { " — gateway " (g) } } }
                        table {
                            thead { tr { @for h in view::USAGE_HEADS { th { (h) } } } }
                            tbody { tr { (view::usage_cells(u)) } }
                        }
                        (view::block_map(m))
                        @if let Some(v) = net { @if !v.exclusions.is_empty() {
                            p.hint { "Never handed out: " @for e in &v.exclusions { code { (e.range) } " (" (e.reason) ") " } }
                        } }
                        @if admin {
                            (view::form(r, &format!("{here}/networks/set"), "Change network", html! {
                                input type="hidden" name="cidr" value=(u.block);
                                (view::field("Gateway", "gateway", "", n, None, false))
                                (view::field("Exclude address or range", "exclude", "", n, Some("IP or A-B, never handed out"), false))
                                (view::field("Give back exclusion", "include", "", n, None, false))
                            }))
                            (view::danger(r, &format!("{here}/networks/remove"), &format!("Remove {}", u.block), &format!("Remove network {} from cluster {name}?", u.block), &[("cidr", &u.block)]))
                        }
                    }
                }
                (view::next_link(&here, usage.next.as_ref()))
                @if admin {
                    h3 { "Add a network" }
                    (view::form(r, &format!("{here}/networks"), "Add network", html! {
                        (view::field("Network", "cidr", "", n, Some("CIDR, e.g. 192.0.2.0/27"), true))
                        (view::field("Gateway", "gateway", "", n, Some("default: the first address (switching)"), false))
                    }))
                }
                @if operate { (reserve_forms(r, &here, n)) }
            }
            h2 { "Nodes" }
            @if nodes.items.is_empty() { p { "No node yet." } } @else {
                table {
                    thead { tr { th { "Node" } th { "Address" } th { "Uplink" } th { "VMs" } th { "Addresses" } } }
                    tbody { @for v in &nodes.items { tr {
                        td { a href=(format!("/nodes/{}", enc(&v.node.name))) { (v.node.name) } }
                        td { (v.node.address) }
                        td { (v.node.uplink) }
                        td.num { (v.vms) }
                        td { @for b in &v.ranges { code { (b.text()) } " " } }
                    } } }
                }
                @if nodes.next.is_some() { p.hint { "Showing the first " (PAGE) " nodes." } }
            }
            @if admin {
                h3 { "Add a node" }
                (view::form(r, &format!("{here}/nodes"), "Add node", html! {
                    (view::field("Name", "name", "", n, None, true))
                    (view::field("Address", "address", "", n, Some("the node's own address, IP[/LEN]"), true))
                    (view::field("Uplink", "uplink", "", n, Some("default eno1"), false))
                    @if !pool {
                        (view::field("Additional subnet", "subnet", "", n, Some("routed to the node, e.g. 203.0.113.40/29"), false))
                        (view::field("IPv6", "ipv6", "", n, Some("the node's address in the provider's /64, e.g. 2a01:4f8:13b:9a7::2/64"), false))
                    }
                }))
            }
        },
    ))
}

fn reserve_forms(r: &Reader, here: &str, n: &Notice) -> Markup {
    html! {
        h3 { "Reserve or release an address" }
        (view::form(r, "/addresses/reserve", "Reserve", html! {
            input type="hidden" name="back" value=(here);
            (view::field("Address", "ip", "", n, None, true))
            (view::field("Note", "note", "", n, Some("why it is held, e.g. abuse hold"), false))
        }))
        (view::form(r, "/addresses/release", "Release", html! {
            input type="hidden" name="back" value=(here);
            (view::field("Address", "release-ip", "", n, Some("a reservation, or a VM's address"), true))
        }))
    }
}

async fn add_network(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let input = NetworkInput {
        cidr: text(&f, "cidr").into(),
        gateway: opt(&f, "gateway"),
        ..NetworkInput::default()
    };
    let result = allowed(&r, Access::Admin, c.store.add_network(&name, &input)).await;
    let to = format!("/clusters/{}", enc(&name));
    outcome(&c, &r, &to, result, |v| {
        format!("Added network {}.", v.block.text())
    })
    .await
}

async fn remove_network(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let result = allowed(
        &r,
        Access::Admin,
        c.store.remove_network(&name, text(&f, "cidr"), false),
    )
    .await;
    let to = format!("/clusters/{}", enc(&name));
    outcome(&c, &r, &to, result, |v| {
        format!("Removed network {}.", v.block.text())
    })
    .await
}

async fn set_network(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let patch = NetworkPatch {
        gateway: opt(&f, "gateway"),
        add_exclusions: list(&f, "exclude"),
        remove_exclusions: list(&f, "include"),
        ..NetworkPatch::default()
    };
    let result = allowed(
        &r,
        Access::Admin,
        c.store.update_network(&name, text(&f, "cidr"), &patch),
    )
    .await;
    let to = format!("/clusters/{}", enc(&name));
    outcome(&c, &r, &to, result, |v| {
        format!("Changed network {}.", v.block.text())
    })
    .await
}

async fn add_node(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let input = NodeInput {
        name: text(&f, "name").into(),
        address: text(&f, "address").into(),
        uplink: opt(&f, "uplink"),
        subnets: list(&f, "subnet"),
        ipv6: opt(&f, "ipv6"),
        ..NodeInput::default()
    };
    let result = allowed(&r, Access::Admin, c.store.add_node(&name, &input)).await;
    let to = match &result {
        Ok(v) => format!("/nodes/{}", enc(&v.node.name)),
        Err(_) => format!("/clusters/{}", enc(&name)),
    };
    outcome(&c, &r, &to, result, |v| {
        format!("Added node {}.", v.node.name)
    })
    .await
}

async fn rr_config(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = match reader(&c, &headers).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let q = query_map(q.as_deref());
    let result = async {
        let format: files::RrFormat = q.get("format").map_or("frr", |s| s.as_str()).parse()?;
        let cluster = c.store.cluster(&name).await?.cluster;
        let nodes: Vec<_> = c
            .store
            .all_nodes(Some(&name))
            .await?
            .into_iter()
            .map(|v| v.node)
            .collect();
        files::rr_file(
            &cluster,
            &nodes,
            format,
            q.get("reflector").map(String::as_str),
            &[],
        )
    }
    .await;
    let f = match result {
        Ok(f) => f,
        Err(e) => return error_page(&r, e),
    };
    if q.contains_key("download") {
        let disposition = format!(
            "attachment; filename=\"{}-reflector.{}\"",
            name.replace('"', ""),
            if f.format == "bird" {
                "bird.conf"
            } else {
                "frr.conf"
            }
        );
        let mut resp = f.text.into_response();
        if let Ok(v) = HeaderValue::from_str(&disposition) {
            resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return resp;
    }
    let here = format!("/clusters/{}/rr-config?format={}", enc(&name), f.format);
    html_page(
        StatusCode::OK,
        view::page(
            &format!("Route reflector config of {name} ({})", f.format),
            Some(&r),
            &Notice::default(),
            html! {
                p { a href=(format!("/clusters/{}", enc(&name))) { "← cluster " (name) } " · other format: "
                    a href=(format!("/clusters/{}/rr-config?format={}", enc(&name), if f.format == "bird" { "frr" } else { "bird" })) { (if f.format == "bird" { "FRR" } else { "BIRD" }) } }
                (view::copyable("rr", &f.text, Some(&format!("{here}&download=1"))))
            },
        ),
    )
}

// --- nodes ---

async fn node_get(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (r, q, n) = match prelude(&c, &headers, q.as_deref()).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    finish(&r, node_page(&c, &r, &name, &q, &n).await)
}

async fn node_page(
    c: &Ctl,
    r: &Reader,
    name: &str,
    q: &HashMap<String, String>,
    n: &Notice,
) -> Result<Markup> {
    let v = c.store.node(name).await?;
    let node = &v.node;
    let here = format!("/nodes/{}", enc(name));
    let admin = r.may(Access::Admin);
    let status = c.store.agent_status(name).await?;
    let mut maps = Vec::new();
    for b in v
        .ranges
        .iter()
        .skip(
            page_of(q, BLOCKS)
                .after
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
        )
        .take(BLOCKS)
    {
        let first = vmfabric_ipam::key::addr(b.range.first).to_string();
        let u = c.store.block_map(&first).await?;
        maps.push((b, u));
    }
    let report = status.as_ref().map(|s| &s.report);
    // (peer, family, state, prefixes sent), as the agent reports them.
    let sessions: Vec<(String, String, String, u64)> = report
        .and_then(|r| r["sessions"].as_array())
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["peer"].as_str().unwrap_or("?").to_string(),
                        s["family"].as_str().unwrap_or_default().to_string(),
                        s["state"].as_str().unwrap_or("?").to_string(),
                        s["prefixes_sent"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(view::page(
        &format!("Node {name} — IP addresses"),
        Some(r),
        n,
        html! {
            p { "Cluster " a href=(format!("/clusters/{}", enc(&node.cluster))) { (node.cluster) } " · " a href=(format!("/vms?node={}", enc(name))) { (v.vms) " VMs" } }
            dl.facts {
                dt { "Address" } dd { (node.address) @if let Some(p) = node.address_prefix { "/" (p) } }
                dt { "Uplink" } dd { (node.uplink) @if let Some(m) = node.uplink_mac { " (" (m) ")" } }
                dt { "Bridge" } dd { (node.bridge) }
                @if let Some(rt) = &node.routing {
                    dt { "Primary IP" } dd { (rt.primary_ip) " — the VMs' IPv4 gateway" }
                    dt { "IPv6" } dd { @if let Some(six) = &rt.ipv6 { (six.address) "/64 via " (six.gateway) } @else { "none" } }
                    dt { "NDP proxy" } dd { (rt.ndp_proxy) }
                    @if let Some(d) = &rt.dns { dt { "Guests' nameservers" } dd { @for ns in &d.nameservers { code { (ns) } " " } } }
                }
            }
            h2 { "Agent" }
            @match &status {
                None => p { span.pill.bad { "never reported" } " Start " code { "vmfabric agent --server … --node " (name) } " on the node." },
                Some(s) => {
                    dl.facts {
                        dt { "Last round" } dd { (s.at) }
                        dt { "Changes" } dd { (s.report["changes"].as_array().map_or(0, Vec::len)) }
                        dt { "Errors" } dd {
                            @let fails = s.report["failures"].as_array().map_or(0, Vec::len);
                            @if fails == 0 { span.pill.ok { "none" } } @else { span.pill.bad { (fails) } }
                        }
                        dt { "BGP sessions" } dd {
                            @if sessions.is_empty() { "none" }
                            @for (peer, family, state, sent) in &sessions { code { (peer) } " " (family) " " span class=(if state == "Established" { "pill ok" } else { "pill bad" }) { (state) } " " (sent) " prefixes sent" br; }
                        }
                    }
                }
            }
            h2 id="addresses" { "IP addresses" }
            (view::legend())
            @if maps.is_empty() { p { "The node has no addresses of its own: its cluster's pool serves its VMs." } }
            @for (b, m) in &maps {
                section {
                    h3 { (b.text()) " " span.hint { "(" (b.role.as_str()) ")" } }
                    (view::map_counts(m))
                    (view::block_map(m))
                }
            }
            @if v.ranges.len() > BLOCKS { p.hint { "Showing " (BLOCKS) " blocks per page." } }
            @if admin && node.routing.is_some() {
                h3 { "Add an IP address" }
                (view::form(r, &format!("{here}/blocks"), "Add subnet or range", html! {
                    (view::field("Subnet or range", "block", "", n, Some("a subnet routed to the node (203.0.113.48/29) or a range A-B"), true))
                }))
                @if node.routing.as_ref().is_some_and(|rt| rt.ipv6.is_none()) {
                    h3 { "IPv6 — Add an IP address" }
                    (view::form(r, &format!("{here}/ipv6"), "Add IPv6", html! {
                        (view::field("IPv6 address", "ipv6", "", n, Some("the node's address in the provider's /64, ::2 by convention, with prefix 64: e.g. 2a01:4f8:13b:9a7::2/64"), true))
                        (view::field("Gateway", "gateway", "", n, Some("default fe80::1"), false))
                    }))
                }
            }
            @if r.may(Access::Operate) && node.routing.is_some() { (reserve_forms(r, &here, n)) }
        },
    ))
}

async fn add_node_block(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let b = text(&f, "block").to_string();
    let kind = if b.contains('-') {
        NodeBlockKind::Range
    } else {
        NodeBlockKind::Subnet
    };
    let result = allowed(&r, Access::Admin, c.store.add_node_block(&name, kind, &b))
        .await
        .map_err(|e| rename_field(e, &["cidr", "range", "subnet"], "block"));
    let to = format!("/nodes/{}", enc(&name));
    outcome(&c, &r, &to, result, |_| format!("Node {name} now has {b}.")).await
}

async fn add_node_ipv6(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let result = allowed(
        &r,
        Access::Admin,
        c.store
            .add_node_ipv6(&name, text(&f, "ipv6"), opt(&f, "gateway").as_deref()),
    )
    .await;
    let to = format!("/nodes/{}", enc(&name));
    outcome(&c, &r, &to, result, |_| {
        format!("Node {name} now has IPv6 {}.", text(&f, "ipv6"))
    })
    .await
}

/// The store names a field by its CLI spelling; the form may call it
/// otherwise.
fn rename_field(e: Error, from: &[&str], to: &str) -> Error {
    match e {
        Error::Invalid { field, value, rule } if from.contains(&field.as_str()) => Error::Invalid {
            field: to.into(),
            value,
            rule,
        },
        Error::Conflict { field, value, rule } if from.contains(&field.as_str()) => {
            Error::Conflict {
                field: to.into(),
                value,
                rule,
            }
        }
        other => other,
    }
}

// --- addresses ---

async fn reserve(State(c): State<Ctl>, headers: HeaderMap, body: Bytes) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let result = allowed(
        &r,
        Access::Operate,
        c.store.reserve(text(&f, "ip"), opt(&f, "note").as_deref()),
    )
    .await;
    let to = back(&f, "/");
    outcome(&c, &r, &to, result, |a| format!("Reserved {}.", a.address)).await
}

async fn release(State(c): State<Ctl>, headers: HeaderMap, body: Bytes) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let result = allowed(&r, Access::Operate, c.store.release(text(&f, "release-ip")))
        .await
        .map_err(|e| rename_field(e, &["ip", "address"], "release-ip"));
    let to = back(&f, "/");
    outcome(&c, &r, &to, result, |x| {
        format!("Released {}; usable again at {}.", x.address, x.usable_at)
    })
    .await
}

// --- VMs ---

async fn vms_get(State(c): State<Ctl>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (r, q, n) = match prelude(&c, &headers, q.as_deref()).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    finish(&r, vms_page(&c, &r, &q, &n).await)
}

async fn vms_page(c: &Ctl, r: &Reader, q: &HashMap<String, String>, n: &Notice) -> Result<Markup> {
    let cluster = q.get("cluster").filter(|s| !s.is_empty()).cloned();
    let node = q.get("node").filter(|s| !s.is_empty()).cloned();
    let address = q
        .get("address")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let (vms, next) = match &address {
        // One address, one holder at most: its VM now.
        Some(a) => {
            let h = c
                .store
                .history(a, Some(c.store.now()), &PageRequest::first(1))
                .await?;
            let mut out = Vec::new();
            for e in &h.items {
                if let vmfabric_model::view::Holder::Vm { vm, .. } = &e.holder {
                    out.push(c.store.vm(vm).await?);
                }
            }
            (out, None)
        }
        None => {
            let f = AddressFilter {
                cluster: cluster.clone(),
                node: node.clone(),
                reserved: false,
            };
            let p = c.store.vms(&f, &page_of(q, PAGE)).await?;
            (p.items, p.next)
        }
    };
    let mut base = String::from("/vms?");
    for (k, v) in [("cluster", &cluster), ("node", &node)] {
        if let Some(v) = v {
            base.push_str(&format!("{k}={}&", enc(v)));
        }
    }
    let base = base.trim_end_matches(['&', '?']).to_string();
    Ok(view::page(
        "VMs",
        Some(r),
        n,
        html! {
            form.act method="get" action="/vms" role="search" {
                (view::field("Cluster", "cluster", cluster.as_deref().unwrap_or_default(), n, None, false))
                (view::field("Node", "node", node.as_deref().unwrap_or_default(), n, None, false))
                (view::field("Address", "address", address.as_deref().unwrap_or_default(), n, None, false))
                button type="submit" { "Filter" }
            }
            @if vms.is_empty() { p { "No VM matches." } } @else {
                table {
                    thead { tr { th { "VM" } th { "Cluster" } th { "Node" } th { "Addresses" } } }
                    tbody { @for vm in &vms { tr {
                        td { a href=(format!("/vms/{}", enc(&vm.name))) { (vm.name) } }
                        td { (vm.cluster) }
                        td { a href=(format!("/nodes/{}", enc(&vm.node))) { (vm.node) } }
                        td { @for nic in &vm.nics { @for a in &nic.addresses { code { (a.address) } " " } } }
                    } } }
                }
                (view::next_link(&base, next.as_ref()))
            }
            @if r.may(Access::Operate) {
                h2 { "Create a VM" }
                (view::form(r, "/vms", "Create VM", html! {
                    (view::field("Cluster", "cluster", cluster.as_deref().unwrap_or_default(), n, None, true))
                    (view::field("Name", "name", "", n, None, true))
                    (view::field("Node", "node", node.as_deref().unwrap_or_default(), n, None, true))
                    (view::field("Address", "ip", "", n, Some("empty: the next free one"), false))
                    div.field {
                        label for="f-ipv6" { "IPv6 too" }
                        input id="f-ipv6" type="checkbox" name="ipv6" value="1";
                    }
                }))
            }
        },
    ))
}

async fn create_vm(State(c): State<Ctl>, headers: HeaderMap, body: Bytes) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let input = VmInput {
        name: text(&f, "name").into(),
        node: text(&f, "node").into(),
        ips: list(&f, "ip"),
        ipv6: f.contains_key("ipv6"),
        ..VmInput::default()
    };
    let result = allowed(
        &r,
        Access::Operate,
        c.store.create_vm(text(&f, "cluster"), &input),
    )
    .await;
    let to = match &result {
        Ok(vm) => format!("/vms/{}", enc(&vm.name)),
        Err(_) => "/vms".to_string(),
    };
    outcome(&c, &r, &to, result, |vm| format!("Created VM {}.", vm.name)).await
}

async fn vm_get(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (r, _q, n) = match prelude(&c, &headers, q.as_deref()).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    finish(&r, vm_page(&c, &r, &name, &n).await)
}

async fn vm_page(c: &Ctl, r: &Reader, name: &str, n: &Notice) -> Result<Markup> {
    let vm = c.store.vm(name).await?;
    let cl = c.store.cluster(&vm.cluster).await?.cluster;
    let node = c.store.node(&vm.node).await?.node;
    let none = files::GuestOptions::default();
    let cloud = files::guest_file(&vm, &cl, &node, files::GuestFormat::CloudInit, &none)?;
    // The hypervisor's own definition: libvirt for KVM, LXD's for LXD.
    let hypervisor = [
        ("libvirt domain", files::GuestFormat::LibvirtDomain),
        ("LXD configuration", files::GuestFormat::Lxd),
    ]
    .into_iter()
    .find_map(|(label, f)| {
        files::guest_file(&vm, &cl, &node, f, &none)
            .ok()
            .map(|x| (label, x))
    });
    let here = format!("/vms/{}", enc(name));
    let operate = r.may(Access::Operate);
    Ok(view::page(
        &format!("VM {name}"),
        Some(r),
        n,
        html! {
            p { "Cluster " a href=(format!("/clusters/{}", enc(&vm.cluster))) { (vm.cluster) } " (" (cl.network_type) ") · node " a href=(format!("/nodes/{}", enc(&vm.node))) { (vm.node) } }
            table {
                thead { tr { th { "NIC" } th { "MAC" } th { "Host interface" } th { "Addresses" } } }
                tbody { @for nic in &vm.nics { tr {
                    td { "eth" (nic.index) }
                    td { code { (nic.mac) } }
                    td { code { (nic.host_interface) } }
                    td { @for a in &nic.addresses { code { (a.address) "/" (a.prefix_len) } @if let Some(g) = a.gateway { " via " (g) } br; } }
                } } }
            }
            @if operate {
                h2 { "Migrate" }
                @if cl.network_type == NetworkType::Routing {
                    p.hint { "Routing VMs cannot migrate: their addresses are routed to node " (vm.node) " by the provider. Create the VM anew on the other node instead." }
                }
                (view::form(r, &format!("{here}/migrate"), "Migrate", html! {
                    (view::field("To node", "to", "", n, None, true))
                }))
                h2 { "Delete" }
                (view::danger(r, &format!("{here}/delete"), &format!("Delete VM {name}"), &format!("Delete VM {name} and release its addresses?"), &[]))
            }
            h2 { "Guest configuration" }
            h3 { "cloud-init network-config" }
            (view::copyable("cloud-init", &cloud.text, None))
            @if let Some((label, f)) = &hypervisor {
                h3 { (label) }
                (view::copyable("hypervisor", &f.text, None))
            }
        },
    ))
}

async fn migrate_vm(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let result = allowed(
        &r,
        Access::Operate,
        c.store.migrate_vm(&name, text(&f, "to")),
    )
    .await
    .map_err(|e| rename_field(e, &["node"], "to"));
    let to = format!("/vms/{}", enc(&name));
    outcome(&c, &r, &to, result, |vm| {
        format!("VM {} now runs on {}.", vm.name, vm.node)
    })
    .await
}

async fn delete_vm(
    State(c): State<Ctl>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (r, _f) = match posted(&c, &headers, &body).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let result = allowed(&r, Access::Operate, c.store.delete_vm(&name)).await;
    let to = match &result {
        Ok(_) => "/vms".to_string(),
        Err(_) => format!("/vms/{}", enc(&name)),
    };
    outcome(&c, &r, &to, result, |vm| {
        format!("Deleted VM {}; its addresses cool down.", vm.name)
    })
    .await
}

// --- address search ---

async fn search_get(State(c): State<Ctl>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let (r, q, n) = match prelude(&c, &headers, q.as_deref()).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    finish(&r, search_page(&c, &r, &q, &n).await)
}

async fn search_page(
    c: &Ctl,
    r: &Reader,
    q: &HashMap<String, String>,
    n: &Notice,
) -> Result<Markup> {
    let address = q
        .get("address")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let at_text = q
        .get("at")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    // A browser's datetime-local has no seconds and no zone: UTC, as the
    // page says.
    let at = match &at_text {
        Some(t) => {
            let full = if t.len() == 16 {
                format!("{t}:00Z")
            } else {
                t.clone()
            };
            Some(Timestamp::parse("at", &full).map_err(|_| {
                Error::invalid("at", t, "a date and time in UTC, e.g. 2026-05-03T14:00")
            })?)
        }
        None => None,
    };
    let mut notice = n.clone();
    let (now, history, next) = match &address {
        Some(a) => {
            let found = async {
                let now = c
                    .store
                    .history(a, Some(c.store.now()), &PageRequest::first(1))
                    .await?;
                let h = c.store.history(a, at, &page_of(q, PAGE)).await?;
                Ok::<_, Error>((now.items.into_iter().next(), h.items, h.next))
            }
            .await;
            match found {
                Ok(x) => x,
                Err(e) => {
                    notice = Notice::error(e);
                    (None, Vec::new(), None)
                }
            }
        }
        None => (None, Vec::new(), None),
    };
    Ok(view::page(
        "Address search",
        Some(r),
        &notice,
        html! {
            form.act method="get" action="/search" role="search" {
                (view::field("Address", "address", address.as_deref().unwrap_or_default(), &notice, Some("IPv4 or IPv6"), true))
                (view::field("At (UTC, optional)", "at", at_text.as_deref().unwrap_or_default(), &notice, Some("who had it then, e.g. 2026-05-03T14:00"), false))
                button type="submit" { "Search" }
            }
            @if let Some(a) = &address {
                @if notice.error.is_none() {
                    h2 { "Now" }
                    @match &now {
                        Some(e) => p { code { (a) } " is held by " strong { (e.holder.describe()) } " in cluster " (e.cluster) " since " (e.since) "." },
                        None => p { code { (a) } " is not held now." },
                    }
                    h2 { @if let Some(t) = &at_text { "Held at " (t) " UTC" } @else { "History" } }
                    @if history.is_empty() { p { "No holding on record." } } @else {
                        table {
                            thead { tr { th { "Holder" } th { "Cluster" } th { "Node" } th { "Since" } th { "Until" } } }
                            tbody { @for e in &history { tr {
                                td { (e.holder.describe()) }
                                td { (e.cluster) }
                                td { (e.node.clone().unwrap_or_default()) }
                                td { (e.since) }
                                td { @if let Some(u) = e.until { (u) } @else { "now" } }
                            } } }
                        }
                        (view::next_link(&format!("/search?address={}", enc(a)), next.as_ref()))
                    }
                }
            }
        },
    ))
}
