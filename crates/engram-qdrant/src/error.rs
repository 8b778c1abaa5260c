//! Which client errors a caller may retry.
//!
//! The port has two error kinds: `Unavailable` (the caller may retry, and
//! the gRPC layer answers UNAVAILABLE with a retry delay) and `Internal`.
//! Transport failures, timeouts and an overloaded server are the first;
//! everything the server refused for a reason a retry will not fix (a bad
//! request, a missing collection) is the second.

use engram_core::StoreError;
use qdrant_client::QdrantError;
use std::error::Error as _;
use std::time::Duration;
use tonic::{Code, Status};

/// Classifies a client error of operation `what` against `url`.
pub(crate) fn classify(what: &str, url: &str, err: QdrantError) -> StoreError {
    match err {
        QdrantError::ResponseError { status } => {
            let message = format!("{what} on Qdrant at {url}: {}", describe(&status));
            if retryable(&status) {
                StoreError::Unavailable(message)
            } else {
                StoreError::Internal(message)
            }
        }
        QdrantError::ResourceExhaustedError {
            status,
            retry_after_seconds,
        } => StoreError::Unavailable(format!(
            "{what} on Qdrant at {url}: server overloaded ({}), retry after {retry_after_seconds} s",
            status.message()
        )),
        QdrantError::Io(err) => {
            StoreError::Unavailable(format!("{what} on Qdrant at {url}: I/O error: {err}"))
        }
        other => StoreError::Internal(format!("{what} on Qdrant at {url}: {other}")),
    }
}

/// The error of an operation that did not finish within `timeout`.
pub(crate) fn timed_out(what: &str, url: &str, timeout: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "{what} on Qdrant at {url}: no answer within {} ms",
        timeout.as_millis()
    ))
}

/// Whether a gRPC status means "the server could not be reached or did not
/// answer in time" rather than "the server refused".
fn retryable(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Aborted => true,
        // The client reports a failed connection attempt as INTERNAL
        // ("Failed to connect to ..."), and tonic reports some broken
        // connections as UNKNOWN ("transport error") or as HTTP/2 errors;
        // all carry an I/O or transport error as source or in their message.
        // A server-side INTERNAL has neither.
        Code::Internal | Code::Unknown => {
            let message = status.message();
            message.starts_with("Failed to connect to")
                || message.contains("transport error")
                || message.contains("error trying to connect")
                || message.starts_with("h2 protocol error")
                || has_io_source(status)
        }
        _ => false,
    }
}

/// Whether an I/O error is among the sources of `status`.
fn has_io_source(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.is::<std::io::Error>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// The code and message of a status, without its (binary) details.
fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: Status) -> QdrantError {
        QdrantError::ResponseError { status }
    }

    #[test]
    fn transport_failures_and_timeouts_are_unavailable() {
        for status in [
            Status::unavailable("connection refused"),
            Status::deadline_exceeded("timeout expired"),
            Status::cancelled("Timeout expired"),
            Status::internal("Failed to connect to http://127.0.0.1:1/: ConnectError"),
            Status::unknown("transport error"),
        ] {
            let err = classify("upsert", "u", response(status));
            assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        }
        let io = QdrantError::Io(std::io::Error::other("reset"));
        assert!(matches!(classify("x", "u", io), StoreError::Unavailable(_)));
        assert!(matches!(
            timed_out("x", "u", Duration::from_millis(5)),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn refusals_are_internal_and_name_the_operation() {
        for status in [
            Status::invalid_argument("Wrong input: vector dimension error"),
            Status::not_found("Collection `x` doesn't exist!"),
            Status::internal("Service internal error: segment failed"),
            Status::failed_precondition("nope"),
        ] {
            let err = classify("upsert", "http://q:6334", response(status));
            assert!(matches!(err, StoreError::Internal(_)), "{err}");
            assert!(
                err.to_string()
                    .contains("upsert on Qdrant at http://q:6334")
            );
        }
    }
}
