//! Each command: input → store call → output. No rules live here.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use vmfabric_model::{ClusterInput, Error, NetworkInput, NodeInput, Result, Timestamp, VmInput};
use vmfabric_store::{AddressFilter, SqlStore, Store, SystemClock, VmRequest};

use crate::args::{
    BenchCmd, Cli, ClusterCmd, Command, IpCmd, NetworkCmd, NodeCmd, PoolCmd, ServeArgs, TokenCmd,
    VmCmd,
};
use crate::listing::{Text, stream};
use crate::{Out, render};

/// Where commands go: the controller (`--server`), else the database.
pub async fn open_store(cli: &Cli) -> Result<Arc<dyn Store>> {
    match &cli.server {
        Some(url) => {
            if cli.db.is_some() {
                return Err(Error::invalid(
                    "db",
                    cli.db.as_deref().unwrap_or_default(),
                    "give either --db or --server, not both",
                ));
            }
            Ok(Arc::new(remote(cli, url)?))
        }
        None => Ok(Arc::new(open(cli.db.as_deref(), false).await?)),
    }
}

/// The controller at `url`, with the token and CA of the command line.
pub fn remote(cli: &Cli, url: &str) -> Result<vmfabric_client::RemoteStore> {
    vmfabric_client::RemoteStore::new(
        url,
        cli.token.as_deref().unwrap_or_default(),
        cli.ca_cert.as_deref(),
    )
}

/// The database the user means: `--db`/`$VMFABRIC_DB` (a path or a URL),
/// else the default file in the user's data directory.
#[derive(Debug, Clone)]
pub enum Target {
    Url(String),
    File(PathBuf),
}

pub fn target(db: Option<&str>) -> Result<Target> {
    if let Some(d) = db {
        if ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|p| d.starts_with(p))
        {
            return Ok(Target::Url(d.to_string()));
        }
        return Ok(Target::File(PathBuf::from(d)));
    }
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/share"),
            None => {
                return Err(Error::invalid(
                    "db",
                    "",
                    "no database given and neither $XDG_DATA_HOME nor $HOME is set: pass --db PATH",
                ));
            }
        },
    };
    Ok(Target::File(base.join("vmfabric").join("vmfabric.db")))
}

/// A database file that must exist: a mistyped `--db` must not start an
/// empty installation.
pub fn existing(path: &std::path::Path) -> Result<()> {
    if !path.exists() {
        return Err(Error::invalid(
            "db",
            path.display(),
            "no database here: `vmfabric init` creates one (check --db or $VMFABRIC_DB for a typo)",
        ));
    }
    Ok(())
}

/// The store on the database the user means, which must have this
/// binary's schema. Only with `create` (`vmfabric init`, `serve --init`)
/// is a database file created, or a new database given its schema.
pub async fn open(db: Option<&str>, create: bool) -> Result<SqlStore> {
    match target(db)? {
        Target::Url(url) if create => SqlStore::init(&url, Arc::new(SystemClock)).await,
        Target::Url(url) => SqlStore::open(&url, Arc::new(SystemClock)).await,
        Target::File(path) if create => SqlStore::init_sqlite(&path).await,
        Target::File(path) => {
            existing(&path)?;
            SqlStore::open_sqlite(&path).await
        }
    }
}

