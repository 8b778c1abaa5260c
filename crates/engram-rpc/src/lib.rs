//! Shared gRPC plumbing: request validation with `google.rpc.BadRequest`
//! field violations, `ErrorInfo` reasons, retry hints, and the one place
//! where port and auth errors become `tonic::Status`.

mod policy;

pub use policy::{Action, act_for, authorize, tenant};

use engram_auth::{Claims, ScopeError};
use engram_core::{
    AccountsError, DEFAULT_RETRY_DELAY, EmbedError, JobStoreError, StoreError, StreamError,
};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

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
        self.0.push(FieldViolation::new(field, description));
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
    pub fn into_result(self) -> Result<(), Status> {
        if self.0.is_empty() {
            return Ok(());
        }
        let msg = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid request: {msg}"),
            ErrorDetails::with_bad_request(self.0),
        ))
    }
}

/// The verified claims of a call; `UNAUTHENTICATED` if the auth layer did
/// not run (a wiring error that must not turn into an open door).
pub fn claims<T>(req: &tonic::Request<T>) -> Result<Claims, Status> {
    req.extensions()
        .get::<Claims>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("missing bearer token"))
}

/// Maps a scope resolution failure to its status.
pub fn scope_status(e: ScopeError) -> Status {
    match e {
        ScopeError::MissingOrg => {
            let mut v = Violations::new();
            v.add("scope.org_id", ORG_REQUIRED);
            v.into_result().expect_err("one violation")
        }
        ScopeError::MissingUser => {
            let mut v = Violations::new();
            v.add("scope.user_id", e.to_string());
            v.into_result().expect_err("one violation")
        }
        ScopeError::OrgMismatch { .. } => permission_denied(e.to_string()),
    }
}

/// `PERMISSION_DENIED` with `ErrorInfo` reason `POLICY_DENY`.
pub fn permission_denied(message: impl Into<String>) -> Status {
    Status::with_error_details(
        Code::PermissionDenied,
        message,
        ErrorDetails::with_error_info(REASON_POLICY_DENY, ERROR_DOMAIN, []),
    )
}

/// `UNAVAILABLE` with `ErrorInfo` and a `RetryInfo` hint.
pub fn unavailable(reason: &str, message: impl Into<String>) -> Status {
    unavailable_after(reason, DEFAULT_RETRY_DELAY, message)
}

/// `UNAVAILABLE` with `ErrorInfo` and a `RetryInfo` hint of `delay`.
pub fn unavailable_after(
    reason: &str,
    delay: std::time::Duration,
    message: impl Into<String>,
) -> Status {
    let mut details = ErrorDetails::with_retry_info(Some(delay));
    details.set_error_info(reason, ERROR_DOMAIN, []);
    Status::with_error_details(Code::Unavailable, message, details)
}

/// `RESOURCE_EXHAUSTED` for a call refused by a limit: `ErrorInfo` with
/// the refusal's reason (`RATE_LIMITED`, `TOO_MANY_CONCURRENT_CALLS`,
/// `BACKLOG_FULL`, `SERVER_OVERLOADED`, `REQUEST_TOO_LARGE`) and metadata
/// `limit` (the configuration key) and `value` (its setting), and a
/// `RetryInfo` hint when a retry can succeed.
pub fn limit_status(e: &engram_limits::LimitError) -> Status {
    use engram_limits::LimitError;
    if let LimitError::Config(_) = e {
        return Status::internal(e.to_string());
    }
    let mut metadata = std::collections::HashMap::with_capacity(3);
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
    let mut details = match e.retry_after() {
        Some(delay) => ErrorDetails::with_retry_info(Some(delay)),
        None => ErrorDetails::new(),
    };
    details.set_error_info(e.reason(), ERROR_DOMAIN, metadata);
    Status::with_error_details(Code::ResourceExhausted, e.to_string(), details)
}

/// Maps a vector-store error.
pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Unavailable(_) => unavailable(REASON_UNREACHABLE, e.to_string()),
        StoreError::Internal(_) => {
            tracing::error!(error = %e, "vector store failed");
            Status::internal(e.to_string())
        }
    }
}

