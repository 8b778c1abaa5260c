//! The one error of Engram's services, whatever the transport, and its two
//! mappings: to a gRPC `tonic::Status` (with `google.rpc` details) and to
//! an HTTP response (status, JSON body, headers).
//!
//! The HTTP status follows the canonical gRPC → HTTP table of
//! `google.rpc.Code` (the one grpc-gateway uses); two domain errors have
//! their own: INSUFFICIENT_CREDITS is 402 and REQUEST_TOO_LARGE is 413.

use std::collections::BTreeMap;
use std::time::Duration;

/// The `ErrorInfo.domain` of every Engram error.
pub const ERROR_DOMAIN: &str = "engram.dev";
/// `ErrorInfo.reason` when a backing store cannot be reached.
pub const REASON_UNREACHABLE: &str = "MEMORY_UNREACHABLE";
/// `ErrorInfo.reason` when a dependency is up but not ready (model not loaded).
pub const REASON_NOT_READY: &str = "MEMORY_INFRA_NOT_READY";
/// `ErrorInfo.reason` of a refusal on tenancy or role grounds.
pub const REASON_POLICY_DENY: &str = "POLICY_DENY";
/// `ErrorInfo.reason` when the wallet holds less than a charge.
pub const REASON_INSUFFICIENT_CREDITS: &str = "INSUFFICIENT_CREDITS";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path (`scope.org_id`, `turns[2].text`).
    pub field: String,
    /// What is wrong with it.
    pub description: String,
}

