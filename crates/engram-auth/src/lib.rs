//! JWT authentication for Engram.
//!
//! A [`AuthLayer`] in front of the gRPC services verifies the Bearer token
//! of every call except health and reflection, and hands the verified
//! [`Claims`] to the handlers through the request extensions. The tenant is
//! always the token's `org_id`; [`resolve_scope`] applies the rules that tie
//! a request's scope to its token.

mod keys;
mod layer;
mod role;
mod scope;

pub use keys::{AuthConfig, Claims, JwtVerifier, KeySource, mint_hs256};
pub use layer::{AuthLayer, AuthService};
pub use role::WorkspaceRole;
pub use scope::{DEFAULT_SESSION, ScopeError, resolve_scope};

/// Why a token was refused. Every variant maps to `UNAUTHENTICATED`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error("missing bearer token: send `authorization: Bearer <jwt>`")]
    Missing,
    /// The header is not `Bearer <jwt>`.
    #[error("malformed authorization header: expected `Bearer <jwt>`")]
    Malformed,
    /// The token expired.
    #[error("token expired")]
    Expired,
    /// Signature, algorithm, issuer, audience or claims did not verify.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The key configuration cannot be used.
    #[error("auth configuration error: {0}")]
    Config(String),
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing
            | AuthError::Malformed
            | AuthError::Expired
            | AuthError::Invalid(_) => tonic::Status::unauthenticated(e.to_string()),
            AuthError::Config(_) => tonic::Status::internal(e.to_string()),
        }
    }
}
