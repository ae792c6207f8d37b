//! The few places where SQLite and PostgreSQL speak differently, written
//! once with macros that expand per dialect. Used by the reads of a VM
//! batch (batch.rs), which take all their values from one JSON argument `$1`:
//!
//! | macro | SQLite | PostgreSQL |
//! |---|---|---|
//! | `@EACH(f)` | `json_each($1, '$.f')` | `json_array_elements(($1::json)->'f')` |
//! | `@EACHTEXT(f)` | `json_each($1, '$.f')` | `json_array_elements_text(($1::json)->'f')` |
//! | `@LIST(f)` | `(SELECT value FROM json_each($1, '$.f'))` | `(SELECT value FROM json_array_elements_text(…))` |
//! | `@ARG(a.0.b)` | `($1 ->> '$.a[0].b')` | `((($1::json) #>> '{a,0,b}')::bigint)` |
//! | `@ARGTEXT(a.0.b)` | `($1 ->> '$.a[0].b')` | `(($1::json) #>> '{a,0,b}')` |
//! | `@UNHEX(e)` / `@HEX(e)` | `unhex(e)` / `hex(e)` | `decode(e, 'hex')` / `encode(e, 'hex')` |
//! | `@AGG(e)` | `json_group_array(e)` | `json_agg(e)` |
//! | `@ARR(a, b)` | `json_array(a, b)` | `json_build_array(a, b)` |
//! | `@JSON(e)` | `json(e)` | `e` |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::Dialect;

/// Scripts kept expanded; a store runs a few dozen distinct ones, so the
/// bound only guards against a pathological caller.
const SCRIPT_CACHE_MAX: usize = 4096;

/// `statements` expanded for `d`, ready to send: for SQLite one text with
/// every statement (one call to the driver), for PostgreSQL one text per
/// statement (its protocol binds arguments to one statement at a time).
/// Expanded once per distinct script: expanding on every call cost 4 % of
/// a one-VM create (perf, BENCHMARKS.md).
pub(crate) fn script(d: Dialect, statements: &[String]) -> Arc<[Arc<str>]> {
    type Cache = Mutex<HashMap<(Dialect, String), Arc<[Arc<str>]>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = (d, statements.join("\0"));
    let cache = CACHE.get_or_init(Cache::default);
    if let Some(s) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return s;
    }
    let expanded: Vec<String> = statements.iter().map(|s| expand(d, s)).collect();
    let texts: Arc<[Arc<str>]> = match d {
        Dialect::Sqlite => Arc::from([Arc::from(expanded.join(";\n"))]),
        Dialect::Postgres => expanded.into_iter().map(Arc::from).collect(),
    };
    if let Ok(mut c) = cache.lock()
        && c.len() < SCRIPT_CACHE_MAX
    {
        c.insert(key, texts.clone());
    }
    texts
}

/// `$.a[0].b` (SQLite) or `{a,0,b}` (PostgreSQL) for a dotted path.
fn path(d: Dialect, p: &str) -> String {
    let parts: Vec<&str> = p.split('.').map(str::trim).collect();
    match d {
        Dialect::Sqlite => {
            let mut s = String::from("$");
            for part in parts {
                if part.bytes().all(|b| b.is_ascii_digit()) {
                    s.push_str(&format!("[{part}]"));
                } else {
                    s.push('.');
                    s.push_str(part);
                }
            }
            s
        }
        Dialect::Postgres => format!("{{{}}}", parts.join(",")),
    }
}

fn apply(d: Dialect, name: &str, arg: &str) -> String {
    use Dialect::{Postgres as P, Sqlite as S};
    match (name, d) {
        ("EACH", S) | ("EACHTEXT", S) => format!("json_each($1, '$.{arg}')"),
        ("EACH", P) => format!("json_array_elements(($1::json)->'{arg}')"),
        ("EACHTEXT", P) => format!("json_array_elements_text(($1::json)->'{arg}')"),
        ("LIST", _) => format!("(SELECT value FROM {})", apply(d, "EACHTEXT", arg)),
        ("ARG", S) | ("ARGTEXT", S) => format!("($1 ->> '{}')", path(d, arg)),
        ("ARG", P) => format!("((($1::json) #>> '{}')::bigint)", path(d, arg)),
        ("ARGTEXT", P) => format!("(($1::json) #>> '{}')", path(d, arg)),
        ("UNHEX", S) => format!("unhex({arg})"),
        ("UNHEX", P) => format!("decode({arg}, 'hex')"),
        ("HEX", S) => format!("hex({arg})"),
        ("HEX", P) => format!("encode({arg}, 'hex')"),
        ("AGG", S) => format!("json_group_array({arg})"),
        // The Any driver reads text, not json.
        ("AGG", P) => format!("(json_agg({arg}))::text"),
        ("ARR", S) => format!("json_array({arg})"),
        ("ARR", P) => format!("json_build_array({arg})"),
        ("JSON", S) => format!("json({arg})"),
        ("JSON", P) => arg.to_string(),
        _ => format!("@{name}({arg})"),
    }
}

/// Expand every `@NAME(...)` of `sql` for `d`, innermost first.
pub(crate) fn expand(d: Dialect, sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'@' {
            let name_end = (i + 1..b.len())
                .find(|&j| !b[j].is_ascii_uppercase())
                .unwrap_or(b.len());
            if name_end > i + 1 && name_end < b.len() && b[name_end] == b'(' {
                // Find the matching parenthesis.
                let mut depth = 0usize;
                let mut close = None;
                for (j, &c) in b.iter().enumerate().skip(name_end) {
                    match c {
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(c) = close {
                    let inner = expand(d, &sql[name_end + 1..c]);
                    out.push_str(&apply(d, &sql[i + 1..name_end], &inner));
                    i = c + 1;
                    continue;
                }
            }
        }
        // Copy one UTF-8 character.
        let ch = sql[i..].chars().next().unwrap_or(' ');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_nested_macros() {
        let s = "SELECT @AGG(@ARR(@HEX(x.first), x.n)) FROM @EACH(vms) AS j WHERE a = @UNHEX(@ARGTEXT(a.0.k)) LIMIT @ARG(n)";
        assert_eq!(
            expand(Dialect::Sqlite, s),
            "SELECT json_group_array(json_array(hex(x.first), x.n)) FROM json_each($1, '$.vms') AS j WHERE a = unhex(($1 ->> '$.a[0].k')) LIMIT ($1 ->> '$.n')"
        );
        assert_eq!(
            expand(Dialect::Postgres, s),
            "SELECT (json_agg(json_build_array(encode(x.first, 'hex'), x.n)))::text FROM json_array_elements(($1::json)->'vms') AS j WHERE a = decode((($1::json) #>> '{a,0,k}'), 'hex') LIMIT ((($1::json) #>> '{n}')::bigint)"
        );
    }
}
