//! From an extraction to stored points: observation points linked to their
//! source turns, entity points merged with what the store already knows.

use engram_core::{EntityKind, Kind, PointPayload, Role, Scope, StoreError, VectorStore, ids};
use engram_extract::{EntityMention, Extraction, TurnInput};
use engram_proto::events::v1::TurnsIngested;
use std::collections::{HashMap, HashSet};

/// Most source ids an entity point keeps. A name said in every turn would
/// otherwise grow one payload without bound; the mention count keeps
/// counting past it.
pub(crate) const MAX_ENTITY_SOURCES: usize = 500;

/// The scope of an event.
pub(crate) fn scope(event: &TurnsIngested) -> Scope {
    Scope {
        org_id: event.org_id.clone(),
        user_id: event.user_id.clone(),
        session_id: event.session_id.clone(),
    }
}

/// The turns of an event as the extractor reads them. A turn whose role
/// does not parse (an event from a newer producer) is read as a user turn.
pub fn turn_inputs(event: &TurnsIngested) -> Vec<TurnInput> {
    event
        .turns
        .iter()
        .map(|t| TurnInput {
            fragment_id: t.fragment_id.clone(),
            role: t.role.parse().unwrap_or(Role::User),
            text: t.text.clone(),
            ts_ms: t.ts_ms,
            observations: t.observations.clone(),
        })
        .collect()
}

