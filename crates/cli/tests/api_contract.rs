//! The API contract, checked with an independent reading of the served
//! OpenAPI document against a live `vmfabric serve`:
//! - the document itself: every `$ref` resolves, every `required` name is
//!   a property, every default and example fits its own schema, every
//!   operation has an id of its own and its answers;
//! - a bounded property-based client (seeded, so a failure reproduces):
//!   for every operation, requests built from its schemas and mutated
//!   (wrong types, unknown fields, empty and hostile path and query
//!   values, no token), each answer checked: never a 5xx; a status the
//!   document lists for that operation; every error a problem document
//!   whose `status` is the HTTP status; every success a body that fits
//!   the documented schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::Env;
use common::controller::{serve, token};
use serde_json::{Map, Value, json};

/// Requests per operation (bounded: the whole run takes seconds).
const PER_OPERATION: usize = 24;

struct Doc<'a> {
    root: &'a Value,
}

impl<'a> Doc<'a> {
    fn resolve(&self, s: &'a Value) -> &'a Value {
        let mut s = s;
        for _ in 0..16 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let ptr = r.trim_start_matches('#');
                    s = self.root.pointer(ptr).unwrap_or(&Value::Null);
                }
                None => return s,
            }
        }
        s
    }

    /// Every property `s` documents, through `allOf`, `oneOf` and `anyOf`
    /// (a flattened struct or enum composes its parts).
    fn known(&self, s: &'a Value, out: &mut BTreeSet<String>, depth: usize) {
        let s = self.resolve(s);
        if depth > 8 {
            return;
        }
        if let Some(p) = s.get("properties").and_then(Value::as_object) {
            out.extend(p.keys().cloned());
        }
        for key in ["allOf", "oneOf", "anyOf"] {
            for b in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.known(b, out, depth + 1);
            }
        }
        if s.get("additionalProperties")
            .is_some_and(|a| a != &Value::Bool(false))
        {
            out.insert("*".into());
        }
    }

    /// Why `v` does not fit schema `s` (empty: it fits), including fields
    /// the schema does not document.
    fn check(&self, s: &'a Value, v: &Value, path: &str, errs: &mut Vec<String>) {
        self.check_part(s, v, path, errs);
        if let Some(o) = v.as_object() {
            let mut known = BTreeSet::new();
            self.known(s, &mut known, 0);
            if !known.contains("*") && !known.is_empty() {
                for k in o.keys().filter(|k| !known.contains(*k)) {
                    errs.push(format!("{path}: undocumented field {k}"));
                }
            }
        }
    }

    /// `check` without the undocumented-field rule: a part of a composed
    /// schema sees only its own fields.
    fn check_part(&self, s: &'a Value, v: &Value, path: &str, errs: &mut Vec<String>) {
        let s = self.resolve(s);
        if s.is_null() {
            errs.push(format!("{path}: unresolved schema"));
            return;
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for a in all {
                self.check_part(a, v, path, errs);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = s.get(key).and_then(Value::as_array) {
                let fits = any
                    .iter()
                    .filter(|a| {
                        let mut e = Vec::new();
                        self.check_part(a, v, path, &mut e);
                        e.is_empty()
                    })
                    .count();
                let ok = if key == "oneOf" { fits == 1 } else { fits >= 1 };
                if !ok {
                    errs.push(format!("{path}: {v} fits {fits} branches of {key}"));
                }
            }
        }
        if let Some(t) = s.get("type") {
            let types: Vec<&str> = match t {
                Value::String(x) => vec![x.as_str()],
                Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let fits = |t: &str| match t {
                "null" => v.is_null(),
                "boolean" => v.is_boolean(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "array" => v.is_array(),
                "object" => v.is_object(),
                _ => true,
            };
            if !types.is_empty() && !types.iter().any(|t| fits(t)) {
                errs.push(format!("{path}: {v} is not {types:?}"));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            errs.push(format!("{path}: {v} is not one of {e:?}"));
        }
        if let (Some(p), Some(text)) = (s.get("pattern").and_then(Value::as_str), v.as_str()) {
            match regex::Regex::new(p) {
                Ok(re) if !re.is_match(text) => {
                    errs.push(format!("{path}: {text:?} does not match {p}"))
                }
                Err(e) => errs.push(format!("{path}: pattern {p} does not compile: {e}")),
                _ => {}
            }
        }
        if let Some(n) = v.as_f64() {
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errs.push(format!("{path}: {n} < minimum {min}"));
            }
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errs.push(format!("{path}: {n} > maximum {max}"));
            }
        }
        if let Some(o) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = r.as_str()
                    && !o.contains_key(r)
                {
                    errs.push(format!("{path}: required {r} missing"));
                }
            }
            for (k, x) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => self.check(ps, x, &format!("{path}.{k}"), errs),
                    None => {
                        if let Some(ap) = s.get("additionalProperties")
                            && ap.is_object()
                        {
                            self.check(ap, x, &format!("{path}.{k}"), errs);
                        }
                    }
                }
            }
        }
        if let (Some(items), Some(a)) = (s.get("items"), v.as_array()) {
            for (i, x) in a.iter().enumerate().take(50) {
                self.check(items, x, &format!("{path}[{i}]"), errs);
            }
        }
    }

    /// A value for schema `s`: valid where `valid`, else often not.
    fn make(&self, s: &'a Value, rng: &mut Rng, depth: usize, valid: bool) -> Value {
        let s = self.resolve(s);
        if depth > 4 {
            return Value::Null;
        }
        if !valid && rng.below(5) == 0 {
            return rng.junk();
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.is_empty()
        {
            return e[rng.below(e.len())].clone();
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(any) = s.get(key).and_then(Value::as_array)
                && !any.is_empty()
            {
                return self.make(&any[rng.below(any.len())], rng, depth + 1, valid);
            }
        }
        let t = match s.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null")
                .to_string(),
            _ if s.get("properties").is_some() => "object".into(),
            _ => "string".into(),
        };
        match t.as_str() {
            "object" => {
                let mut o = Map::new();
                let required: BTreeSet<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                if let Some(props) = s.get("properties").and_then(Value::as_object) {
                    for (k, ps) in props {
                        if required.contains(k.as_str()) || rng.below(3) == 0 {
                            o.insert(k.clone(), self.make(ps, rng, depth + 1, valid));
                        }
                    }
                }
                if !valid && rng.below(4) == 0 {
                    o.insert("typo_field".into(), json!(1));
                }
                Value::Object(o)
            }
            "array" => {
                let n = rng.below(3);
                let items = s.get("items").unwrap_or(&Value::Null);
                Value::Array(
                    (0..n)
                        .map(|_| self.make(items, rng, depth + 1, valid))
                        .collect(),
                )
            }
            "integer" => json!(rng.pick(&[0i64, 1, 2, 7, 64, 65_000, -1, 300])),
            "number" => json!(1.5),
            "boolean" => json!(rng.below(2) == 0),
            "null" => Value::Null,
            _ => json!(rng.text(s)),
        }
    }
}

