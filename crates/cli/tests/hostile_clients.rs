//! A real `vmfabric serve` on loopback against clients that try to make it
//! keep memory or connections without a token: huge and distinct bogus
//! tokens, and idle connections that never send a byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::Env;
use common::controller::{Serve, http, serve, token};

/// The server's address, from its URL.
fn addr(srv: &Serve) -> SocketAddr {
    srv.url.trim_start_matches("http://").parse().unwrap()
}

/// A line of /proc/PID/status, in KiB (VmRSS now, VmHWM the peak).
fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// One answer read off a connection: status, headers (lowercase) and body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// Read one HTTP/1.1 answer (Content-Length framed, as the server sends).
fn read_answer(s: &mut TcpStream) -> std::io::Result<Answer> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Answer {
        status,
        headers: head,
        body: String::from_utf8_lossy(&buf[head_end..]).into_owned(),
    })
}

fn get_with_token(token: &str) -> Vec<u8> {
    format!("GET /api/v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n")
        .into_bytes()
}

/// 10,000 requests with distinct 300 KB bogus tokens, then 10,000 with
/// distinct well-formed unknown ones: the server answers each with an
/// error and its peak resident memory stays under 64 MiB (it was 2.97 GB
/// when unknown tokens were cached by their whole header).
#[test]
fn bogus_tokens_do_not_make_the_server_keep_memory() {
    const BOUND_KIB: u64 = 64 * 1024;
    let env = Env::new();
    let db = env.db.to_string_lossy().to_string();
    let admin = token(&db, "admin", None);
    let srv = serve(&db, &[]);
    let pid = srv.child.id();
    let at = addr(&srv);
    let before = status_kib(pid, "VmRSS:");

    // Huge tokens: refused (431) without reading them whole; a refusal
    // may also reach the client as a reset while it is still sending.
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut outcomes = [0usize; 3]; // refused 4xx, reset, other
                for i in 0..2_500 {
                    let mut junk = format!("{t}-{i}-").into_bytes();
                    junk.resize(300 * 1024, b'A' + (i % 26) as u8);
                    let mut req = get_with_token(&String::from_utf8(junk).unwrap());
                    req.shrink_to_fit();
                    let mut s = TcpStream::connect(at).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let sent = s.write_all(&req);
                    match (sent, read_answer(&mut s)) {
                        (_, Ok(a)) if (400..500).contains(&a.status) => outcomes[0] += 1,
                        (_, Ok(a)) => panic!("a 300 KB bogus token got {}", a.status),
                        (Err(_), Err(_)) | (_, Err(_)) => outcomes[1] += 1,
                    }
                }
                outcomes
            })
        })
        .collect();
    let mut refused = 0;
    let mut reset = 0;
    for t in threads {
        let o = t.join().unwrap();
        refused += o[0];
        reset += o[1];
    }
    let huge_peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "10,000 × 300 KB tokens in {:?}: {refused} refused, {reset} reset; RSS {before} KiB before, peak {huge_peak} KiB, now {} KiB",
        started.elapsed(),
        status_kib(pid, "VmRSS:")
    );
    assert!(refused > 0, "no huge token was answered at all");
    assert!(
        huge_peak < BOUND_KIB,
        "peak RSS {huge_peak} KiB over {BOUND_KIB} KiB after 10,000 huge bogus tokens"
    );

    // Well-formed unknown tokens, on keep-alive connections: 401 each.
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(at).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                for i in 0..2_500u64 {
                    let tok = format!("vmf_{:064x}", (t << 32) | i);
                    s.write_all(&get_with_token(&tok)).unwrap();
                    let a = read_answer(&mut s).unwrap();
                    assert_eq!(a.status, 401, "{}", a.body);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let peak = status_kib(pid, "VmHWM:");
    eprintln!(
        "10,000 unknown well-formed tokens in {:?}: peak RSS {peak} KiB, now {} KiB",
        started.elapsed(),
        status_kib(pid, "VmRSS:")
    );
    assert!(peak < BOUND_KIB, "peak RSS {peak} KiB over {BOUND_KIB} KiB");

    // And the server still serves.
    let (s, _, _) = http("GET", &format!("{}/healthz", srv.url), None, &[], None);
    assert_eq!(s, 200);
    let (s, _, text) = http(
        "GET",
        &format!("{}/api/v1/clusters", srv.url),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!(s, 200, "{text}");
}

/// A header section over the limit, but small enough to read, gets 431 as
/// a problem document; a malformed token gets 401 saying what a token
/// looks like, without a lookup.
#[test]
fn oversized_headers_and_malformed_tokens_get_problem_documents() {
    let env = Env::new();
    let db = env.db.to_string_lossy().to_string();
    let _admin = token(&db, "admin", None);
    let srv = serve(&db, &[]);
    let at = addr(&srv);

    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n",
        "x".repeat(12 * 1024)
    );
    s.write_all(big.as_bytes()).unwrap();
    let a = read_answer(&mut s).unwrap();
    assert_eq!(a.status, 431, "{}{}", a.headers, a.body);
    assert!(
        a.headers.contains("content-type: application/problem+json"),
        "{}",
        a.headers
    );
    let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(doc["status"], 431, "{doc}");
    assert_eq!(doc["field"], "headers", "{doc}");

    for bad in [
        "vmf_short",
        "not-a-token",
        &format!("vmf_{}", "G".repeat(64)),
    ] {
        let (st, doc, text) = http(
            "GET",
            &format!("{}/api/v1/clusters", srv.url),
            Some(bad),
            &[],
            None,
        );
        assert_eq!(st, 401, "{text}");
        let detail = doc["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("vmf_") && detail.contains("64"),
            "token {bad:?}: {text}"
        );
    }
}

