//! The RealMemBench data (`../shared/bench/realmem/*.json`): one file per
//! person, each a list of user–assistant sessions whose query turns carry
//! their gold sessions on the following Assistant turn.
//!
//! The files differ from their README in small ways, all smoothed over
//! here: `is_query` is a JSON boolean (the README says `"True"`/`"False"`
//! strings; both are accepted) and is missing on one turn (read as not a
//! query); `memory_session_uuids` is a JSON list in every file (the README
//! says most files hold a string with a Python list; that form, a bare
//! uuid and a list of such strings are accepted too); six Assistant turns
//! are empty; a few turns carry a `query_id` without being queries, and a
//! few Assistant turns carry gold after a turn that is not a query. Those
//! are counted, never scored.

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// People `0..FIT_PEOPLE` of the files sorted by name fit the confidence
/// model; the rest are reported. The split is taken over all files in the
/// directory, before `--people` or `--limit-people` choose some, so a
/// person's split never depends on the selection.
pub const FIT_PEOPLE: usize = 5;

/// Which half of the people a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Tuning and model fitting happen here only.
    Fit,
    /// Figures reported as results; never fitted on.
    Report,
}

impl Split {
    /// The split of the person at `index` in the name-sorted file list.
    pub fn of_index(index: usize) -> Self {
        if index < FIT_PEOPLE {
            Self::Fit
        } else {
            Self::Report
        }
    }

    /// `fit` or `report`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fit => "fit",
            Self::Report => "report",
        }
    }
}

/// Who spoke a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// `"User"`, sent as role `user`.
    User,
    /// `"Assistant"`, sent as role `assistant`.
    Assistant,
}

impl Speaker {
    /// The Engram role of the speaker.
    pub fn role(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One turn, reduced to what may be ingested: `extracted_memory` and
/// `memory_used` are never read, since they hold the answer.
#[derive(Debug, Clone)]
pub struct DialogTurn {
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said (possibly empty: six turns are).
    pub content: String,
}

/// A query turn with its gold.
#[derive(Debug, Clone)]
pub struct Query {
    /// `query_id`, unique within a person (e.g. `Q-0001`).
    pub query_id: String,
    /// Index of the query turn in its session.
    pub turn_index: usize,
    /// The user's message, sent as the recall query.
    pub text: String,
    /// Gold session uuids, deduplicated, in file order; empty when the next
    /// turn carries no gold.
    pub gold: Vec<String>,
    /// Whether the next turn was an Assistant turn with a gold field.
    pub has_gold_turn: bool,
    /// Whether the gold field needed lenient parsing (not a clean list).
    pub gold_repaired: bool,
    /// `category_name`, e.g. `Dynamic Incremental`.
    pub category: Option<String>,
    /// `session_type`: `single_session` or `multi_session`.
    pub session_type: Option<String>,
    /// `topic`.
    pub topic: Option<String>,
}

/// One session of a person.
#[derive(Debug, Clone)]
pub struct Session {
    /// `session_uuid` (8 hex), the session id sent to Engram.
    pub uuid: String,
    /// `session_identifier`, e.g. `Enhanced:S10059`.
    pub identifier: String,
    /// The session's date at 12:00:00Z.
    pub date: DateTime<Utc>,
    /// Turns in order.
    pub turns: Vec<DialogTurn>,
    /// Query turns in order.
    pub queries: Vec<Query>,
}

/// Oddities of a file that are counted rather than scored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DataNotes {
    /// Turns with a `query_id` but `is_query` false.
    pub query_ids_on_non_queries: usize,
    /// Assistant turns carrying gold after a turn that is not a query.
    pub gold_turns_after_non_queries: usize,
    /// Turns without an `is_query` field (read as not a query).
    pub turns_without_is_query: usize,
    /// Sessions dated before the session preceding them in the file.
    pub sessions_dated_backwards: usize,
}

/// One person's file.
#[derive(Debug, Clone)]
pub struct Person {
    /// `_metadata.person_name` (file stem when absent), e.g. `Kim_Ji_young`.
    pub name: String,
    /// The Engram user id: [`slug`] of the name.
    pub slug: String,
    /// File name.
    pub file: String,
    /// Fit or report.
    pub split: Split,
    /// Sessions in file order.
    pub sessions: Vec<Session>,
    /// What was odd in the file.
    pub notes: DataNotes,
}

/// A user id for `name`: lowercase letters and digits, every other run of
/// characters one `-`, e.g. `Liam_O_Connor` → `liam-o-connor`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Parses a session's `current_time`, e.g. `"2025-12-21 (Sunday)"`, to
/// that day at 12:00:00Z. The weekday is ignored (it always agrees).
pub fn parse_session_date(s: &str) -> anyhow::Result<DateTime<Utc>> {
    let day = s.split_whitespace().next().unwrap_or_default();
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(12, 0, 0))
        .map(|t| t.and_utc())
        .with_context(|| format!("session date {s:?} is not like \"2025-12-21 (Sunday)\""))
}