/// A small deterministic generator (the run reproduces from its seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())].clone()
    }
    fn junk(&mut self) -> Value {
        self.pick(&[
            json!(null),
            json!(""),
            json!(-7),
            json!(1e300),
            json!([]),
            json!({}),
            json!("x".repeat(300)),
            json!("\u{0}\n\u{1b}[31m"),
            json!(true),
        ])
    }
    /// A string: names, addresses, CIDRs, or noise.
    fn text(&mut self, s: &Value) -> String {
        let fmt = s.get("format").and_then(Value::as_str).unwrap_or_default();
        let pool: &[&str] = match fmt {
            "ipv4" | "ipv6" | "ip" => &["192.0.2.77", "2001:db8::77", "198.51.100.9", "1.2.3"],
            _ => &[
                "sw",
                "fab",
                "hz",
                "kvm1",
                "node1",
                "hz1",
                "web1",
                "x-new",
                "192.0.2.0/27",
                "192.0.2.77",
                "203.0.113.0/28",
                "10.0.0.1",
                "65000:100",
                "172.16.0.9:65000",
                "1h",
                "viewer",
                "routing",
                "",
                "a b",
                "../..",
                "é",
            ],
        };
        self.pick(pool).to_string()
    }
}

/// Values for a path parameter (existing names, strangers, hostile text).
fn path_values(name: &str) -> &'static [&'static str] {
    match name {
        "index" => &["0", "1", "9", "x", "300"],
        "id" => &["2", "999", "x", "-1"],
        "ip" => &["192.0.2.5", "203.0.113.40", "nope", "::ffff:192.0.2.5"],
        "format" => &[
            "frr",
            "nft",
            "ndppd",
            "cloud-init",
            "libvirt",
            "libvirt-domain",
            "lxd",
            "bird",
            "x",
        ],
        // (No `..`: the client's URL parser resolves it before sending.)
        _ => &[
            "sw", "fab", "hz", "kvm1", "node1", "hz1", "web1", "nope", "a%20b", "x%00y",
        ],
    }
}