/// File descriptors the process has open.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Raise this test process's own file limit to its hard limit.
fn raise_own_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    hard
}

/// 20,500 TCP connections that never send a byte (18,000 from this test,
/// whose file limit is 20,000, and 2,500 from a second process), against a controller capped at 1,000 connections with
/// a 3 s head timeout: `/healthz` answers throughout, an agent's long poll
/// that was waiting is answered, the server never holds much more than its
/// cap of sockets, and every idle connection is closed by the server.
#[test]
fn idle_connections_are_capped_and_timed_out() {
    const IDLE: usize = 18_000;
    const CAP: usize = 1_000;
    let hard = raise_own_file_limit();
    assert!(
        hard >= IDLE as u64 + 500,
        "this test needs a file limit of {} (ulimit -Hn is {hard})",
        IDLE + 500
    );
    let env = Env::new();
    env.seed_world();
    let db = env.db.to_string_lossy().to_string();
    let agent = token(&db, "node", Some("node1"));
    let srv = serve(
        &db,
        &[
            "--max-connections",
            &CAP.to_string(),
            "--header-timeout",
            "3",
            "--idle-timeout",
            "5",
            "--body-timeout",
            "2",
        ],
    );
    let pid = srv.child.id();
    let at = addr(&srv);
    let api = format!("{}/api/v1", srv.url);

    // An agent waiting on its plan when the flood starts.
    let (_, first, _) = http(
        "GET",
        &format!("{api}/nodes/node1/plan"),
        Some(&agent),
        &[],
        None,
    );
    let hash = first["hash"].as_str().unwrap().to_string();
    let poll_url = format!("{api}/nodes/node1/plan?have={hash}&wait=20");
    let poll_token = agent.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let (s, _, text) = http("GET", &poll_url, Some(&poll_token), &[], None);
        (s, text, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));

    // 2,500 more idle connections from a second process (this one may
    // hold only 20,000 files): more than 20,000 in all.
    const MORE: usize = 2_500;
    let script = format!(
        "import socket,sys\nss=[socket.create_connection(('{}',{})) for _ in range({MORE})]\nprint('open',flush=True)\nsys.stdin.read()\n",
        at.ip(),
        at.port()
    );
    let mut more = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(more.stdout.take().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(
        said.trim(),
        "open",
        "the second process could not open its connections"
    );

    // The flood, with /healthz asked every 1,000 connections.
    let started = Instant::now();
    let mut idle = Vec::with_capacity(IDLE);
    let mut most_files = 0;
    let mut slowest_health = Duration::ZERO;
    for i in 0..IDLE {
        idle.push(TcpStream::connect(at).unwrap());
        if i % 1_000 == 999 {
            let t = Instant::now();
            let (s, _, text) = http("GET", &format!("{}/healthz", srv.url), None, &[], None);
            assert_eq!(s, 200, "healthz with {} idle connections: {text}", i + 1);
            slowest_health = slowest_health.max(t.elapsed());
            most_files = most_files.max(open_files(pid));
        }
    }
    eprintln!(
        "{} idle connections ({IDLE} here, {MORE} from a second process) opened in {:?}; slowest /healthz {slowest_health:?}; server files at most {most_files}",
        IDLE + MORE,
        started.elapsed()
    );
    const { assert!(IDLE + MORE > 20_000) };
    let _ = more.kill();
    let _ = more.wait();
    assert!(
        most_files < CAP + 200,
        "the server held {most_files} files with a cap of {CAP} connections"
    );

    // The waiting agent was not cut off by the flood.
    let (s, text, waited) = waiter.join().unwrap();
    assert_eq!(s, 200, "the agent's long poll: {text}");
    eprintln!("the agent's long poll answered after {waited:?}");

    // Within the head timeout (and some slack), every idle connection has
    // been closed by the server: a read sees the end (or a reset).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut open: Vec<TcpStream> = idle;
    for s in &open {
        s.set_nonblocking(true).unwrap();
    }
    while !open.is_empty() && Instant::now() < deadline {
        open.retain_mut(|s| {
            let mut b = [0u8; 64];
            matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "idle connections closed by the server {:?} after the flood began",
        started.elapsed()
    );
    assert!(
        open.is_empty(),
        "{} idle connections still open 15 s after the flood",
        open.len()
    );

    // A body that stops coming: 408 after the body timeout.
    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let t = Instant::now();
    s.write_all(
        format!(
            "POST /api/v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {agent}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
        )
        .as_bytes(),
    )
    .unwrap();
    let a = read_answer(&mut s).unwrap();
    assert_eq!(a.status, 408, "{}{}", a.headers, a.body);
    assert!(
        a.headers.contains("application/problem+json"),
        "{}",
        a.headers
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // A keep-alive connection left idle is closed after the idle timeout.
    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_answer(&mut s).unwrap().status, 200);
    let t = Instant::now();
    let mut b = [0u8; 16];
    let n = s.read(&mut b).unwrap_or(0);
    assert_eq!(n, 0, "the idle keep-alive connection got data");
    let closed = t.elapsed();
    assert!(
        closed > Duration::from_secs(4) && closed < Duration::from_secs(8),
        "idle keep-alive closed after {closed:?}, want ~5 s"
    );
}

/// What the HTTP layer refuses is a problem document too: 413 for a body
/// over the limit, 405 for a method a route does not take (with Allow),
/// 415 for a body that is not JSON.
#[test]
fn protocol_refusals_are_problem_documents() {
    let env = Env::new();
    let db = env.db.to_string_lossy().to_string();
    let admin = token(&db, "admin", None);
    let srv = serve(&db, &[]);
    let at = addr(&srv);
    let ask = |req: String| {
        let mut s = TcpStream::connect(at).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may answer before it read all of a large body.
        let _ = s.write_all(req.as_bytes());
        let a = read_answer(&mut s).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
        assert!(
            a.headers.contains("content-type: application/problem+json"),
            "{}{}",
            a.headers,
            a.body
        );
        assert_eq!(doc["status"], a.status, "{doc}");
        (a.status, a.headers, doc)
    };

    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let (s, _, doc) = ask(format!(
        "POST /api/v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{big}",
        big.len()
    ));
    assert_eq!(s, 413, "{doc}");

    let (s, headers, doc) = ask(format!(
        "PUT /api/v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(s, 405, "{doc}");
    assert!(headers.contains("allow:"), "{headers}");

    let body = r#"{"name":"c1","network_type":"switching"}"#;
    for ctype in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let header = match ctype {
            "" => String::new(),
            c => format!("Content-Type: {c}\r\n"),
        };
        let (s, _, doc) = ask(format!(
            "POST /api/v1/clusters HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {admin}\r\n{header}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ));
        assert_eq!(s, 415, "Content-Type {ctype:?}: {doc}");
        assert_eq!(doc["field"], "content-type", "{doc}");
    }
    // Nothing was created by the refused bodies.
    let (s, list, text) = http(
        "GET",
        &format!("{}/api/v1/clusters", srv.url),
        Some(&admin),
        &[],
        None,
    );
    assert_eq!(s, 200, "{text}");
    assert!(!text.contains("\"c1\""), "{list}");
}