/// What a service call can fail with, on every surface.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; every invalid field is named.
    #[error("invalid request: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// No valid credentials.
    #[error("{message}")]
    Unauthenticated {
        /// `ErrorInfo.reason` (`TOKEN_EXPIRED`, `MISSING_TOKEN`, ...).
        reason: &'static str,
        /// What the caller is told.
        message: String,
    },
    /// The caller may not do this (another tenant's data, a role too low).
    #[error("{0}")]
    PermissionDenied(String),
    /// What the call names does not exist (or is not the caller's).
    #[error("{0}")]
    NotFound(String),
    /// The call would create what exists already, or reuse a key differently.
    #[error("{0}")]
    AlreadyExists(String),
    /// The wallet holds less than the call costs (micro-credits).
    #[error("insufficient credits: {required} required, {available} available")]
    InsufficientCredits {
        /// What the call costs.
        required: u64,
        /// What the wallet holds.
        available: i64,
    },
    /// A dependency is down or not ready; nothing was half-written and a
    /// retry after `retry_after` may succeed.
    #[error("{message}")]
    Unavailable {
        /// `MEMORY_UNREACHABLE`, `MEMORY_INFRA_NOT_READY`, `KEYS_UNAVAILABLE`.
        reason: &'static str,
        /// What the caller is told.
        message: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// A limit refused the call (rate, concurrency, backlog, size).
    #[error("{message}")]
    Limited {
        /// `RATE_LIMITED`, `TOO_MANY_CONCURRENT_CALLS`, `BACKLOG_FULL`,
        /// `SERVER_OVERLOADED`, `REQUEST_TOO_LARGE`.
        reason: &'static str,
        /// What the caller is told.
        message: String,
        /// `limit` (the configuration key), `value` (its setting) and what
        /// else the refusal measured.
        metadata: BTreeMap<String, String>,
        /// When a retry can succeed; `None` when it cannot.
        retry_after: Option<Duration>,
    },
    /// A bug or a broken dependency; logged where it happened.
    #[error("{0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }

    /// The fields an INVALID_ARGUMENT names, in order; empty for any other
    /// error.
    pub fn violated_fields(&self) -> Vec<String> {
        match self {
            Self::InvalidArgument(v) => v.iter().map(|f| f.field.clone()).collect(),
            _ => Vec::new(),
        }
    }

    /// The gRPC code of this error.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated { .. } => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::InsufficientCredits { .. } => Code::FailedPrecondition,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::Limited { .. } => Code::ResourceExhausted,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// The `ErrorInfo.reason`, where the error has one.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Unauthenticated { reason, .. }
            | Self::Unavailable { reason, .. }
            | Self::Limited { reason, .. } => Some(reason),
            Self::PermissionDenied(_) => Some(REASON_POLICY_DENY),
            Self::InsufficientCredits { .. } => Some(REASON_INSUFFICIENT_CREDITS),
            _ => None,
        }
    }

    /// When a retry may succeed.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => Some(*retry_after),
            Self::Limited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The `ErrorInfo.metadata` (HTTP: `details`).
    fn metadata(&self) -> BTreeMap<String, String> {
        match self {
            Self::Limited { metadata, .. } => metadata.clone(),
            Self::InsufficientCredits {
                required,
                available,
            } => {
                let shortfall = i128::from(*required) - i128::from(*available);
                BTreeMap::from([
                    ("required".to_owned(), required.to_string()),
                    ("available".to_owned(), available.to_string()),
                    ("shortfall".to_owned(), shortfall.to_string()),
                ])
            }
            _ => BTreeMap::new(),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        let code = e.code();
        let message = e.to_string();
        let mut details = match e.retry_after() {
            Some(delay) => ErrorDetails::with_retry_info(Some(delay)),
            None => ErrorDetails::new(),
        };
        if let Some(reason) = e.reason() {
            details.set_error_info(
                reason,
                ERROR_DOMAIN,
                e.metadata()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        match e {
            ApiError::InvalidArgument(violations) => {
                details.set_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
            }
            ApiError::Internal(_) => return tonic::Status::new(code, message),
            _ => {}
        }
        tonic::Status::with_error_details(code, message, details)
    }
}

/// The HTTP status of a gRPC code: the canonical table of `google.rpc.Code`
/// (`google/rpc/code.proto`, as grpc-gateway maps it).
pub fn http_status_of(code: tonic::Code) -> http::StatusCode {
    use http::StatusCode as H;
    use tonic::Code as C;
    match code {
        C::Ok => H::OK,
        // 499 Client Closed Request (nginx): no constant in `http`.
        C::Cancelled => H::from_u16(499).unwrap_or(H::BAD_REQUEST),
        C::Unknown | C::Internal | C::DataLoss => H::INTERNAL_SERVER_ERROR,
        C::InvalidArgument | C::FailedPrecondition | C::OutOfRange => H::BAD_REQUEST,
        C::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        C::NotFound => H::NOT_FOUND,
        C::AlreadyExists | C::Aborted => H::CONFLICT,
        C::PermissionDenied => H::FORBIDDEN,
        C::Unauthenticated => H::UNAUTHORIZED,
        C::ResourceExhausted => H::TOO_MANY_REQUESTS,
        C::Unimplemented => H::NOT_IMPLEMENTED,
        C::Unavailable => H::SERVICE_UNAVAILABLE,
    }
}

/// The upper-case name of a gRPC code (`INVALID_ARGUMENT`).
pub fn code_name(code: tonic::Code) -> &'static str {
    engram_telemetry::grpc_code_name(code as i32)
}

impl ApiError {
    /// The HTTP status: the canonical one of [`ApiError::code`], except 402
    /// for INSUFFICIENT_CREDITS and 413 for a request over the size limit.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Self::InsufficientCredits { .. } => http::StatusCode::PAYMENT_REQUIRED,
            Self::Limited { reason, .. } if *reason == engram_limits::REASON_REQUEST_TOO_LARGE => {
                http::StatusCode::PAYLOAD_TOO_LARGE
            }
            _ => http_status_of(self.code()),
        }
    }

    /// The JSON body of the HTTP error:
    /// `{"code", "status", "message", "details"}` where `code` is the
    /// reason (`INSUFFICIENT_CREDITS`, `POLICY_DENY`, ...) or, for errors
    /// without one, the gRPC code's name; `status` the gRPC code's name;
    /// `details` the reason's metadata (`required`, `available`,
    /// `shortfall`; `limit`, `value`), `field_violations` for bad input and
    /// `retry_after_secs` when a retry may succeed.
    pub fn to_json(&self) -> serde_json::Value {
        let status = code_name(self.code());
        let mut details = serde_json::Map::new();
        for (k, v) in self.metadata() {
            // Numbers stay numbers in JSON (the wallet's amounts).
            let value = v
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or(serde_json::Value::String(v));
            details.insert(k, value);
        }
        if let Self::InvalidArgument(violations) = self {
            details.insert(
                "field_violations".to_owned(),
                violations
                    .iter()
                    .map(|v| serde_json::json!({"field": v.field, "description": v.description}))
                    .collect(),
            );
        }
        if let Some(delay) = self.retry_after() {
            details.insert("retry_after_secs".to_owned(), retry_secs(delay).into());
        }
        serde_json::json!({
            "code": self.reason().unwrap_or(status),
            "status": status,
            "message": self.to_string(),
            "details": details,
        })
    }

    /// The HTTP response: status, JSON body, and `Retry-After` (whole
    /// seconds, rounded up) when a retry may succeed.
    pub fn to_http(&self) -> http::Response<String> {
        let mut response = http::Response::new(self.to_json().to_string());
        *response.status_mut() = self.http_status();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(delay) = self.retry_after() {
            headers.insert(http::header::RETRY_AFTER, retry_secs(delay).into());
        }
        response
    }
}

