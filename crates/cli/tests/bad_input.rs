//! Bad input gets a clear error naming the field, the value and the rule,
//! a non-zero exit code, JSON on stderr with `--output json`, and changes
//! nothing: the whole database is the same before and after.
#![allow(clippy::unwrap_used)]

mod common;

use common::Env;

/// (args, exit code, field, value, words the rule must contain)
type Case = (
    &'static [&'static str],
    i32,
    &'static str,
    &'static str,
    &'static str,
);

const FABRIC: &[&str] = &[
    "cluster",
    "create",
    "f2",
    "--type",
    "ip-fabric",
    "--vm-gateway",
    "10.0.0.1",
    "--bgp-community",
    "65000:100",
];

fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn every_bad_input_is_refused_and_changes_nothing() {
    let e = Env::new();
    e.seed_world();
    e.ok(&["vm", "create", "hz", "taken", "--node", "hz1"]); // holds 203.0.113.40
    e.ok(&["ip", "reserve", "203.0.113.41", "--note", "abuse hold"]);
    e.ok(&["ip", "reserve", "203.0.113.49"]); // in hz2's range, hz2 runs no VM
    e.ok(&["vm", "create", "fab", "vm1", "--node", "node1"]);
    let cases: &[Case] = &[
        (
            &["node", "remove", "hz2"],
            4,
            "node",
            "hz2",
            "range 203.0.113.48/29 of node hz2 still has 0 addresses held by VMs and 1 reserved",
        ),
        // Blocks
        (
            &["network", "add", "sw", "192.0.2.64/33"],
            2,
            "cidr",
            "192.0.2.64/33",
            "prefix length",
        ),
        (
            &["network", "add", "sw", "192.0.2.65/27"],
            2,
            "cidr",
            "192.0.2.65/27",
            "did you mean 192.0.2.64/27",
        ),
        (
            &[
                "node",
                "add",
                "sw",
                "kvm3",
                "--address",
                "192.0.2.9",
                "--bridge",
                "lo",
            ],
            2,
            "bridge",
            "lo",
            "reserved by the kernel",
        ),
        (
            &[
                "node",
                "add",
                "sw",
                "kvm3",
                "--address",
                "192.0.2.9",
                "--uplink",
                "all",
            ],
            2,
            "uplink",
            "all",
            "reserved by the kernel",
        ),
        (
            &["network", "add", "sw", "banana"],
            2,
            "cidr",
            "banana",
            "CIDR",
        ),
        (
            &["network", "add", "sw", "192.0.2.16/28"],
            4,
            "cidr",
            "192.0.2.16/28",
            "overlaps network 192.0.2.0/27 of cluster sw",
        ),
        (
            &["network", "add", "fab", "203.0.113.0/24"],
            4,
            "cidr",
            "203.0.113.0/24",
            "overlaps range 203.0.113.48/29 of node hz2",
        ),
        (
            &[
                "network",
                "add",
                "sw",
                "10.9.0.0/24",
                "--gateway",
                "10.9.1.1",
            ],
            2,
            "gateway",
            "10.9.1.1",
            "inside the network",
        ),
        (
            &[
                "network",
                "add",
                "sw",
                "10.9.0.0/24",
                "--gateway",
                "10.9.0.255",
            ],
            2,
            "gateway",
            "10.9.0.255",
            "broadcast",
        ),
        (
            &[
                "network",
                "add",
                "sw",
                "10.9.0.0/24",
                "--exclude",
                "10.9.1.5",
            ],
            2,
            "exclude",
            "10.9.1.5",
            "inside the network",
        ),
        (
            &[
                "network",
                "add",
                "sw",
                "10.9.0.0/24",
                "--exclude",
                "10.9.0.9-10.9.0.2",
            ],
            2,
            "exclude",
            "10.9.0.9-10.9.0.2",
            "not be above",
        ),
        (
            &["network", "add", "sw", "127.0.0.0/24"],
            2,
            "cidr",
            "127.0.0.0/24",
            "loopback",
        ),
        (
            &["network", "add", "sw", "::ffff:0:0/120"],
            2,
            "cidr",
            "::ffff:0:0/120",
            "IPv4-mapped",
        ),
        (
            &["network", "add", "hz", "10.9.0.0/24"],
            2,
            "cluster",
            "hz",
            "routing clusters assign addresses to nodes",
        ),
        (
            &["network", "add", "fab", "10.0.0.0/24"],
            4,
            "cidr",
            "10.0.0.0/24",
            "VM gateway",
        ),
        (
            &[
                "network",
                "add",
                "fab",
                "10.9.0.0/24",
                "--gateway",
                "10.9.0.1",
            ],
            2,
            "gateway",
            "10.9.0.1",
            "VM gateway",
        ),
        (&["network", "add", "nope", "10.9.0.0/24"], 3, "", "", ""),
        (
            &["network", "remove", "fab", "198.51.100.0/24"],
            4,
            "cidr",
            "198.51.100.0/24",
            "still has 1 addresses held by VMs",
        ),
        (&["network", "remove", "sw", "10.8.0.0/24"], 3, "", "", ""),
        // Nodes
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--ipv6",
                "2a01:4f8:13b:9a8::2/56",
            ],
            2,
            "ipv6",
            "2a01:4f8:13b:9a8::2/56",
            "prefix length 64",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--ipv6",
                "2a01:4f8:13b:9a8::2",
            ],
            2,
            "ipv6",
            "2a01:4f8:13b:9a8::2",
            "prefix length 64",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--ipv6",
                "2a01:4f8:13b:9a7::9/64",
                "--subnet",
                "198.18.0.0/29",
            ],
            4,
            "ipv6",
            "2a01:4f8:13b:9a7::9",
            "IPv6 network 2a01:4f8:13b:9a7::/64 of node hz1, which belongs to another node",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--ipv6",
                "2a01:4f8:13b:aaa::2/64",
                "--ipv6-gateway",
                "2a01:4f8:13b:aaa::2",
            ],
            2,
            "ipv6-gateway",
            "2a01:4f8:13b:aaa::2",
            "not the node's own address",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--subnet",
                "2001:db8:100::/56",
            ],
            2,
            "subnet",
            "2001:db8:100::/56",
            "needs --ipv6 ADDR/64 too",
        ),
        (
            &[
                "network",
                "add",
                "sw",
                "123.45.12.48/28",
                "--gateway",
                "123.45.12.60",
            ],
            4,
            "cidr",
            "123.45.12.48/28",
            "contains 123.45.12.48, the address of node hz1 of cluster hz",
        ),
        (
            &["node", "add", "hz", "hz3", "--address", "123.45.12.50"],
            2,
            "subnet",
            "",
            "at least one --subnet",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--subnet",
                "203.0.113.44/30",
            ],
            4,
            "subnet",
            "203.0.113.44/30",
            "overlaps range 203.0.113.40/29 of node hz1",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--range",
                "198.18.0.9-198.18.0.1",
            ],
            2,
            "range",
            "198.18.0.9-198.18.0.1",
            "not be above",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.48",
                "--subnet",
                "198.18.0.0/29",
            ],
            4,
            "address",
            "123.45.12.48",
            "already the address of node hz1",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz1",
                "--address",
                "123.45.12.50",
                "--subnet",
                "198.18.0.0/29",
            ],
            4,
            "name",
            "hz1",
            "exists",
        ),
        (
            &["node", "add", "sw", "kvm3", "--address", "192.0.2.1"],
            4,
            "address",
            "192.0.2.1",
            "gateway",
        ),
        (
            &["node", "add", "sw", "kvm3", "--address", "198.51.100.7"],
            4,
            "address",
            "198.51.100.7",
            "another cluster",
        ),
        (
            &["node", "add", "fab", "node3", "--address", "10.0.0.1"],
            4,
            "address",
            "10.0.0.1",
            "VM gateway",
        ),
        (
            &[
                "node",
                "add",
                "sw",
                "kvm3",
                "--address",
                "192.0.2.9",
                "--subnet",
                "198.18.0.0/29",
            ],
            2,
            "subnet",
            "198.18.0.0/29",
            "only nodes of routing clusters",
        ),
        (
            &[
                "node",
                "add",
                "sw",
                "kvm3",
                "--address",
                "192.0.2.9",
                "--ipv6",
                "2a01:4f8:13b:aaa::2/64",
            ],
            2,
            "ipv6",
            "2a01:4f8:13b:aaa::2/64",
            "cluster sw is switching",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--ipv6",
                "10.0.0.1/64",
            ],
            2,
            "ipv6",
            "10.0.0.1/64",
            "prefix length 64",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "123.45.12.50",
                "--ipv6",
                "zz/64",
            ],
            2,
            "ipv6",
            "zz/64",
            "IPv4 or IPv6 address",
        ),
        (
            &[
                "node",
                "add",
                "sw",
                "kvm3",
                "--address",
                "192.0.2.9",
                "--uplink",
                "a-very-long-uplink",
            ],
            2,
            "uplink",
            "a-very-long-uplink",
            "15 bytes",
        ),
        (
            &[
                "node",
                "add",
                "sw",
                "kvm3",
                "--address",
                "192.0.2.9",
                "--bridge",
                "br 0",
            ],
            2,
            "bridge",
            "br 0",
            "interface names",
        ),
        (
            &["node", "add", "sw", "kvm3", "--address", "not-an-ip"],
            2,
            "address",
            "not-an-ip",
            "IPv4 or IPv6",
        ),
        (
            &["node", "add", "sw", "bad/name", "--address", "192.0.2.9"],
            2,
            "name",
            "bad/name",
            "A-Z a-z 0-9",
        ),
        (
            &["node", "remove", "node1"],
            4,
            "node",
            "node1",
            "1 VMs run on this node",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz3",
                "--address",
                "203.0.113.45",
                "--subnet",
                "198.18.0.0/29",
            ],
            4,
            "address",
            "203.0.113.45",
            "range 203.0.113.40/29 of node hz1",
        ),
        // Clusters
        (
            &["cluster", "create", "x", "--type", "bridged"],
            2,
            "",
            "",
            "",
        ),
        (
            &["cluster", "create", "sw", "--type", "switching"],
            4,
            "name",
            "sw",
            "exists",
        ),
        (
            &["cluster", "create", "", "--type", "switching"],
            2,
            "name",
            "",
            "1 to 63",
        ),
        (
            &[
                "cluster",
                "create",
                "x",
                "--type",
                "switching",
                "--asn",
                "65000",
            ],
            2,
            "asn",
            "65000",
            "this cluster is switching",
        ),
        (
            &[
                "cluster",
                "create",
                "x",
                "--type",
                "routing",
                "--vm-gateway",
                "10.0.0.1",
            ],
            2,
            "vm-gateway",
            "10.0.0.1",
            "only ip-fabric",
        ),
        // The guests' DNS and MTU
        (
            &[
                "cluster",
                "create",
                "x",
                "--type",
                "switching",
                "--mtu",
                "1279",
            ],
            2,
            "mtu",
            "1279",
            "from 1280",
        ),
        (
            &["cluster", "set", "sw", "--mtu", "9000000"],
            2,
            "mtu",
            "9000000",
            "jumbo",
        ),
        (
            &["cluster", "set", "sw", "--nameserver", "224.0.0.1"],
            2,
            "nameserver",
            "224.0.0.1",
            "multicast",
        ),
        (
            &["cluster", "set", "sw", "--nameserver", "dns.example.com"],
            2,
            "nameserver",
            "dns.example.com",
            "IPv4 or IPv6 address",
        ),
        (
            &[
                "cluster",
                "set",
                "sw",
                "--nameserver",
                "192.0.2.1",
                "--nameserver",
                "192.0.2.2",
                "--nameserver",
                "192.0.2.3",
                "--nameserver",
                "192.0.2.4",
            ],
            2,
            "nameserver",
            "192.0.2.1,192.0.2.2,192.0.2.3,192.0.2.4",
            "at most 3",
        ),
        (
            &["cluster", "set", "sw", "--search-domain=-x.example"],
            2,
            "search-domain",
            "-x.example",
            "labels",
        ),
        (
            &["node", "set", "kvm1", "--nameserver", "192.0.2.53"],
            2,
            "nameserver",
            "192.0.2.53",
            "only nodes of routing clusters",
        ),
        (
            &[
                "cluster",
                "create",
                "x",
                "--type",
                "switching",
                "--cooldown",
                "soon",
            ],
            2,
            "cooldown",
            "soon",
            "duration",
        ),
        (
            &[
                "cluster",
                "create",
                "x",
                "--type",
                "switching",
                "--reuse",
                "random",
            ],
            2,
            "",
            "",
            "",
        ),
        (
            &["cluster", "delete", "fab"],
            4,
            "cluster",
            "fab",
            "still has 1 VMs",
        ),
        (&["cluster", "delete", "nope"], 3, "", "", ""),
        // VMs
        (
            &["vm", "create", "sw", "", "--node", "kvm1"],
            2,
            "name",
            "",
            "1 to 63",
        ),
        (
            &["vm", "create", "sw", "web 1", "--node", "kvm1"],
            2,
            "name",
            "web 1",
            "A-Z a-z 0-9 _ . -",
        ),
        (
            &["vm", "create", "sw", "wéb", "--node", "kvm1"],
            2,
            "name",
            "wéb",
            "A-Z a-z 0-9 _ . -",
        ),
        (
            &["vm", "create", "sw", "-x", "--node", "kvm1"],
            2,
            "",
            "",
            "",
        ),
        (
            &["vm", "create", "fab", "vm1", "--node", "node1"],
            4,
            "name",
            "vm1",
            "exists",
        ),
        (
            &[
                "vm",
                "create",
                "hz",
                "new",
                "--node",
                "hz1",
                "--ip",
                "203.0.113.40",
            ],
            4,
            "ip",
            "203.0.113.40",
            "held by VM taken",
        ),
        (
            &[
                "vm",
                "create",
                "hz",
                "new",
                "--node",
                "hz1",
                "--ip",
                "203.0.113.41",
            ],
            4,
            "ip",
            "203.0.113.41",
            "reservation (abuse hold)",
        ),
        (
            &[
                "vm",
                "create",
                "hz",
                "new",
                "--node",
                "hz1",
                "--ip",
                "203.0.113.48",
            ],
            2,
            "ip",
            "203.0.113.48",
            "outside the IPv4 ranges of node hz1",
        ),
        (
            &[
                "vm", "create", "hz", "new", "--node", "hz1", "--ip", "1.2.3",
            ],
            2,
            "ip",
            "1.2.3",
            "IPv4 or IPv6",
        ),
        (
            &[
                "vm",
                "create",
                "sw",
                "new",
                "--node",
                "kvm1",
                "--ip",
                "192.0.2.0",
            ],
            4,
            "ip",
            "192.0.2.0",
            "network address",
        ),
        (
            &[
                "vm",
                "create",
                "sw",
                "new",
                "--node",
                "kvm1",
                "--ip",
                "192.0.2.2",
            ],
            4,
            "ip",
            "192.0.2.2",
            "address of node kvm1",
        ),
        (
            &[
                "vm",
                "create",
                "sw",
                "new",
                "--node",
                "kvm1",
                "--ip",
                "192.0.2.4",
                "--ip",
                "192.0.2.5",
            ],
            2,
            "ip",
            "192.0.2.5",
            "at most one IPv4",
        ),
        (
            &["vm", "create", "sw", "new", "--node", "kvm1", "--ipv6"],
            4,
            "family",
            "IPv6",
            "network add sw",
        ),
        (
            &["vm", "create", "sw", "new", "--node", "node1"],
            2,
            "node",
            "node1",
            "belongs to cluster fab",
        ),
        (
            &["vm", "create", "sw", "new", "--node", "ghost"],
            3,
            "",
            "",
            "",
        ),
        (
            &["vm", "create", "ghost", "new", "--node", "kvm1"],
            3,
            "",
            "",
            "",
        ),
        (
            &["vm", "migrate", "vm1", "--to", "node1"],
            2,
            "to",
            "node1",
            "already runs",
        ),
        (&["vm", "migrate", "ghost", "--to", "node1"], 3, "", "", ""),
        (&["vm", "delete", "ghost"], 3, "", "", ""),
        // Addresses
        (
            &["ip", "reserve", "9.9.9.9"],
            2,
            "address",
            "9.9.9.9",
            "no network and no node range",
        ),
        (
            &["ip", "reserve", "::ffff:203.0.113.42"],
            2,
            "address",
            "::ffff:203.0.113.42",
            "write the IPv4 address 203.0.113.42",
        ),
        (
            &["ip", "history", "::ffff:203.0.113.40"],
            2,
            "address",
            "::ffff:203.0.113.40",
            "IPv4-mapped",
        ),
        (
            &[
                "vm",
                "create",
                "hz",
                "new",
                "--node",
                "hz1",
                "--ip",
                "::ffff:203.0.113.42",
            ],
            2,
            "ip",
            "::ffff:203.0.113.42",
            "write the IPv4 address itself",
        ),
        // Changes in place
        (
            &["node", "add-subnet", "hz1", "203.0.113.48/29"],
            4,
            "subnet",
            "203.0.113.48/29",
            "overlaps",
        ),
        (
            &["node", "add-subnet", "kvm1", "203.0.113.96/29"],
            2,
            "subnet",
            "203.0.113.96/29",
            "only nodes of routing clusters",
        ),
        (
            &["node", "remove-subnet", "hz1", "203.0.113.40/29"],
            4,
            "block",
            "203.0.113.40/29",
            "203.0.113.40 (VM taken)",
        ),
        (
            &[
                "cluster",
                "set",
                "fab",
                "--remove-route-reflector",
                "9.9.9.9",
            ],
            2,
            "remove-route-reflector",
            "9.9.9.9",
            "not a route reflector of cluster fab",
        ),
        (
            &["cluster", "set", "sw", "--bgp-community", "1:1"],
            2,
            "bgp-community",
            "1:1",
            "only ip-fabric clusters",
        ),
        (&["cluster", "set", "fab"], 2, "patch", "", "at least one"),
        (
            &["node", "set", "hz1", "--uplink", "taken_net0"],
            2,
            "uplink",
            "taken_net0",
            "a VM's interface",
        ),
        (
            &["node", "set", "hz1", "--ndp-proxy", "sometimes"],
            2,
            "ndp-proxy",
            "sometimes",
            "",
        ),
        (
            &[
                "network",
                "set",
                "sw",
                "192.0.2.0/27",
                "--include",
                "192.0.2.9",
            ],
            2,
            "remove-exclusion",
            "192.0.2.9",
            "not an exclusion",
        ),
        (
            &["vm", "add-address", "taken", "--nic", "3"],
            2,
            "nic",
            "3",
            "has NICs 0",
        ),
        (
            &["vm", "add-address", "taken", "--ip", "203.0.113.41"],
            4,
            "ip",
            "203.0.113.41",
            "held by a reservation (abuse hold)",
        ),
        (
            &["vm", "remove-nic", "taken", "0"],
            2,
            "nic",
            "0",
            "first NIC",
        ),
        (&["vm", "add-nic", "ghost"], 3, "", "", ""),
        (
            &["ip", "reserve", "192.0.2.9", "--note", "two\nlines"],
            2,
            "note",
            "two\\nlines",
            "control character",
        ),
        (
            &["ip", "reserve", "--next", "--cluster", "sw", "--note", ""],
            2,
            "note",
            "",
            "1 to 256 printable characters",
        ),
        (
            &[
                "node",
                "add",
                "hz",
                "hz9",
                "--address",
                "123.45.12.99",
                "--subnet",
                "203.0.113.200/29",
                "--uplink",
                "later_g0",
            ],
            2,
            "uplink",
            "later_g0",
            "a VM's interfaces",
        ),
        (
            &[
                "network",
                "set",
                "sw",
                "192.0.2.0/27",
                "--shrink-to",
                "10.0.0.0/28",
            ],
            2,
            "shrink-to",
            "10.0.0.0/28",
            "must lie inside 192.0.2.0/27",
        ),
        (
            &[
                "network",
                "set",
                "sw",
                "192.0.2.0/27",
                "--shrink-to",
                "192.0.2.0/28",
                "--gateway",
                "192.0.2.3",
            ],
            2,
            "",
            "",
            "",
        ),
        (
            &[
                "vm", "create", "sw", "new", "--node", "kvm1", "--nics", "11",
            ],
            2,
            "",
            "",
            "",
        ),
        (
            &[
                "vm",
                "create",
                "sw",
                "new",
                "--node",
                "kvm1",
                "--extra-ipv4",
                "64",
            ],
            2,
            "extra_ipv4",
            "64",
            "at most 63 more addresses",
        ),
        (
            &[
                "vm",
                "create",
                "sw",
                "new",
                "--node",
                "kvm1",
                "--no-ipv4",
                "--extra-ipv4",
                "1",
            ],
            2,
            "extra_ipv4",
            "1",
            "together with --no-ipv4",
        ),
        (
            &["vm", "create", "hz", "new", "--node", "hz1", "--nics", "9"],
            5,
            "",
            "",
            "",
        ),
        (
            &["ip", "reserve", "--next", "--cluster", "hz"],
            2,
            "cluster",
            "hz",
            "a routing cluster has no pool",
        ),
        (
            &["ip", "reserve", "--next"],
            2,
            "next",
            "cluster=- node=- network=-",
            "exactly one of cluster, node or network",
        ),
        (
            &["ip", "reserve", "--next", "--network", "192.0.2.0/33"],
            2,
            "network",
            "192.0.2.0/33",
            "a network (CIDR) or a node range",
        ),
        (
            &["ip", "reserve", "--next", "--network", "10.9.9.0/24"],
            3,
            "",
            "",
            "",
        ),
        (
            &["ip", "reserve", "--next", "--node", "ghost"],
            3,
            "",
            "",
            "",
        ),
        (&["ip", "reserve"], 2, "", "", ""),
        (&["ip", "reserve", "192.0.2.9", "--next"], 2, "", "", ""),
        (
            &["ip", "reserve", "192.0.2.9", "--cluster", "sw"],
            2,
            "",
            "",
            "",
        ),
        (
            &["ip", "reserve", "203.0.113.40"],
            4,
            "address",
            "203.0.113.40",
            "held by VM taken",
        ),
        (
            &["ip", "release", "203.0.113.47"],
            4,
            "address",
            "203.0.113.47",
            "not held",
        ),
        (
            &["ip", "history", "203.0.113.40", "--at", "last tuesday"],
            2,
            "at",
            "last tuesday",
            "RFC 3339",
        ),
        (
            &["ip", "history", "nope"],
            2,
            "address",
            "nope",
            "IPv4 or IPv6",
        ),
        (&["ip", "list", "--cluster", "ghost"], 3, "", "", ""),
    ];
    // Closed sets are clap value enums: the values are listed.
    for (args, listed) in [
        (
            &["cluster", "create", "x", "--type", "bridged"][..],
            "switching, routing, ip-fabric",
        ),
        (
            &[
                "cluster", "create", "x", "--type", "routing", "--reuse", "random",
            ],
            "last, first-free",
        ),
        (
            &[
                "cluster",
                "create",
                "x",
                "--type",
                "routing",
                "--virtualization",
                "xen",
            ],
            "kvm, lxd",
        ),
        (&["lab", "up", "bridged"], "switching, routing, ip-fabric"),
    ] {
        let err = e.fails(2, args);
        let message = err["message"].as_str().unwrap_or_default();
        assert!(message.contains(listed), "{args:?}: {message}");
    }
    let before = e.dump();
    for (args, code, field, value, rule) in cases {
        let err = e.fails(*code, args);
        assert!(!err.is_null(), "{args:?}: no JSON error");
        let message = err["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{args:?}: empty message");
        if !field.is_empty() {
            assert_eq!(err["field"], *field, "{args:?}: {err}");
            assert_eq!(err["value"], *value, "{args:?}: {err}");
            assert!(
                err["rule"].as_str().unwrap_or_default().contains(rule),
                "{args:?}: rule should mention {rule:?}: {err}"
            );
        }
        assert_eq!(e.dump(), before, "{args:?} changed the database");
    }
    // ip-fabric cluster settings
    let fabric_cases: &[(&[&str], &str, &str)] = &[
        (
            &["--route-reflector", "172.16.0.2:0"],
            "route-reflector",
            "ASN is a whole number",
        ),
        (
            &["--route-reflector", "172.16.0.2:4294967296"],
            "route-reflector",
            "4294967294",
        ),
        (
            &["--route-reflector", "172.16.0.2:65000", "--asn", "0"],
            "asn",
            "1 to 4294967294",
        ),
        (
            &[
                "--route-reflector",
                "172.16.0.2:65000",
                "--asn",
                "4294967296",
            ],
            "asn",
            "1 to 4294967294",
        ),
        (
            &["--route-reflector", "172.16.0.2:65000", "--asn", "65001"],
            "route-reflector",
            "iBGP",
        ),
        (
            &["--route-reflector", "172.16.0.2"],
            "route-reflector",
            "ADDRESS:ASN",
        ),
        (&[], "route-reflector", "at least one route reflector"),
        (
            &["--route-reflector", "10.0.0.1:65000"],
            "route-reflector",
            "VM gateway address 10.0.0.1",
        ),
    ];
    for (more, field, rule) in fabric_cases {
        let args = with(FABRIC, more);
        let err = e.fails(2, &args);
        assert_eq!(err["field"], *field, "{args:?}: {err}");
        assert!(
            err["rule"].as_str().unwrap().contains(rule),
            "{args:?}: {err}"
        );
        assert_eq!(e.dump(), before);
    }
    for community in ["65000", "65000:", "65536:1", "a:b", "1:2:3"] {
        let args = [
            "cluster",
            "create",
            "f2",
            "--type",
            "ip-fabric",
            "--vm-gateway",
            "10.0.0.1",
            "--route-reflector",
            "172.16.0.2:65000",
            "--bgp-community",
            community,
        ];
        let err = e.fails(2, &args);
        assert_eq!(err["field"], "bgp-community");
        assert_eq!(err["value"], community);
        assert!(err["rule"].as_str().unwrap().contains("ASN:VALUE"));
    }
    let err = e.fails(
        2,
        &[
            "cluster",
            "create",
            "f2",
            "--type",
            "ip-fabric",
            "--bgp-community",
            "1:1",
            "--route-reflector",
            "172.16.0.2:65000",
        ],
    );
    assert_eq!(err["field"], "vm-gateway");
    assert_eq!(e.dump(), before);
}

