//! The one error type every layer reports to users.
//!
//! Every variant names what was wrong in the operator's words: the field, the
//! value and the rule (or the object that was not found). The CLI prints it,
//! the API will map it to problem+json; `kind()` decides the status.

use serde::{Deserialize, Serialize};

/// An error a user can act on. In JSON: `{"kind": "invalid", "field": …}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub enum Error {
    /// The input itself is wrong, whatever the state of the installation.
    #[error("{}", field_value(field, value, rule))]
    Invalid {
        field: String,
        value: String,
        rule: String,
    },
    /// The input is well-formed but conflicts with what exists.
    #[error("{}", field_value(field, value, rule))]
    Conflict {
        field: String,
        value: String,
        rule: String,
    },
    #[error("{}", if name.is_empty() { format!("no {object} was named") } else { format!("{object} {name:?} does not exist") })]
    NotFound { object: String, name: String },
    /// No free address in any block a request may use.
    #[error(
        "no free {family} address in {pool}: {used} of {usable} usable addresses are taken{}",
        cooling_note(*cooling)
    )]
    Exhausted {
        pool: String,
        family: String,
        used: u128,
        usable: u128,
        cooling: u128,
    },
    /// The store failed (I/O, database); not the user's fault.
    #[error("storage error: {detail}")]
    Storage { detail: String },
    /// No valid credentials (the controller's 401).
    #[error("not authenticated: {detail}")]
    Unauthenticated { detail: String },
    /// Valid credentials without the right (the controller's 403).
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },
    /// Something vmfabric needs cannot be reached or used right now: the
    /// controller, root for the lab, a tool; not the store's fault.
    #[error("unavailable: {detail}")]
    Unavailable { detail: String },
}

/// `field "value": rule`, or `field: rule` when no value was given (an
/// empty `""` in a message reads like a bug).
fn field_value(field: &str, value: &str, rule: &str) -> String {
    if value.is_empty() {
        format!("{field}: {rule}")
    } else {
        format!("{field} {value:?}: {rule}")
    }
}

/// The JSON form: one flat object with a `kind`. Flat, because serde's
/// tagged enums cannot carry u128 counts (a /48 has 2^80 addresses).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Wire {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    used: Option<u128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    usable: Option<u128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cooling: Option<u128>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
}

impl From<Error> for Wire {
    fn from(e: Error) -> Wire {
        let kind = e.kind().to_string();
        match e {
            Error::Invalid { field, value, rule } | Error::Conflict { field, value, rule } => {
                Wire {
                    kind,
                    field: Some(field),
                    value: Some(value),
                    rule: Some(rule),
                    ..Wire::default()
                }
            }
            Error::NotFound { object, name } => Wire {
                kind,
                object: Some(object),
                name: Some(name),
                ..Wire::default()
            },
            Error::Exhausted {
                pool,
                family,
                used,
                usable,
                cooling,
            } => Wire {
                kind,
                pool: Some(pool),
                family: Some(family),
                used: Some(used),
                usable: Some(usable),
                cooling: Some(cooling),
                ..Wire::default()
            },
            Error::Storage { detail }
            | Error::Unauthenticated { detail }
            | Error::Forbidden { detail }
            | Error::Unavailable { detail } => Wire {
                kind,
                detail: Some(detail),
                ..Wire::default()
            },
        }
    }
}

impl TryFrom<Wire> for Error {
    type Error = String;
    fn try_from(w: Wire) -> std::result::Result<Error, String> {
        let s = |v: Option<String>| v.unwrap_or_default();
        Ok(match w.kind.as_str() {
            "invalid" => Error::Invalid {
                field: s(w.field),
                value: s(w.value),
                rule: s(w.rule),
            },
            "conflict" => Error::Conflict {
                field: s(w.field),
                value: s(w.value),
                rule: s(w.rule),
            },
            "not-found" => Error::NotFound {
                object: s(w.object),
                name: s(w.name),
            },
            "exhausted" => Error::Exhausted {
                pool: s(w.pool),
                family: s(w.family),
                used: w.used.unwrap_or(0),
                usable: w.usable.unwrap_or(0),
                cooling: w.cooling.unwrap_or(0),
            },
            "storage" => Error::Storage {
                detail: s(w.detail),
            },
            "unauthenticated" => Error::Unauthenticated {
                detail: s(w.detail),
            },
            "forbidden" => Error::Forbidden {
                detail: s(w.detail),
            },
            "unavailable" => Error::Unavailable {
                detail: s(w.detail),
            },
            other => return Err(format!("unknown error kind {other}")),
        })
    }
}

fn cooling_note(cooling: u128) -> String {
    if cooling == 0 {
        String::new()
    } else {
        format!(" ({cooling} released addresses are still cooling down)")
    }
}

impl Error {
    pub fn invalid(field: &str, value: impl ToString, rule: impl ToString) -> Error {
        Error::Invalid {
            field: field.to_string(),
            value: value.to_string(),
            rule: rule.to_string(),
        }
    }

    pub fn conflict(field: &str, value: impl ToString, rule: impl ToString) -> Error {
        Error::Conflict {
            field: field.to_string(),
            value: value.to_string(),
            rule: rule.to_string(),
        }
    }

    pub fn not_found(object: &str, name: impl ToString) -> Error {
        Error::NotFound {
            object: object.to_string(),
            name: name.to_string(),
        }
    }

    pub fn storage(detail: impl ToString) -> Error {
        Error::Storage {
            detail: detail.to_string(),
        }
    }

    /// Short machine-readable kind, as in the JSON form.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid",
            Error::Conflict { .. } => "conflict",
            Error::NotFound { .. } => "not-found",
            Error::Exhausted { .. } => "exhausted",
            Error::Storage { .. } => "storage",
            Error::Unauthenticated { .. } => "unauthenticated",
            Error::Forbidden { .. } => "forbidden",
            Error::Unavailable { .. } => "unavailable",
        }
    }

    pub fn unavailable(detail: impl ToString) -> Error {
        Error::Unavailable {
            detail: detail.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_field_value_and_rule() {
        let e = Error::invalid("cidr", "192.0.2.1/27", "host bits must be zero");
        assert_eq!(
            e.to_string(),
            "cidr \"192.0.2.1/27\": host bits must be zero"
        );
        let j = serde_json::to_value(&e).unwrap();
        assert_eq!(j["kind"], "invalid");
        assert_eq!(j["field"], "cidr");
        // Never an empty "" in a message.
        assert_eq!(
            Error::invalid("name", "", "names are 1 to 63 characters").to_string(),
            "name: names are 1 to 63 characters"
        );
        assert_eq!(
            Error::not_found("node", "").to_string(),
            "no node was named"
        );
        let u = Error::unavailable("the controller at http://127.0.0.1:1 cannot be reached");
        let back: Error = serde_json::from_value(serde_json::to_value(&u).unwrap()).unwrap();
        assert_eq!(back, u);
    }

    #[test]
    fn exhaustion_says_which_pool_and_how_many() {
        let e = Error::Exhausted {
            pool: "node n1 range 203.0.113.40/29".into(),
            family: "IPv4".into(),
            used: 8,
            usable: 8,
            cooling: 0,
        };
        assert_eq!(
            e.to_string(),
            "no free IPv4 address in node n1 range 203.0.113.40/29: 8 of 8 usable addresses are taken"
        );
    }
}
