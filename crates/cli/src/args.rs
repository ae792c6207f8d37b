//! The command line: the contract users and scripts build on.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "vmfabric",
    version,
    about = "IP address management and network control for KVM/LXD clusters",
    long_about = "vmfabric decides which addresses every VM gets, in the three cluster network types \
switching, routing (Hetzner/OVH) and ip-fabric (BGP), and keeps the history of who held which address when.\n\n\
Exit codes: 0 done, 1 storage or internal error, 2 invalid input, 3 not found, 4 conflict, 5 pool exhausted, 6 not authenticated or forbidden (--server), 7 unavailable (controller unreachable, lab without root)."
)]
pub struct Cli {
    /// Database: a SQLite file path, or a sqlite:// or postgres:// URL
    /// [default: $VMFABRIC_DB, else ~/.local/share/vmfabric/vmfabric.db]
    #[arg(long, global = true, env = "VMFABRIC_DB", value_name = "PATH|URL")]
    pub db: Option<String>,

    /// Output format; with json every command prints one JSON document and
    /// errors are JSON on stderr.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Text)]
    pub output: Format,

    /// Work through the controller at this URL instead of a database
    #[arg(long, global = true, env = "VMFABRIC_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// API token for --server
    #[arg(long, global = true, env = "VMFABRIC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// A CA certificate (PEM) to trust for an https:// --server
    #[arg(long, global = true, env = "VMFABRIC_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Logs of `serve` and `agent` (on stderr): text for a terminal, json
    /// (one object per line) for journald and log shippers
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// More log detail (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Settings file (TOML); flags and environment variables win over it
    /// [default: /etc/vmfabric/vmfabric.toml when it exists]
    #[arg(long, global = true, env = "VMFABRIC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Clusters and their network type
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Networks of a cluster's pool (switching, ip-fabric)
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Nodes (hypervisor hosts) and, for routing clusters, their ranges
    #[command(subcommand)]
    Node(NodeCmd),
    /// VMs and their addresses
    #[command(subcommand)]
    Vm(VmCmd),
    /// Addresses: who holds them, reservations, history
    #[command(subcommand)]
    Ip(IpCmd),
    /// Pool usage
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Create the database (--db, or the default file) with the current
    /// schema; every other command refuses a database that does not exist
    Init,
    /// Verify every invariant of the stored state (like fsck)
    Check,
    /// The change log: what changed, when, by whom, before and after, and
    /// whose plans it reached (newest first; with --since, oldest first)
    Log(LogArgs),
    /// The node agent: make this node's kernel match its plan, and keep it so
    Agent(AgentArgs),
    /// Network-namespace labs of the three scenarios (root; FRR, BIRD, nftables)
    #[command(subcommand)]
    Lab(LabCmd),
    /// A short tour: the three seed examples in a fresh database
    Tour(TourArgs),
    /// The controller: the REST API for panels, billing and node agents
    Serve(ServeArgs),
    /// API tokens of the controller (admin, operator, viewer, node)
    #[command(subcommand)]
    Token(TokenCmd),
    /// Benchmarks (results go to BENCHMARKS.md)
    #[command(subcommand)]
    Bench(BenchCmd),
    /// The database's schema version, upgrades, backups
    #[command(subcommand)]
    Db(DbCmd),
    /// The configuration file
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Shell completions and man pages, from these definitions (packaging)
    #[command(subcommand, hide = true)]
    Generate(GenerateCmd),
}

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// The schema version of the database and of this vmfabric, and the
    /// migrations pending
    Status,
    /// Bring the database to this vmfabric's schema, after a backup
    Migrate {
        /// Where the backup goes [default: next to a SQLite file,
        /// DB.schema-N-TIME.bak; PostgreSQL: ./vmfabric-schema-N-TIME.dump]
        #[arg(long, value_name = "FILE", conflicts_with = "no_backup")]
        backup: Option<PathBuf>,
        /// Migrate without a backup first
        #[arg(long)]
        no_backup: bool,
    },
    /// A consistent copy of the database while the controller runs and
    /// writes (SQLite: VACUUM INTO; PostgreSQL: pg_dump --format=custom)
    Backup {
        /// The copy (must not exist)
        file: PathBuf,
    },
    /// Replace the SQLite database with a backup (stop the controller and
    /// agents first); the replaced file is kept beside it
    Restore {
        /// A file of `db backup`
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Every setting's effective value (secrets masked) and where it came
    /// from: command line, environment, file and line, or default
    Show,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCmd {
    /// A shell's completion script, on stdout
    Completions { shell: Shell },
    /// Man pages (vmfabric.1 and one per subcommand) into a folder
    Man { dir: PathBuf },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0: any free port, printed)
    #[arg(long, default_value = "127.0.0.1:7480")]
    pub listen: String,
    /// TLS certificate chain (PEM): serve HTTPS
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// VM creations committed at once [default: 1 on SQLite, 4 on PostgreSQL]
    #[arg(long)]
    pub commit_workers: Option<usize>,
    /// Create the SQLite database if it does not exist yet (as `vmfabric init`)
    #[arg(long)]
    pub init: bool,
    /// Connections open at once; at the cap a new one closes the longest-idle one
    #[arg(long, default_value_t = 15_000, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a new connection (or a started request head) has to send its whole head
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub header_timeout: u64,
    /// Seconds a kept-alive connection may wait between requests
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub idle_timeout: u64,
    /// Seconds a request's body has to arrive after its head
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub body_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token; its secret is printed once
    Create {
        /// admin, operator, viewer, or node (an agent's)
        #[arg(long)]
        role: String,
        /// The node of a node token
        #[arg(long)]
        node: Option<String>,
        /// A name to recognise it by
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets)
    List,
    /// Revoke a token
    Revoke { id: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    Switching,
    Routing,
    /// The ip-fabric type (also spelt `fabric`)
    #[value(name = "ip-fabric", alias = "fabric")]
    Fabric,
}

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Build the scenario's world, configure vmfabric, run the agents, start the VMs
    Up {
        scenario: Scenario,
        /// Where the lab keeps its database and daemons' state [default: /var/tmp/vmfabric-lab/<tag>]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Remove the scenario's namespaces and stop its daemons
    Down {
        scenario: Scenario,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Which namespaces and daemons are up, and what the agents last did
    Status {
        scenario: Scenario,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub status: Option<AgentCmd>,
    #[command(flatten)]
    pub run: AgentRun,
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// What the last round changed, and the state of BGP sessions and proxies
    Status {
        #[command(flatten)]
        daemons: AgentDaemons,
    },
    /// What every node's agent last reported to the controller (--server or --db)
    Reports,
}

#[derive(Debug, Args)]
pub struct AgentRun {
    /// The node this agent runs on
    #[arg(long)]
    pub node: Option<String>,
    /// Take the plan from this file (`node plan --format json`) instead of the database
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// One round, then exit (non-zero if any change failed)
    #[arg(long)]
    pub once: bool,
    /// Print what would change; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Seconds between rounds
    #[arg(long, default_value_t = 10.0)]
    pub interval: f64,
    #[command(flatten)]
    pub daemons: AgentDaemons,
}

#[derive(Debug, Args)]
pub struct AgentDaemons {
    /// Where the agent keeps its state
    #[arg(long, default_value = "/var/lib/vmfabric/agent")]
    pub state_dir: PathBuf,
    /// Folder of frr.conf
    #[arg(long, default_value = "/etc/frr")]
    pub frr_dir: PathBuf,
    /// Folder of FRR's vty sockets, for an FRR of its own (e.g. one per namespace)
    #[arg(long)]
    pub frr_socket: Option<PathBuf>,
    /// FRR's frr-reload.py
    #[arg(long, default_value = "/usr/lib/frr/frr-reload.py")]
    pub frr_reload: PathBuf,
    /// ndppd's config file
    #[arg(long, default_value = "/etc/ndppd.conf")]
    pub ndppd_conf: PathBuf,
    /// ndppd's pid file
    #[arg(long, default_value = "/run/ndppd.pid")]
    pub ndppd_pid: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Create a cluster
    Create(ClusterCreate),
    /// List clusters
    List,
    /// Show a cluster
    Show { name: String },
    /// Delete a cluster without VMs or reservations (its networks and nodes go with it)
    Delete { name: String },
    /// Change a cluster in place (every node gets the new plan; VMs keep running)
    Set(ClusterSet),
    /// Route reflector configuration listing every node of an ip-fabric cluster
    RrConfig {
        name: String,
        #[arg(long, value_enum, default_value_t = RrFormat::Frr)]
        format: RrFormat,
        /// Which reflector [default: the cluster's first]
        #[arg(long, value_name = "IP")]
        reflector: Option<String>,
        /// A non-client iBGP peer of the reflector, e.g. the data-center core (repeat)
        #[arg(long = "peer", value_name = "IP")]
        peers: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RrFormat {
    Frr,
    Bird,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Json,
    Summary,
    Frr,
    Nft,
    Ndppd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuestFormat {
    CloudInit,
    Libvirt,
    LibvirtDomain,
    Lxd,
}

#[derive(Debug, Args)]
pub struct ClusterCreate {
    pub name: String,
    /// Network type
    #[arg(long = "type", value_enum)]
    pub network_type: TypeArg,
    /// ip-fabric: the VMs' gateway address, put on every <vm>_net0 (e.g. 10.0.0.1)
    #[arg(long)]
    pub vm_gateway: Option<String>,
    /// ip-fabric: the VMs' IPv6 gateway [default: fe80::1]
    #[arg(long)]
    pub vm_gateway6: Option<String>,
    /// ip-fabric: BGP community ASN:VALUE set on VM routes (e.g. 65000:100)
    #[arg(long)]
    pub bgp_community: Option<String>,
    /// ip-fabric: a route reflector ADDRESS:ASN (repeat; two are recommended)
    #[arg(long = "route-reflector", value_name = "IP:ASN")]
    pub route_reflectors: Vec<String>,
    /// ip-fabric: the nodes' ASN [default: the reflectors' ASN]
    #[arg(long)]
    pub asn: Option<String>,
    /// How long a released address waits before it is handed out again (0, 90s, 15m, 1h, 7d)
    #[arg(long)]
    pub cooldown: Option<String>,
    /// Order of automatic allocation: last (never-used addresses first, then
    /// the least recently released) or first-free (lowest free address)
    #[arg(long, value_enum)]
    pub reuse: Option<ReuseArg>,
    /// What runs the VMs: kvm (a tap per NIC) or lxd (a veth pair per NIC) [default: kvm]
    #[arg(long, value_enum)]
    pub virtualization: Option<VirtArg>,
    #[command(flatten)]
    pub dns: DnsArgs,
    /// The MTU of the guests' NICs and the nodes' VM interfaces, 1280 to 9216 [default: 1500]
    #[arg(long)]
    pub mtu: Option<String>,
}

/// The guests' DNS, given at creation.
#[derive(Debug, Args)]
pub struct DnsArgs {
    /// A resolver the guests use (repeat; at most 3)
    #[arg(long = "nameserver", value_name = "IP")]
    pub nameservers: Vec<String>,
    /// A search domain of the guests (repeat; at most 6)
    #[arg(long = "search-domain", value_name = "DOMAIN")]
    pub search_domains: Vec<String>,
}

/// The guests' DNS, changed in place: each list given replaces the old one.
#[derive(Debug, Args)]
pub struct DnsSet {
    /// Replace the guests' resolvers with these (repeat; at most 3)
    #[arg(long = "nameserver", value_name = "IP")]
    pub nameservers: Vec<String>,
    /// Replace the guests' search domains with these (repeat; at most 6)
    #[arg(long = "search-domain", value_name = "DOMAIN")]
    pub search_domains: Vec<String>,
    /// Remove the resolvers and search domains
    #[arg(long, conflicts_with_all = ["nameservers", "search_domains"])]
    pub clear_dns: bool,
}

impl DnsSet {
    /// The patch's (nameservers, search domains): `None` leaves a list as it is.
    pub fn lists(self) -> (Option<Vec<String>>, Option<Vec<String>>) {
        if self.clear_dns {
            return (Some(Vec::new()), Some(Vec::new()));
        }
        let given = |v: Vec<String>| (!v.is_empty()).then_some(v);
        (given(self.nameservers), given(self.search_domains))
    }
}

/// `--type`: the spellings the API takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    Switching,
    Routing,
    #[value(name = "ip-fabric", alias = "fabric")]
    IpFabric,
}

impl TypeArg {
    pub fn as_str(self) -> &'static str {
        match self {
            TypeArg::Switching => "switching",
            TypeArg::Routing => "routing",
            TypeArg::IpFabric => "ip-fabric",
        }
    }
}

/// `--reuse`: the order of automatic allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReuseArg {
    Last,
    FirstFree,
}

impl ReuseArg {
    pub fn as_str(self) -> &'static str {
        match self {
            ReuseArg::Last => "last",
            ReuseArg::FirstFree => "first-free",
        }
    }
}

/// `--virtualization`: what runs the VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VirtArg {
    Kvm,
    Lxd,
}

impl VirtArg {
    pub fn as_str(self) -> &'static str {
        match self {
            VirtArg::Kvm => "kvm",
            VirtArg::Lxd => "lxd",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Add a network to a cluster's pool
    Add {
        cluster: String,
        cidr: String,
        /// Gateway of a switching network [default: the first host address]
        #[arg(long)]
        gateway: Option<String>,
        /// Never hand out this address or range A-B (repeat)
        #[arg(long, value_name = "IP|A-B")]
        exclude: Vec<String>,
    },
    /// List networks
    List { cluster: Option<String> },
    /// Remove a network (refused, naming the holders, while anything in it is held)
    Remove {
        cluster: String,
        cidr: String,
        /// Release what is held first (each release recorded in history and the change log)
        #[arg(long)]
        force: bool,
    },
    /// Change a network in place: its gateway, exclusions, or its size (every node gets the new plan)
    Set {
        cluster: String,
        cidr: String,
        /// Shrink the network to this CIDR inside it (nothing held may fall outside)
        #[arg(long, value_name = "CIDR", conflicts_with_all = ["gateway", "exclude", "include"])]
        shrink_to: Option<String>,
        /// The switching network's gateway
        #[arg(long)]
        gateway: Option<String>,
        /// Never hand out this address or range A-B any more (repeat; it must be free)
        #[arg(long, value_name = "IP|A-B")]
        exclude: Vec<String>,
        /// Give back an exclusion, exactly as listed (repeat)
        #[arg(long, value_name = "IP|A-B")]
        include: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Add a node to a cluster
    Add(Box<NodeAdd>),
    /// Give a routing node one more additional subnet (its VMs keep running)
    AddSubnet {
        node: String,
        /// The subnet routed to the node, e.g. 203.0.113.48/29
        cidr: String,
    },
    /// Give a routing node one more explicit range of addresses
    AddRange {
        node: String,
        /// A-B, e.g. 203.0.113.56-203.0.113.59
        range: String,
    },
    /// Change a node's address, primary IP, uplink, uplink MAC, bridge or NDP proxy mode in place
    Set {
        name: String,
        /// The node's own address (ADDRESS or ADDRESS/PREFIX)
        #[arg(long)]
        address: Option<String>,
        /// Routing: the primary IP on the uplink, the VMs' IPv4 gateway
        #[arg(long)]
        primary_ip: Option<String>,
        #[arg(long)]
        uplink: Option<String>,
        #[arg(long)]
        uplink_mac: Option<String>,
        #[arg(long)]
        bridge: Option<String>,
        /// kernel, ndppd or off (routing nodes with IPv6)
        #[arg(long)]
        ndp_proxy: Option<String>,
        /// Routing: the DNS of the node's VMs, replacing the cluster's (--clear-dns: the cluster's again)
        #[command(flatten)]
        dns: DnsSet,
    },
    /// Give a routing node its IPv6 /64: its own address, ::2 by convention
    AddIpv6 {
        node: String,
        /// ADDR/64, e.g. 2a01:4f8:1:2::2/64
        ipv6: String,
        /// The provider's router [default: fe80::1]
        #[arg(long)]
        gateway: Option<String>,
    },
    /// Take a routing node's IPv6 /64 (refused while held)
    RemoveIpv6 {
        node: String,
        /// Release what is held first (each release recorded in history and the change log)
        #[arg(long)]
        force: bool,
    },
    /// Take a subnet or range from a routing node (refused while held)
    RemoveSubnet {
        node: String,
        /// The subnet (CIDR) or range (A-B)
        block: String,
        /// Release what is held first (each release recorded in history and the change log)
        #[arg(long)]
        force: bool,
    },
    /// List nodes
    List {
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Show a node
    Show { name: String },
    /// Remove a node (refused while VMs run on it or its ranges hold reservations)
    Remove {
        name: String,
        /// Delete its VMs and release its reservations first (each recorded)
        #[arg(long)]
        force: bool,
    },
    /// The node's plan: everything its kernel, FRR, nftables and ndppd must look like
    Plan {
        name: String,
        /// json (the plan), summary, or one rendered file: frr, nft, ndppd
        /// [default: summary, json with --output json]
        #[arg(long, value_enum)]
        format: Option<PlanFormat>,
        /// Show what changed since an earlier plan (a file of `--format json`)
        #[arg(long, value_name = "FILE")]
        diff_from: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct NodeAdd {
    pub cluster: String,
    pub name: String,
    /// Management address, optionally with the prefix of its network (IP[/LEN])
    #[arg(long)]
    pub address: String,
    /// Uplink interface [default: eno1]
    #[arg(long)]
    pub uplink: Option<String>,
    /// The uplink's MAC (routing: the only source MAC allowed out) [default: read by the agent]
    #[arg(long)]
    pub uplink_mac: Option<String>,
    /// Bridge [default: vmbr0]
    #[arg(long)]
    pub bridge: Option<String>,
    /// routing: primary IP on the uplink, the VMs' gateway [default: --address]
    #[arg(long)]
    pub primary_ip: Option<String>,
    /// routing: an additional subnet routed to the node (repeat); all its addresses are usable
    #[arg(long = "subnet", value_name = "CIDR")]
    pub subnets: Vec<String>,
    /// routing: a range A-B of addresses for VMs (repeat)
    #[arg(long = "range", value_name = "A-B")]
    pub ranges: Vec<String>,
    /// routing: the node's IPv6 address in the provider's /64 (e.g. 2a01:4f8:13b:9a7::2/64)
    #[arg(long, value_name = "ADDR/64")]
    pub ipv6: Option<String>,
    /// routing: the provider's IPv6 router [default: fe80::1]
    #[arg(long)]
    pub ipv6_gateway: Option<String>,
    /// routing: NDP proxying for an on-link /64
    #[arg(long, value_name = "kernel|ndppd|off")]
    pub ndp_proxy: Option<String>,
    /// routing: the DNS of the node's VMs, replacing the cluster's
    #[command(flatten)]
    pub dns: DnsArgs,
}

#[derive(Debug, Subcommand)]
pub enum VmCmd {
    /// Create a VM and give it addresses
    Create(VmCreate),
    /// Show a VM
    Show { name: String },
    /// List VMs
    List {
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        node: Option<String>,
    },
    /// Move a VM to another node of its cluster (switching, ip-fabric)
    Migrate {
        name: String,
        #[arg(long)]
        to: String,
    },
    /// Delete a VM and release its addresses
    Delete { name: String },
    /// Give a running VM one more NIC (<vm>_net<N>, its own MAC) with an address
    AddNic {
        name: String,
        /// No IPv4 address on the new NIC
        #[arg(long)]
        no_ipv4: bool,
        /// An IPv6 address too
        #[arg(long)]
        ipv6: bool,
    },
    /// Remove a NIC (not the first; refused while it holds addresses)
    RemoveNic {
        name: String,
        index: u8,
        /// Release what is held first (each release recorded in history and the change log)
        #[arg(long)]
        force: bool,
    },
    /// One more address on a VM's NIC: the next by the cluster's rules, or --ip
    AddAddress {
        name: String,
        /// The NIC
        #[arg(long, default_value_t = 0)]
        nic: u8,
        /// An IPv6 address instead of IPv4
        #[arg(long)]
        ipv6: bool,
        /// This address instead of the next free one
        #[arg(long)]
        ip: Option<String>,
    },
    /// End a VM's claim on one of its addresses (kept in history)
    RemoveAddress { name: String, ip: String },
    /// The guest's network configuration (cloud-init network-config v2), its libvirt
    /// interfaces or domain (kvm clusters), or its LXD configuration (lxd clusters)
    GuestConfig {
        name: String,
        #[arg(long, value_enum, default_value_t = GuestFormat::CloudInit)]
        format: GuestFormat,
        /// libvirt-domain: the VM's disk image (absolute path; .qcow2 is qcow2, anything
        /// else raw); without it the domain names a placeholder to replace
        #[arg(long, value_name = "PATH")]
        disk: Option<String>,
    },
    /// Create VMs from JSON lines on stdin ({"cluster","name","node","ip":[..],"ipv6":bool},
    /// or with "nics":[{"ips":[..],"ipv6":bool,"no_ipv4":bool,"extra_ipv4":K,"extra_ipv6":K},..]),
    /// printing one JSON line per VM as soon as its commit is on disk
    Import {
        /// VMs per commit
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
}

#[derive(Debug, Args)]
pub struct VmCreate {
    pub cluster: String,
    pub name: String,
    #[arg(long)]
    pub node: String,
    /// Ask for this address (at most one per family)
    #[arg(long = "ip", value_name = "IP")]
    pub ips: Vec<String>,
    /// Also give the VM an IPv6 address
    #[arg(long)]
    pub ipv6: bool,
    /// Give the VM no IPv4 address
    #[arg(long)]
    pub no_ipv4: bool,
    /// This many more IPv4 addresses on the first NIC
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub extra_ipv4: u8,
    /// This many more IPv6 addresses on the first NIC (implies --ipv6)
    #[arg(long, value_name = "K", default_value_t = 0)]
    pub extra_ipv6: u8,
    /// NICs (<vm>_net0 …): each further one gets addresses of the same families
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=i64::from(vmfabric_model::names::MAX_NIC_INDEX) + 1))]
    pub nics: u8,
}

#[derive(Debug, Subcommand)]
pub enum IpCmd {
    /// Addresses held now (or, with --free, the free space)
    List {
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long)]
        node: Option<String>,
        /// List free ranges and released addresses instead
        #[arg(long, conflicts_with = "reserved")]
        free: bool,
        /// Only reservations
        #[arg(long)]
        reserved: bool,
        /// At most this many ranges per block with --free
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Keep an address from being handed out
    Reserve {
        /// The address; or, with --next, none
        #[arg(required_unless_present = "next")]
        address: Option<String>,
        /// The next free address (the order a VM would get it in) of
        /// --cluster, --node or --network
        #[arg(long, conflicts_with = "address")]
        next: bool,
        /// With --next: from this cluster's pool (switching, ip-fabric)
        #[arg(long, requires = "next", conflicts_with_all = ["address", "node", "network"])]
        cluster: Option<String>,
        /// With --next: from this node's ranges (routing) or its cluster's pool
        #[arg(long, requires = "next", conflicts_with_all = ["address", "network"])]
        node: Option<String>,
        /// With --next: from this network (CIDR) or node range (A-B)
        #[arg(long, requires = "next", conflicts_with = "address")]
        network: Option<String>,
        /// With --next: an IPv6 address instead of IPv4
        #[arg(long, requires = "next", conflicts_with = "address")]
        ipv6: bool,
        /// Why (shown in listings and history)
        #[arg(long)]
        note: Option<String>,
    },
    /// End whatever holds an address (a reservation, or a VM's claim on it)
    Release { address: String },
    /// Who held an address and when; with --at, who held it at that moment
    History {
        address: String,
        /// RFC 3339 time, e.g. 2026-05-03T14:00:00Z
        #[arg(long)]
        at: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCmd {
    /// Used / free / total per network and per node range
    Usage { cluster: Option<String> },
}

#[derive(Debug, Args)]
pub struct TourArgs {
    /// Keep the tour's database here (must not exist yet) instead of a temporary file
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Durable allocations through the store on SQLite against raw WAL commits
    Store {
        /// Allocations per measurement
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// VMs per commit in the batched measurement
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Folder for the benchmark databases [default: a temporary folder]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Changes in place (addresses, NICs, cluster settings, node ranges)
    /// against a VM create in the same run, and the change log's growth
    Changes {
        /// Operations of each kind
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// Folder for the benchmark database [default: a temporary folder]
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The agent applying a plan of many VMs to an empty node, against `ip -batch` (root)
    Agent {
        #[arg(long, default_value_t = 1000)]
        vms: u32,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// IP-fabric: vm create to /32 at the core, and loss during migration (root, FRR)
    Fabric {
        #[arg(long, default_value_t = 20)]
        vms: usize,
    },
    /// Concurrent VM-create requests against `vmfabric serve` (a separate process)
    Serve {
        /// Requests per client count
        #[arg(long, default_value_t = 4000)]
        requests: usize,
        /// Client counts to measure
        #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
        clients: Vec<usize>,
        /// Also measure on this PostgreSQL (an empty database is created in it)
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// A controller with every agent long-polling over an installation of
    /// 10,000 nodes and 1,000,000 VMs, VMs created at a steady rate
    Scale(ScaleArgs),
    /// (part of `bench scale`) one long poll per node, answers recorded
    #[command(hide = true)]
    ScaleAgents(ScaleAgentsArgs),
    /// (part of `bench scale`) VM creates at a steady rate, answers recorded
    #[command(hide = true)]
    ScaleLoad(ScaleLoadArgs),
}

#[derive(Debug, Args)]
pub struct ScaleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub nodes: usize,
    #[arg(long, default_value_t = 100)]
    pub vms_per_node: usize,
    /// Agents long-polling, one per node from the first [default: every node]
    #[arg(long)]
    pub agents: Option<usize>,
    /// VM creates per second during the load
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Seconds of load
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Build the installations in databases on this PostgreSQL server
    /// (admin URL; databases vmf_scale_* are created) instead of SQLite
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Controllers on the database: with 2, the agents wait on the first
    /// and the load goes through the second (PostgreSQL)
    #[arg(long, default_value_t = 1)]
    pub controllers: usize,
    /// Folder for the SQLite databases and records [default: a temporary folder]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Use the installations a previous run built there (same --nodes and
    /// --vms-per-node) instead of building them again
    #[arg(long)]
    pub reuse: bool,
    /// Requests of the plan over the API, per installation
    #[arg(long, default_value_t = 200)]
    pub plan_samples: usize,
    /// `vmfabric node plan` processes, per installation
    #[arg(long, default_value_t = 50)]
    pub cli_samples: usize,
    /// Fail unless every change reached exactly its agent
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct ScaleAgentsArgs {
    #[arg(long)]
    pub server: String,
    #[arg(long)]
    pub token: String,
    #[arg(long)]
    pub agents: usize,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ScaleLoadArgs {
    #[arg(long)]
    pub server: String,
    #[arg(long)]
    pub token: String,
    /// Nodes the VMs go to, from the first
    #[arg(long)]
    pub nodes: usize,
    #[arg(long)]
    pub rate: f64,
    #[arg(long)]
    pub duration: f64,
    #[arg(long)]
    pub seed: u64,
    /// A node (by index) that gets no VMs
    #[arg(long)]
    pub skip: Option<usize>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Only the changes after this revision, oldest first (follow the log
    /// from the last revision you saw)
    #[arg(long, value_name = "REVISION")]
    pub since: Option<i64>,
    /// Only the changes of one object: a VM or node name, an address, a CIDR
    #[arg(long, value_name = "NAME|IP|CIDR")]
    pub object: Option<String>,
}

#[derive(Debug, Args)]
pub struct ClusterSet {
    pub name: String,
    /// The VMs' IPv4 gateway (ip-fabric)
    #[arg(long)]
    pub vm_gateway: Option<String>,
    /// The VMs' IPv6 gateway (ip-fabric)
    #[arg(long)]
    pub vm_gateway6: Option<String>,
    /// The community put on every VM route, ASN:VALUE (ip-fabric)
    #[arg(long)]
    pub bgp_community: Option<String>,
    /// The nodes' ASN (ip-fabric; iBGP, so the reflectors' too)
    #[arg(long)]
    pub asn: Option<String>,
    /// How long a released address waits before reuse, e.g. 1h
    #[arg(long)]
    pub cooldown: Option<String>,
    /// Order of automatic allocation
    #[arg(long, value_enum)]
    pub reuse: Option<ReuseArg>,
    /// Replace the route reflectors with these, ADDRESS:ASN (repeat)
    #[arg(long = "route-reflector", value_name = "ADDRESS:ASN")]
    pub route_reflectors: Vec<String>,
    /// Add a route reflector, ADDRESS:ASN (repeat)
    #[arg(
        long = "add-route-reflector",
        value_name = "ADDRESS:ASN",
        conflicts_with = "route_reflectors"
    )]
    pub add_route_reflectors: Vec<String>,
    /// Remove a route reflector, ADDRESS (repeat)
    #[arg(
        long = "remove-route-reflector",
        value_name = "ADDRESS",
        conflicts_with = "route_reflectors"
    )]
    pub remove_route_reflectors: Vec<String>,
    #[command(flatten)]
    pub dns: DnsSet,
    /// The guests' MTU, 1280 to 9216, or auto for the default
    #[arg(long)]
    pub mtu: Option<String>,
}