#[test]
fn the_document_and_the_server_agree() {
    let env = Env::new();
    env.seed_world();
    env.ok(&["vm", "create", "sw", "web1", "--node", "kvm1"]);
    let db = env.db.to_string_lossy().to_string();
    let admin = token(&db, "admin", None);
    let srv = serve(&db, &[]);

    vmfabric_client::install_crypto();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let base = srv.url.clone();
    let send = |method: &str, url: String, tok: Option<&str>, body: Option<Value>| {
        let mut r = client.request(method.parse().unwrap(), url);
        if let Some(t) = tok {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        rt.block_on(async {
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let ctype = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let text = resp.text().await.unwrap_or_default();
            (status, ctype, text)
        })
    };

    let (s, _, text) = send(
        "GET",
        format!("{base}/api/v1/openapi.json"),
        Some(&admin),
        None,
    );
    assert_eq!(s, 200, "{text}");
    let root: Value = serde_json::from_str(&text).unwrap();
    let doc = Doc { root: &root };

    // --- The document on its own -------------------------------------
    let mut problems: Vec<String> = Vec::new();
    fn walk(v: &Value, path: &str, f: &mut dyn FnMut(&Value, &str)) {
        f(v, path);
        match v {
            Value::Object(o) => o
                .iter()
                .for_each(|(k, x)| walk(x, &format!("{path}/{k}"), f)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| walk(x, &format!("{path}/{i}"), f)),
            _ => {}
        }
    }
    walk(&root, "", &mut |v, path| {
        if let Some(r) = v.get("$ref").and_then(Value::as_str)
            && root.pointer(r.trim_start_matches('#')).is_none()
        {
            problems.push(format!("{path}: $ref {r} does not resolve"));
        }
        if let (Some(req), Some(props)) = (
            v.get("required").and_then(Value::as_array),
            v.get("properties").and_then(Value::as_object),
        ) {
            for r in req.iter().filter_map(Value::as_str) {
                if !props.contains_key(r) {
                    problems.push(format!("{path}: required {r} is not a property"));
                }
            }
        }
    });
    if let Some(schemas) = root
        .pointer("/components/schemas")
        .and_then(Value::as_object)
    {
        for (name, s) in schemas {
            walk(
                s,
                &format!("#/components/schemas/{name}"),
                &mut |v, path| {
                    if !v.is_object() || v.get("$ref").is_some() {
                        return;
                    }
                    let mut samples: Vec<&Value> = Vec::new();
                    if let Some(d) = v.get("default") {
                        samples.push(d);
                    }
                    if let Some(ex) = v.get("examples").and_then(Value::as_array) {
                        samples.extend(ex.iter());
                    }
                    if let Some(ex) = v.get("example") {
                        samples.push(ex);
                    }
                    for x in samples {
                        let mut e = Vec::new();
                        doc.check(v, x, path, &mut e);
                        problems.extend(e.into_iter().map(|e| format!("default/example: {e}")));
                    }
                },
            );
        }
    }
    let mut ids = BTreeSet::new();
    let mut ops: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in root["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            match op.get("operationId").and_then(Value::as_str) {
                Some(id) if ids.insert(id.to_string()) => {}
                other => problems.push(format!(
                    "{method} {path}: operationId {other:?} missing or repeated"
                )),
            }
            if op["responses"].as_object().is_none_or(|r| r.is_empty()) {
                problems.push(format!("{method} {path}: no responses"));
            }
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    assert!(
        problems.is_empty(),
        "the document:\n{}",
        problems.join("\n")
    );

    // --- The live server against the document -------------------------
    // Another seed: VMFABRIC_CONTRACT_SEED=N (failures print the request).
    let seed = std::env::var("VMFABRIC_CONTRACT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0005_eed0_fa11_u64);
    let mut rng = Rng(seed.max(1));
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    let mut sent = 0usize;
    for (method, path, op) in &ops {
        if path.ends_with("/plan") || path.contains("/tokens") && method == "DELETE" {
            // Long polls wait by design; revoking tokens would end the run.
            continue;
        }
        let params: Vec<&Value> = op["parameters"].as_array().into_iter().flatten().collect();
        let body_schema = op.pointer("/requestBody/content/application~1json/schema");
        for i in 0..PER_OPERATION {
            let valid = i % 2 == 0;
            let mut url = path.clone();
            let mut query: Vec<String> = Vec::new();
            for p in &params {
                let name = p["name"].as_str().unwrap_or_default();
                match p["in"].as_str() {
                    Some("path") => {
                        let v = rng.pick(path_values(name));
                        url = url.replace(&format!("{{{name}}}"), v);
                    }
                    Some("query") if p["required"] == true || rng.below(2) == 0 => {
                        let v = if valid {
                            doc.make(&p["schema"], &mut rng, 0, true)
                        } else {
                            rng.pick(&[json!(""), json!("junk"), json!(-1), json!("1e9")])
                        };
                        let v = match v {
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        query.push(format!("{name}={}", urlencode(&v)));
                    }
                    _ => {}
                }
            }
            if !valid && rng.below(4) == 0 {
                query.push("typo_param=1".into());
            }
            let body = body_schema.map(|s| doc.make(s, &mut rng, 0, valid));
            let tok = if i % 7 == 6 {
                None
            } else {
                Some(admin.as_str())
            };
            let full = if query.is_empty() {
                format!("{base}{url}")
            } else {
                format!("{base}{url}?{}", query.join("&"))
            };
            let (status, ctype, text) = send(method, full.clone(), tok, body.clone());
            sent += 1;
            let what = format!(
                "{method} {full} {}",
                body.map(|b| b.to_string()).unwrap_or_default()
            );
            let fail = |why: String, failures: &mut BTreeMap<String, String>| {
                failures
                    .entry(format!("{method} {path}: {why}"))
                    .or_insert(what.clone());
            };
            if status >= 500 {
                fail(format!("answered {status}: {text}"), &mut failures);
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            let documented = responses
                .get(&status.to_string())
                .or_else(|| responses.get(&format!("{}XX", status / 100)))
                .or_else(|| responses.get("default"));
            let Some(resp) = documented else {
                fail(
                    format!("status {status} is not documented: {text}"),
                    &mut failures,
                );
                continue;
            };
            if status >= 400 {
                let p: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if !ctype.starts_with("application/problem+json") || p["status"] != status {
                    fail(
                        format!("{status} is not a problem document: {ctype} {text}"),
                        &mut failures,
                    );
                }
                continue;
            }
            if let Some(schema) = resp.pointer("/content/application~1json/schema") {
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) => {
                        let mut e = Vec::new();
                        doc.check(schema, &v, "body", &mut e);
                        if !e.is_empty() {
                            fail(
                                format!("{status} body does not fit: {}", e.join("; ")),
                                &mut failures,
                            );
                        }
                    }
                    Err(_) => fail(format!("{status} body is not JSON: {text}"), &mut failures),
                }
            }
        }
    }
    eprintln!("{sent} requests over {} operations", ops.len());
    assert!(sent > 500, "{sent}");
    assert!(
        failures.is_empty(),
        "{} contract failures (class: first request):\n{}",
        failures.len(),
        failures
            .iter()
            .map(|(k, v)| format!("- {k}\n    {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
