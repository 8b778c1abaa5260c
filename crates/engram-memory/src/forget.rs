//! Forget: deletes memory and everything derived from it.
//!
//! The roots (turns or memory chunks, or one point named by id) go first
//! to a list, then the observations derived from them, then entity points
//! that cite any of them lose those citations and the mentions they
//! counted; an entity nothing mentions any more is deleted. Each step is
//! an idempotent delete or upsert, so a re-sent Forget after a failure
//! finishes the job and removes nothing twice.

use crate::Workspace;
use crate::validate::check_id;
use engram_api::ApiError;
use engram_api::Violations;
use engram_auth::WorkspaceRole;
use engram_core::{Cond, Kind, LedgerKind, MemoryType, PointPayload, ScopeFilter};
use engram_proto::v1::{ForgetRequest, ForgetResponse, forget_request};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Points read per scroll while deleting.
const PAGE: usize = 1_000;
/// Ids per `source_ids` condition.
const IDS_PER_QUERY: usize = 256;
/// Most derived points (observations, entities) read for one batch of ids.
const DERIVED_LIMIT: usize = 100_000;

/// What a Forget names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One point by fragment id.
    Fragment(String),
    /// One stored memory.
    Memory(String),
    /// One session of the user.
    Session(String),
    /// Everything of the user.
    User,
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Fragment(_) => "fragment",
            Target::Memory(_) => "memory",
            Target::Session(_) => "session",
            Target::User => "user",
        }
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates a Forget request.
pub(crate) fn validate(req: &ForgetRequest) -> Result<Target, ApiError> {
    let mut v = Violations::new();
    v.require_org("org_id", &req.org_id);
    check_id(&mut v, "user_id", &req.user_id);
    let target = match &req.target {
        None => {
            v.add(
                "target",
                "required: one of fragment_id, memory_id, session_id, all_user_data",
            );
            None
        }
        Some(forget_request::Target::FragmentId(id)) => {
            if !is_hex(id, 64) {
                v.add(
                    "fragment_id",
                    "must be the 64 hex characters of a fragment id",
                );
            }
            Some(Target::Fragment(id.to_ascii_lowercase()))
        }
        Some(forget_request::Target::MemoryId(id)) => {
            if !is_hex(id, 32) {
                v.add("memory_id", "must be the 32 hex characters of a memory_id");
            }
            Some(Target::Memory(id.to_ascii_lowercase()))
        }
        Some(forget_request::Target::SessionId(s)) => {
            if s.is_empty() {
                v.add("session_id", "must not be empty");
            }
            check_id(&mut v, "session_id", s);
            Some(Target::Session(s.clone()))
        }
        Some(forget_request::Target::AllUserData(all)) => {
            if !all {
                v.add(
                    "all_user_data",
                    "must be true to erase all of a user's data",
                );
            }
            Some(Target::User)
        }
    };
    v.into_result()?;
    target.ok_or_else(|| ApiError::Internal("validated target missing".to_owned()))
}

/// Counts of what went.
#[derive(Debug, Default)]
struct Removed {
    turns: u32,
    memory_chunks: u32,
    observations: u32,
    entities_removed: u32,
    entities_updated: u32,
}

impl Removed {
    fn count_root(&mut self, p: &PointPayload) {
        match p.kind {
            Kind::Turn => self.turns += 1,
            Kind::Memory => self.memory_chunks += 1,
            Kind::Observation => self.observations += 1,
            Kind::Entity => self.entities_removed += 1,
        }
    }