/// Reads a truth value written as a JSON boolean or as `"True"`/`"False"`;
/// missing or null is false.
pub fn parse_flag(v: Option<&Value>) -> anyhow::Result<bool> {
    match v {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" | "" => Ok(false),
            other => bail!("{other:?} is not a truth value"),
        },
        Some(other) => bail!("{other} is not a truth value"),
    }
}

/// Parses a `memory_session_uuids` field into deduplicated uuids (first
/// occurrence kept) and says whether it needed lenient parsing.
///
/// Accepted: a JSON list of uuids (clean); a string holding a Python or
/// JSON list (`"['a', 'b']"`, `'["a"]'`, `"[]"`); a bare uuid string; a list
/// whose items are such strings; null or missing (no gold). Each string is
/// split on commas after dropping brackets, and each piece is trimmed of
/// whitespace and quotes.
pub fn parse_gold(v: Option<&Value>) -> anyhow::Result<(Vec<String>, bool)> {
    let mut out: Vec<String> = Vec::new();
    let mut repaired = false;
    let mut take = |s: &str, out: &mut Vec<String>| {
        for piece in s.split([',', '[', ']']) {
            let id = piece.trim_matches(|c: char| c.is_whitespace() || c == '\'' || c == '"');
            if id.is_empty() {
                continue;
            }
            if id != s {
                repaired = true;
            }
            if !out.iter().any(|o| o == id) {
                out.push(id.to_string());
            }
        }
    };
    match v {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => {
            take(s, &mut out);
            // Even "[]" or a bare uuid is not the documented list form.
            repaired = true;
        }
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => take(s, &mut out),
                    other => bail!("gold item {other} is not a string"),
                }
            }
        }
        Some(other) => bail!("gold {other} is neither a list nor a string"),
    }
    Ok((out, repaired))
}

fn str_field<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("missing string field {key:?}"))
}

