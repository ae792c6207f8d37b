//! A `vmfabric serve` process for a test: started on a free port, killed
//! (by PID) when the test ends, pass or fail.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::{Run, parse};

pub struct Serve {
    pub child: Child,
    pub url: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vmfabric --db DB serve --listen 127.0.0.1:0 EXTRA`, once it listens.
pub fn serve(db: &str, extra: &[&str]) -> Serve {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmfabric"));
    c.args(["--db", db, "serve", "--listen", "127.0.0.1:0"])
        .args(extra);
    serve_with(c)
}

/// Start a `vmfabric … serve` command (e.g. inside a namespace) and wait
/// until it says where it listens.
pub fn serve_with(mut c: Command) -> Serve {
    // Request logs only when a test asks for them (RUST_LOG set by it):
    // a line per request would bury the test output.
    if !c.get_envs().any(|(k, _)| k == "RUST_LOG") {
        c.env("RUST_LOG", "warn");
    }
    let mut child = c
        .env_remove("VMFABRIC_SERVER")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("vmfabric serve printed {line:?}"))
        .to_string();
    Serve { child, url }
}

/// `vmfabric --server URL --token T -o json ARGS`.
pub fn remote(url: &str, token: &str, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .args(["--server", url, "--token", token, "--output", "json"])
        .args(args)
        .env_remove("VMFABRIC_DB")
        .output()
        .unwrap();
    parse(out)
}

/// A token of `role` (and `node`), made on the database directly, as an
/// operator does for the first admin token.
pub fn token(db: &str, role: &str, node: Option<&str>) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmfabric"));
    c.args(["--db", db, "-o", "json", "token", "create", "--role", role]);
    if let Some(n) = node {
        c.args(["--node", n]);
    }
    let r = parse(c.output().unwrap());
    assert_eq!(r.code, 0, "token create: {}", r.stderr);
    r.json["secret"].as_str().unwrap().to_string()
}

/// One HTTP request; returns the status and the JSON (or text) answer.
pub fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Value, String) {
    vmfabric_client::install_crypto();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let mut r = c.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, json, ctype + "\n" + &text)
    })
}

/// A child process killed and reaped when the test ends, pass or fail.
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
