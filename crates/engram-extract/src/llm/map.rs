//! Validating the model's answer and mapping it onto [`Observation`]s and
//! [`EntityMention`]s; merging the extractions of several calls.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, NaiveTime};
use engram_core::{EntityKind, Role};

use super::wire::Answer;
use crate::dates::find_dates;
use crate::{Category, EntityMention, Extraction, Observation, TurnInput};

/// Longest observation text accepted, in characters.
pub(super) const MAX_TEXT_CHARS: usize = 500;
/// Longest subject accepted, in characters.
const MAX_SUBJECT_CHARS: usize = 100;
/// Longest entity label accepted, in characters.
const MAX_LABEL_CHARS: usize = 200;

/// Checks `answer` against the call's `turns` and maps it. Caller-supplied
/// observations come first for their turn, whatever the model said.
pub(super) fn to_extraction(turns: &[TurnInput], answer: Answer) -> Result<Extraction, String> {
    let entities = entities(turns, answer.entities)?;

    let mut by_turn: Vec<Vec<Observation>> = vec![Vec::new(); turns.len()];
    for (i, o) in answer.observations.into_iter().enumerate() {
        let turn = turns
            .get(o.turn)
            .ok_or_else(|| format!("observation {i}: turn {} out of range", o.turn))?;
        let category = category(&o.category)
            .ok_or_else(|| format!("observation {i}: unknown category {:?}", o.category))?;
        let subject = collapse(&o.subject);
        if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(format!("observation {i}: subject empty or too long"));
        }
        let mut text = collapse(&o.text);
        if text.is_empty() {
            return Err(format!("observation {i}: empty text"));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(format!(
                "observation {i}: text longer than {MAX_TEXT_CHARS} characters"
            ));
        }
        if !text.ends_with(['.', '!', '?']) {
            text.push('.');
        }
        let event_ms = match o.date.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(date) => Some(parse_date(date).map_err(|e| format!("observation {i}: {e}"))?),
        };
        by_turn[o.turn].push(Observation {
            text,
            subject,
            category,
            source_ids: vec![turn.fragment_id.clone()],
            ts_ms: turn.ts_ms,
            event_ms,
            entity_keys: Vec::new(),
        });
    }

    let mut observations = Vec::new();
    for (turn, found) in turns.iter().zip(by_turn) {
        observations.extend(given(turn));
        observations.extend(found);
    }
    for o in &mut observations {
        o.entity_keys = entities
            .iter()
            .filter(|e| e.mentioned_in(&o.text))
            .map(|e| e.mention.key.clone())
            .collect();
    }
    Ok(Extraction {
        observations,
        entities: entities.into_iter().map(|e| e.mention).collect(),
        ..Extraction::default()
    })
}

/// An entity of the answer with the lowercased forms that mark a mention.
struct Found {
    mention: EntityMention,
    needles: Vec<String>,
    turns: BTreeSet<usize>,
}

impl Found {
    fn mentioned_in(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.needles.iter().any(|n| contains_word(&text, n))
    }
}