#[test]
fn exhaustion_names_the_pool_and_consumes_nothing() {
    let e = Env::new();
    e.seed_world();
    for i in 0..8 {
        e.ok(&["vm", "create", "hz", &format!("v{i}"), "--node", "hz1"]);
    }
    let before = e.dump();
    let err = e.fails(5, &["vm", "create", "hz", "v8", "--node", "hz1"]);
    assert_eq!(err["kind"], "exhausted");
    assert_eq!(err["pool"], "the IPv4 ranges of node hz1");
    assert_eq!(err["used"], 8);
    assert_eq!(err["usable"], 8);
    assert_eq!(e.dump(), before, "a failed create left a trace");
    // IPv6 asked on top: the IPv4 failure undoes everything.
    let err = e.fails(5, &["vm", "create", "hz", "v9", "--node", "hz1", "--ipv6"]);
    assert_eq!(err["kind"], "exhausted");
    assert_eq!(e.dump(), before);
}

#[test]
fn usage_errors_are_json_with_json_output() {
    let e = Env::new();
    let r = e.run(&["vm", "create"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.err["error"]["kind"], "usage", "{}", r.stderr);
    let out = e.cmd().args(["vm", "create"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
    // Text errors say what is wrong in one line.
    let out = e
        .cmd()
        .args(["network", "add", "nope", "192.0.2.0/24"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: cluster \"nope\" does not exist"
    );
}

/// A mistyped --db is an error that creates nothing; `init` creates it.
#[test]
fn a_missing_database_is_refused_until_init() {
    let e = Env::new();
    let typo = e.dir.path().join("typo").join("vmfabirc.db");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmfabric"))
            .arg("--db")
            .arg(&typo)
            .args(["-o", "json"])
            .args(args)
            .env_remove("VMFABRIC_DB")
            .output()
            .unwrap();
        common::parse(out)
    };
    for args in [
        &["cluster", "list"][..],
        &["serve", "--listen", "127.0.0.1:0"],
        &["check"],
    ] {
        let r = run(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert_eq!(r.err["error"]["field"], "db", "{}", r.stderr);
        assert!(r.stderr.contains("vmfabric init"), "{}", r.stderr);
        assert!(
            !typo.parent().unwrap().exists(),
            "{args:?} created the folder"
        );
    }
    let r = run(&["init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(typo.exists());
    assert_eq!(run(&["cluster", "list"]).code, 0);
    // init again changes nothing and says the database is ready.
    assert_eq!(run(&["init"]).code, 0);
}

/// `vm import` reports each failed line with its number and VM, in the
/// error shape of every command, and exits non-zero.
#[test]
fn import_names_each_failed_line_and_fails() {
    use std::io::Write;
    let e = Env::new();
    e.seed_world();
    let input = concat!(
        "{\"cluster\":\"fab\",\"name\":\"i1\",\"node\":\"node1\"}\n",
        "not json\n",
        "\n",
        "{\"cluster\":\"fab\",\"name\":\"i1\",\"node\":\"node1\"}\n",
        "{\"cluster\":\"fab\",\"name\":\"i2\",\"node\":\"ghost\"}\n",
        "{\"cluster\":\"fab\",\"name\":\"i3\",\"node\":\"node1\"}\n",
    );
    for batch in ["1", "10"] {
        let mut child = e
            .cmd()
            .args(["-o", "json", "vm", "import", "--batch", batch])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
        let docs: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let lines: Vec<u64> = docs.iter().map(|d| d["line"].as_u64().unwrap()).collect();
        assert_eq!(lines, [1, 2, 4, 5, 6], "{stdout}");
        // Each failure: its line, its VM, the usual error document.
        assert_eq!(docs[1]["error"]["field"], "line", "{stdout}");
        assert_eq!(docs[2]["vm"], "i1", "{stdout}");
        assert_eq!(docs[2]["error"]["kind"], "conflict", "{stdout}");
        assert!(docs[2]["error"]["message"].is_string(), "{stdout}");
        assert_eq!(docs[3]["vm"], "i2", "{stdout}");
        assert_eq!(docs[3]["error"]["kind"], "not-found", "{stdout}");
        let err: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
        let rule = err["error"]["rule"].as_str().unwrap_or_default();
        assert!(
            rule.contains("line 2")
                && rule.contains("line 4 (VM i1)")
                && rule.contains("line 5 (VM i2)"),
            "{rule}"
        );
        e.ok(&["vm", "delete", "i1"]);
        e.ok(&["vm", "delete", "i3"]);
    }
}

/// What is unreachable or not allowed is said as such (exit 7), not as a
/// storage error: a controller nobody listens for, a lab without root.
#[test]
fn unavailable_is_not_a_storage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .args([
            "-o",
            "json",
            "--server",
            "http://127.0.0.1:1",
            "--token",
            "vmf_x",
        ])
        .args(["cluster", "list"])
        .env_remove("VMFABRIC_DB")
        .output()
        .unwrap();
    let r = common::parse(out);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert_eq!(r.err["error"]["kind"], "unavailable", "{}", r.stderr);
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_vmfabric"))
        .args(["-o", "json", "lab", "up", "switching"])
        .env_remove("VMFABRIC_DB")
        .output()
        .expect("setpriv (util-linux)");
    let r = common::parse(out);
    assert_eq!(r.code, 7, "{}", r.stderr);
    assert_eq!(r.err["error"]["kind"], "unavailable", "{}", r.stderr);
    assert!(r.stderr.contains("root"), "{}", r.stderr);
}

/// `--version` names the version, the commit and the schema version.
#[test]
fn version_names_commit_and_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let re = regex::Regex::new(
        r"^vmfabric \d+\.\d+\.\d+ \(commit [0-9a-f]{12}(\+changes)?|unknown, schema \d+\)",
    )
    .unwrap();
    assert!(re.is_match(text.trim()), "{text}");
    assert!(text.contains(", schema "), "{text}");
}

/// A database that cannot be used fails at once with its real cause, not
/// after a 30 s pool timeout: connection refused, authentication failed,
/// a read-only file system.
#[test]
fn an_unusable_database_fails_fast_with_its_cause() {
    let pg = std::env::var("VMFABRIC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://vmfabric:vmfabric@127.0.0.1:5432/postgres".into());
    let wrong = pg.replacen("vmfabric:vmfabric@", "vmfabric:not-the-password@", 1);
    let e = Env::new();
    let ro = e.dir.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    let db = ro.join("vmfabric.db");
    let init = std::process::Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .arg("--db")
        .arg(&db)
        .arg("init")
        .output()
        .unwrap();
    assert!(init.status.success());
    let bin = env!("CARGO_BIN_EXE_vmfabric");
    let ro_list = format!(
        "mount -o bind,ro {0} {0} && {bin} --db {1} -o json cluster list",
        ro.display(),
        db.display()
    );
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                bin.into(),
                "--db".into(),
                "postgres://vmfabric:x@127.0.0.1:1/postgres".into(),
                "-o".into(),
                "json".into(),
                "cluster".into(),
                "list".into(),
            ],
            "Connection refused",
        ),
        (
            vec![
                bin.into(),
                "--db".into(),
                wrong.clone(),
                "-o".into(),
                "json".into(),
                "cluster".into(),
                "list".into(),
            ],
            "password authentication failed",
        ),
        (
            vec![
                "unshare".into(),
                "-m".into(),
                "sh".into(),
                "-c".into(),
                ro_list,
            ],
            "Read-only file system",
        ),
    ];
    for (argv, cause) in cases {
        let start = std::time::Instant::now();
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env_remove("VMFABRIC_DB")
            .output()
            .expect("unshare (util-linux)");
        let took = start.elapsed();
        let r = common::parse(out);
        assert_eq!(r.code, 7, "{argv:?}: {}", r.stderr);
        assert_eq!(r.err["error"]["kind"], "unavailable", "{}", r.stderr);
        assert!(r.stderr.contains(cause), "{argv:?}: {}", r.stderr);
        assert!(
            !r.stderr.contains("not-the-password"),
            "a password in a message: {}",
            r.stderr
        );
        assert!(
            took < std::time::Duration::from_secs(5),
            "{argv:?} took {took:?}"
        );
    }
}

/// `agent --plan FILE` checks the file by the controller's rules before
/// anything reaches the kernel. Run in a network namespace of its own
/// (unshare -n), so that even a missing check could not touch this host.
#[test]
fn an_agent_refuses_a_hostile_plan_file() {
    let e = Env::new();
    e.seed_world();
    let plan = e.ok(&["node", "plan", "kvm1", "--format", "json"]);
    let mut bad = plan.clone();
    bad["links"][0]["name"] = serde_json::json!("x\" ; flush ruleset");
    let mut sys = plan.clone();
    sys["sysctls"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"key": "kernel.core_pattern", "value": "1"}));
    for (doc, field) in [(bad, "plan.links[0].name"), (sys, "plan.sysctls")] {
        let path = e.dir.path().join("plan.json");
        std::fs::write(&path, doc.to_string()).unwrap();
        let out = std::process::Command::new("unshare")
            .args(["-n", "--"])
            .arg(env!("CARGO_BIN_EXE_vmfabric"))
            .args(["-o", "json", "agent", "--node", "kvm1", "--once", "--plan"])
            .arg(&path)
            .env_remove("VMFABRIC_DB")
            .output()
            .expect("unshare (util-linux)");
        let r = common::parse(out);
        assert_eq!(r.code, 2, "{}", r.stderr);
        let f = r.err["error"]["field"].as_str().unwrap_or_default();
        assert!(f.starts_with(field), "{field}: {}", r.stderr);
        assert!(
            r.stderr.contains("plan.json"),
            "names the file: {}",
            r.stderr
        );
    }
}