    fn any(&self) -> bool {
        self.turns
            + self.memory_chunks
            + self.observations
            + self.entities_removed
            + self.entities_updated
            > 0
    }
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Whether `role` acting for `user` may delete point `p`.
fn may_delete(p: &PointPayload, user: &str, role: WorkspaceRole) -> bool {
    match &p.memory {
        Some(m) if m.memory_type.is_workspace_wide() => role.is_admin(),
        _ => p.user_id == user,
    }
}

/// Runs a validated Forget for `user` (already checked: the caller may act
/// for it).
pub(crate) async fn run(
    ws: &Workspace,
    org: &str,
    user: &str,
    role: WorkspaceRole,
    target: Target,
) -> Result<ForgetResponse, ApiError> {
    let store = ws.store.as_ref();
    let mut removed = Removed::default();
    let mut filter = ScopeFilter::tenant(org);
    filter.user_id = Some(user.to_owned());
    match &target {
        Target::Fragment(id) => {
            let found = store
                .get(org, std::slice::from_ref(id))
                .await
                .map_err(ApiError::from)?;
            if let Some(p) = found.into_iter().next() {
                if !may_delete(&p, user, role) {
                    return Err(engram_api::permission_denied(
                        "the fragment belongs to another user or is workspace memory",
                    ));
                }
                delete_roots(ws, org, vec![p], &mut removed).await?;
            }
        }
        Target::Memory(id) => {
            let mut f = ScopeFilter::tenant(org);
            f.memory_ids = vec![id.clone()];
            f.kinds = vec![Kind::Memory];
            let mut checked = false;
            loop {
                let chunks = store.scroll(&f, PAGE).await.map_err(ApiError::from)?;
                if chunks.is_empty() {
                    break;
                }
                if !checked && !may_delete(&chunks[0], user, role) {
                    return Err(engram_api::permission_denied(
                        "the memory belongs to another user or is workspace memory",
                    ));
                }
                checked = true;
                delete_roots(ws, org, chunks, &mut removed).await?;
            }
            // Observations of chunks deleted by an interrupted earlier call.
            let mut f = ScopeFilter::tenant(org);
            f.memory_ids = vec![id.clone()];
            f.kinds = vec![Kind::Observation];
            drain(ws, &f, &mut removed).await?;
        }
        Target::Session(session) => {
            filter.session_id = Some(session.clone());
            filter.kinds = vec![Kind::Turn];
            loop {
                let turns = store.scroll(&filter, PAGE).await.map_err(ApiError::from)?;
                if turns.is_empty() {
                    break;
                }
                delete_roots(ws, org, turns, &mut removed).await?;
            }
            filter.kinds = vec![Kind::Observation];
            filter.metadata = Some(Cond::Not(Box::new(Cond::Exists {
                field: "memory_type".into(),
            })));
            drain(ws, &filter, &mut removed).await?;
        }
        Target::User => {
            // Conversation data and personal memories of the user, with
            // every observation and entity in the user's partition; the
            // workspace's knowledge and hive memories the user wrote stay
            // (they are the workspace's, not personal data), as do their
            // observations.
            filter.metadata = Some(Cond::Any(vec![
                Cond::Not(Box::new(Cond::Exists {
                    field: "memory_type".into(),
                })),
                Cond::eq("memory_type", MemoryType::User.as_str()),
            ]));
            drain(ws, &filter, &mut removed).await?;
        }
    }
    let erasure_tx = if removed.any() {
        let mut detail = serde_json::Map::new();
        detail.insert("target".into(), target.name().into());
        detail.insert("subject_sha256".into(), sha256_hex(user).into());
        match &target {
            Target::Fragment(id) => {
                detail.insert("fragment_id".into(), id.clone().into());
            }
            Target::Memory(id) => {
                detail.insert("memory_id".into(), id.clone().into());
            }
            Target::Session(s) => {
                detail.insert("session_sha256".into(), sha256_hex(s).into());
            }
            Target::User => {}
        }
        for (k, n) in [
            ("turns", removed.turns),
            ("memory_chunks", removed.memory_chunks),
            ("observations", removed.observations),
            ("entities_removed", removed.entities_removed),
            ("entities_updated", removed.entities_updated),
        ] {
            detail.insert(k.into(), n.into());
        }
        let key = uuid::Uuid::new_v4().to_string();
        ws.credits
            .record(org, LedgerKind::Erasure, &key, detail)
            .await
            .map_err(ApiError::from)?
    } else {
        String::new()
    };
    tracing::info!(
        org_id = %org,
        target = target.name(),
        turns = removed.turns,
        memory_chunks = removed.memory_chunks,
        observations = removed.observations,
        entities_removed = removed.entities_removed,
        entities_updated = removed.entities_updated,
        "memory forgotten"
    );
    Ok(ForgetResponse {
        turns: removed.turns,
        memory_chunks: removed.memory_chunks,
        observations: removed.observations,
        entities_removed: removed.entities_removed,
        entities_updated: removed.entities_updated,
        erasure_tx,
    })
}

/// Deletes every point matching `filter`, page by page, counting by kind.
async fn drain(
    ws: &Workspace,
    filter: &ScopeFilter,
    removed: &mut Removed,
) -> Result<(), ApiError> {
    let org = filter.org_id.clone();
    loop {
        let page = ws
            .store
            .scroll(filter, PAGE)
            .await
            .map_err(ApiError::from)?;
        if page.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = page.iter().map(|p| p.fragment_id.clone()).collect();
        ws.store.delete(&org, &ids).await.map_err(ApiError::from)?;
        for p in &page {
            removed.count_root(p);
        }
    }
}

/// Deletes `roots`, the observations derived from them, and their
/// citations in entity points.
async fn delete_roots(
    ws: &Workspace,
    org: &str,
    roots: Vec<PointPayload>,
    removed: &mut Removed,
) -> Result<(), ApiError> {
    let store = ws.store.as_ref();
    let root_ids: Vec<String> = roots.iter().map(|p| p.fragment_id.clone()).collect();
    let mut observations: Vec<PointPayload> = Vec::new();
    let mut seen = HashSet::new();
    for ids in root_ids.chunks(IDS_PER_QUERY) {
        let mut f = ScopeFilter::tenant(org);
        f.kinds = vec![Kind::Observation];
        f.source_ids = ids.to_vec();
        // An observation cites one to a few turns: the page bound is far
        // above what 256 roots derive.
        let page = store
            .scroll(&f, DERIVED_LIMIT)
            .await
            .map_err(ApiError::from)?;
        observations.extend(
            page.into_iter()
                .filter(|p| seen.insert(p.fragment_id.clone())),
        );
    }
    // Entities first: if this fails, the roots are still there to find
    // them again on the caller's retry.
    // Only turns and chunks count as mentions; observations are citations.
    let mention_ids: HashSet<&str> = roots
        .iter()
        .filter(|p| matches!(p.kind, Kind::Turn | Kind::Memory))
        .map(|p| p.fragment_id.as_str())
        .collect();
    let mut cited: Vec<String> = root_ids.clone();
    cited.extend(observations.iter().map(|o| o.fragment_id.clone()));
    let users: HashSet<&str> = roots.iter().map(|p| p.user_id.as_str()).collect();
    for user in users {
        update_entities(ws, org, user, &cited, &mention_ids, removed).await?;
    }
    let obs_ids: Vec<String> = observations.iter().map(|o| o.fragment_id.clone()).collect();
    if !obs_ids.is_empty() {
        store.delete(org, &obs_ids).await.map_err(ApiError::from)?;
        removed.observations += obs_ids.len() as u32;
    }
    store.delete(org, &root_ids).await.map_err(ApiError::from)?;
    for p in &roots {
        removed.count_root(p);
    }
    Ok(())
}

/// Removes the citations of `cited` from the user's entity points:
/// `mention_ids` (turns, chunks) each counted one mention. An entity left
/// with no citation or no mention is deleted; the others are rewritten.
async fn update_entities(
    ws: &Workspace,
    org: &str,
    user: &str,
    cited: &[String],
    mention_ids: &HashSet<&str>,
    removed: &mut Removed,
) -> Result<(), ApiError> {
    let gone: HashSet<&str> = cited.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let mut rewrite = Vec::new();
    let mut delete = Vec::new();
    for ids in cited.chunks(IDS_PER_QUERY) {
        let mut f = ScopeFilter::tenant(org);
        f.user_id = Some(user.to_owned());
        f.kinds = vec![Kind::Entity];
        f.source_ids = ids.to_vec();
        for mut e in ws
            .store
            .scroll(&f, DERIVED_LIMIT)
            .await
            .map_err(ApiError::from)?
        {
            if !seen.insert(e.fragment_id.clone()) {
                continue;
            }
            let lost = e
                .source_ids
                .iter()
                .filter(|s| mention_ids.contains(s.as_str()))
                .count() as u32;
            e.source_ids.retain(|s| !gone.contains(s.as_str()));
            let mentions = e.mentions.unwrap_or(0).saturating_sub(lost);
            if e.source_ids.is_empty() || mentions == 0 {
                delete.push(e.fragment_id);
            } else {
                e.mentions = Some(mentions);
                rewrite.push(e);
            }
        }
    }
    if !rewrite.is_empty() {
        let texts: Vec<String> = rewrite.iter().map(|e| e.text.clone()).collect();
        let vectors = ws.embedder.embed(&texts).await.map_err(ApiError::from)?;
        // The user's entity lengths, read from the store: forgetting is rare
        // enough that a table kept for it would mostly be stale.
        let points = engram_core::CorpusLengths::new()
            .points(ws.store.as_ref(), ws.embedder.as_ref(), rewrite, vectors)
            .await
            .map_err(ApiError::from)?;
        removed.entities_updated += points.len() as u32;
        ws.store.upsert(points).await.map_err(ApiError::from)?;
    }
    if !delete.is_empty() {
        removed.entities_removed += delete.len() as u32;
        ws.store
            .delete(org, &delete)
            .await
            .map_err(ApiError::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_required_and_checked() {
        let fields =
            |req: ForgetRequest| -> Vec<String> { validate(&req).unwrap_err().violated_fields() };
        let base = ForgetRequest {
            org_id: "org".into(),
            ..Default::default()
        };
        assert_eq!(fields(base.clone()), ["target"]);
        let bad_id = ForgetRequest {
            target: Some(forget_request::Target::MemoryId("xyz".into())),
            ..base.clone()
        };
        assert_eq!(fields(bad_id), ["memory_id"]);
        let not_all = ForgetRequest {
            target: Some(forget_request::Target::AllUserData(false)),
            ..base.clone()
        };
        assert_eq!(fields(not_all), ["all_user_data"]);
        let ok = ForgetRequest {
            target: Some(forget_request::Target::SessionId("s1".into())),
            ..base
        };
        assert_eq!(validate(&ok).unwrap(), Target::Session("s1".into()));
    }
}
