//! Ties a request's scope to its token.

use crate::Claims;
use engram_core::Scope;

/// Session used when neither the request nor the token names one.
pub const DEFAULT_SESSION: &str = "default-session";

/// Why a scope cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// `scope.org_id` is empty: INVALID_ARGUMENT on field `scope.org_id`.
    #[error("scope.org_id is required")]
    MissingOrg,
    /// `scope.org_id` names another tenant than the token: PERMISSION_DENIED.
    #[error("scope.org_id {requested:?} does not match the token's org_id")]
    OrgMismatch {
        /// What the request asked for.
        requested: String,
    },
    /// Neither the request nor the token names a user: INVALID_ARGUMENT on `scope.user_id`.
    #[error("scope.user_id is required when the token has no user_id or sub claim")]
    MissingUser,
}

/// Resolves the effective scope of a call.
///
/// The tenant is always the token's `org_id`; `scope.org_id` is required
/// and must match it. `user_id` and `session_id` default from the token;
/// `session_id` falls back to [`DEFAULT_SESSION`] when `default_session`
/// is set (writes), and stays empty otherwise (reads across sessions).
pub fn resolve_scope(
    claims: &Claims,
    org_id: &str,
    user_id: &str,
    session_id: &str,
    default_session: bool,
) -> Result<Scope, ScopeError> {
    if org_id.is_empty() {
        return Err(ScopeError::MissingOrg);
    }
    if org_id != claims.org_id {
        return Err(ScopeError::OrgMismatch {
            requested: org_id.to_string(),
        });
    }
    let user_id = if user_id.is_empty() {
        claims.user().ok_or(ScopeError::MissingUser)?.to_string()
    } else {
        user_id.to_string()
    };
    let session_id = if !session_id.is_empty() {
        session_id.to_string()
    } else if let Some(s) = claims.session_id.as_deref().filter(|s| !s.is_empty()) {
        s.to_string()
    } else if default_session {
        DEFAULT_SESSION.to_string()
    } else {
        String::new()
    };
    Ok(Scope {
        org_id: claims.org_id.clone(),
        user_id,
        session_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(session: Option<&str>) -> Claims {
        Claims {
            org_id: "org_a".into(),
            user_id: None,
            sub: Some("u1".into()),
            session_id: session.map(Into::into),
            role: None,
            exp: 0,
            iat: None,
            iss: None,
            aud: None,
        }
    }

    #[test]
    fn defaults_come_from_the_token() {
        let s = resolve_scope(&claims(Some("s9")), "org_a", "", "", true).unwrap();
        assert_eq!((s.user_id.as_str(), s.session_id.as_str()), ("u1", "s9"));
        let s = resolve_scope(&claims(None), "org_a", "", "", true).unwrap();
        assert_eq!(s.session_id, DEFAULT_SESSION);
        let s = resolve_scope(&claims(None), "org_a", "u2", "", false).unwrap();
        assert_eq!((s.user_id.as_str(), s.session_id.as_str()), ("u2", ""));
    }

    #[test]
    fn tenant_is_the_token_org() {
        assert_eq!(
            resolve_scope(&claims(None), "org_b", "", "", true),
            Err(ScopeError::OrgMismatch {
                requested: "org_b".into()
            })
        );
        assert_eq!(
            resolve_scope(&claims(None), "", "", "", true),
            Err(ScopeError::MissingOrg)
        );
    }
}
