//! The default extractor: rules, offline, no model.
//!
//! Per turn:
//! 1. A leading `"Name: "` names the speaker and is stripped; otherwise the
//!    speaker is "User" or "Assistant" by role. System and tool turns give
//!    entities but no rule observations.
//! 2. The text is cleaned (emojis, emoticons, curly quotes) and split into
//!    sentences and then clauses where a new first-person clause starts
//!    ("I moved to Berlin and I love it" → two). Questions are skipped.
//! 3. Each clause loses its leading fillers ("Yeah,", "Oh wow", "Thanks,
//!    Mel!"); relative dates are replaced by their absolute phrase ("on 7
//!    May 2023"); a clause-opening date moves to the end; a left-out "I"
//!    is restored ("Gonna continue ..." → "Caroline is going to continue
//!    ..."); a leading subordinate clause before a comma is dropped ("When
//!    I was younger, my family and I went ..." keeps the main clause).
//! 4. The clause is rewritten in the third person (see `clauses`). It is
//!    kept when its subject is the speaker ("I", "my ...", "we"), a person
//!    named in the batch ("Ana works at Google") or, failing that, when it
//!    mentions the speaker ("It's special to me") and addresses no one
//!    ("you"). Clauses with no content beyond filler verbs ("I agree", "I
//!    love it") are dropped.
//! 5. The category comes from word lists (health, plan, preference, work,
//!    place, relationship, possession, then event for past or dated
//!    clauses, else other).
//!
//! Caller observations come first for their turn, verbatim. Observations
//! with the same subject and text are merged across the batch. Entities are
//! merged by key across the batch (see `entities`).

mod clauses;
mod entities;
mod lexicon;
#[cfg(test)]
mod locomo_tests;
mod quantity;
mod segment;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unicode_tests;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate};
use engram_core::{EntityKind, Role};

use crate::dates::{DateMention, find_dates};
use crate::{Category, EntityMention, ExtractError, Extraction, Extractor, Observation, TurnInput};
use clauses::{Subject, categorize, elided_subject, rewrite};
use entities::{Found, Known, is_name_word, person_key};
use segment::{
    Sentence, clauses as split_clauses, clean, finish, sentences, split_speaker, trim_fillers,
    words,
};

/// The rule-based extractor: offline, deterministic, never fails.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuleExtractor;

impl RuleExtractor {
    /// A rule extractor.
    pub fn new() -> Self {
        RuleExtractor
    }

    /// Extracts from `turns` (one write, in order) without awaiting.
    pub fn extract_sync(&self, turns: &[TurnInput]) -> Extraction {
        let mut known = Known::default();
        let mut prepared: Vec<Prepared<'_>> = turns.iter().map(Prepared::new).collect();
        for p in &prepared {
            if p.named {
                known
                    .persons
                    .insert(person_key(&p.speaker)["person:".len()..].to_string());
            }
        }
        for p in &mut prepared {
            let speaker = p.speaker.to_lowercase();
            p.found = entities::scan(
                &p.text,
                &p.lower,
                &p.sentences,
                &p.dates,
                &speaker,
                &mut known,
            );
        }
        let mut out = Builder::default();
        for p in &mut prepared {
            entities::resolve(&mut p.found, &p.speaker, &known);
            let id = &p.input.fragment_id;
            if p.named {
                out.entity(person_key(&p.speaker), &p.speaker, EntityKind::Person, id);
            }
            for o in &p.found.occs {
                out.entity(o.key.clone(), &o.label, o.kind, id);
            }
            for given in &p.input.observations {
                out.given(p, given);
            }
            if matches!(p.input.role, Role::User | Role::Assistant) {
                for sent in p.sentences.iter().filter(|s| !s.question) {
                    for (s, e) in split_clauses(&p.text, &p.lower, sent, &p.dates) {
                        observe(p, s, e, &known, &mut out);
                    }
                }
            }
        }
        out.finish()
    }
}

#[async_trait]
impl Extractor for RuleExtractor {
    fn name(&self) -> &'static str {
        "rules"
    }

    async fn extract(&self, turns: &[TurnInput]) -> Result<Extraction, ExtractError> {
        Ok(self.extract_sync(turns))
    }
}

