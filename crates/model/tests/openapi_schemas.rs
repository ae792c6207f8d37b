//! Drift guard between serde and the OpenAPI schemas: representative values
//! of the API's types are serialized with serde_json and checked against
//! the schemas utoipa generates. Every key serde writes must be a property
//! of the schema (through `$ref`, `allOf` for flattened fields and `oneOf`
//! for tagged enums and nullable values), every required property must be
//! written, and values must have the schema's JSON type, enum value and
//! IP format. At the end, every property of every schema reached must have
//! been seen in some value, so a property serde never writes fails too.
#![cfg(feature = "openapi")]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::{OpenApi, ToSchema};
use vmfabric_model::block::{Block, BlockRole};
use vmfabric_model::names::{Mac, host_ifname};
use vmfabric_model::network::NetworkInput;
use vmfabric_model::view::{
    Allocation, ClusterSummary, Exclusion, FreeRange, FreeSpace, HistoryEntry, Holder, NetworkView,
    ReleaseResult, Released, Usage,
};
use vmfabric_model::vm::{Nic, NicAddress, NicInput};
use vmfabric_model::{
    AgentStatus, Cluster, ClusterInput, NewToken, Node, NodeInput, Role, Seconds, Timestamp,
    TokenInfo, TokenInput, Vm, VmInput,
};

#[derive(OpenApi)]
#[openapi(components(schemas(
    Cluster,
    ClusterSummary,
    NetworkView,
    Node,
    Vm,
    Allocation,
    FreeSpace,
    HistoryEntry,
    ReleaseResult,
    Usage,
    TokenInfo,
    NewToken,
    AgentStatus,
    ClusterInput,
    NetworkInput,
    NodeInput,
    VmInput,
    TokenInput,
)))]
struct Doc;

/// (schema name, property name)
type Prop = (String, String);

/// What a schema says about an object's keys, and what was checked.
#[derive(Default)]
struct Keys {
    /// Properties the schema declares for this object.
    names: BTreeSet<String>,
    /// The schema admits any key (free-form object).
    any: bool,
    /// Properties of named schemas reached, and those a value had.
    declared: BTreeSet<Prop>,
    seen: BTreeSet<Prop>,
}

impl Keys {
    fn merge(&mut self, o: Keys) {
        self.names.extend(o.names);
        self.any |= o.any;
        self.declared.extend(o.declared);
        self.seen.extend(o.seen);
    }
}

struct Checker {
    schemas: Map<String, Value>,
    declared: BTreeSet<Prop>,
    seen: BTreeSet<Prop>,
}