/// Validates and merges (by key) the answer's entities.
fn entities(
    turns: &[TurnInput],
    answer: Vec<super::wire::AnswerEntity>,
) -> Result<Vec<Found>, String> {
    let mut found: Vec<Found> = Vec::new();
    let mut by_key: HashMap<String, usize> = HashMap::new();
    for (i, e) in answer.into_iter().enumerate() {
        let kind =
            entity_kind(&e.kind).ok_or_else(|| format!("entity {i}: unknown kind {:?}", e.kind))?;
        let label = strip_possessive(&collapse(&e.label)).to_owned();
        if label.is_empty() || label.chars().count() > MAX_LABEL_CHARS {
            return Err(format!("entity {i}: label empty or too long"));
        }
        if e.turns.is_empty() {
            return Err(format!("entity {i}: no turns"));
        }
        if let Some(t) = e.turns.iter().find(|&&t| t >= turns.len()) {
            return Err(format!("entity {i}: turn {t} out of range"));
        }
        let first_turn = e.turns.iter().min().map_or(0, |&t| turns[t].ts_ms);
        let normalized = match kind {
            EntityKind::Date => date_key(&label, first_turn),
            _ => None,
        }
        .unwrap_or_else(|| normalize(kind, &label));
        let key = format!("{}:{normalized}", kind.as_str());
        let index = *by_key.entry(key.clone()).or_insert_with(|| {
            found.push(Found {
                mention: EntityMention {
                    key,
                    label: label.clone(),
                    kind,
                    source_ids: Vec::new(),
                },
                needles: if kind == EntityKind::Date {
                    Vec::new()
                } else {
                    vec![normalized.clone()]
                },
                turns: BTreeSet::new(),
            });
            found.len() - 1
        });
        let entry = &mut found[index];
        if label.chars().count() > entry.mention.label.chars().count() {
            entry.mention.label.clone_from(&label);
        }
        let needle = label.to_lowercase();
        if !entry.needles.contains(&needle) {
            entry.needles.push(needle);
        }
        entry.turns.extend(e.turns);
    }
    for entry in &mut found {
        for &t in &entry.turns {
            let id = &turns[t].fragment_id;
            if !entry.mention.source_ids.contains(id) {
                entry.mention.source_ids.push(id.clone());
            }
        }
    }
    Ok(found)
}

/// The normalized part of an entity key: lowercased, possessive stripped,
/// whitespace collapsed; a person's first name (titles such as "Dr"
/// skipped), as the rules key people.
pub(super) fn normalize(kind: EntityKind, label: &str) -> String {
    let lower = strip_possessive(&collapse(label)).to_lowercase();
    match kind {
        EntityKind::Person => lower
            .split([' ', '.'])
            .find(|w| !w.is_empty() && !matches!(*w, "dr" | "mr" | "mrs" | "ms" | "prof" | "miss"))
            .unwrap_or(&lower)
            .to_owned(),
        _ => lower,
    }
}

/// The rules' key part for a date label that is exactly one calendar
/// expression ("7 May 2023" → `"2023-05-07/day"`, "2022" read as "in
/// 2022"), resolved against the time of the first turn that mentions it;
/// `None` for anything else.
fn date_key(label: &str, ts_ms: i64) -> Option<String> {
    let anchor = DateTime::from_timestamp_millis(ts_ms)?.date_naive();
    [label.to_owned(), format!("in {label}")]
        .iter()
        .find_map(|text| match find_dates(text, anchor).as_slice() {
            [m] if text[..m.start].trim().is_empty() && text[m.end..].trim().is_empty() => {
                Some(m.period.key())
            }
            _ => None,
        })
}

/// "Ana's" → "Ana", "James'" → "James".
fn strip_possessive(label: &str) -> &str {
    for suffix in ["'s", "’s", "'S", "’S"] {
        if let Some(stem) = label.strip_suffix(suffix) {
            return stem.trim_end();
        }
    }
    for suffix in ['\'', '’'] {
        if let Some(stem) = label.strip_suffix(suffix)
            && stem.ends_with(['s', 'S'])
        {
            return stem;
        }
    }
    label
}