/// One turn, cleaned and segmented.
struct Prepared<'a> {
    input: &'a TurnInput,
    speaker: String,
    /// The speaker came from a `"Name: "` prefix.
    named: bool,
    text: String,
    lower: String,
    anchor: NaiveDate,
    dates: Vec<DateMention>,
    sentences: Vec<Sentence>,
    found: Found,
    /// What "we" becomes.
    we: String,
}

impl<'a> Prepared<'a> {
    fn new(input: &'a TurnInput) -> Self {
        let (speaker, named, body) = match split_speaker(&input.text) {
            Some((name, rest)) => (name.to_string(), true, rest),
            None => {
                let role = match input.role {
                    Role::User => "User",
                    Role::Assistant => "Assistant",
                    Role::System => "System",
                    Role::Tool => "Tool",
                };
                (role.to_string(), false, input.text.as_str())
            }
        };
        let text = clean(body);
        let lower = text.to_ascii_lowercase();
        let anchor = DateTime::from_timestamp_millis(input.ts_ms)
            .map_or_else(NaiveDate::default, |d| d.date_naive());
        let dates = find_dates(&text, anchor);
        let sentences = sentences(&text);
        let family = lower.contains("we")
            && words(&lower, 0, lower.len())
                .iter()
                .any(|w| lexicon::FAMILY.has(&lower[w.s..w.e]));
        let we = format!("{speaker} and {}", if family { "family" } else { "others" });
        Prepared {
            input,
            speaker,
            named,
            text,
            lower,
            anchor,
            dates,
            sentences,
            found: Found::default(),
            we,
        }
    }

    fn speaker_key(&self) -> Option<String> {
        self.named.then(|| person_key(&self.speaker))
    }
}

/// Words that do not make a clause worth keeping on their own.
const TRIVIAL: &[&str] = &[
    "i'm",
    "i've",
    "i'd",
    "i'll",
    "it's",
    "that's",
    "this",
    "that",
    "you",
    "too",
    "really",
    "totally",
    "just",
    "agree",
    "know",
    "see",
    "guess",
    "think",
    "mean",
    "hope",
    "bet",
    "understand",
    "feel",
    "love",
    "get",
    "got",
    "sure",
    "yes",
    "thanks",
    "thank",
    "was",
    "the",
    "and",
    "same",
    "here",
    "there",
    "what",
    "how",
    "all",
    "did",
    "does",
    "can",
    "will",
    "would",
    "could",
    "have",
    "has",
    "had",
    "not",
    "don't",
    "can't",
    "won't",
    "yeah",
    "also",
    "much",
    "very",
    "well",
    "now",
    "then",
    "one",
    "out",
    "about",
    "for",
    "with",
    "them",
    "they",
    "our",
    "your",
    "glad",
    "happy",
    "sorry",
    "lol",
    "haha",
    "wow",
    "way",
    "things",
    "thing",
    "lot",
    "lots",
    "it",
    "too",
    "doing",
    "going",
    "getting",
    "means",
    "right",
    "though",
    "more",
    "some",
    "any",
    "been",
    "were",
];

/// Words after which a date reads without its own preposition.
const PREPOSITIONS: &[&str] = &[
    "of", "from", "to", "since", "before", "after", "until", "till", "by", "early", "late", "mid",
    "through", "around", "on", "in", "during", "at", "than", "for",
];

/// The text a date mention becomes in an observation.
fn date_text(p: &Prepared<'_>, m: &DateMention, moved: bool) -> String {
    let prev = p.lower[..m.start]
        .split(|c: char| !c.is_alphanumeric())
        .rfind(|w| !w.is_empty())
        .unwrap_or("");
    let bare = !moved && PREPOSITIONS.contains(&prev);
    if m.relative {
        return if bare || m.relation != crate::dates::Relation::At {
            m.period.label()
        } else {
            m.period.phrase()
        };
    }
    let written = &p.text[m.start..m.end];
    let has_prep = ["on ", "in ", "at ", "during "]
        .iter()
        .any(|x| p.lower[m.start..m.end].starts_with(x));
    if moved && !has_prep && m.relation == crate::dates::Relation::At {
        let prep = if m.period.granularity == crate::dates::Granularity::Day {
            "on"
        } else {
            "in"
        };
        return format!("{prep} {written}");
    }
    if has_prep {
        return format!("{}{}", written[..1].to_lowercase(), &written[1..]);
    }
    written.to_string()
}