impl Checker {
    fn new() -> Checker {
        let doc = serde_json::to_value(Doc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let schemas = doc["components"]["schemas"].as_object().unwrap().clone();
        Checker {
            schemas,
            declared: BTreeSet::new(),
            seen: BTreeSet::new(),
        }
    }

    /// Check the JSON of `value` against the schema of `T`.
    fn check<T: Serialize + ToSchema>(&mut self, value: &T) {
        let name = T::name().to_string();
        let v = serde_json::to_value(value).unwrap();
        let s = json!({ "$ref": format!("#/components/schemas/{name}") });
        match self.complete(&v, &s, &name, None) {
            Ok(k) => {
                self.declared.extend(k.declared);
                self.seen.extend(k.seen);
            }
            Err(e) => panic!("{name}: {e}\nJSON: {v}"),
        }
    }

    /// `known`, then: an object may have no key the schema does not declare.
    fn complete(
        &self,
        v: &Value,
        s: &Value,
        path: &str,
        owner: Option<&str>,
    ) -> Result<Keys, String> {
        let k = self.known(v, s, path, owner)?;
        if let (Value::Object(o), false) = (v, k.any)
            && let Some(extra) = o.keys().find(|key| !k.names.contains(*key))
        {
            return Err(format!(
                "{path}.{extra}: written by serde, not in the schema"
            ));
        }
        Ok(k)
    }

    /// Check `v` against `s`, returning the keys `s` declares for it.
    /// `owner` is the named schema whose properties `s` describes, if any.
    fn known(&self, v: &Value, s: &Value, path: &str, owner: Option<&str>) -> Result<Keys, String> {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let name = r
                .strip_prefix("#/components/schemas/")
                .ok_or_else(|| format!("{path}: unexpected $ref {r}"))?;
            let target = self
                .schemas
                .get(name)
                .ok_or_else(|| format!("{path}: {r} is not among the components"))?;
            return self.known(v, target, path, Some(name));
        }
        let mut keys = Keys::default();
        if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
            for p in parts {
                keys.merge(self.known(v, p, path, owner)?);
            }
        }
        for (word, exactly_one) in [("oneOf", true), ("anyOf", false)] {
            let Some(alts) = s.get(word).and_then(Value::as_array) else {
                continue;
            };
            let mut errors = Vec::new();
            let mut ok = Vec::new();
            for a in alts {
                match self.known(v, a, path, owner) {
                    Ok(k) => ok.push(k),
                    Err(e) => errors.push(e),
                }
            }
            if ok.is_empty() || (exactly_one && ok.len() > 1) {
                return Err(format!(
                    "{path}: {} of the {word} alternatives match: {errors:?}",
                    ok.len()
                ));
            }
            for k in ok {
                keys.merge(k);
            }
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => t.as_str().into_iter().collect(),
            };
            if !types.iter().any(|t| has_type(v, t)) {
                return Err(format!("{path}: {v} is not of type {t}"));
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            return Err(format!("{path}: {v} is not one of {e:?}"));
        }
        if let (Some(f), Some(text)) = (s.get("format").and_then(Value::as_str), v.as_str()) {
            let ok = match f {
                "ipv4" => text.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()),
                "ipv6" => text.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6()),
                "date-time" => text.parse::<Timestamp>().is_ok(),
                _ => true,
            };
            if !ok {
                return Err(format!("{path}: {text:?} is not in format {f}"));
            }
        }
        if let Value::Object(o) = v {
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap_or_default();
                if !o.contains_key(r) {
                    return Err(format!("{path}.{r}: required by the schema, not written"));
                }
            }
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    keys.names.insert(name.clone());
                    if let Some(owner) = owner {
                        keys.declared.insert((owner.to_string(), name.clone()));
                    }
                    if let Some(val) = o.get(name) {
                        if let Some(owner) = owner {
                            keys.seen.insert((owner.to_string(), name.clone()));
                        }
                        let inner = self.complete(val, sub, &format!("{path}.{name}"), None)?;
                        keys.declared.extend(inner.declared);
                        keys.seen.extend(inner.seen);
                    }
                }
            }
            let structured = ["properties", "allOf", "oneOf", "anyOf", "$ref"]
                .iter()
                .any(|w| s.get(w).is_some());
            if s.get("additionalProperties").is_some_and(|a| a != false)
                || (s.get("type") == Some(&json!("object")) && !structured)
            {
                keys.any = true;
            }
        }
        if let (Value::Array(items), Some(sub)) = (v, s.get("items")) {
            for (i, item) in items.iter().enumerate() {
                let inner = self.complete(item, sub, &format!("{path}[{i}]"), None)?;
                keys.declared.extend(inner.declared);
                keys.seen.extend(inner.seen);
            }
        }
        Ok(keys)
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match (t, v) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_))
        | ("array", Value::Array(_))
        | ("object", Value::Object(_))
        | ("number", Value::Number(_)) => true,
        // Arbitrary precision: a u128 is a number however large it is.
        ("integer", Value::Number(n)) => n
            .to_string()
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-'),
        _ => false,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn fabric_cluster() -> Cluster {
    ClusterInput {
        name: "fab".into(),
        network_type: "ip-fabric".into(),
        vm_gateway: Some("10.0.0.1".into()),
        vm_gateway6: Some("fe80::1".into()),
        bgp_community: Some("65000:100".into()),
        route_reflectors: vec!["172.16.0.2:65000".into(), "[2001:db8::2]:65000".into()],
        cooldown: Some("1h".into()),
        reuse: Some("first-free".into()),
        virtualization: Some("lxd".into()),
        nameservers: vec!["192.0.2.53".into(), "2001:db8::53".into()],
        search_domains: vec!["example.com".into()],
        mtu: Some("1400".into()),
        ..ClusterInput::default()
    }
    .validate()
    .unwrap()
}

fn routing_cluster() -> Cluster {
    ClusterInput {
        name: "hz".into(),
        network_type: "routing".into(),
        ..ClusterInput::default()
    }
    .validate()
    .unwrap()
}

fn switching_cluster() -> Cluster {
    ClusterInput {
        name: "sw".into(),
        network_type: "switching".into(),
        ..ClusterInput::default()
    }
    .validate()
    .unwrap()
}

fn network_view() -> NetworkView {
    let cluster = switching_cluster();
    let spec = NetworkInput {
        cidr: "192.0.2.0/27".into(),
        exclude: vec!["192.0.2.20-192.0.2.23".into()],
        ..NetworkInput::default()
    }
    .validate(&cluster)
    .unwrap();
    NetworkView {
        block: Block {
            id: 7,
            cluster: cluster.name,
            node: None,
            role: BlockRole::Network,
            range: spec.cidr.range(),
            cidr: Some(spec.cidr),
            gateway: spec.gateway,
        },
        exclusions: vec![Exclusion {
            range: "192.0.2.0".into(),
            reason: "network address".into(),
        }],
    }
}

