//! JWT authentication for Engram.
//!
//! A [`AuthLayer`] in front of the gRPC services verifies the Bearer token
//! of every call except health and reflection, and hands the verified
//! [`Claims`] to the handlers through the request extensions. The tenant is
//! always the token's `org_id`; [`resolve_scope`] applies the rules that tie
//! a request's scope to its token.
//!
//! Keys come from exactly one [`KeySource`]: an HS256 secret, an RS256 or
//! ES256 public key, a JWKS document, or a JWKS URL fetched, cached and
//! refreshed by [`JwtVerifier`]. Every refusal is an [`AuthError`]:
//! `UNAUTHENTICATED` with a message saying why, except
//! [`AuthError::KeysUnavailable`], which is `UNAVAILABLE` with a
//! `google.rpc.RetryInfo` hint.

mod jwks;
mod keys;
mod layer;
mod role;
mod scope;
mod token;

pub use jwks::{JwksOptions, JwksUrl, RefreshHandle};
pub use keys::{
    AuthConfig, Claims, DEFAULT_MAX_TOKEN_BYTES, DEFAULT_MAX_TOKEN_LIFETIME_SECS, JwtVerifier,
    KeySource, mint_hs256,
};
pub use layer::{AuthLayer, AuthService};
pub use role::WorkspaceRole;
pub use scope::{DEFAULT_SESSION, ScopeError, resolve_scope};

use std::time::Duration;

/// `ErrorInfo.reason` when the verification keys are not loaded (the JWKS
/// endpoint has not answered yet).
pub const REASON_KEYS_UNAVAILABLE: &str = "AUTH_KEYS_UNAVAILABLE";

/// Why a token was refused. Every variant but [`AuthError::KeysUnavailable`]
/// and [`AuthError::Config`] maps to `UNAUTHENTICATED`; none of them carries
/// the token or a secret, so they are safe to log and to send back.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No `authorization` metadata.
    #[error("missing bearer token: send `authorization: Bearer <jwt>`")]
    Missing,
    /// The header is not `Bearer <jwt>`, or the JWT is not three base64url
    /// segments with a JSON header.
    #[error("malformed authorization header: {0}")]
    Malformed(&'static str),
    /// The header or token is longer than allowed; refused before parsing.
    #[error("bearer token too large: at most {limit} bytes are accepted")]
    TooLarge {
        /// The limit, bytes.
        limit: usize,
    },
    /// `alg: none`: an unsigned token.
    #[error("unsigned token (alg \"none\") refused")]
    Unsigned,
    /// The token's algorithm is not one this server's keys verify (HS256
    /// against a public key, ES256 against an RSA key, ...).
    #[error("token algorithm {alg} is not accepted: {accepted}")]
    AlgorithmRefused {
        /// The token's `alg`.
        alg: String,
        /// What is accepted instead.
        accepted: String,
    },
    /// The token's `kid` names no key of the key set (even after a refresh).
    #[error("token key id (kid) is not in the key set")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid token: bad signature")]
    BadSignature,
    /// The token expired.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not valid yet (nbf is in the future)")]
    NotYetValid,
    /// `exp` lies further ahead than the configured maximum lifetime.
    #[error(
        "token lifetime too long: exp may be at most {max_secs} s after iat and after now (auth.max_token_lifetime_secs)"
    )]
    LifetimeTooLong {
        /// The maximum lifetime, seconds.
        max_secs: u64,
    },
    /// A claim is missing, empty or of the wrong type.
    #[error("invalid token claims: {0}")]
    Claim(String),
    /// Issuer, audience, or token shape did not verify.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The keys are not loaded yet: the JWKS endpoint has not answered.
    #[error(
        "auth keys unavailable: the JWKS endpoint has not served a usable key set yet; retry later"
    )]
    KeysUnavailable {
        /// When a retry can find the keys loaded.
        retry_after: Duration,
    },
    /// The key configuration cannot be used (start-up only, never the
    /// answer to a call).
    #[error("auth configuration error: {0}")]
    Config(String),
}

impl AuthError {
    /// The `google.rpc.ErrorInfo.reason` sent with the status.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "TOKEN_MISSING",
            AuthError::Malformed(_) => "TOKEN_MALFORMED",
            AuthError::TooLarge { .. } => "TOKEN_TOO_LARGE",
            AuthError::Unsigned => "TOKEN_UNSIGNED",
            AuthError::AlgorithmRefused { .. } => "TOKEN_ALGORITHM_REFUSED",
            AuthError::UnknownKey => "TOKEN_KEY_UNKNOWN",
            AuthError::BadSignature => "TOKEN_SIGNATURE_INVALID",
            AuthError::Expired => "TOKEN_EXPIRED",
            AuthError::NotYetValid => "TOKEN_NOT_YET_VALID",
            AuthError::LifetimeTooLong { .. } => "TOKEN_LIFETIME_TOO_LONG",
            AuthError::Claim(_) => "TOKEN_CLAIMS_INVALID",
            AuthError::Invalid(_) => "TOKEN_INVALID",
            AuthError::KeysUnavailable { .. } => REASON_KEYS_UNAVAILABLE,
            AuthError::Config(_) => "AUTH_CONFIG",
        }
    }
}

impl AuthError {
    /// Whether this is a refusal of the caller's credentials
    /// (UNAUTHENTICATED), not a server-side condition (keys not loaded yet:
    /// UNAVAILABLE; a configuration error: never a call's answer).
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            AuthError::KeysUnavailable { .. } | AuthError::Config(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_unauthenticated_with_a_reason() {
        let e = AuthError::Expired;
        assert!(e.is_refusal());
        assert_eq!(e.to_string(), "token expired");
        assert_eq!(e.reason(), "TOKEN_EXPIRED");
    }

    #[test]
    fn missing_keys_are_no_refusal_of_the_caller() {
        let e = AuthError::KeysUnavailable {
            retry_after: Duration::from_secs(3),
        };
        assert!(!e.is_refusal());
        assert_eq!(e.reason(), REASON_KEYS_UNAVAILABLE);
        assert!(!AuthError::Config("bad".into()).is_refusal());
    }
}