pub async fn run(mut cli: Cli) -> Result<Out> {
    // The command moves out; the global options stay for those that need them.
    let command = std::mem::replace(&mut cli.command, Command::Check);
    match command {
        Command::Tour(a) => return crate::tour::run(a).await,
        Command::Lab(c) => return crate::lab::run(c).await,
        Command::Agent(a) => {
            let json = cli.output == crate::args::Format::Json;
            return crate::agent::run(&cli, a, json).await;
        }
        Command::Serve(a) => return serve(&cli, a).await,
        Command::Init => {
            if cli.server.is_some() {
                return Err(Error::invalid(
                    "server",
                    cli.server.as_deref().unwrap_or_default(),
                    "init creates a database (--db), not a controller",
                ));
            }
            let s = open(cli.db.as_deref(), true).await?;
            let revision = s.revision().await?;
            let where_ = cli
                .db
                .clone()
                .unwrap_or_else(|| "the default database".into());
            return Out::new(
                &serde_json::json!({"database": where_, "revision": revision}),
                format!("{where_} is ready (revision {revision})\n"),
            );
        }
        Command::Db(c) => return crate::db::run(&cli, c).await,
        Command::Bench(BenchCmd::Store { count, batch, dir }) => {
            return crate::bench::store(count, batch, dir).await;
        }
        Command::Bench(BenchCmd::Changes { count, dir }) => {
            return crate::bench_changes::changes(count, dir).await;
        }
        Command::Bench(BenchCmd::Agent { vms, runs }) => {
            return crate::bench_agent::agent(vms, runs).await;
        }
        Command::Bench(BenchCmd::Fabric { vms }) => return crate::bench_agent::fabric(vms).await,
        Command::Bench(BenchCmd::Serve {
            requests,
            clients,
            postgres,
        }) => return crate::bench_serve::run(requests, &clients, postgres.as_deref()).await,
        Command::Bench(BenchCmd::Scale(a)) => return crate::bench_scale::run(a).await,
        Command::Bench(BenchCmd::ScaleAgents(a)) => return crate::bench_scale::agents(a).await,
        Command::Bench(BenchCmd::ScaleLoad(a)) => return crate::bench_scale::load(a).await,
        _ => {}
    }
    let json = cli.output == crate::args::Format::Json;
    let store = open_store(&cli).await?;
    let s = store.as_ref();
    match command {
        Command::Cluster(c) => cluster(s, c, json).await,
        Command::Network(c) => network(s, c, json).await,
        Command::Node(c) => node(s, c, json).await,
        Command::Vm(c) => vm(s, c, json).await,
        Command::Ip(c) => ip(s, c, json).await,
        Command::Pool(PoolCmd::Usage { cluster }) => {
            let text = Text {
                headers: render::USAGE_HEADERS,
                rows: &render::usage_rows,
                empty: None,
            };
            let c = cluster.as_deref();
            stream(json, text, |p| async move { s.usage(c, &p).await }).await
        }
        Command::Log(a) => {
            let filter = vmfabric_store::ChangeFilter {
                since: a.since,
                object: a.object.clone(),
            };
            let filter = &filter;
            let text = Text {
                headers: render::CHANGES_HEADERS,
                rows: &render::changes_rows,
                empty: None,
            };
            stream(json, text, |p| async move { s.changes(filter, &p).await }).await
        }
        Command::Check => {
            let r = s.check().await?;
            if !r.problems.is_empty() {
                return Err(Error::storage(format!(
                    "the database is inconsistent: {}",
                    r.problems.join("; ")
                )));
            }
            Out::new(&r, render::check(&r))
        }
        Command::Token(c) => token(s, c, json).await,
        Command::Tour(_)
        | Command::Bench(_)
        | Command::Agent(_)
        | Command::Lab(_)
        | Command::Serve(_)
        | Command::Db(_)
        | Command::Config(_)
        | Command::Generate(_)
        | Command::Init => Err(Error::storage("unreachable")),
    }
}

async fn cluster(s: &dyn Store, c: ClusterCmd, json: bool) -> Result<Out> {
    match c {
        ClusterCmd::Create(a) => {
            let input = ClusterInput {
                name: a.name,
                network_type: a.network_type.as_str().into(),
                vm_gateway: a.vm_gateway,
                vm_gateway6: a.vm_gateway6,
                bgp_community: a.bgp_community,
                route_reflectors: a.route_reflectors,
                asn: a.asn,
                cooldown: a.cooldown,
                reuse: a.reuse.map(|r| r.as_str().into()),
                virtualization: a.virtualization.map(|v| v.as_str().into()),
                nameservers: a.dns.nameservers,
                search_domains: a.dns.search_domains,
                mtu: a.mtu,
            };
            let c = s.create_cluster(&input).await?;
            Out::new(&c, render::cluster(&c))
        }
        ClusterCmd::List => {
            let text = Text {
                headers: render::CLUSTERS_HEADERS,
                rows: &render::clusters_rows,
                empty: None,
            };
            stream(json, text, |p| async move { s.clusters(&p).await }).await
        }
        ClusterCmd::Show { name } => {
            let c = s.cluster(&name).await?;
            Out::new(&c, render::cluster_summary(&c))
        }
        ClusterCmd::Set(a) => {
            let (nameservers, search_domains) = a.dns.lists();
            let patch = vmfabric_model::ClusterPatch {
                vm_gateway: a.vm_gateway,
                vm_gateway6: a.vm_gateway6,
                bgp_community: a.bgp_community,
                asn: a.asn,
                cooldown: a.cooldown,
                reuse: a.reuse.map(|r| r.as_str().into()),
                route_reflectors: (!a.route_reflectors.is_empty()).then_some(a.route_reflectors),
                add_route_reflectors: a.add_route_reflectors,
                remove_route_reflectors: a.remove_route_reflectors,
                nameservers,
                search_domains,
                mtu: a.mtu,
            };
            let c = s.update_cluster(&a.name, &patch).await?;
            Out::new(&c, format!("changed cluster {}\n", c.name))
        }
        ClusterCmd::Delete { name } => {
            let c = s.delete_cluster(&name).await?;
            Out::new(&c, format!("deleted cluster {}\n", c.name))
        }
        ClusterCmd::RrConfig {
            name,
            format,
            reflector,
            peers,
        } => crate::plans::rr_config(s, &name, format, reflector.as_deref(), &peers).await,
    }
}