/// A node-range block of a routing node: a node, no CIDR, no gateway.
fn node_range_block() -> Block {
    let (_, blocks) = NodeInput {
        name: "n1".into(),
        address: "123.45.12.48".into(),
        ranges: vec!["203.0.113.40-203.0.113.44".into()],
        ..NodeInput::default()
    }
    .validate(&routing_cluster())
    .unwrap();
    Block {
        id: 3,
        cluster: "hz".into(),
        node: Some("n1".into()),
        role: blocks[0].role,
        range: blocks[0].range,
        cidr: blocks[0].cidr,
        gateway: None,
    }
}

fn routing_node() -> Node {
    NodeInput {
        name: "n1".into(),
        address: "123.45.12.48/26".into(),
        primary_ip: Some("123.45.12.49/26".into()),
        subnets: vec!["203.0.113.40/29".into()],
        ipv6: Some("2a01:4f8:13b:9a7::2/64".into()),
        uplink_mac: Some("96:f7:b7:55:42:3d".into()),
        ndp_proxy: Some("ndppd".into()),
        nameservers: vec!["213.133.98.98".into()],
        search_domains: vec!["fsn1.example.com".into()],
        ..NodeInput::default()
    }
    .validate(&routing_cluster())
    .unwrap()
    .0
}

fn switching_node() -> Node {
    NodeInput {
        name: "s1".into(),
        address: "172.16.0.11".into(),
        ..NodeInput::default()
    }
    .validate(&switching_cluster())
    .unwrap()
    .0
}

fn vm() -> Vm {
    Vm {
        name: "vm1".into(),
        cluster: "fab".into(),
        node: "n1".into(),
        nics: vec![Nic {
            index: 0,
            mac: Mac::for_nic(1, "vm1", 0, 0),
            host_interface: host_ifname("vm1", 0).unwrap(),
            addresses: vec![
                NicAddress {
                    address: ip("198.51.100.7"),
                    prefix_len: 32,
                    gateway: Some(ip("10.0.0.1")),
                },
                NicAddress {
                    address: ip("2001:db8::7"),
                    prefix_len: 128,
                    gateway: None,
                },
            ],
        }],
    }
}

fn holders() -> [Holder; 3] {
    [
        Holder::Vm {
            vm: "vm1".into(),
            nic: 0,
            mac: Some(Mac::for_nic(1, "vm1", 0, 0)),
        },
        Holder::Reserved {
            note: Some("router".into()),
        },
        Holder::Reserved { note: None },
    ]
}

fn token(node: Option<&str>, revoked: bool) -> TokenInfo {
    TokenInfo {
        id: 4,
        name: "agent".into(),
        role: if node.is_some() {
            Role::Node
        } else {
            Role::Admin
        },
        node: node.map(String::from),
        created_at: t("2026-05-03T14:00:00Z"),
        revoked_at: revoked.then(|| t("2026-05-04T14:00:00Z")),
    }
}