/// Turns the clause `[s, e)` of turn `p` into observations.
fn observe(p: &Prepared<'_>, s: usize, e: usize, known: &Known, out: &mut Builder) {
    let is_name = |w: &str| known.is_person(&w.trim_end_matches("'s").to_lowercase());
    let (mut s, mut e) = trim_fillers(&p.text, &p.lower, s, e, &is_name);
    if s >= e {
        return;
    }
    // "When I was younger, my family and I went ...": the main clause
    // after the comma carries the fact.
    let first = p.lower[s..e]
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("");
    let subordinate = segment::is_subordinator(first)
        || matches!(first, "although" | "though" | "as" | "whereas");
    if subordinate
        && let Some(comma) = p.text[s..e].find(',').map(|c| s + c)
        && !p.dates.iter().any(|m| m.start >= s && m.end <= comma)
    {
        (s, e) = trim_fillers(&p.text, &p.lower, comma + 1, e, &is_name);
        if s >= e {
            return;
        }
    }
    let mentions: Vec<&DateMention> = p
        .dates
        .iter()
        .filter(|m| m.start >= s && m.end <= e)
        .collect();
    // A clause-opening date ("Last week I went ...") moves to the end.
    let mut body_start = s;
    let mut moved = None;
    if let Some(m) = mentions.first() {
        let before = p.lower[s..m.start].trim();
        let rest = p.text[m.end..e].trim_start_matches([',', ' ']);
        if matches!(before, "" | "since" | "before" | "after" | "until" | "by") && rest.len() > 2 {
            let phrase = date_text(p, m, true);
            moved = Some(if before.is_empty() {
                phrase
            } else {
                format!("{before} {phrase}")
            });
            body_start = e - rest.len();
        }
    }
    let mut body = String::with_capacity(e - s + 32);
    let mut pos = body_start;
    for m in mentions.iter().filter(|m| m.start >= body_start) {
        body.push_str(&p.text[pos..m.start]);
        body.push_str(&date_text(p, m, false));
        pos = m.end;
    }
    body.push_str(&p.text[pos..e]);
    let body_lower = body.to_ascii_lowercase();
    let ws = words(&body_lower, 0, body_lower.len());
    let lw: Vec<&str> = ws.iter().map(|w| &body_lower[w.s..w.e]).collect();
    if lw
        .iter()
        .filter(|w| w.len() >= 3 && !TRIVIAL.contains(w))
        .count()
        == 0
    {
        return;
    }
    match lw.first().copied() {
        Some("if" | "unless" | "whether") if moved.is_none() => return,
        Some(
            "since" | "because" | "cause" | "when" | "while" | "although" | "though" | "after"
            | "before" | "once" | "whenever" | "as" | "whereas",
        ) if moved.is_none()
            && segment::is_first_person_subject(lw.get(1).copied().unwrap_or("")) =>
        {
            let meta = lw.windows(2).any(|w| {
                w[0] == "last"
                    && matches!(
                        w[1],
                        "talked"
                            | "chatted"
                            | "spoke"
                            | "spoken"
                            | "caught"
                            | "met"
                            | "saw"
                            | "hung"
                    )
            });
            if lw.len() < 4 || meta {
                return;
            }
            // "since I moved to Berlin" → "I moved to Berlin".
            body.replace_range(..ws[1].s, "");
        }
        _ => {
            if let Some(prefix) = elided_subject(&lw) {
                let n = body.chars().next().map_or(0, char::len_utf8);
                body.replace_range(..n, &body[..n].to_lowercase());
                body.insert_str(0, prefix);
            }
        }
    }
    let rw = rewrite(
        &body,
        &p.speaker,
        &p.we,
        &|l| known.is_person(l),
        &is_name_word,
    );
    let preposition = matches!(
        lw[0],
        "for" | "to" | "with" | "about" | "of" | "at" | "in" | "on" | "from" | "by"
    );
    let keep = rw.subject.is_some() || (rw.first_person && !rw.you && !preposition);
    if !keep {
        return;
    }
    let mut text = rw.text;
    if let Some(m) = &moved {
        text = format!(
            "{} {m}",
            text.trim_end_matches(|c: char| c.is_whitespace() || ",;:.!?".contains(c))
        );
    }
    let Some(text) = finish(&text) else { return };
    let subject = match &rw.subject {
        Some(Subject::Named(n)) => n.clone(),
        _ => p.speaker.clone(),
    };
    let future = mentions.iter().any(|m| m.period.from > p.anchor);
    let category = categorize(&lw, rw.tense, !mentions.is_empty(), future);
    let mut keys: Vec<String> = Vec::new();
    let mut add = |k: String| {
        if !keys.contains(&k) {
            keys.push(k);
        }
    };
    match &rw.subject {
        Some(Subject::Named(n)) => add(person_key(n)),
        _ => p.speaker_key().into_iter().for_each(&mut add),
    }
    for o in p.found.occs.iter().filter(|o| o.s >= s && o.e <= e) {
        add(o.key.clone());
    }
    let id = &p.input.fragment_id;
    for (name, rel) in &rw.rels {
        let mut rel_keys = vec![person_key(name)];
        rel_keys.extend(p.speaker_key());
        out.observation(Observation {
            text: format!("{name} is {}'s {rel}.", p.speaker),
            subject: name.clone(),
            category: Category::Relationship,
            source_ids: vec![id.clone()],
            ts_ms: p.input.ts_ms,
            event_ms: None,
            entity_keys: rel_keys,
        });
    }
    out.observation(Observation {
        text,
        subject,
        category,
        source_ids: vec![id.clone()],
        ts_ms: p.input.ts_ms,
        event_ms: mentions.first().map(|m| m.period.from_ms()),
        entity_keys: keys,
    });
}

