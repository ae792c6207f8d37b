//! Errors as RFC 9457 problem documents: the status says what kind of
//! failure, the members say the field, the value and the rule, in the same
//! words the CLI prints.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use vmfabric_model::Error;

/// An error on its way to the client.
#[derive(Debug)]
pub struct Problem(pub Error);

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        Problem(e)
    }
}

/// RFC 9457 problem document, with the error's own members.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(as = Problem)]
pub struct ProblemDoc {
    /// `urn:vmfabric:problem:KIND`.
    pub r#type: String,
    pub title: String,
    pub status: u16,
    /// The error in words: the field, the value and the rule.
    pub detail: String,
    /// invalid, conflict, not-found, exhausted, storage, unauthenticated,
    /// forbidden, unavailable.
    pub kind: String,
    /// The request's id, as in the controller's log line (and the
    /// `x-request-id` header).
    #[schema(nullable = false)]
    pub request_id: Option<String>,
    #[schema(nullable = false)]
    pub field: Option<String>,
    #[schema(nullable = false)]
    pub value: Option<String>,
    #[schema(nullable = false)]
    pub rule: Option<String>,
    /// not-found: what kind of object, and its name.
    #[schema(nullable = false)]
    pub object: Option<String>,
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// exhausted: the pool, the family and the counts.
    #[schema(nullable = false)]
    pub pool: Option<String>,
    #[schema(nullable = false)]
    pub family: Option<String>,
    #[schema(nullable = false)]
    pub used: Option<u64>,
    #[schema(nullable = false)]
    pub usable: Option<u64>,
    #[schema(nullable = false)]
    pub cooling: Option<u64>,
}

pub type ApiResult<T> = Result<T, Problem>;

pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Conflict { .. } | Error::Exhausted { .. } => StatusCode::CONFLICT,
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        Error::Forbidden { .. } => StatusCode::FORBIDDEN,
        Error::Storage { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn title(e: &Error) -> &'static str {
    match e {
        Error::Invalid { .. } => "Invalid input",
        Error::Conflict { .. } => "Conflict with the current state",
        Error::Exhausted { .. } => "Pool exhausted",
        Error::NotFound { .. } => "Not found",
        Error::Unauthenticated { .. } => "Not authenticated",
        Error::Forbidden { .. } => "Forbidden",
        Error::Storage { .. } => "Storage error",
        Error::Unavailable { .. } => "Unavailable",
    }
}

/// The problem document: the standard members plus the error's own
/// (`kind`, `field`, `value`, `rule`, …), which clients read back into the
/// same error.
pub fn document(e: &Error) -> serde_json::Value {
    let mut doc = serde_json::to_value(e).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(m) = doc.as_object_mut() {
        m.insert(
            "type".into(),
            format!("urn:vmfabric:problem:{}", e.kind()).into(),
        );
        m.insert("title".into(), title(e).into());
        m.insert("status".into(), status(e).as_u16().into());
        // Errors that carry a `detail` keep it (clients read it back).
        m.entry("detail").or_insert_with(|| e.to_string().into());
    }
    doc
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = status(&self.0);
        let body = document(&self.0).to_string();
        let mut r = (status, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// An error answered with an HTTP status of its own rather than its kind's
/// (431, 413, 415, 405, 408, 503: limits of the protocol, not of the
/// model), still as a problem document.
#[derive(Debug)]
pub struct HttpProblem {
    pub status: StatusCode,
    pub error: Error,
}

impl HttpProblem {
    pub fn new(status: StatusCode, error: Error) -> HttpProblem {
        HttpProblem { status, error }
    }
}

impl IntoResponse for HttpProblem {
    fn into_response(self) -> Response {
        let mut doc = document(&self.error);
        if let Some(m) = doc.as_object_mut() {
            m.insert("status".into(), self.status.as_u16().into());
            m.insert(
                "title".into(),
                self.status.canonical_reason().unwrap_or("Error").into(),
            );
        }
        let mut r = (self.status, doc.to_string()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        r
    }
}

impl From<HttpProblem> for Response {
    fn from(p: HttpProblem) -> Response {
        p.into_response()
    }
}
