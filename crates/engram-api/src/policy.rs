//! The role policy: which workspace role may do what, and the refusals.

use crate::{ApiError, Violations, permission_denied};
use engram_auth::{Claims, WorkspaceRole};

/// What a call does, as far as the role policy is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Recall, job and memory status, listing collections.
    Read,
    /// Remember, StoreMemory of a user memory, Forget of own memory.
    WriteOwn,
    /// StoreMemory of a knowledge or hive memory.
    WriteShared,
    /// Creating and deleting collections.
    ManageCollections,
    /// Reading the balance and ledger, topping up.
    ManageCredits,
}

impl Action {
    /// The least role that may do it.
    pub fn least_role(self) -> WorkspaceRole {
        match self {
            Action::Read => WorkspaceRole::Viewer,
            Action::WriteOwn => WorkspaceRole::Member,
            Action::WriteShared | Action::ManageCollections | Action::ManageCredits => {
                WorkspaceRole::Admin
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Action::Read => "read memory",
            Action::WriteOwn => "write memory",
            Action::WriteShared => "write knowledge or hive memory",
            Action::ManageCollections => "manage collections",
            Action::ManageCredits => "manage credits",
        }
    }
}

/// The caller's role when it may do `action`; PERMISSION_DENIED with
/// reason POLICY_DENY otherwise (also for a role claim nobody knows).
pub fn authorize(claims: &Claims, action: Action) -> Result<WorkspaceRole, ApiError> {
    let role = claims.workspace_role().map_err(permission_denied)?;
    if role < action.least_role() {
        return Err(permission_denied(format!(
            "role {role} may not {}: {} or above required",
            action.describe(),
            action.least_role()
        )));
    }
    Ok(role)
}

/// Checks that the caller may act for `user_id`: its own user, or any user
/// for admins and owners, and for tokens that name no user at all (service
/// tokens of a backend acting for its users).
pub fn act_for(claims: &Claims, role: WorkspaceRole, user_id: &str) -> Result<(), ApiError> {
    match claims.user() {
        Some(own) if own != user_id && !role.is_admin() => Err(permission_denied(format!(
            "role {role} may not act for another user than the token's"
        ))),
        _ => Ok(()),
    }
}

/// Checks `scope.org_id`-style tenant fields of the workspace RPCs: present
/// and equal to the token's tenant.
pub fn tenant(claims: &Claims, field: &str, org_id: &str) -> Result<(), ApiError> {
    let mut v = Violations::new();
    v.require_org(field, org_id);
    v.into_result()?;
    if org_id != claims.org_id {
        return Err(permission_denied(format!(
            "{field} {org_id:?} does not match the token's org_id"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    fn claims(role: &str, user: Option<&str>) -> Claims {
        Claims {
            org_id: "org".into(),
            user_id: user.map(Into::into),
            sub: None,
            session_id: None,
            role: Some(role.into()),
            exp: 0,
            iat: None,
            iss: None,
            aud: None,
        }
    }

    #[test]
    fn each_role_reaches_exactly_its_actions() {
        let actions = [
            Action::Read,
            Action::WriteOwn,
            Action::WriteShared,
            Action::ManageCollections,
            Action::ManageCredits,
        ];
        let allowed = |role: &str| -> Vec<bool> {
            actions
                .iter()
                .map(|a| authorize(&claims(role, Some("u")), *a).is_ok())
                .collect()
        };
        assert_eq!(allowed("viewer"), [true, false, false, false, false]);
        assert_eq!(allowed("member"), [true, true, false, false, false]);
        assert_eq!(allowed("admin"), [true; 5]);
        assert_eq!(allowed("owner"), [true; 5]);
        let refused =
            tonic::Status::from(authorize(&claims("viewer", None), Action::WriteOwn).unwrap_err());
        assert_eq!(refused.code(), Code::PermissionDenied);
        assert_eq!(
            refused.get_details_error_info().unwrap().reason,
            crate::REASON_POLICY_DENY
        );
        assert!(authorize(&claims("root", None), Action::Read).is_err());
    }

    #[test]
    fn only_admins_act_for_other_users() {
        let member = claims("member", Some("u"));
        assert!(act_for(&member, WorkspaceRole::Member, "u").is_ok());
        assert!(act_for(&member, WorkspaceRole::Member, "v").is_err());
        let admin = claims("admin", Some("u"));
        assert!(act_for(&admin, WorkspaceRole::Admin, "v").is_ok());
        let service = claims("member", None);
        assert!(act_for(&service, WorkspaceRole::Member, "v").is_ok());
    }
}