async fn network(s: &dyn Store, c: NetworkCmd, json: bool) -> Result<Out> {
    match c {
        NetworkCmd::Add {
            cluster,
            cidr,
            gateway,
            exclude,
        } => {
            let input = NetworkInput {
                cidr,
                gateway,
                exclude,
            };
            let n = s.add_network(&cluster, &input).await?;
            Out::new(&n, render::networks(std::slice::from_ref(&n)))
        }
        NetworkCmd::List { cluster } => {
            let text = Text {
                headers: render::NETWORKS_HEADERS,
                rows: &render::networks_rows,
                empty: None,
            };
            let c = cluster.as_deref();
            stream(json, text, |p| async move { s.networks(c, &p).await }).await
        }
        NetworkCmd::Set {
            cluster,
            cidr,
            shrink_to,
            gateway,
            exclude,
            include,
        } => {
            let patch = vmfabric_model::NetworkPatch {
                shrink_to,
                gateway,
                add_exclusions: exclude,
                remove_exclusions: include,
            };
            let n = s.update_network(&cluster, &cidr, &patch).await?;
            let text = format!("changed network {cidr} of cluster {cluster}\n");
            Out::new(&n, text)
        }
        NetworkCmd::Remove {
            cluster,
            cidr,
            force,
        } => {
            let n = s.remove_network(&cluster, &cidr, force).await?;
            Out::new(
                &n,
                format!(
                    "removed network {} of cluster {}\n",
                    n.block.text(),
                    cluster
                ),
            )
        }
    }
}

async fn node(s: &dyn Store, c: NodeCmd, json: bool) -> Result<Out> {
    match c {
        NodeCmd::Add(a) => {
            let input = NodeInput {
                name: a.name,
                address: a.address,
                uplink: a.uplink,
                uplink_mac: a.uplink_mac,
                bridge: a.bridge,
                primary_ip: a.primary_ip,
                subnets: a.subnets,
                ranges: a.ranges,
                ipv6: a.ipv6,
                ipv6_gateway: a.ipv6_gateway,
                ndp_proxy: a.ndp_proxy,
                nameservers: a.dns.nameservers,
                search_domains: a.dns.search_domains,
            };
            let n = s.add_node(&a.cluster, &input).await?;
            Out::new(&n, render::node(&n))
        }
        NodeCmd::List { cluster } => {
            let text = Text {
                headers: render::NODES_HEADERS,
                rows: &render::nodes_rows,
                empty: None,
            };
            let c = cluster.as_deref();
            stream(json, text, |p| async move { s.nodes(c, &p).await }).await
        }
        NodeCmd::Show { name } => {
            let n = s.node(&name).await?;
            Out::new(&n, render::node(&n))
        }
        NodeCmd::AddSubnet { node, cidr } => {
            let n = s
                .add_node_block(&node, vmfabric_store::NodeBlockKind::Subnet, &cidr)
                .await?;
            Out::new(&n, format!("node {} now routes {cidr}\n", n.node.name))
        }
        NodeCmd::AddRange { node, range } => {
            let n = s
                .add_node_block(&node, vmfabric_store::NodeBlockKind::Range, &range)
                .await?;
            Out::new(&n, format!("node {} now has range {range}\n", n.node.name))
        }
        NodeCmd::Set {
            name,
            address,
            primary_ip,
            uplink,
            uplink_mac,
            bridge,
            ndp_proxy,
            dns,
        } => {
            let (nameservers, search_domains) = dns.lists();
            let patch = vmfabric_model::NodePatch {
                address,
                primary_ip,
                uplink,
                uplink_mac,
                bridge,
                ndp_proxy,
                nameservers,
                search_domains,
            };
            let n = s.update_node(&name, &patch).await?;
            Out::new(&n, format!("changed node {}\n", n.node.name))
        }
        NodeCmd::AddIpv6 {
            node,
            ipv6,
            gateway,
        } => {
            let n = s.add_node_ipv6(&node, &ipv6, gateway.as_deref()).await?;
            Out::new(&n, format!("node {} now has IPv6 {ipv6}\n", n.node.name))
        }
        NodeCmd::RemoveIpv6 { node, force } => {
            let n = s.remove_node_ipv6(&node, force).await?;
            Out::new(
                &n,
                format!("removed the IPv6 /64 of node {}\n", n.node.name),
            )
        }
        NodeCmd::RemoveSubnet { node, block, force } => {
            let n = s.remove_node_block(&node, &block, force).await?;
            Out::new(&n, format!("removed {block} from node {}\n", n.node.name))
        }
        NodeCmd::Remove { name, force } => {
            let n = s.remove_node(&name, force).await?;
            Out::new(&n, format!("removed node {}\n", n.node.name))
        }
        NodeCmd::Plan {
            name,
            format,
            diff_from,
        } => crate::plans::node_plan(s, &name, format, diff_from.as_deref(), json).await,
    }
}