/// Trimmed, each whitespace run one space.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `needle` occurs in `haystack` not inside a word (both lowercase).
fn contains_word(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// The categories a model may use (not `given`).
fn category(s: &str) -> Option<Category> {
    Some(match s {
        "preference" => Category::Preference,
        "plan" => Category::Plan,
        "health" => Category::Health,
        "possession" => Category::Possession,
        "relationship" => Category::Relationship,
        "place" => Category::Place,
        "work" => Category::Work,
        "event" => Category::Event,
        "other" => Category::Other,
        _ => return None,
    })
}

fn entity_kind(s: &str) -> Option<EntityKind> {
    Some(match s {
        "person" => EntityKind::Person,
        "place" => EntityKind::Place,
        "organization" => EntityKind::Organization,
        "product" => EntityKind::Product,
        "date" => EntityKind::Date,
        "quantity" => EntityKind::Quantity,
        _ => return None,
    })
}

/// `YYYY-MM-DD`, `YYYY-MM` or `YYYY` → epoch ms of the start (UTC
/// midnight) of that day, month or year.
pub(super) fn parse_date(s: &str) -> Result<i64, String> {
    let bad = || format!("date {s:?} is not YYYY-MM-DD, YYYY-MM or YYYY");
    let parts: Vec<&str> = s.split('-').collect();
    let widths: &[usize] = match parts.len() {
        1 => &[4],
        2 => &[4, 2],
        3 => &[4, 2, 2],
        _ => return Err(bad()),
    };
    let mut numbers = [1u32; 3];
    for ((part, &width), number) in parts.iter().zip(widths).zip(&mut numbers) {
        if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        *number = part.parse().map_err(|_| bad())?;
    }
    let [year, month, day] = numbers;
    if year == 0 {
        return Err(bad());
    }
    let year = i32::try_from(year).map_err(|_| bad())?;
    let date = NaiveDate::from_ymd_opt(year, month, day)
        .ok_or_else(|| format!("date {s:?} does not exist"))?;
    Ok(date.and_time(NaiveTime::MIN).and_utc().timestamp_millis())
}

/// A turn's caller-supplied observations as the rules give them (so that
/// a call that falls back yields the same ones): trimmed, blank ones left
/// out, about the turn's speaker, dated by the first date they name.
pub(crate) fn given(turn: &TurnInput) -> impl Iterator<Item = Observation> + '_ {
    let subject = speaker(turn);
    let anchor = DateTime::from_timestamp_millis(turn.ts_ms)
        .map_or_else(NaiveDate::default, |d| d.date_naive());
    turn.observations
        .iter()
        .map(|text| text.trim())
        .filter(|text| !text.is_empty())
        .map(move |text| Observation {
            text: text.to_owned(),
            subject: subject.clone(),
            category: Category::Given,
            source_ids: vec![turn.fragment_id.clone()],
            ts_ms: turn.ts_ms,
            event_ms: find_dates(text, anchor).first().map(|m| m.period.from_ms()),
            entity_keys: Vec::new(),
        })
}

/// Who a turn's caller-supplied observations are about: the speaker a
/// leading `"Name: "` names, else the role ("User", "Assistant", ...).
pub(super) fn speaker(turn: &TurnInput) -> String {
    if let Some(name) = speaker_name(&turn.text) {
        return name.to_owned();
    }
    match turn.role {
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::System => "System",
        Role::Tool => "Tool",
    }
    .to_owned()
}

/// A leading `"Name: "` names the speaker (the rules' test, so both
/// extractors agree on who spoke).
fn speaker_name(text: &str) -> Option<&str> {
    crate::speaker::split_speaker(text).map(|(name, _)| name)
}

/// Concatenates the extractions of several calls (in turn order):
/// observations deduplicated on (subject, text) — a repeat adds its sources
/// and keys to the first, and makes it `Given` when the repeat was given —
/// and entities merged by key (longest label, sources in input order).
pub(super) fn merge(parts: Vec<Extraction>) -> Extraction {
    let mut out = Extraction::default();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut keys: HashMap<String, usize> = HashMap::new();
    for part in parts {
        out.usage.tokens_in += part.usage.tokens_in;
        out.usage.tokens_out += part.usage.tokens_out;
        for o in part.observations {
            match seen.get(&(o.subject.clone(), o.text.clone())) {
                Some(&i) => {
                    let kept = &mut out.observations[i];
                    if o.category == Category::Given {
                        kept.category = Category::Given;
                    }
                    extend_distinct(&mut kept.source_ids, o.source_ids);
                    extend_distinct(&mut kept.entity_keys, o.entity_keys);
                }
                None => {
                    seen.insert((o.subject.clone(), o.text.clone()), out.observations.len());
                    out.observations.push(o);
                }
            }
        }
        for e in part.entities {
            match keys.get(&e.key) {
                Some(&i) => {
                    let kept = &mut out.entities[i];
                    if e.label.chars().count() > kept.label.chars().count() {
                        kept.label = e.label;
                    }
                    extend_distinct(&mut kept.source_ids, e.source_ids);
                }
                None => {
                    keys.insert(e.key.clone(), out.entities.len());
                    out.entities.push(e);
                }
            }
        }
    }
    out
}

fn extend_distinct(into: &mut Vec<String>, from: Vec<String>) {
    for item in from {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

#[cfg(test)]
mod tests;