/// Maps an embedder error.
pub fn embed_status(e: EmbedError) -> Status {
    match e {
        EmbedError::Unavailable(_) => unavailable(REASON_NOT_READY, e.to_string()),
        EmbedError::Internal(_) => {
            tracing::error!(error = %e, "embedding failed");
            Status::internal(e.to_string())
        }
    }
}

/// Maps a turn-stream error. A closed stream means this process is shutting
/// down, which the caller should treat like an unreachable dependency.
pub fn stream_status(e: StreamError) -> Status {
    match e {
        StreamError::Unavailable(_) | StreamError::Closed => {
            unavailable(REASON_UNREACHABLE, e.to_string())
        }
        StreamError::Internal(_) => {
            tracing::error!(error = %e, "turn stream failed");
            Status::internal(e.to_string())
        }
    }
}

/// Maps a job-store error.
pub fn jobs_status(e: JobStoreError) -> Status {
    match e {
        JobStoreError::Unavailable(_) => unavailable(REASON_UNREACHABLE, e.to_string()),
        JobStoreError::Internal(_) => {
            tracing::error!(error = %e, "job store failed");
            Status::internal(e.to_string())
        }
    }
}

/// Maps an account-store error. `Insufficient` is FAILED_PRECONDITION
/// with reason INSUFFICIENT_CREDITS and metadata required / available /
/// shortfall (micro-credits, decimal strings).
pub fn accounts_status(e: AccountsError) -> Status {
    match e {
        AccountsError::Unavailable(_) => unavailable(REASON_UNREACHABLE, e.to_string()),
        AccountsError::Insufficient {
            required,
            available,
        } => {
            let shortfall = i128::from(required) - i128::from(available);
            Status::with_error_details(
                Code::FailedPrecondition,
                e.to_string(),
                ErrorDetails::with_error_info(
                    REASON_INSUFFICIENT_CREDITS,
                    ERROR_DOMAIN,
                    [
                        ("required".to_owned(), required.to_string()),
                        ("available".to_owned(), available.to_string()),
                        ("shortfall".to_owned(), shortfall.to_string()),
                    ],
                ),
            )
        }
        AccountsError::Conflict(_) => Status::already_exists(e.to_string()),
        AccountsError::Internal(_) => {
            tracing::error!(error = %e, "account store failed");
            Status::internal(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_name_every_field() {
        let mut v = Violations::new();
        v.add("turns", "at least one turn");
        v.add("q", "must not be empty");
        let s = v.into_result().unwrap_err();
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
        let s = store_status(StoreError::Unavailable("down".into()));
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
            let s = stream_status(e);
            assert_eq!(s.code(), Code::Unavailable);
            assert!(s.get_details_retry_info().unwrap().retry_delay.is_some());
            assert_eq!(
                s.get_details_error_info().unwrap().reason,
                REASON_UNREACHABLE
            );
        }
        let s = jobs_status(JobStoreError::Unavailable("down".into()));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            stream_status(StreamError::Internal("bad".into())).code(),
            Code::Internal
        );
    }

    #[test]
    fn limits_are_resource_exhausted_with_reason_and_limit() {
        let s = limit_status(&engram_limits::LimitError::TooManyConcurrentCalls { limit: 4 });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.get_details_retry_info().unwrap().retry_delay.is_some());
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, engram_limits::REASON_TOO_MANY_CONCURRENT_CALLS);
        assert_eq!(info.metadata["limit"], "limits.concurrent_calls_per_org");
        assert_eq!(info.metadata["value"], "4");
        let s = limit_status(&engram_limits::LimitError::RequestTooLarge { size: 10, limit: 5 });
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.get_details_retry_info().is_none(), "a retry cannot help");
    }

    #[test]
    fn org_mismatch_is_permission_denied() {
        let s = scope_status(ScopeError::OrgMismatch {
            requested: "x".into(),
        });
        assert_eq!(s.code(), Code::PermissionDenied);
        assert_eq!(
            s.get_details_error_info().unwrap().reason,
            REASON_POLICY_DENY
        );
    }
}
