//! Workspace roles, read from the token's `role` claim.

use crate::Claims;
use std::fmt;

/// What a caller may do inside its workspace. Ordered: each role may do
/// everything the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkspaceRole {
    /// Reads only: recall, job and memory status, collections.
    Viewer,
    /// Writes its conversation memory and personal memories, forgets them.
    Member,
    /// Also knowledge and hive memories, collections, credits, and acting
    /// for other users of the workspace.
    Admin,
    /// Everything an admin may; the workspace's owner.
    Owner,
}

impl WorkspaceRole {
    /// The claim spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceRole::Viewer => "viewer",
            WorkspaceRole::Member => "member",
            WorkspaceRole::Admin => "admin",
            WorkspaceRole::Owner => "owner",
        }
    }

    /// Whether the role manages the workspace (admin or owner).
    pub fn is_admin(self) -> bool {
        self >= WorkspaceRole::Admin
    }
}

impl fmt::Display for WorkspaceRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for WorkspaceRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(WorkspaceRole::Viewer),
            "member" => Ok(WorkspaceRole::Member),
            "admin" => Ok(WorkspaceRole::Admin),
            "owner" => Ok(WorkspaceRole::Owner),
            other => Err(format!(
                "unknown role {other:?}: expected viewer, member, admin or owner"
            )),
        }
    }
}

impl Claims {
    /// The caller's role. A token without a `role` claim is a member, so
    /// tokens minted before roles existed keep working; an unknown role is
    /// an error (refused, never guessed).
    pub fn workspace_role(&self) -> Result<WorkspaceRole, String> {
        match self.role.as_deref() {
            None | Some("") => Ok(WorkspaceRole::Member),
            Some(r) => r.parse(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Option<&str>) -> Claims {
        Claims {
            org_id: "org".into(),
            user_id: None,
            sub: Some("u".into()),
            session_id: None,
            role: role.map(Into::into),
            exp: 0,
            iat: None,
            iss: None,
            aud: None,
        }
    }

    #[test]
    fn roles_parse_and_order() {
        assert_eq!(claims(None).workspace_role(), Ok(WorkspaceRole::Member));
        assert_eq!(
            claims(Some("viewer")).workspace_role(),
            Ok(WorkspaceRole::Viewer)
        );
        assert_eq!(
            claims(Some("owner")).workspace_role(),
            Ok(WorkspaceRole::Owner)
        );
        assert!(claims(Some("root")).workspace_role().is_err());
        assert!(WorkspaceRole::Owner.is_admin() && WorkspaceRole::Admin.is_admin());
        assert!(!WorkspaceRole::Member.is_admin());
        assert!(WorkspaceRole::Viewer < WorkspaceRole::Member);
    }
}