#[test]
fn serde_output_matches_the_schemas() {
    let mut c = Checker::new();
    let big = 1u128 << 80;

    for cluster in [fabric_cluster(), routing_cluster(), switching_cluster()] {
        c.check(&cluster);
        c.check(&ClusterSummary {
            cluster,
            networks: 1,
            nodes: 2,
            vms: 3,
        });
    }
    c.check(&network_view());
    c.check(&NetworkView {
        block: node_range_block(),
        exclusions: Vec::new(),
    });
    c.check(&routing_node());
    c.check(&switching_node());
    c.check(&vm());

    for holder in holders() {
        c.check(&Allocation {
            address: ip("192.0.2.5"),
            holder: holder.clone(),
            cluster: "sw".into(),
            node: Some("s1".into()),
            block: "192.0.2.0/27".into(),
            since: t("2026-05-03T14:00:00Z"),
        });
        c.check(&HistoryEntry {
            address: ip("2001:db8::5"),
            holder: holder.clone(),
            cluster: "sw".into(),
            node: None,
            since: t("2026-05-03T14:00:00Z"),
            until: Some(t("2026-05-03T15:00:00Z")),
        });
        c.check(&ReleaseResult {
            address: ip("192.0.2.5"),
            holder,
            usable_at: t("2026-05-03T15:00:00Z"),
            cooldown: Seconds(3600),
        });
    }
    c.check(&HistoryEntry {
        address: ip("192.0.2.5"),
        holder: Holder::Reserved { note: None },
        cluster: "sw".into(),
        node: Some("s1".into()),
        since: t("2026-05-03T14:00:00Z"),
        until: None,
    });
    c.check(&Allocation {
        address: ip("192.0.2.6"),
        holder: Holder::Reserved { note: None },
        cluster: "sw".into(),
        node: None,
        block: "192.0.2.0/27".into(),
        since: t("2026-05-03T14:00:00Z"),
    });

    c.check(&FreeSpace {
        cluster: "hz".into(),
        node: Some("n1".into()),
        block: "2a01:4f8:13b:9a7::/64".into(),
        ranges: vec![FreeRange {
            first: ip("2a01:4f8:13b:9a7::3"),
            last: ip("2a01:4f8:13b:9a7:ffff:ffff:ffff:ffff"),
            count: big,
        }],
        released: vec![Released {
            address: ip("2a01:4f8:13b:9a7::2"),
            usable_at: t("2026-05-03T15:00:00Z"),
        }],
        more: true,
    });
    c.check(&FreeSpace {
        cluster: "sw".into(),
        node: None,
        block: "192.0.2.0/27".into(),
        ranges: Vec::new(),
        released: Vec::new(),
        more: false,
    });
    for node in [Some("n1".to_string()), None] {
        c.check(&Usage {
            cluster: "hz".into(),
            node,
            block: "2a01:4f8:13b:9a7::/48".into(),
            role: BlockRole::NodeIpv6,
            family: "IPv6".into(),
            total: big,
            system: 2,
            used: 1,
            reserved: 0,
            cooling: 0,
            free: big - 3,
        });
    }

    for (node, revoked) in [(Some("n1"), true), (None, false)] {
        c.check(&token(node, revoked));
        c.check(&NewToken {
            info: token(node, revoked),
            secret: "vmf_0123456789abcdef".into(),
        });
    }
    c.check(&AgentStatus {
        node: "n1".into(),
        at: t("2026-05-03T14:00:00.5Z"),
        report: json!({"changes": 0, "errors": [], "applied": {"routes": 3}}),
    });

    // Request bodies: every field is written, defaulted or not.
    // (Valid ones: the schemas carry the name patterns and the enums.)
    c.check(&ClusterInput {
        name: "rack1".into(),
        network_type: "switching".into(),
        ..ClusterInput::default()
    });
    c.check(&NetworkInput {
        gateway: Some("192.0.2.1".into()),
        ..NetworkInput::default()
    });
    c.check(&NodeInput {
        name: "kvm1".into(),
        ..NodeInput::default()
    });
    c.check(&VmInput {
        name: "web1".into(),
        ..VmInput::default()
    });
    c.check(&VmInput {
        name: "web2".into(),
        extra_ipv4: 1,
        extra_ipv6: 1,
        nics: vec![NicInput {
            ips: vec!["192.0.2.9".into()],
            ..NicInput::default()
        }],
        ..VmInput::default()
    });
    c.check(&TokenInput {
        name: "agent".into(),
        role: "node".into(),
        node: Some("n1".into()),
    });

    let unseen: Vec<&Prop> = c.declared.difference(&c.seen).collect();
    assert!(
        unseen.is_empty(),
        "properties in the schemas that no value wrote (add a value that has them, or fix the schema): {unseen:?}"
    );
}

/// The checker itself: it must catch the drift it guards against.
#[test]
fn the_checker_catches_drift() {
    let c = Checker::new();
    let mut v = serde_json::to_value(vm()).unwrap();
    let s = json!({"$ref": "#/components/schemas/Vm"});
    assert!(c.complete(&v, &s, "Vm", None).is_ok());
    v["nics"][0]["extra"] = json!(1);
    assert!(c.complete(&v, &s, "Vm", None).is_err());
    let mut v = serde_json::to_value(vm()).unwrap();
    v.as_object_mut().unwrap().remove("node");
    assert!(c.complete(&v, &s, "Vm", None).is_err());
    let mut v = serde_json::to_value(vm()).unwrap();
    v["nics"][0]["mac"] = json!([1, 2, 3, 4, 5, 6]);
    assert!(c.complete(&v, &s, "Vm", None).is_err());
    let mut a = serde_json::to_value(Allocation {
        address: ip("192.0.2.5"),
        holder: Holder::Reserved { note: None },
        cluster: "sw".into(),
        node: None,
        block: "192.0.2.0/27".into(),
        since: t("2026-05-03T14:00:00Z"),
    })
    .unwrap();
    let s = json!({"$ref": "#/components/schemas/Allocation"});
    assert!(c.complete(&a, &s, "Allocation", None).is_ok());
    a["vm"] = json!("vm1");
    assert!(c.complete(&a, &s, "Allocation", None).is_err());
    a["holder"] = json!("someone");
    assert!(c.complete(&a, &s, "Allocation", None).is_err());
}