/// One line of `vm import`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    cluster: String,
    name: String,
    node: String,
    #[serde(default)]
    ip: Vec<String>,
    #[serde(default)]
    ipv6: bool,
    #[serde(default)]
    no_ipv4: bool,
    #[serde(default)]
    extra_ipv4: u8,
    #[serde(default)]
    extra_ipv6: u8,
    #[serde(default)]
    nics: Vec<vmfabric_model::NicInput>,
}

async fn vm(s: &dyn Store, c: VmCmd, json: bool) -> Result<Out> {
    match c {
        VmCmd::Create(a) => {
            let input = VmInput {
                name: a.name,
                node: a.node,
                ips: a.ips,
                ipv6: a.ipv6,
                no_ipv4: a.no_ipv4,
                extra_ipv4: a.extra_ipv4,
                extra_ipv6: a.extra_ipv6,
                nics: Vec::new(),
            }
            .with_nic_count(a.nics);
            let v = s.create_vm(&a.cluster, &input).await?;
            Out::new(&v, render::vm(&v))
        }
        VmCmd::Show { name } => {
            let v = s.vm(&name).await?;
            Out::new(&v, render::vm(&v))
        }
        VmCmd::List { cluster, node } => {
            let f = AddressFilter {
                cluster,
                node,
                reserved: false,
            };
            let text = Text {
                headers: render::VMS_HEADERS,
                rows: &render::vms_rows,
                empty: None,
            };
            let f = &f;
            stream(json, text, |p| async move { s.vms(f, &p).await }).await
        }
        VmCmd::Migrate { name, to } => {
            let v = s.migrate_vm(&name, &to).await?;
            Out::new(&v, render::vm(&v))
        }
        VmCmd::AddNic {
            name,
            no_ipv4,
            ipv6,
        } => {
            let v = s.add_nic(&name, !no_ipv4, ipv6).await?;
            let text = render::vm(&v);
            Out::new(&v, text)
        }
        VmCmd::RemoveNic { name, index, force } => {
            let v = s.remove_nic(&name, index, force).await?;
            let text = render::vm(&v);
            Out::new(&v, text)
        }
        VmCmd::AddAddress {
            name,
            nic,
            ipv6,
            ip,
        } => {
            let v = s.add_vm_address(&name, nic, ipv6, ip.as_deref()).await?;
            let text = render::vm(&v);
            Out::new(&v, text)
        }
        VmCmd::RemoveAddress { name, ip } => {
            let v = s.remove_vm_address(&name, &ip).await?;
            let text = render::vm(&v);
            Out::new(&v, text)
        }
        VmCmd::Delete { name } => {
            let v = s.delete_vm(&name).await?;
            Out::new(
                &v,
                format!("deleted vm {} and released its addresses\n", v.name),
            )
        }
        VmCmd::Import { batch } => import(s, batch.max(1), json).await,
        VmCmd::GuestConfig { name, format, disk } => {
            crate::plans::guest_config(s, &name, format, disk).await
        }
    }
}