/// Collects observations and entities, merging duplicates.
#[derive(Default)]
struct Builder {
    observations: Vec<Observation>,
    by_text: HashMap<(String, String), usize>,
    entities: Vec<EntityMention>,
    by_key: HashMap<String, usize>,
}

impl Builder {
    fn observation(&mut self, o: Observation) {
        match self.by_text.get(&(o.subject.clone(), o.text.clone())) {
            Some(&i) => {
                let have = &mut self.observations[i];
                for id in o.source_ids {
                    if !have.source_ids.contains(&id) {
                        have.source_ids.push(id);
                    }
                }
                for k in o.entity_keys {
                    if !have.entity_keys.contains(&k) {
                        have.entity_keys.push(k);
                    }
                }
            }
            None => {
                self.by_text
                    .insert((o.subject.clone(), o.text.clone()), self.observations.len());
                self.observations.push(o);
            }
        }
    }

    /// A caller-supplied observation, verbatim.
    fn given(&mut self, p: &Prepared<'_>, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let event_ms = find_dates(text, p.anchor)
            .first()
            .map(|m| m.period.from_ms());
        self.observation(Observation {
            text: text.to_string(),
            subject: p.speaker.clone(),
            category: Category::Given,
            source_ids: vec![p.input.fragment_id.clone()],
            ts_ms: p.input.ts_ms,
            event_ms,
            entity_keys: Vec::new(),
        });
    }

    fn entity(&mut self, key: String, label: &str, kind: EntityKind, source: &str) {
        match self.by_key.get(&key) {
            Some(&i) => {
                let have = &mut self.entities[i];
                if label.chars().count() > have.label.chars().count() {
                    have.label = label.to_string();
                }
                if !have.source_ids.iter().any(|s| s == source) {
                    have.source_ids.push(source.to_string());
                }
            }
            None => {
                self.by_key.insert(key.clone(), self.entities.len());
                self.entities.push(EntityMention {
                    key,
                    label: label.to_string(),
                    kind,
                    source_ids: vec![source.to_string()],
                });
            }
        }
    }

    fn finish(mut self) -> Extraction {
        // Caller observations cite the batch's entities they name.
        let labels: Vec<(String, String)> = self
            .entities
            .iter()
            .filter(|e| e.label.chars().count() >= 2)
            .map(|e| (e.label.to_lowercase(), e.key.clone()))
            .collect();
        for o in self
            .observations
            .iter_mut()
            .filter(|o| o.category == Category::Given)
        {
            let lower = o.text.to_lowercase();
            for (label, key) in &labels {
                if lower.contains(label.as_str()) && !o.entity_keys.contains(key) {
                    o.entity_keys.push(key.clone());
                }
            }
        }
        Extraction {
            observations: self.observations,
            entities: self.entities,
            ..Extraction::default()
        }
    }
}