/// Whether a request with this `content-type` speaks gRPC
/// (`application/grpc`, `application/grpc+proto`, grpc-web): its errors
/// are statuses, not JSON.
pub fn is_grpc_content_type(content_type: Option<&http::HeaderValue>) -> bool {
    content_type.is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Whether a request speaks gRPC, by its headers.
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    is_grpc_content_type(headers.get(http::header::CONTENT_TYPE))
}

/// The answer to a call refused before it reached a service (by the auth
/// or limits layer), for a request of `content_type`: a trailers-only gRPC
/// status for gRPC callers (with grpc-web's own content type for a
/// grpc-web caller, whose client reads the status from the headers), the
/// HTTP error with its JSON body for everyone else.
pub fn refusal(
    e: ApiError,
    content_type: Option<&http::HeaderValue>,
) -> http::Response<tonic::body::Body> {
    if is_grpc_content_type(content_type) {
        let mut response = tonic::Status::from(e).into_http();
        if let Some(ct) = content_type.filter(|v| v.as_bytes().starts_with(b"application/grpc-web"))
        {
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, ct.clone());
        }
        return response;
    }
    e.to_http()
        .map(|body| tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body))))
}

/// `Retry-After` is whole seconds: a delay under one second is 1.
fn retry_secs(delay: Duration) -> u64 {
    delay.as_secs() + u64::from(delay.subsec_nanos() > 0)
}

impl From<engram_auth::AuthError> for ApiError {
    fn from(e: engram_auth::AuthError) -> Self {
        use engram_auth::AuthError;
        match &e {
            AuthError::KeysUnavailable { retry_after } => Self::Unavailable {
                reason: e.reason(),
                message: e.to_string(),
                retry_after: *retry_after,
            },
            // Only `JwtVerifier::new` returns it: a call never sees INTERNAL.
            AuthError::Config(_) => Self::Internal(e.to_string()),
            _ => Self::Unauthenticated {
                reason: e.reason(),
                message: e.to_string(),
            },
        }
    }
}

impl From<&engram_limits::LimitError> for ApiError {
    fn from(e: &engram_limits::LimitError) -> Self {
        use engram_limits::LimitError;
        if let LimitError::Config(_) = e {
            return Self::Internal(e.to_string());
        }
        let mut metadata = BTreeMap::new();
        if let Some((key, value)) = e.limit() {
            metadata.insert("limit".to_owned(), key.to_owned());
            metadata.insert("value".to_owned(), value);
        }
        match e {
            LimitError::BacklogFull { pending, .. } => {
                metadata.insert("pending".to_owned(), pending.to_string());
            }
            LimitError::RequestTooLarge { size, .. } => {
                metadata.insert("size".to_owned(), size.to_string());
            }
            _ => {}
        }
        Self::Limited {
            reason: e.reason(),
            message: e.to_string(),
            metadata,
            retry_after: e.retry_after(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    #[test]
    fn the_canonical_table_and_the_two_domain_statuses() {
        let cases = [
            (ApiError::invalid("q", "empty"), 400),
            (
                ApiError::Unauthenticated {
                    reason: "TOKEN_EXPIRED",
                    message: "token expired".into(),
                },
                401,
            ),
            (
                ApiError::InsufficientCredits {
                    required: 10,
                    available: 3,
                },
                402,
            ),
            (ApiError::PermissionDenied("no".into()), 403),
            (ApiError::NotFound("no job".into()), 404),
            (ApiError::AlreadyExists("dup".into()), 409),
            (
                ApiError::from(&engram_limits::LimitError::TooManyConcurrentCalls { limit: 4 }),
                429,
            ),
            (
                ApiError::from(&engram_limits::LimitError::RequestTooLarge { size: 9, limit: 5 }),
                413,
            ),
            (ApiError::Internal("bug".into()), 500),
            (
                ApiError::Unavailable {
                    reason: REASON_UNREACHABLE,
                    message: "down".into(),
                    retry_after: Duration::from_millis(1500),
                },
                503,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.http_status().as_u16(), want, "{e:?}");
            let body: serde_json::Value =
                serde_json::from_str(e.to_http().body()).expect("JSON body");
            assert_eq!(body["message"], e.to_string());
            assert_eq!(body["status"], code_name(e.code()));
        }
        assert_eq!(http_status_of(Code::FailedPrecondition), 400);
        assert_eq!(http_status_of(Code::DeadlineExceeded), 504);
        assert_eq!(http_status_of(Code::Cancelled).as_u16(), 499);
    }

    #[test]
    fn insufficient_credits_carries_its_amounts_on_both_surfaces() {
        let e = ApiError::InsufficientCredits {
            required: 500,
            available: 120,
        };
        let body = e.to_json();
        assert_eq!(body["code"], REASON_INSUFFICIENT_CREDITS);
        assert_eq!(body["details"]["required"], 500);
        assert_eq!(body["details"]["available"], 120);
        assert_eq!(body["details"]["shortfall"], 380);
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), Code::FailedPrecondition);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, REASON_INSUFFICIENT_CREDITS);
        assert_eq!(info.metadata["shortfall"], "380");
    }