fn opt_str(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Parses one session object, adding its oddities to `notes`.
pub fn parse_session(v: &Value, notes: &mut DataNotes) -> anyhow::Result<Session> {
    let uuid = str_field(v, "session_uuid")?.trim().to_string();
    let ctx = || format!("session {uuid}");
    let date = parse_session_date(str_field(v, "current_time").with_context(ctx)?)?;
    let raw = v
        .get("dialogue_turns")
        .and_then(Value::as_array)
        .context("missing dialogue_turns")
        .with_context(ctx)?;
    let mut turns = Vec::with_capacity(raw.len());
    let mut flags = Vec::with_capacity(raw.len());
    for (i, t) in raw.iter().enumerate() {
        let speaker = match str_field(t, "speaker").with_context(ctx)? {
            "User" => Speaker::User,
            "Assistant" => Speaker::Assistant,
            other => bail!("turn {i} of session {uuid} is by {other:?}"),
        };
        let is_query = parse_flag(t.get("is_query"))
            .with_context(|| format!("is_query of turn {i} of session {uuid}"))?;
        notes.turns_without_is_query += usize::from(t.get("is_query").is_none());
        if !is_query && t.get("query_id").is_some_and(|q| !q.is_null()) {
            notes.query_ids_on_non_queries += 1;
        }
        let after_query = i > 0 && flags[i - 1];
        if speaker == Speaker::Assistant && t.get("memory_session_uuids").is_some() && !after_query
        {
            notes.gold_turns_after_non_queries += 1;
        }
        flags.push(is_query);
        turns.push(DialogTurn {
            speaker,
            content: t
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    }
    let mut queries = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        if !flags[i] {
            continue;
        }
        let next = raw
            .get(i + 1)
            .filter(|n| n.get("speaker").and_then(Value::as_str) == Some("Assistant"));
        let gold_field = next.and_then(|n| n.get("memory_session_uuids"));
        let (gold, gold_repaired) = parse_gold(gold_field)
            .with_context(|| format!("gold of turn {} of session {uuid}", i + 1))?;
        queries.push(Query {
            query_id: opt_str(t, "query_id").unwrap_or_else(|| format!("{uuid}:{i}")),
            turn_index: i,
            text: turns[i].content.clone(),
            gold,
            has_gold_turn: gold_field.is_some(),
            gold_repaired,
            category: opt_str(t, "category_name"),
            session_type: opt_str(t, "session_type"),
            topic: opt_str(t, "topic"),
        });
    }
    Ok(Session {
        identifier: opt_str(v, "session_identifier").unwrap_or_default(),
        uuid,
        date,
        turns,
        queries,
    })
}

/// Parses one person's file.
pub fn parse_person(root: &Value, file: &str, split: Split) -> anyhow::Result<Person> {
    let stem = file.split("_dialogues").next().unwrap_or(file);
    let name = root
        .get("_metadata")
        .and_then(|m| opt_str(m, "person_name"))
        .unwrap_or_else(|| stem.to_string());
    let mut notes = DataNotes::default();
    let sessions = root
        .get("dialogues")
        .and_then(Value::as_array)
        .context("missing dialogues")?
        .iter()
        .map(|s| parse_session(s, &mut notes))
        .collect::<anyhow::Result<Vec<_>>>()?;
    notes.sessions_dated_backwards = sessions
        .windows(2)
        .filter(|w| w[1].date < w[0].date)
        .count();
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = sessions.iter().find(|s| !seen.insert(s.uuid.as_str())) {
        bail!("session uuid {} appears twice", dup.uuid);
    }
    Ok(Person {
        slug: slug(&name),
        name,
        file: file.to_string(),
        split,
        sessions,
        notes,
    })
}

/// The `*.json` files of `dir`, sorted by file name.
pub fn person_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read RealMem data {} (pass --data)", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "json"));
    files.sort();
    if files.is_empty() {
        bail!("no .json files in {}", dir.display());
    }
    Ok(files)
}

/// Reads the people of `dir` chosen by `wanted` (names, slugs or file
/// stems, any case; all when empty), each with the split of its position
/// among all files.
pub fn load(dir: &Path, wanted: &[String]) -> anyhow::Result<Vec<Person>> {
    let files = person_files(dir)?;
    let wanted: Vec<String> = wanted.iter().map(|w| slug(w)).collect();
    let mut matched = vec![false; wanted.len()];
    let mut people = Vec::new();
    for (index, path) in files.iter().enumerate() {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = slug(file.split("_dialogues").next().unwrap_or(&file));
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let root: Value =
            serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
        let person = parse_person(&root, &file, Split::of_index(index))
            .with_context(|| format!("in {file}"))?;
        let hits: Vec<usize> = (0..wanted.len())
            .filter(|&w| wanted[w] == person.slug || wanted[w] == stem)
            .collect();
        for &w in &hits {
            matched[w] = true;
        }
        if wanted.is_empty() || !hits.is_empty() {
            people.push(person);
        }
    }
    if let Some(w) = matched.iter().position(|m| !m) {
        bail!("no person {:?} in {}", wanted[w], dir.display());
    }
    Ok(people)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gold(v: Value) -> (Vec<String>, bool) {
        parse_gold(Some(&v)).unwrap()
    }

    fn ids(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gold_parses_in_every_form() {
        assert_eq!(
            gold(json!(["092efc87", "a1b2c3d4"])),
            (ids(&["092efc87", "a1b2c3d4"]), false)
        );
        assert_eq!(
            gold(json!("['092efc87', 'a1b2c3d4']")),
            (ids(&["092efc87", "a1b2c3d4"]), true)
        );
        assert_eq!(gold(json!("[\"092efc87\"]")), (ids(&["092efc87"]), true));
        assert_eq!(gold(json!("092efc87")), (ids(&["092efc87"]), true));
        assert_eq!(gold(json!("[]")), (vec![], true));
        assert_eq!(gold(json!([])), (vec![], false));
        assert_eq!(
            gold(json!(["['a1', 'b2']", "c3", "a1"])),
            (ids(&["a1", "b2", "c3"]), true)
        );
        // A clean list with a duplicate stays clean, deduplicated.
        assert_eq!(gold(json!(["a1", "a1"])), (ids(&["a1"]), false));
        assert_eq!(gold(Value::Null), (vec![], false));
        assert_eq!(parse_gold(None).unwrap(), (vec![], false));
        assert!(parse_gold(Some(&json!([1]))).is_err());
        assert!(parse_gold(Some(&json!({"a": 1}))).is_err());
    }

    #[test]
    fn flags_dates_and_slugs() {
        assert!(parse_flag(Some(&json!(true))).unwrap());
        assert!(parse_flag(Some(&json!("True"))).unwrap());
        assert!(!parse_flag(Some(&json!("False"))).unwrap());
        assert!(!parse_flag(Some(&Value::Null)).unwrap());
        assert!(!parse_flag(None).unwrap());
        assert!(parse_flag(Some(&json!("maybe"))).is_err());
        let d = parse_session_date("2025-12-21 (Sunday)").unwrap();
        assert_eq!(crate::dataset::turn_timestamp(d, 0), "2025-12-21T12:00:00Z");
        assert_eq!(
            crate::dataset::turn_timestamp(d, 61),
            "2025-12-21T12:01:01Z"
        );
        assert!(parse_session_date("Sunday").is_err());
        assert_eq!(slug("Liam_O_Connor"), "liam-o-connor");
        assert_eq!(slug("Kim_Ji_young"), "kim-ji-young");
        assert_eq!(slug(" Sophie Dubois "), "sophie-dubois");
        assert_eq!(slug("Zoë__Ågren"), "zoë-ågren");
    }

    #[test]
    fn splits_by_position() {
        let splits: Vec<Split> = (0..10).map(Split::of_index).collect();
        assert_eq!(splits.iter().filter(|s| **s == Split::Fit).count(), 5);
        assert_eq!(splits[4], Split::Fit);
        assert_eq!(splits[5], Split::Report);
        assert_eq!(Split::Report.name(), "report");
    }

    #[test]
    fn sessions_keep_queries_and_count_oddities() {
        let v = json!({
            "session_identifier": "Enhanced:S1",
            "session_uuid": "aaaa0001",
            "current_time": "2026-01-02 (Friday)",
            "dialogue_turns": [
                {"speaker": "User", "content": "hello", "is_query": false, "query_id": null},
                {"speaker": "Assistant", "content": "hi", "is_query": "False", "query_id": null},
                {"speaker": "User", "content": "what next?", "is_query": "True", "query_id": "Q-0001",
                 "category_name": "Dynamic Updating", "session_type": "multi_session", "topic": "wine"},
                {"speaker": "Assistant", "content": "try", "is_query": false, "query_id": null,
                 "memory_used": ["secret"], "memory_session_uuids": "['bbbb0002', 'cccc0003']"},
                {"speaker": "User", "content": "ok", "is_query": false, "query_id": "Q-0002"},
                {"speaker": "Assistant", "content": "", "query_id": null,
                 "memory_session_uuids": ["dddd0004"]},
                {"speaker": "User", "content": "last", "is_query": true, "query_id": "Q-0003"}
            ],
            "extracted_memory": ["never read"]
        });
        let mut notes = DataNotes::default();
        let s = parse_session(&v, &mut notes).unwrap();
        assert_eq!(s.turns.len(), 7);
        assert_eq!(s.turns[5].content, "");
        assert_eq!(s.queries.len(), 2);
        let q = &s.queries[0];
        assert_eq!((q.query_id.as_str(), q.turn_index), ("Q-0001", 2));
        assert_eq!(q.gold, ids(&["bbbb0002", "cccc0003"]));
        assert!(q.gold_repaired && q.has_gold_turn);
        assert_eq!(q.category.as_deref(), Some("Dynamic Updating"));
        // The last turn is a query with no next turn: no gold.
        assert!(!s.queries[1].has_gold_turn && s.queries[1].gold.is_empty());
        assert_eq!(
            notes,
            DataNotes {
                query_ids_on_non_queries: 1,
                gold_turns_after_non_queries: 1,
                turns_without_is_query: 1,
                sessions_dated_backwards: 0,
            }
        );
    }

    #[test]
    fn the_shared_realmem_files_parse_when_present() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/realmem");
        if !dir.exists() {
            return;
        }
        let people = load(&dir, &[]).unwrap();
        let sessions: Vec<&Session> = people.iter().flat_map(|p| &p.sessions).collect();
        let turns: usize = sessions.iter().map(|s| s.turns.len()).sum();
        let queries: Vec<&Query> = sessions.iter().flat_map(|s| &s.queries).collect();
        assert_eq!(
            (people.len(), sessions.len(), turns, queries.len()),
            (10, 2055, 14028, 1415)
        );
        assert!(
            queries
                .iter()
                .all(|q| q.has_gold_turn && !q.gold.is_empty())
        );
        let count = |c: &str| {
            queries
                .iter()
                .filter(|q| q.category.as_deref() == Some(c))
                .count()
        };
        assert_eq!(
            [
                count("Dynamic Incremental"),
                count("Implicit Preference"),
                count("Dynamic Updating"),
                count("Temporal-reasoning")
            ],
            [1075, 160, 156, 24]
        );
        assert_eq!(
            people.iter().filter(|p| p.split == Split::Fit).count(),
            FIT_PEOPLE
        );
        assert_eq!(people[0].slug, "adeleke-okonjo");
        let chosen = load(&dir, &["sophie_dubois".into(), "Kim Ji young".into()]).unwrap();
        assert_eq!(
            chosen
                .iter()
                .map(|p| (p.slug.as_str(), p.split))
                .collect::<Vec<_>>(),
            vec![
                ("kim-ji-young", Split::Fit),
                ("sophie-dubois", Split::Report)
            ]
        );
        assert!(load(&dir, &["nobody".into()]).is_err());
    }
}
