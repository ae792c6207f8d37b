//! Who may do what through the controller: API tokens and their roles.
//!
//! A token is a random secret shown once; the store keeps only its hash.
//! The roles are fixed (no policy language to get wrong): `admin` does
//! everything, `operator` manages VMs and addresses, `viewer` reads, and a
//! `node` token is an agent's: it reads its own node's plan and writes its
//! own node's status, nothing else.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Node,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Node];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Node => "node",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| Error::invalid("role", s, "one of admin, operator, viewer, node"))
    }
}

/// What an API call needs. Each route declares one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access<'a> {
    /// Read anything (viewer and up).
    Read,
    /// Create, migrate, delete VMs; reserve and release addresses.
    Operate,
    /// Clusters, networks, nodes, tokens.
    Admin,
    /// Read this node's plan, or write its status: its own agent, or admin.
    Node(&'a str),
    /// Read this node's plan (also any viewer).
    NodeRead(&'a str),
}

/// A token as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub node: Option<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub revoked_at: Option<Timestamp>,
}

impl TokenInfo {
    /// Whether this token may make a call that needs `access`.
    pub fn allows(&self, access: Access<'_>) -> bool {
        if self.revoked_at.is_some() {
            return false;
        }
        match (self.role, access) {
            (Role::Admin, _) => true,
            (Role::Operator, Access::Read | Access::Operate | Access::NodeRead(_)) => true,
            (Role::Viewer, Access::Read | Access::NodeRead(_)) => true,
            (Role::Node, Access::Node(n) | Access::NodeRead(n)) => self.node.as_deref() == Some(n),
            _ => false,
        }
    }
}

/// A token to create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenInput {
    #[serde(default)]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Role))]
    pub role: String,
    /// The node of a node token (null or absent for the other roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

impl TokenInput {
    /// The role, checked against the node: node tokens name exactly one
    /// node, the others none.
    pub fn check(&self) -> Result<Role> {
        let role: Role = self.role.parse()?;
        match (role, &self.node) {
            (Role::Node, None) => Err(Error::invalid(
                "node",
                "",
                "a node token names its node (--node NODE)",
            )),
            (Role::Node, Some(_)) => Ok(role),
            (_, Some(n)) => Err(Error::invalid(
                "node",
                n,
                "only node tokens are bound to a node",
            )),
            (_, None) => Ok(role),
        }
    }
}

/// A freshly created token: the only time the secret is seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub secret: String,
}

/// What a node's agent last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentStatus {
    pub node: String,
    pub at: Timestamp,
    /// The agent's report: a JSON object of its own making.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub report: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: Role, node: Option<&str>) -> TokenInfo {
        TokenInfo {
            id: 1,
            name: String::new(),
            role,
            node: node.map(String::from),
            created_at: Timestamp(0),
            revoked_at: None,
        }
    }

    #[test]
    fn roles_allow_exactly_their_calls() {
        let calls = [
            Access::Read,
            Access::Operate,
            Access::Admin,
            Access::Node("n1"),
            Access::NodeRead("n1"),
            Access::Node("n2"),
        ];
        let table = [
            (
                token(Role::Admin, None),
                [true, true, true, true, true, true],
            ),
            (
                token(Role::Operator, None),
                [true, true, false, false, true, false],
            ),
            (
                token(Role::Viewer, None),
                [true, false, false, false, true, false],
            ),
            (
                token(Role::Node, Some("n1")),
                [false, false, false, true, true, false],
            ),
        ];
        for (t, want) in table {
            for (call, w) in calls.iter().zip(want) {
                assert_eq!(t.allows(*call), w, "{:?} {call:?}", t.role);
            }
        }
        let mut revoked = token(Role::Admin, None);
        revoked.revoked_at = Some(Timestamp(1));
        assert!(!revoked.allows(Access::Read));
    }

    #[test]
    fn node_tokens_name_their_node() {
        let bad = TokenInput {
            role: "node".into(),
            ..TokenInput::default()
        };
        assert!(bad.check().is_err());
        let bad = TokenInput {
            role: "viewer".into(),
            node: Some("n1".into()),
            ..TokenInput::default()
        };
        assert!(bad.check().is_err());
        let bad = TokenInput {
            role: "root".into(),
            ..TokenInput::default()
        };
        assert_eq!(bad.check().unwrap_err().kind(), "invalid");
    }
}