    #[test]
    fn unavailable_has_a_retry_hint_on_both_surfaces() {
        let e = ApiError::Unavailable {
            reason: REASON_NOT_READY,
            message: "provisioning".into(),
            retry_after: Duration::from_millis(1500),
        };
        let r = e.to_http();
        assert_eq!(r.headers()[http::header::RETRY_AFTER], "2");
        let body = e.to_json();
        assert_eq!(body["code"], REASON_NOT_READY);
        assert_eq!(body["details"]["retry_after_secs"], 2);
        let s = tonic::Status::from(e);
        assert_eq!(
            s.get_details_retry_info().unwrap().retry_delay,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn field_violations_are_listed_on_both_surfaces() {
        let e = ApiError::InvalidArgument(vec![
            FieldViolation {
                field: "turns".into(),
                description: "at least one turn".into(),
            },
            FieldViolation {
                field: "q".into(),
                description: "must not be empty".into(),
            },
        ]);
        let body = e.to_json();
        assert_eq!(body["code"], "INVALID_ARGUMENT");
        assert_eq!(body["details"]["field_violations"][1]["field"], "q");
        let s = tonic::Status::from(e);
        let fields: Vec<_> = s
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["turns", "q"]);
    }

    #[test]
    fn a_refusal_speaks_the_callers_protocol() {
        let e = || ApiError::from(engram_auth::AuthError::Missing);
        let ct = |v: &'static str| http::HeaderValue::from_static(v);
        let grpc = refusal(e(), Some(&ct("application/grpc")));
        assert_eq!(grpc.headers()["grpc-status"], "16");
        let web = refusal(e(), Some(&ct("application/grpc-web-text")));
        assert_eq!(web.headers()["grpc-status"], "16");
        assert_eq!(
            web.headers()[http::header::CONTENT_TYPE],
            "application/grpc-web-text"
        );
        for content_type in [None, Some(ct("application/json")), Some(ct("text/plain"))] {
            let rest = refusal(e(), content_type.as_ref());
            assert_eq!(rest.status(), http::StatusCode::UNAUTHORIZED);
            assert_eq!(
                rest.headers()[http::header::CONTENT_TYPE],
                "application/json"
            );
            assert!(!rest.headers().contains_key("grpc-status"));
        }
    }

    #[test]
    fn auth_refusals_are_unauthenticated_and_missing_keys_unavailable() {
        let e = ApiError::from(engram_auth::AuthError::Expired);
        assert_eq!(e.http_status(), 401);
        assert_eq!(e.reason(), Some("TOKEN_EXPIRED"));
        let e = ApiError::from(engram_auth::AuthError::KeysUnavailable {
            retry_after: Duration::from_secs(3),
        });
        assert_eq!(e.code(), Code::Unavailable);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }
}
