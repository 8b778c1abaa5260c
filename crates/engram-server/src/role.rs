//! What a process does, and the backends each role needs.

use crate::ServerError;

/// What a process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process (`engram serve`).
    Serve,
    /// `IngestService` and `JobService` (`engram ingest`).
    Ingest,
    /// `RecallService` (`engram recall`).
    Recall,
    /// The enrichment consumer, with health only (`engram enrich`).
    Enrich,
}

impl Role {
    /// The subcommand spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Ingest => "ingest",
            Role::Recall => "recall",
            Role::Enrich => "enrich",
        }
    }

    pub(crate) fn ingests(self) -> bool {
        matches!(self, Role::Serve | Role::Ingest)
    }

    pub(crate) fn recalls(self) -> bool {
        matches!(self, Role::Serve | Role::Recall)
    }

    pub(crate) fn enriches(self) -> bool {
        matches!(self, Role::Serve | Role::Enrich)
    }
}

/// The backend `part` a role needs (`what` names it in the error).
pub(crate) fn need<T: Clone>(part: &Option<T>, what: &str, role: Role) -> Result<T, ServerError> {
    part.clone()
        .ok_or_else(|| ServerError::Config(format!("role {} needs a {what}", role.as_str())))
}
