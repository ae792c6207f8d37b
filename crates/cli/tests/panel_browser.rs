//! The panel in a real browser: Debian's chromium, driven over WebDriver
//! (chromium-driver) against a real `vmfabric serve` on loopback. Signs in
//! per role, walks the seed examples through the panel's forms, checks
//! what the API then returns, and saves a screenshot of each main page in
//! `target/panel-screenshots/`. Needs chromium and chromium-driver
//! (scripts/test installs them); a missing one fails with what to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::controller::{Reap, http, serve, token};
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session over WebDriver's HTTP protocol (W3C).
struct Browser {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    _driver: Reap,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let url = self.base.clone();
        let c = self.http.clone();
        let _ = self.rt.block_on(async { c.delete(url).send().await });
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// A headless chromium; `javascript: false` reads as a browser with
    /// scripts off does.
    fn start(javascript: bool) -> Browser {
        for (tool, pkg) in [
            ("chromedriver", "chromium-driver"),
            ("chromium", "chromium"),
        ] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(found, "{tool} is missing: apt-get install {pkg}");
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver: apt-get install chromium-driver");
        let driver = Reap(driver);
        vmfabric_client::install_crypto();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let t0 = Instant::now();
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,1100",
        ];
        if !javascript {
            args.push("--blink-settings=scriptEnabled=false");
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        }}});
        let session = loop {
            let r = rt.block_on(async {
                http.post(format!("{root}/session"))
                    .json(&caps)
                    .send()
                    .await?
                    .json::<Value>()
                    .await
            });
            match r {
                Ok(v) if v["value"]["sessionId"].is_string() => {
                    break v["value"]["sessionId"].as_str().unwrap().to_string();
                }
                other => {
                    assert!(
                        t0.elapsed() < Duration::from_secs(30),
                        "no browser session from chromedriver: {other:?}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        Browser {
            rt,
            http,
            base: format!("{root}/session/{session}"),
            _driver: driver,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let v: Value = self.rt.block_on(async {
            let mut r = self.http.request(method.parse().unwrap(), &url);
            if let Some(b) = body {
                r = r.json(&b);
            }
            r.send().await.unwrap().json().await.unwrap()
        });
        if let Some(e) = v["value"]["error"].as_str() {
            panic!("WebDriver {method} {path}: {e}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().unwrap().to_string()
    }

    fn count(&self, css: &str) -> usize {
        self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .map_or(0, Vec::len)
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.navigating(|| {
            self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
        });
    }

    /// Fill the fields of the form whose button says `button`, then press it.
    fn submit(&self, button: &str, fields: &[(&str, &str)]) {
        let xpath = format!("//form[.//button[normalize-space()='{button}']]");
        let found = self.call(
            "POST",
            "/element",
            Some(json!({"using": "xpath", "value": xpath})),
        );
        let f = found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no form with button {button}: {found}"))
            .to_string();
        for (name, value) in fields {
            let e = self.call(
                "POST",
                &format!("/element/{f}/element"),
                Some(json!({"using": "css selector", "value": format!("[name='{name}']")})),
            )[ELEMENT]
                .as_str()
                .unwrap()
                .to_string();
            if self.call("GET", &format!("/element/{e}/name"), None) == json!("select") {
                // A select takes a value, not keys.
                self.call(
                    "POST",
                    "/execute/sync",
                    Some(json!({"script": "arguments[0].value = arguments[1];", "args": [{ ELEMENT: e }, value]})),
                );
                continue;
            }
            self.call("POST", &format!("/element/{e}/clear"), Some(json!({})));
            self.call(
                "POST",
                &format!("/element/{e}/value"),
                Some(json!({ "text": value })),
            );
        }
        let b = self.call(
            "POST",
            &format!("/element/{f}/element"),
            Some(json!({"using": "xpath", "value": format!(".//button[normalize-space()='{button}']")})),
        )[ELEMENT]
            .as_str()
            .unwrap()
            .to_string();
        self.navigating(|| {
            self.call("POST", &format!("/element/{b}/click"), Some(json!({})));
        });
    }

    /// Run `act`, which leads to a new page, and wait until that page has
    /// loaded (a click returns before the form's answer arrives).
    fn navigating(&self, act: impl FnOnce()) {
        self.script("window.__vmfabric_old = true; return 1;");
        act();
        let t0 = Instant::now();
        loop {
            let done = self.script(
                "return window.__vmfabric_old === undefined && document.readyState === 'complete';",
            );
            if done == json!(true) {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no new page after 20 s"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn source(&self) -> String {
        self.call("GET", "/source", None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.call("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap()
            .to_string()
    }

    fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
    }

    fn shot(&self, name: &str) {
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = shots_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }
}

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/panel-screenshots")
}

fn api(url: &str, token: &str, path: &str) -> Value {
    let (code, v, text) = http(
        "GET",
        &format!("{url}/api/v1{path}"),
        Some(token),
        &[],
        None,
    );
    assert_eq!(code, 200, "{path}: {text}");
    v
}

#[test]
fn the_panel_walks_the_seed_examples_in_a_real_browser() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("panel.db");
    let db = db.to_str().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_vmfabric"))
        .args(["--db", db, "init"])
        .output()
        .unwrap();
    assert!(init.status.success());
    let admin = token(db, "admin", None);
    let operator = token(db, "operator", None);
    let viewer = token(db, "viewer", None);
    let s = serve(db, &[]);
    let url = s.url.clone();
    let b = Browser::start(true);

    // Signed out: the sign-in page; a wrong token is refused there.
    b.go(&format!("{url}/"));
    assert!(b.source().contains("API token"));
    b.shot("sign-in");
    b.submit("Sign in", &[("token", "vmf_nonsense")]);
    assert!(
        b.text(".problem").contains("malformed token"),
        "{}",
        b.source()
    );
    b.submit("Sign in", &[("token", &admin)]);
    assert!(b.source().contains("(admin)"), "{}", b.source());

    // Switching: a pool of two /27 blocks, managed in its Networks section.
    b.submit("Create cluster", &[("name", "sw"), ("type", "switching")]);
    assert!(b.text(".done").contains("Created cluster sw"));
    for cidr in ["192.0.2.0/27", "192.0.2.32/27"] {
        b.submit("Add network", &[("cidr", cidr)]);
        assert!(
            b.text(".done").contains(&format!("Added network {cidr}")),
            "{}",
            b.source()
        );
    }
    // A refusal shows the field, value and rule next to the field.
    b.submit("Add network", &[("cidr", "192.0.2.65/27")]);
    let err = b.text("#e-cidr");
    assert!(err.contains("did you mean 192.0.2.64/27"), "{err}");
    assert_eq!(
        b.script("return document.getElementById('f-cidr').getAttribute('aria-invalid')"),
        json!("true")
    );
    b.submit("Add node", &[("name", "kvm1"), ("address", "192.0.2.2")]);
    b.go(&format!("{url}/clusters/sw"));
    b.submit("Reserve", &[("ip", "192.0.2.20"), ("note", "abuse hold")]);
    assert!(b.text(".done").contains("Reserved 192.0.2.20"));
    // The map names the holder of each address.
    let cell = b.find(".map .cell[title^='192.0.2.20:']");
    let title = b.call("GET", &format!("/element/{cell}/attribute/title"), None);
    assert_eq!(title, json!("192.0.2.20: reserved — reserved: abuse hold"));
    assert_eq!(
        b.count(".map .cell"),
        64,
        "one cell per address of the two /27s"
    );
    // Keyboard: the map is one tab stop, arrow keys walk it and the
    // tooltip follows the focus.
    let first = b.find(".map .cell");
    b.script("document.querySelector('.map .cell').focus(); return 1;");
    b.call(
        "POST",
        &format!("/element/{first}/value"),
        Some(json!({"text": "\u{E014}\u{E014}"})),
    );
    assert_eq!(
        b.script("return document.activeElement.getAttribute('title')"),
        json!("192.0.2.2: system — address of node kvm1")
    );
    assert_eq!(
        b.script("return document.querySelector('.tip').textContent"),
        json!("192.0.2.2: system — address of node kvm1")
    );
    assert_eq!(
        b.script("return document.querySelectorAll('.map .cell[tabindex=\"0\"]').length"),
        json!(2),
        "one tab stop per map"
    );
    b.shot("networks");
    let nets = api(&url, &admin, "/networks?cluster=sw");
    assert_eq!(nets["items"].as_array().unwrap().len(), 2);

    // Routing (Hetzner): a node with 203.0.113.40/29, then its IPv6 as the
    // seed says: Nodes → node → IP addresses → IPv6 → Add an IP address.
    b.go(&format!("{url}/"));
    b.submit("Create cluster", &[("name", "hz"), ("type", "routing")]);
    b.submit(
        "Add node",
        &[
            ("name", "hz1"),
            ("address", "123.45.12.48"),
            ("subnet", "203.0.113.40/29"),
        ],
    );
    assert!(
        b.source().contains("Node hz1 — IP addresses"),
        "{}",
        b.source()
    );
    b.submit("Add IPv6", &[("ipv6", "2a01:4f8:13b:9a7::2/64")]);
    assert!(
        b.text(".done").contains("2a01:4f8:13b:9a7::2/64"),
        "{}",
        b.source()
    );
    // Eight VMs take .40 to .47.
    for i in 0..8 {
        b.go(&format!("{url}/vms"));
        b.submit(
            "Create VM",
            &[
                ("cluster", "hz"),
                ("name", &format!("web{i}")),
                ("node", "hz1"),
            ],
        );
        assert!(
            b.text(".done").contains(&format!("Created VM web{i}")),
            "{}",
            b.source()
        );
    }
    let vms = api(&url, &admin, "/vms?cluster=hz");
    let mut ips: Vec<String> = vms["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["nics"][0]["addresses"][0]["address"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    ips.sort();
    let want: Vec<String> = (40..48).map(|i| format!("203.0.113.{i}")).collect();
    assert_eq!(ips, want);
    // The node's agent, as it reports itself.
    let report = json!({"changes": ["+ route 203.0.113.40/32 dev web0_net0"], "failures": [],
        "sessions": [{"peer": "198.51.100.2", "family": "ipv4", "state": "Established", "prefixes_sent": 8}]});
    let (code, _, text) = http(
        "POST",
        &format!("{url}/api/v1/nodes/hz1/status"),
        Some(&admin),
        &[],
        Some(&report),
    );
    assert_eq!(code, 200, "{text}");
    b.go(&format!("{url}/nodes/hz1"));
    let agent = b.source();
    assert!(
        agent.contains("Established") && agent.contains("8 prefixes sent"),
        "{agent}"
    );
    assert_eq!(
        b.count(".map .cell"),
        8 + 256,
        "the /29 and runs of the /64"
    );
    b.shot("node-ip-addresses");
    // Migration is refused with the reason in routing.
    b.go(&format!("{url}/vms/web0"));
    b.submit("Migrate", &[("to", "hz1")]);
    assert!(b.source().contains("Refused"), "{}", b.source());
    b.shot("vm");

    // IP-fabric with two reflectors; their FRR config to copy.
    b.go(&format!("{url}/"));
    b.submit(
        "Create cluster",
        &[
            ("name", "fab"),
            ("type", "ip-fabric"),
            ("vm-gateway", "10.0.0.1"),
            ("route-reflector", "172.16.0.2:65000, 172.16.0.3:65000"),
            ("bgp-community", "65000:100"),
        ],
    );
    assert!(
        b.text(".done").contains("Created cluster fab"),
        "{}",
        b.source()
    );
    let fab = api(&url, &admin, "/clusters/fab");
    assert_eq!(
        fab["fabric"]["route_reflectors"].as_array().unwrap().len(),
        2,
        "{fab}"
    );
    b.go(&format!("{url}/clusters/fab/rr-config?format=frr"));
    assert!(b.text("pre#rr").contains("router bgp 65000"));
    b.shot("rr-config");
    b.go(&format!("{url}/"));
    b.shot("clusters");

    // Address search: who holds .41 now, and its history.
    b.go(&format!("{url}/search?address=203.0.113.41"));
    assert!(b.source().contains("VM web1"), "{}", b.source());
    b.shot("search");
    b.go(&format!("{url}/vms?cluster=hz"));
    b.shot("vms");

    // Sign out: the session is gone.
    b.click("header .who button");
    b.go(&format!("{url}/vms"));
    assert!(b.source().contains("API token"));

    // An operator may reserve but not add networks: no such form.
    b.go(&format!("{url}/login"));
    b.submit("Sign in", &[("token", &operator)]);
    b.go(&format!("{url}/clusters/sw"));
    assert_eq!(b.count("form[action$='/networks']"), 0);
    assert!(b.count("form[action='/addresses/reserve']") == 1);
    b.click("header .who button");

    // A viewer sees no write control; a forced write (a form made by hand
    // with the session's own CSRF secret) is refused and changes nothing.
    b.go(&format!("{url}/login"));
    b.submit("Sign in", &[("token", &viewer)]);
    b.go(&format!("{url}/clusters/sw"));
    assert_eq!(
        b.count("form[method=post]:not([action='/logout'])"),
        0,
        "a viewer sees only the sign-out form"
    );
    b.shot("viewer");
    b.navigating(|| {
        b.script(
        "const csrf = document.querySelector('form[action=\"/logout\"] input[name=csrf]').value;\
         const f = document.createElement('form'); f.method = 'post'; f.action = '/clusters/sw/networks';\
         for (const [k, v] of [['csrf', csrf], ['cidr', '198.51.100.0/27']]) {\
           const i = document.createElement('input'); i.name = k; i.value = v; f.appendChild(i); }\
         document.body.appendChild(f); f.submit(); return 1;",
        );
    });
    let refused = b.text(".problem");
    assert!(refused.contains("admin token"), "{refused}");
    let nets = api(&url, &admin, "/networks?cluster=sw");
    assert_eq!(
        nets["items"].as_array().unwrap().len(),
        2,
        "nothing changed"
    );

    // Another site cannot sign a browser in, even with a valid token.
    let (code, _, page) = http(
        "POST",
        &format!("{url}/login"),
        None,
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("origin", "https://evil.example"),
        ],
        None,
    );
    assert_eq!(code, 403, "{page}");
    assert!(page.contains("did not come from this panel"), "{page}");
    // Without a session, a post only leads to the sign-in page.
    let (_, _, page) = http(
        "POST",
        &format!("{url}/clusters/sw/networks"),
        None,
        &[("content-type", "application/x-www-form-urlencoded")],
        None,
    );
    assert!(page.contains("API token"), "{page}");
    let nets = api(&url, &admin, "/networks?cluster=sw");
    assert_eq!(
        nets["items"].as_array().unwrap().len(),
        2,
        "nothing changed"
    );
    drop(b);

    // With scripts off, the panel still reads: sign in, the map's text
    // alternative names every holder, forms post.
    let b = Browser::start(false);
    b.go(&format!("{url}/login"));
    b.submit("Sign in", &[("token", &operator)]);
    b.go(&format!("{url}/clusters/sw"));
    let src = b.source();
    assert!(
        src.contains("192.0.2.20</code> — reserved: reserved: abuse hold"),
        "{src}"
    );
    assert_eq!(b.count(".tip"), 0, "no script ran");
    b.submit("Reserve", &[("ip", "192.0.2.21"), ("note", "no script")]);
    assert!(b.text(".done").contains("Reserved 192.0.2.21"));
    eprintln!(
        "panel walk: {:.1} s; screenshots in {}",
        t0.elapsed().as_secs_f64(),
        shots_dir().display()
    );
}
