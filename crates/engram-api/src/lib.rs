//! The services' domain error ([`ApiError`]) with its two mappings (gRPC
//! status, HTTP response), request validation with field violations, the
//! role policy, and the mapping of port and auth errors to [`ApiError`].
//! Nothing here names a transport type in a service's signature: the
//! service cores take [`Claims`] and a message and return `ApiError`; the
//! gRPC, REST and MCP skins turn that into their own answers.

mod error;
mod policy;

pub use error::{
    ApiError, ERROR_DOMAIN, FieldViolation, REASON_INSUFFICIENT_CREDITS, REASON_NOT_READY,
    REASON_POLICY_DENY, REASON_UNREACHABLE, code_name, http_status_of, is_grpc,
    is_grpc_content_type, refusal,
};
pub use policy::{Action, act_for, authorize, tenant};

use engram_auth::{Claims, ScopeError};
use engram_core::{
    AccountsError, DEFAULT_RETRY_DELAY, EmbedError, JobStoreError, StoreError, StreamError,
};

/// What a missing tenant field is told.
const ORG_REQUIRED: &str = "required: your org id (min length 1)";

/// Collects field violations; turns into `INVALID_ARGUMENT` when non-empty.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is invalid because of `description`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    /// Records `field` as missing when `org_id` is empty.
    pub fn require_org(&mut self, field: &str, org_id: &str) {
        if org_id.is_empty() {
            self.add(field, ORG_REQUIRED);
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, else `INVALID_ARGUMENT` listing every violation.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            return Ok(());
        }
        Err(ApiError::InvalidArgument(self.0))
    }
}

/// The verified claims of a gRPC call; `UNAUTHENTICATED` if the auth layer
/// did not run (a wiring error that must not turn into an open door).
pub fn claims<T>(req: &tonic::Request<T>) -> Result<Claims, ApiError> {
    claims_of(req.extensions())
}

/// The verified claims the auth layer left in a request's extensions.
pub fn claims_of(extensions: &http::Extensions) -> Result<Claims, ApiError> {
    extensions
        .get::<Claims>()
        .cloned()
        .ok_or_else(|| engram_auth::AuthError::Missing.into())
}

impl From<ScopeError> for ApiError {
    fn from(e: ScopeError) -> Self {
        match e {
            ScopeError::MissingOrg => ApiError::invalid("scope.org_id", ORG_REQUIRED),
            ScopeError::MissingUser => ApiError::invalid("scope.user_id", e.to_string()),
            ScopeError::OrgMismatch { .. } => ApiError::PermissionDenied(e.to_string()),
        }
    }
}

/// `PERMISSION_DENIED` with `ErrorInfo` reason `POLICY_DENY`.
pub fn permission_denied(message: impl Into<String>) -> ApiError {
    ApiError::PermissionDenied(message.into())
}

/// `UNAVAILABLE` with `ErrorInfo` and a `RetryInfo` hint.
pub fn unavailable(reason: &'static str, message: impl Into<String>) -> ApiError {
    unavailable_after(reason, DEFAULT_RETRY_DELAY, message)
}

/// `UNAVAILABLE` with `ErrorInfo` and a `RetryInfo` hint of `delay`.
pub fn unavailable_after(
    reason: &'static str,
    delay: std::time::Duration,
    message: impl Into<String>,
) -> ApiError {
    ApiError::Unavailable {
        reason,
        message: message.into(),
        retry_after: delay,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => unavailable(REASON_UNREACHABLE, e.to_string()),
            StoreError::Internal(_) => {
                tracing::error!(error = %e, "vector store failed");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<EmbedError> for ApiError {
    fn from(e: EmbedError) -> Self {
        match e {
            EmbedError::Unavailable(_) => unavailable(REASON_NOT_READY, e.to_string()),
            EmbedError::Internal(_) => {
                tracing::error!(error = %e, "embedding failed");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// A closed stream means this process is shutting down, which the caller
/// should treat like an unreachable dependency.
impl From<StreamError> for ApiError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Unavailable(_) | StreamError::Closed => {
                unavailable(REASON_UNREACHABLE, e.to_string())
            }
            StreamError::Internal(_) => {
                tracing::error!(error = %e, "turn stream failed");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<JobStoreError> for ApiError {
    fn from(e: JobStoreError) -> Self {
        match e {
            JobStoreError::Unavailable(_) => unavailable(REASON_UNREACHABLE, e.to_string()),
            JobStoreError::Internal(_) => {
                tracing::error!(error = %e, "job store failed");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// `Insufficient` is [`ApiError::InsufficientCredits`] (gRPC
/// FAILED_PRECONDITION, HTTP 402, with required / available / shortfall).
impl From<AccountsError> for ApiError {
    fn from(e: AccountsError) -> Self {
        match e {
            AccountsError::Unavailable(_) => unavailable(REASON_UNREACHABLE, e.to_string()),
            AccountsError::Insufficient {
                required,
                available,
            } => ApiError::InsufficientCredits {
                required,
                available,
            },
            AccountsError::Conflict(_) => ApiError::AlreadyExists(e.to_string()),
            AccountsError::Internal(_) => {
                tracing::error!(error = %e, "account store failed");
                ApiError::Internal(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};
    use tonic_types::StatusExt;

    #[test]
    fn violations_name_every_field() {
        let mut v = Violations::new();
        v.add("turns", "at least one turn");
        v.add("q", "must not be empty");
        let s = Status::from(v.into_result().unwrap_err());
        assert_eq!(s.code(), Code::InvalidArgument);
        let br = s.get_details_bad_request().unwrap();
        let fields: Vec<_> = br
            .field_violations
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["turns", "q"]);
    }

    #[test]
    fn unavailable_carries_retry_and_reason() {
        let s = Status::from(ApiError::from(StoreError::Unavailable("down".into())));
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.get_details_retry_info().unwrap().retry_delay.is_some());
        assert_eq!(
            s.get_details_error_info().unwrap().reason,
            REASON_UNREACHABLE
        );
    }

    #[test]
    fn stream_outage_is_memory_unreachable_with_retry() {
        for e in [StreamError::Unavailable("down".into()), StreamError::Closed] {
            let s = Status::from(ApiError::from(e));
            assert_eq!(s.code(), Code::Unavailable);
            assert!(s.get_details_retry_info().unwrap().retry_delay.is_some());
            assert_eq!(
                s.get_details_error_info().unwrap().reason,
                REASON_UNREACHABLE
            );
        }
        let s = Status::from(ApiError::from(JobStoreError::Unavailable("down".into())));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            Status::from(ApiError::from(StreamError::Internal("bad".into()))).code(),
            Code::Internal
        );
    }

    #[test]
    fn limits_are_resource_exhausted_with_reason_and_limit() {
        let s = Status::from(ApiError::from(
            &engram_limits::LimitError::TooManyConcurrentCalls { limit: 4 },
        ));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.get_details_retry_info().unwrap().retry_delay.is_some());
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, engram_limits::REASON_TOO_MANY_CONCURRENT_CALLS);
        assert_eq!(info.metadata["limit"], "limits.concurrent_calls_per_org");
        assert_eq!(info.metadata["value"], "4");
        let s = Status::from(ApiError::from(
            &engram_limits::LimitError::RequestTooLarge { size: 10, limit: 5 },
        ));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.get_details_retry_info().is_none(), "a retry cannot help");
    }

    #[test]
    fn org_mismatch_is_permission_denied() {
        let s = Status::from(ApiError::from(ScopeError::OrgMismatch {
            requested: "x".into(),
        }));
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(
            s.get_details_error_info().unwrap().reason,
            REASON_POLICY_DENY
        );
    }
}