/// Create VMs from JSON lines on stdin, `batch` per commit, printing each
/// result only once its commit is durable.
async fn import(s: &dyn Store, batch: usize, json: bool) -> Result<Out> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let (mut created, mut line_no) = (0u64, 0u64);
    // Failed lines: (line, VM), for the closing error.
    let mut failures: Vec<(u64, String)> = Vec::new();
    loop {
        // (line, VM) of each request, in order.
        let mut asked: Vec<(u64, String)> = Vec::with_capacity(batch);
        let mut requests = Vec::with_capacity(batch);
        let mut bad: Vec<(u64, String, Error)> = Vec::new();
        for line in lines.by_ref() {
            line_no += 1;
            let line =
                line.map_err(|e| Error::invalid("stdin", line_no, format!("cannot read: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<ImportLine>(&line) {
                Ok(l) => {
                    asked.push((line_no, l.name.clone()));
                    requests.push(VmRequest::new(
                        &l.cluster,
                        VmInput {
                            name: l.name,
                            node: l.node,
                            ips: l.ip,
                            ipv6: l.ipv6,
                            no_ipv4: l.no_ipv4,
                            extra_ipv4: l.extra_ipv4,
                            extra_ipv6: l.extra_ipv6,
                            nics: l.nics,
                        },
                    ))
                }
                Err(e) => bad.push((
                    line_no,
                    String::new(),
                    Error::invalid(
                        "line",
                        line_no,
                        format!("not a VM: {e} (expected {{\"cluster\",\"name\",\"node\",\"ip\":[..],\"ipv6\":bool}})"),
                    ),
                )),
            }
            if requests.len() + bad.len() >= batch {
                break;
            }
        }
        if requests.is_empty() && bad.is_empty() {
            break;
        }
        let results = s.create_vms(&requests).await?;
        let mut all: Vec<(u64, String, Result<vmfabric_model::Vm>)> = asked
            .into_iter()
            .zip(results)
            .map(|((n, vm), r)| (n, vm, r))
            .chain(bad.into_iter().map(|(n, vm, e)| (n, vm, Err(e))))
            .collect();
        all.sort_by_key(|(n, _, _)| *n);
        let mut out = std::io::stdout().lock();
        for (n, name, r) in all {
            let line = match &r {
                Ok(v) => {
                    created += 1;
                    if json {
                        serde_json::json!({"line": n, "ok": v}).to_string()
                    } else {
                        let a: Vec<String> = v
                            .nics
                            .iter()
                            .flat_map(|n| n.addresses.iter().map(|a| a.address.to_string()))
                            .collect();
                        format!("line {n}: created {} {}", v.name, a.join(" "))
                    }
                }
                Err(e) => {
                    failures.push((n, name.clone()));
                    let who = if name.is_empty() {
                        String::new()
                    } else {
                        format!(" (VM {name})")
                    };
                    if json {
                        // The shape of every command's error, with the line.
                        let mut j = serde_json::to_value(e).unwrap_or_default();
                        if let Some(o) = j.as_object_mut() {
                            o.insert("message".into(), e.to_string().into());
                        }
                        let mut doc = serde_json::json!({"line": n, "error": j});
                        if !name.is_empty() {
                            doc["vm"] = name.clone().into();
                        }
                        doc.to_string()
                    } else {
                        format!("line {n}{who}: failed: {e}")
                    }
                }
            };
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    let failed = failures.len();
    if failed > 0 {
        let mut named: Vec<String> = failures
            .iter()
            .take(20)
            .map(|(n, vm)| {
                if vm.is_empty() {
                    format!("line {n}")
                } else {
                    format!("line {n} (VM {vm})")
                }
            })
            .collect();
        if failed > 20 {
            named.push("…".into());
        }
        return Err(Error::invalid(
            "import",
            format!("{failed} of {} lines", created + failed as u64),
            format!(
                "{created} created; failed: {} (each failure is on its line above)",
                named.join(", ")
            ),
        ));
    }
    let summary = serde_json::json!({"created": created, "failed": 0});
    Out::new(&summary, format!("{created} created, 0 failed\n"))
}

async fn ip(s: &dyn Store, c: IpCmd, json: bool) -> Result<Out> {
    match c {
        IpCmd::List {
            cluster,
            node,
            free,
            reserved,
            limit,
        } => {
            let f = AddressFilter {
                cluster,
                node,
                reserved,
            };
            let f = &f;
            if free {
                let text = Text {
                    headers: render::FREE_HEADERS,
                    rows: &render::free_rows,
                    empty: None,
                };
                stream(
                    json,
                    text,
                    |p| async move { s.free_space(f, limit, &p).await },
                )
                .await
            } else {
                let text = Text {
                    headers: render::ALLOCATIONS_HEADERS,
                    rows: &render::allocations_rows,
                    empty: None,
                };
                stream(json, text, |p| async move { s.allocations(f, &p).await }).await
            }
        }
        IpCmd::Reserve {
            address,
            next,
            cluster,
            node,
            network,
            ipv6,
            note,
        } => {
            let a = match address {
                Some(address) if !next => s.reserve(&address, note.as_deref()).await?,
                _ => {
                    let r = vmfabric_store::ReserveNext {
                        cluster,
                        node,
                        network,
                        ipv6,
                        note,
                    };
                    s.reserve_next(&r).await?
                }
            };
            Out::new(&a, format!("reserved {} in {}\n", a.address, a.block))
        }
        IpCmd::Release { address } => {
            let r = s.release(&address).await?;
            Out::new(&r, render::released(&r))
        }
        IpCmd::History { address, at } => {
            let at = at.map(|t| Timestamp::parse("at", &t)).transpose()?;
            let text = Text {
                headers: render::HISTORY_HEADERS,
                rows: &render::history_rows,
                empty: Some("nobody\n"),
            };
            let address = &address;
            stream(
                json,
                text,
                |p| async move { s.history(address, at, &p).await },
            )
            .await
        }
    }
}

async fn token(s: &dyn Store, c: TokenCmd, json: bool) -> Result<Out> {
    match c {
        TokenCmd::Create { role, node, name } => {
            let t = s
                .create_token(&vmfabric_model::TokenInput { name, role, node })
                .await?;
            let text = format!(
                "token {} ({}{}) created; its secret is shown only now:\n{}\n",
                t.info.id,
                t.info.role,
                t.info
                    .node
                    .as_deref()
                    .map(|n| format!(" of node {n}"))
                    .unwrap_or_default(),
                t.secret
            );
            Out::new(&t, text)
        }
        TokenCmd::List => {
            let text = Text {
                headers: render::TOKENS_HEADERS,
                rows: &render::tokens_rows,
                empty: None,
            };
            stream(json, text, |p| async move { s.tokens(&p).await }).await
        }
        TokenCmd::Revoke { id } => {
            let n: i64 = id.trim().parse().map_err(|_| {
                Error::invalid("id", &id, "a token id is a number (vmfabric token list)")
            })?;
            let t = s.revoke_token(n).await?;
            Out::new(&t, format!("token {} revoked\n", t.id))
        }
    }
}

/// `vmfabric serve`: the controller on the database of `--db` (SQLite by
/// default, or postgres://), until stopped.
async fn serve(cli: &Cli, a: ServeArgs) -> Result<Out> {
    if cli.server.is_some() {
        return Err(Error::invalid(
            "server",
            cli.server.as_deref().unwrap_or_default(),
            "serve runs a controller on a database (--db), not through another one",
        ));
    }
    let listen: std::net::SocketAddr = a.listen.trim().parse().map_err(|_| {
        Error::invalid(
            "listen",
            &a.listen,
            "an address and port, e.g. 127.0.0.1:7480 or [::]:7480",
        )
    })?;
    let store = open(cli.db.as_deref(), a.init).await?;
    let postgres = store.dialect() == vmfabric_store::sql::Dialect::Postgres;
    let mut settings = vmfabric_server::Settings::new(listen);
    settings.commit_workers = a.commit_workers.unwrap_or(if postgres { 4 } else { 1 });
    let secs = |field: &str, v: u64| {
        if v == 0 {
            return Err(Error::invalid(field, v, "a number of seconds, 1 or more"));
        }
        Ok(std::time::Duration::from_secs(v))
    };
    if a.max_connections == 0 {
        return Err(Error::invalid("max-connections", 0, "1 or more"));
    }
    settings.limits = vmfabric_server::listen::Limits {
        head_timeout: secs("header-timeout", a.header_timeout)?,
        idle_timeout: secs("idle-timeout", a.idle_timeout)?,
        body_timeout: secs("body-timeout", a.body_timeout)?,
        max_connections: a.max_connections,
    };
    if let (Some(cert), Some(key)) = (a.tls_cert, a.tls_key) {
        settings.tls = Some((cert, key));
    }
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    vmfabric_server::serve(Arc::new(store), settings, |addr| {
        // The first line tells scripts (and tests) where to connect.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = out.flush();
    })
    .await?;
    Out::new(&serde_json::json!({}), String::new())
}
