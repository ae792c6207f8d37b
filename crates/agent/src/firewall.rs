//! nftables through the `nft` command: the rendered ruleset goes in as one
//! file, which nft applies as one transaction. Only tables named vmfabric
//! are ever written or deleted.
//!
//! Drift: after applying, the agent remembers a fingerprint of the live
//! tables (their JSON listing without handles and counter values). A table
//! that was flushed, deleted or edited behind its back no longer matches,
//! and the next round writes the ruleset again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use vmfabric_plan::NFT_TABLE;

use crate::Error;
use crate::daemons::hash;

/// What the firewall driver remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftState {
    /// Hash of the ruleset text last applied.
    pub applied: u64,
    /// Fingerprint of the live tables right after applying.
    pub live: u64,
    /// Families that have a vmfabric table.
    pub families: Vec<String>,
    /// The kernel's nftables generation when the tables last matched: if
    /// it has not moved, nothing in any table changed, and the (costly)
    /// fingerprint need not be taken again.
    #[serde(default)]
    pub generation: Option<u32>,
}

/// The kernel's nftables ruleset generation (NFT_MSG_GETGEN): it grows by
/// one with every committed change to any table of this network namespace.
pub fn generation() -> Option<u32> {
    use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    const NFT_MSG_GETGEN: u16 = 16;
    const NFTA_GEN_ID: u16 = 1;
    const NLM_F_REQUEST: u16 = 1;
    let mut sock = Socket::new(NETLINK_NETFILTER).ok()?;
    sock.bind_auto().ok()?;
    // nlmsghdr (16 bytes) + nfgenmsg (family, version, res_id).
    let mut msg = Vec::with_capacity(20);
    msg.extend_from_slice(&20u32.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN).to_ne_bytes());
    msg.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&[0, 0, 0, 0]);
    sock.send(&msg, 0).ok()?;
    let mut buf = vec![0u8; 4096];
    let n = sock.recv(&mut &mut buf[..], 0).ok()?;
    let buf = buf.get(..n)?;
    // Attributes follow the 16-byte header and the 4-byte nfgenmsg.
    let mut at = 20;
    while at + 4 <= buf.len() {
        let len = usize::from(u16::from_ne_bytes([buf[at], buf[at + 1]]));
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & 0x3fff;
        if len < 4 {
            return None;
        }
        if kind == NFTA_GEN_ID && len >= 8 {
            let v = buf.get(at + 4..at + 8)?;
            return Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
        }
        at += (len + 3) & !3;
    }
    None
}

/// The outcome of one round.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NftReport {
    pub changed: bool,
    /// Packets dropped so far, by rule comment.
    pub drops: BTreeMap<String, u64>,
}

/// The nft binary.
#[derive(Debug, Clone)]
pub struct Nft {
    pub binary: PathBuf,
}

/// Families named in a ruleset (`table FAMILY vmfabric {`).
fn families(ruleset: &str) -> Vec<String> {
    let mut v: Vec<String> = ruleset
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("table ")?;
            let (fam, name) = rest.split_once(' ')?;
            name.starts_with(NFT_TABLE).then(|| fam.to_string())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Remove what changes without anyone editing the table: handles, counters.
fn normalise(v: &mut Value, drops: &mut BTreeMap<String, u64>) {
    match v {
        Value::Object(m) => {
            m.remove("handle");
            let comment = m.get("comment").and_then(|c| c.as_str()).map(String::from);
            if let Some(Value::Array(expr)) = m.get_mut("expr") {
                for e in expr.iter_mut() {
                    if let Some(Value::Object(c)) = e.get_mut("counter") {
                        let packets = c.get("packets").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(name) = &comment {
                            *drops.entry(name.clone()).or_default() += packets;
                        }
                        c.insert("packets".into(), Value::from(0));
                        c.insert("bytes".into(), Value::from(0));
                    }
                }
            }
            for (_, x) in m.iter_mut() {
                normalise(x, drops);
            }
        }
        Value::Array(a) => {
            for x in a {
                normalise(x, drops);
            }
        }
        _ => {}
    }
}

impl Nft {
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "cannot run {}: {e} (install nftables)",
                self.binary.display()
            )
        })?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            drop(pipe);
        }
        let out = child.wait_with_output().await.map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    }

    /// Fingerprint and drop counters of our live tables.
    async fn live(&self, families: &[String]) -> (u64, BTreeMap<String, u64>) {
        let mut all = String::new();
        let mut drops = BTreeMap::new();
        for f in families {
            match self.run(&["-j", "list", "table", f, NFT_TABLE], None).await {
                Ok(text) => {
                    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    normalise(&mut v, &mut drops);
                    all.push_str(&v.to_string());
                }
                Err(_) => all.push_str(&format!("missing {f}")),
            }
        }
        (hash(&all), drops)
    }

    /// Make our tables match `ruleset`. With `dry_run`, only say whether
    /// they would change.
    pub async fn sync(
        &self,
        ruleset: &str,
        state: &mut NftState,
        dry_run: bool,
    ) -> Result<NftReport, Error> {
        let want = families(ruleset);
        let same_text = state.applied == hash(ruleset) && state.families == want;
        let now = generation();
        if same_text && now.is_some() && now == state.generation {
            // Nothing was committed to any table since the tables last
            // matched: no need to list them again.
            return Ok(NftReport {
                changed: false,
                drops: BTreeMap::new(),
            });
        }
        let (live, drops) = self.live(&state.families).await;
        let up_to_date = same_text && state.live == live;
        if up_to_date || dry_run {
            if up_to_date && !dry_run {
                state.generation = now;
            }
            return Ok(NftReport {
                changed: !up_to_date,
                drops,
            });
        }
        // Tables of families the plan no longer has go first.
        let mut text = String::new();
        for f in state.families.iter().filter(|f| !want.contains(f)) {
            text.push_str(&format!(
                "table {f} {NFT_TABLE} {{}}\ndelete table {f} {NFT_TABLE}\n"
            ));
        }
        text.push_str(ruleset);
        self.run(&["-f", "-"], Some(&text))
            .await
            .map_err(|e| Error::Firewall(format!("nft refused the ruleset: {e}")))?;
        let (live, drops) = self.live(&want).await;
        *state = NftState {
            applied: hash(ruleset),
            live,
            families: want,
            generation: generation(),
        };
        Ok(NftReport {
            changed: true,
            drops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_of_a_ruleset() {
        let r = "table inet vmfabric {}\ndelete table inet vmfabric\ntable inet vmfabric {\n}\ntable arp vmfabric {\n}\ntable inet other {\n}\n";
        assert_eq!(families(r), ["arp", "inet"]);
    }

    #[test]
    fn counters_and_handles_do_not_change_the_fingerprint() {
        let a = r#"{"nftables":[{"rule":{"handle":4,"comment":"x","expr":[{"counter":{"packets":5,"bytes":300}},{"drop":null}]}}]}"#;
        let b = r#"{"nftables":[{"rule":{"handle":9,"comment":"x","expr":[{"counter":{"packets":0,"bytes":0}},{"drop":null}]}}]}"#;
        let (mut x, mut y): (Value, Value) = (
            serde_json::from_str(a).unwrap(),
            serde_json::from_str(b).unwrap(),
        );
        let mut d = BTreeMap::new();
        normalise(&mut x, &mut d);
        normalise(&mut y, &mut BTreeMap::new());
        assert_eq!(x, y);
        assert_eq!(d.get("x"), Some(&5));
    }
}
