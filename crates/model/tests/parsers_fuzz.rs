//! Every parser of outside input, fed arbitrary and near-valid text: it
//! answers Ok or an error naming its field, never panics, and what it
//! accepts prints back to text it accepts again (one spelling). A bounded
//! run (PROPTEST_CASES, default 256 per property) is part of the test
//! command.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use vmfabric_model::cluster::{Community, RouteReflector, parse_asn};
use vmfabric_model::names::{check_name, check_note};
use vmfabric_model::network::{parse_cidr, parse_ip};
use vmfabric_model::node::parse_ip_prefix;
use vmfabric_model::{
    ClusterInput, Error, IfName, Mac, NetworkInput, NodeInput, Seconds, Timestamp, VmInput,
};

/// Text near the valid forms: digits, dots, colons, slashes, letters.
fn near() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9./:a-fA-F-]{0,45}",
        "[0-9]{1,3}(\\.[0-9]{1,3}){3}(/[0-9]{1,3})?",
        "[0-9a-f]{0,4}(:[0-9a-f]{0,4}){2,8}(/[0-9]{1,3})?",
        "[0-9]{1,12}[smhdw]?",
        "[0-9]{1,11}:[0-9]{1,11}",
        ".{0,80}",
    ]
}

fn named(e: &Error, field: &str) -> bool {
    match e {
        Error::Invalid { field: f, .. } | Error::Conflict { field: f, .. } => f == field,
        _ => false,
    }
}

proptest! {
    #[test]
    fn addresses_and_cidrs(t in near()) {
        match parse_ip("ip", &t) {
            Ok(ip) => prop_assert_eq!(parse_ip("ip", &ip.to_string()).unwrap(), ip),
            Err(e) => prop_assert!(named(&e, "ip"), "{e:?}"),
        }
        match parse_cidr("cidr", &t) {
            Ok(c) => prop_assert_eq!(parse_cidr("cidr", &c.to_string()).unwrap(), c),
            Err(e) => prop_assert!(named(&e, "cidr"), "{e:?}"),
        }
        match parse_ip_prefix("address", &t) {
            Ok((ip, p)) => {
                let back = match p {
                    Some(p) => format!("{ip}/{p}"),
                    None => ip.to_string(),
                };
                prop_assert_eq!(parse_ip_prefix("address", &back).unwrap(), (ip, p));
            }
            Err(e) => prop_assert!(named(&e, "address"), "{e:?}"),
        }
        if let Ok(r) = t.parse::<vmfabric_ipam::Range>() {
            prop_assert_eq!(r.to_string().parse::<vmfabric_ipam::Range>().unwrap(), r);
        }
    }

    #[test]
    fn bgp_and_times(t in near()) {
        match parse_asn("asn", &t) {
            Ok(a) => prop_assert_eq!(parse_asn("asn", &a.to_string()).unwrap(), a),
            Err(e) => prop_assert!(named(&e, "asn"), "{e:?}"),
        }
        match Community::parse("bgp-community", &t) {
            Ok(c) => prop_assert_eq!(Community::parse("bgp-community", &c.to_string()).unwrap(), c),
            Err(e) => prop_assert!(named(&e, "bgp-community"), "{e:?}"),
        }
        match RouteReflector::parse("route-reflector", &t) {
            Ok(r) => {
                let back = format!("{}:{}", r.address, r.asn);
                prop_assert_eq!(RouteReflector::parse("route-reflector", &back).unwrap(), r);
            }
            Err(e) => prop_assert!(named(&e, "route-reflector"), "{e:?}"),
        }
        match Seconds::parse("cooldown", &t) {
            Ok(s) => prop_assert_eq!(Seconds::parse("cooldown", &s.to_string()).unwrap(), s),
            Err(e) => prop_assert!(named(&e, "cooldown"), "{e:?}"),
        }
        if let Err(e) = Timestamp::parse("at", &t) {
            prop_assert!(named(&e, "at"), "{e:?}");
        }
    }

    #[test]
    fn names_notes_interfaces_macs(t in ".{0,300}") {
        if let Err(e) = check_name("name", &t) {
            prop_assert!(named(&e, "name"), "{e:?}");
        }
        match check_note(&t) {
            Ok(()) => prop_assert!(!t.chars().any(char::is_control)),
            Err(e) => prop_assert!(named(&e, "note"), "{e:?}"),
        }
        if let Ok(i) = IfName::new("uplink", &t) {
            prop_assert!(i.as_str().len() <= 15 && !i.as_str().is_empty());
        }
        if let Ok(m) = t.parse::<Mac>() {
            prop_assert_eq!(m.to_string().parse::<Mac>().unwrap(), m);
        }
    }

    /// API bodies: any JSON text, or a valid body with one field's value
    /// replaced by arbitrary JSON, decodes or is refused; never a panic.
    #[test]
    fn request_bodies(t in ".{0,200}", key in "[a-z_]{1,14}", n in any::<i64>(), s in ".{0,40}") {
        let _ = serde_json::from_str::<VmInput>(&t);
        let _ = serde_json::from_str::<ClusterInput>(&t);
        let _ = serde_json::from_str::<NodeInput>(&t);
        let _ = serde_json::from_str::<NetworkInput>(&t);
        for v in [serde_json::json!(n), serde_json::json!(s), serde_json::json!([s]), serde_json::json!({key.clone(): n})] {
            let body = serde_json::json!({"name": "web1", "node": "kvm1", key.clone(): v});
            if let Ok(vm) = serde_json::from_value::<VmInput>(body) {
                prop_assert_eq!(vm.name, "web1");
            }
        }
    }
}