/// The observation payloads of an extraction, one per distinct id, with the
/// ids of the entities each mentions (by entity key).
pub(crate) fn observation_payloads(
    event: &TurnsIngested,
    extraction: &Extraction,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Vec<(PointPayload, Vec<String>)> {
    let scope = scope(event);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for obs in &extraction.observations {
        let text = obs.text.trim();
        let Some(first) = obs.source_ids.first() else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let id = ids::observation_id(&scope, first, text);
        if !seen.insert(id.clone()) {
            continue;
        }
        out.push((
            PointPayload {
                fragment_id: id,
                org_id: scope.org_id.clone(),
                user_id: scope.user_id.clone(),
                session_id: scope.session_id.clone(),
                kind: Kind::Observation,
                role: None,
                text: text.to_owned(),
                ts_ms: obs.ts_ms,
                job_id: event.job_id.clone(),
                source_ids: obs.source_ids.clone(),
                entity_kind: None,
                mentions: None,
                subject: Some(obs.subject.clone()),
                event_ms: obs.event_ms,
                metadata: metadata.clone(),
                memory: None,
                tokens: None,
            },
            obs.entity_keys.clone(),
        ));
    }
    out
}

/// The id an entity mention is stored under. People share an id by first
/// name inside one user's memory ("Ana" and "Ana Lopez" are one entity);
/// when the stored entity under that id carries a different full name, the
/// mention is another person and gets an id of its own full name.
pub(crate) fn entity_point_id(
    org_id: &str,
    user_id: &str,
    mention: &EntityMention,
    stored: Option<&PointPayload>,
) -> String {
    let base = ids::entity_id(org_id, user_id, &mention.key);
    if mention.kind != EntityKind::Person {
        return base;
    }
    match stored {
        Some(p) if conflicting_full_names(&p.text, &mention.label) => ids::entity_id(
            org_id,
            user_id,
            &format!("{}/{}", mention.key, mention.label.to_lowercase()),
        ),
        _ => base,
    }
}

/// Two labels that both give a full name, and not the same one.
fn conflicting_full_names(a: &str, b: &str) -> bool {
    a.contains(' ') && b.contains(' ') && !a.eq_ignore_ascii_case(b)
}

/// An entity point's payload after merging a mention into what was stored.
///
/// `links` are the fragment ids that mention it in this write: its turns
/// followed by the observations that name it. The mention count grows by
/// the turns not linked before, so a redelivered write counts nothing
/// twice.
pub(crate) fn merged_entity(
    event: &TurnsIngested,
    id: String,
    mention: &EntityMention,
    links: &[String],
    stored: Option<PointPayload>,
    ts_ms: i64,
) -> PointPayload {
    let (mut sources, mut mentions, mut label, first_ms) = match stored {
        Some(p) => (
            p.source_ids,
            p.mentions.unwrap_or(0),
            p.text,
            p.ts_ms.min(ts_ms),
        ),
        None => (Vec::new(), 0, String::new(), ts_ms),
    };
    let known: HashSet<String> = sources.iter().cloned().collect();
    let new_turns = mention
        .source_ids
        .iter()
        .filter(|id| !known.contains(*id))
        .count() as u32;
    mentions += new_turns;
    for link in links {
        if !known.contains(link) && !sources.contains(link) {
            sources.push(link.clone());
        }
    }
    if sources.len() > MAX_ENTITY_SOURCES {
        // Keep the most recent links: newer memory is likelier to be asked.
        sources.drain(..sources.len() - MAX_ENTITY_SOURCES);
    }
    if mention.label.chars().count() > label.chars().count() {
        label = mention.label.clone();
    }
    PointPayload {
        fragment_id: id,
        org_id: event.org_id.clone(),
        user_id: event.user_id.clone(),
        // Entities span the sessions of their user.
        session_id: String::new(),
        kind: Kind::Entity,
        role: None,
        text: label,
        ts_ms: first_ms,
        job_id: event.job_id.clone(),
        source_ids: sources,
        entity_kind: Some(mention.kind),
        mentions: Some(mentions.max(1)),
        subject: None,
        event_ms: None,
        metadata: serde_json::Map::new(),
        memory: None,
        tokens: None,
    }
}

/// The entity payloads of an extraction, merged with the stored entities.
///
/// Reads the stored entities once (by base id, then by the full-name ids of
/// conflicting people), so it costs one or two store reads per write.
pub(crate) async fn entity_payloads(
    store: &dyn VectorStore,
    event: &TurnsIngested,
    extraction: &Extraction,
    observations: &[(PointPayload, Vec<String>)],
) -> Result<Vec<PointPayload>, StoreError> {
    if extraction.entities.is_empty() {
        return Ok(Vec::new());
    }
    let (org, user) = (event.org_id.as_str(), event.user_id.as_str());
    let base_ids: Vec<String> = extraction
        .entities
        .iter()
        .map(|m| ids::entity_id(org, user, &m.key))
        .collect();
    let mut stored: HashMap<String, PointPayload> = store
        .get(org, &base_ids)
        .await?
        .into_iter()
        .map(|p| (p.fragment_id.clone(), p))
        .collect();
    let ids: Vec<String> = extraction
        .entities
        .iter()
        .zip(&base_ids)
        .map(|(m, base)| entity_point_id(org, user, m, stored.get(base)))
        .collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !stored.contains_key(*id) && !base_ids.contains(id))
        .cloned()
        .collect();
    if !missing.is_empty() {
        for p in store.get(org, &missing).await? {
            stored.insert(p.fragment_id.clone(), p);
        }
    }
    let ts_of: HashMap<&str, i64> = event
        .turns
        .iter()
        .map(|t| (t.fragment_id.as_str(), t.ts_ms))
        .collect();
    // Two mentions can land on one id (a first name and a conflicting full
    // name never do, but keys differing only by case could): merge in order.
    let mut merged: HashMap<String, PointPayload> = HashMap::new();
    let mut order = Vec::new();
    let mut listed = HashSet::new();
    for (mention, id) in extraction.entities.iter().zip(ids) {
        let mut links = mention.source_ids.clone();
        links.extend(
            observations
                .iter()
                .filter(|(_, keys)| keys.contains(&mention.key))
                .map(|(p, _)| p.fragment_id.clone()),
        );
        let ts_ms = mention
            .source_ids
            .iter()
            .filter_map(|s| ts_of.get(s.as_str()).copied())
            .min()
            .unwrap_or_default();
        let prior = merged.remove(&id).or_else(|| stored.remove(&id));
        if listed.insert(id.clone()) {
            order.push(id.clone());
        }
        let payload = merged_entity(event, id.clone(), mention, &links, prior, ts_ms);
        merged.insert(id, payload);
    }
    Ok(order
        .into_iter()
        .filter_map(|id| merged.remove(&id))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> TurnsIngested {
        TurnsIngested {
            job_id: "j".into(),
            org_id: "o".into(),
            user_id: "u".into(),
            session_id: "s".into(),
            ..Default::default()
        }
    }

    fn mention(label: &str, turns: &[&str]) -> EntityMention {
        EntityMention {
            key: format!("person:{}", label.split(' ').next().unwrap().to_lowercase()),
            label: label.into(),
            kind: EntityKind::Person,
            source_ids: turns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn mentions_count_distinct_turns_and_redelivery_adds_nothing() {
        let m = mention("Ana", &["t1", "t2"]);
        let first = merged_entity(&event(), "e".into(), &m, &m.source_ids, None, 5);
        assert_eq!(first.mentions, Some(2));
        assert_eq!(first.text, "Ana");
        let again = merged_entity(
            &event(),
            "e".into(),
            &m,
            &m.source_ids,
            Some(first.clone()),
            5,
        );
        assert_eq!(again.mentions, Some(2));
        assert_eq!(again.source_ids, first.source_ids);
        let full = mention("Ana Lopez", &["t3"]);
        let links = vec!["t3".to_string(), "obs1".to_string()];
        let grown = merged_entity(&event(), "e".into(), &full, &links, Some(again), 9);
        assert_eq!(grown.mentions, Some(3));
        assert_eq!(grown.text, "Ana Lopez");
        assert_eq!(grown.source_ids, vec!["t1", "t2", "t3", "obs1"]);
        assert_eq!(grown.ts_ms, 5);
        assert_eq!(grown.session_id, "");
    }

    #[test]
    fn a_different_full_name_is_a_different_person() {
        let stored = merged_entity(
            &event(),
            ids::entity_id("o", "u", "person:ana"),
            &mention("Ana Lopez", &["t1"]),
            &[],
            None,
            1,
        );
        let same = mention("Ana", &["t2"]);
        let other = mention("Ana Smith", &["t3"]);
        let base = ids::entity_id("o", "u", "person:ana");
        assert_eq!(entity_point_id("o", "u", &same, Some(&stored)), base);
        assert_eq!(
            entity_point_id("o", "u", &mention("ana lopez", &[]), Some(&stored)),
            base
        );
        assert_ne!(entity_point_id("o", "u", &other, Some(&stored)), base);
        assert_eq!(entity_point_id("o", "u", &other, None), base);
    }
}
