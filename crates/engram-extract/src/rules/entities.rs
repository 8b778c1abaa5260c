//! Entities of one turn: people, places, organisations, products, dates and
//! quantities, each with its byte range in the cleaned text.
//!
//! Capitalized phrases (up to four words, "of"/"de"/"&" allowed inside) are
//! classified in this order: the built-in lists (organisations, products,
//! places); an organisation suffix ("... University", "... Inc"); a person
//! already known in the batch; the words before it ("work at" →
//! organisation, "bought a" → product, "moved to"/"in"/"visited" → place);
//! its shape (mixed case or digits → product, all capitals → skipped);
//! otherwise a person. A single capitalized word opening a sentence counts
//! only when it is known from elsewhere in the batch or a verb follows it
//! ("Ana works ..."). "my sister" without a name becomes the person
//! `"<speaker>'s sister"`, or the named sister when the batch names her.

use std::collections::{HashMap, HashSet};

use super::clauses::relation_at;
use super::lexicon::{
    AMBIGUOUS_PLACES, COMPANIES, NAME_VERBS, NATIONALITIES, ORG_SUFFIXES, PLACE_NOUNS, PLACES,
    PRODUCTS, STOP_CAPS,
};
use super::quantity::quantity_at;
use super::segment::{Sentence, Word, words};
use crate::dates::DateMention;
use engram_core::EntityKind;

/// An entity occurrence in a turn's cleaned text.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Occ {
    pub s: usize,
    pub e: usize,
    pub kind: EntityKind,
    pub label: String,
    pub key: String,
}

/// What the batch knows about people.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// Lowercase first names of known people (speakers, named relatives,
    /// people found mid-sentence).
    pub persons: HashSet<String>,
    /// ``"<speaker lowercase>|<relation>"`` → the name ("caroline|sister" →
    /// "Ana").
    pub rels: HashMap<String, String>,
}

impl Known {
    pub(super) fn is_person(&self, lower_first: &str) -> bool {
        self.persons.contains(lower_first)
    }
}

/// Decided once the whole batch is scanned.
#[derive(Debug)]
enum Pending {
    /// A sentence-initial capitalized word: a person if the batch knows it.
    Initial(Occ),
    /// "my sister" without a name.
    Relation { s: usize, e: usize, rel: String },
}

/// The entities of one turn.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub occs: Vec<Occ>,
    pending: Vec<Pending>,
}

/// The key of a person: `person:<first name lowercased>` (titles skipped).
pub(super) fn person_key(label: &str) -> String {
    let first = label
        .split([' ', '.'])
        .find(|w| {
            !w.is_empty()
                && !matches!(
                    w.to_ascii_lowercase().as_str(),
                    "dr" | "mr" | "mrs" | "ms" | "prof" | "miss"
                )
        })
        .unwrap_or(label);
    format!("person:{}", first.to_lowercase())
}

pub(super) fn occ(s: usize, e: usize, kind: EntityKind, label: String) -> Occ {
    let key = match kind {
        EntityKind::Person => person_key(&label),
        _ => format!("{}:{}", kind.as_str(), label.to_lowercase()),
    };
    Occ {
        s,
        e,
        kind,
        label,
        key,
    }
}

/// Whether a capitalized word can be (part of) a person's name.
pub(super) fn is_name_word(w: &str) -> bool {
    let w = w.trim_end_matches("'s");
    let mut cs = w.chars();
    let lower = w.to_lowercase();
    cs.next().is_some_and(char::is_uppercase)
        && w.len() >= 2
        && cs.all(|c| c.is_lowercase() || matches!(c, '\'' | '-') || c.is_uppercase())
        && w.chars().skip(1).any(char::is_lowercase)
        && !STOP_CAPS.has(&lower)
        && !NATIONALITIES.has(&lower)
        && !NOT_NAME_ENDINGS
            .iter()
            .any(|x| lower.len() > x.len() + 2 && lower.ends_with(x))
        && !COMPANIES.has(&lower)
        && !PRODUCTS.has(&lower)
        && (!PLACES.has(&lower) || AMBIGUOUS_PLACES.has(&lower))
}

/// Endings of common nouns and adjectives, never of first names.
const NOT_NAME_ENDINGS: &[&str] = &[
    "ance", "ence", "ness", "ment", "tion", "sion", "ity", "ism", "ship", "ing", "ful", "ous",
    "ive", "able", "ible", "ology", "graphy",
];

const MOVE_VERBS: &[&str] = &[
    "moved",
    "move",
    "moving",
    "went",
    "go",
    "going",
    "goes",
    "travel",
    "traveled",
    "travelled",
    "traveling",
    "travelling",
    "trip",
    "flew",
    "fly",
    "flying",
    "drove",
    "drive",
    "driving",
    "back",
    "headed",
    "heading",
    "relocated",
    "relocate",
    "came",
    "come",
    "coming",
    "vacation",
    "visit",
    "journey",
    "way",
    "welcome",
    "road",
    "took",
    "ticket",
    "tickets",
    "flight",
    "flights",
    "trips",
    "holiday",
    "return",
    "returned",
    "returning",
];
const FROM_VERBS: &[&str] = &[
    "i'm",
    "im",
    "am",
    "is",
    "are",
    "was",
    "were",
    "come",
    "comes",
    "came",
    "originally",
    "moved",
    "flew",
    "drove",
    "back",
    "emigrated",
    "immigrated",
    "hails",
    "family",
    "all",
    "way",
];
const WORK_WORDS: &[&str] = &[
    "work",
    "works",
    "worked",
    "working",
    "job",
    "intern",
    "interned",
    "internship",
    "employed",
    "hired",
    "started",
    "position",
    "volunteer",
    "volunteering",
    "volunteered",
    "career",
    "role",
    "teach",
    "teaching",
    "study",
    "studying",
    "studied",
    "student",
    "enrolled",
];

/// Scans one turn. `speaker` is the lowercase speaker ("caroline",
/// "user") for relation keys.
pub(super) fn scan(
    text: &str,
    lower: &str,
    sentences: &[Sentence],
    dates: &[DateMention],
    speaker: &str,
    known: &mut Known,
) -> Found {
    let mut found = Found::default();
    for m in dates {
        let label = m.period.label();
        found.occs.push(Occ {
            s: m.start,
            e: m.end,
            kind: EntityKind::Date,
            label,
            key: format!("date:{}", m.period.key()),
        });
    }
    let ws = words(text, 0, text.len());
    let covered = |w: &Word| dates.iter().any(|m| w.s < m.end && w.e > m.start);
    let mut initial = vec![false; ws.len()];
    let mut k = 0;
    for sent in sentences {
        while k < ws.len() && ws[k].s < sent.s {
            k += 1;
        }
        if let Some(flag) = initial.get_mut(k) {
            *flag = true;
        }
    }
    for (k, w) in ws.iter().enumerate() {
        if text[..w.s].trim_end().ends_with(['"', ':', '(']) {
            initial[k] = true;
        }
    }
    let mut consumed = vec![false; ws.len()];
    quoted_titles(text, &ws, &mut consumed, &mut found);
    let lw = |i: usize| &lower[ws[i].s..ws[i].e];
    let mut i = 0;
    while i < ws.len() {
        if consumed[i] || covered(&ws[i]) {
            i += 1;
            continue;
        }
        let l = lw(i);
        if matches!(l, "my" | "our") {
            if let Some(m) = relation_at(text, lower, &ws, i, &is_name_word) {
                let rel = lower[m.rel.0..m.rel.1].to_string();
                match m.name {
                    Some((name, _)) => {
                        known.persons.insert(first_lower(&name));
                        known.rels.insert(format!("{speaker}|{rel}"), name);
                    }
                    None => found.pending.push(Pending::Relation {
                        s: ws[i].s,
                        e: m.rel.1,
                        rel,
                    }),
                }
            }
            i += 1;
            continue;
        }
        if let Some((o, next)) = quantity_at(text, lower, &ws, i) {
            found.occs.push(o);
            i = next;
            continue;
        }
        // "Under Armour", "The North Face": a listed phrase may open with
        // a stop word.
        let run = (2..=4).rev().find(|&n| {
            i + n <= ws.len()
                && (1..n)
                    .all(|m| &text[ws[i + m - 1].e..ws[i + m].s] == " " && !covered(&ws[i + m]))
                && text[ws[i].s..].starts_with(char::is_uppercase)
                && listed_phrase(&lower[ws[i].s..ws[i + n - 1].e])
        });
        if let Some(n) = run {
            let ctx = Context::new(&ws, lower, i, i + n);
            if let Some(Decision::Now(o)) = classify(text, lower, &ws, i, i + n, false, &ctx, known)
            {
                found.occs.push(o);
            }
            i += n;
            continue;
        }
        let word = &text[ws[i].s..ws[i].e];
        let starts_cap = word.starts_with(char::is_uppercase);
        let mixed = !starts_cap
            && word.chars().skip(1).any(char::is_uppercase)
            && word.starts_with(char::is_lowercase);
        let all_caps = word
            .chars()
            .all(|c| c.is_uppercase() || c.is_ascii_digit() || c == '&');
        let listed = PLACES.has(l) || COMPANIES.has(l) || PRODUCTS.has(l);
        let title =
            matches!(l, "dr" | "mr" | "mrs" | "ms" | "prof") && text[ws[i].e..].starts_with(". ");
        if !(starts_cap || mixed)
            || (STOP_CAPS.has(l) && !(all_caps && listed) && !title)
            || NATIONALITIES.has(l)
            || (i > 0 && NATIONALITIES.has(lw(i - 1)) && &text[ws[i - 1].e..ws[i].s] == " ")
            || is_i(l)
        {
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < ws.len()
            && j - i < 4
            && !consumed[j]
            && !covered(&ws[j])
            && !text[ws[j - 1].s..ws[j - 1].e].ends_with("'s")
        {
            let gap = &text[ws[j - 1].e..ws[j].s];
            let wj = &text[ws[j].s..ws[j].e];
            let cap = wj.starts_with(char::is_uppercase)
                && !STOP_CAPS.has(lw(j))
                && !NATIONALITIES.has(lw(j));
            let digits = wj.starts_with(|c: char| c.is_ascii_digit()) && wj.len() <= 4;
            let connector = matches!(lw(j), "of" | "de" | "del" | "la" | "von" | "van" | "da")
                && j + 1 < ws.len()
                && text[ws[j + 1].s..].starts_with(char::is_uppercase);
            if (gap == " "
                && (cap || connector || (digits && j == i + 1 && !starts_cap_only(word))))
                || (gap == ". " && j == i + 1 && title)
            {
                j += if connector { 2 } else { 1 };
            } else {
                break;
            }
        }
        j = j.min(ws.len());
        // The longest listed prefix of an unlisted phrase stands alone.
        let whole = &lower[ws[i].s..ws[j - 1].e];
        let last = whole.rsplit(' ').next().unwrap_or(whole);
        if j - i > 1 && !listed_phrase(whole) && !ORG_SUFFIXES.has(last) {
            let split = (1..j - i).rev().find(|n| {
                let prefix = &lower[ws[i].s..ws[i + n - 1].e];
                listed_phrase(prefix)
                    && !AMBIGUOUS_PLACES.has(prefix)
                    && !known.is_person(prefix)
                    && !text[ws[i + n].s..].starts_with(|c: char| c.is_ascii_digit())
            });
            if let Some(n) = split {
                j = i + n;
            }
        }
        let ctx = Context::new(&ws, lower, i, j);
        if let Some(decision) = classify(text, lower, &ws, i, j, initial[i], &ctx, known) {
            match decision {
                Decision::Now(o) => {
                    if o.kind == EntityKind::Person {
                        known.persons.insert(first_lower(&o.label));
                    }
                    found.occs.push(o);
                }
                Decision::Later(o) => found.pending.push(Pending::Initial(o)),
            }
        }
        i = j;
    }
    found
}

fn is_i(l: &str) -> bool {
    matches!(l, "i" | "i'm" | "i've" | "i'd" | "i'll")
}

/// "Tesla" yes, "iPhone" no: a word whose only capital is its first letter.
fn starts_cap_only(w: &str) -> bool {
    w.starts_with(char::is_uppercase) && !w.chars().skip(1).any(char::is_uppercase)
}

fn first_lower(label: &str) -> String {
    person_key(label)["person:".len()..].to_string()
}

fn listed_phrase(l: &str) -> bool {
    PLACES.has(l) || COMPANIES.has(l) || PRODUCTS.has(l)
}

/// `"Becoming Nicole"`: a short capitalized quotation is a product (a
/// title).
fn quoted_titles(text: &str, ws: &[Word], consumed: &mut [bool], found: &mut Found) {
    let quotes: Vec<usize> = text.match_indices('"').map(|(p, _)| p).collect();
    for pair in quotes.chunks_exact(2) {
        let inner = &text[pair[0] + 1..pair[1]];
        let t = inner.trim();
        if t.starts_with(char::is_uppercase)
            && t.len() <= 60
            && !t.contains(['.', '!', '?'])
            && t.split(' ').count() <= 8
        {
            let s = pair[0] + 1 + (inner.len() - inner.trim_start().len());
            found
                .occs
                .push(occ(s, s + t.len(), EntityKind::Product, t.to_string()));
            for (k, w) in ws.iter().enumerate() {
                if w.s >= pair[0] && w.e <= pair[1] {
                    consumed[k] = true;
                }
            }
        }
    }
}

/// The words around a phrase.
struct Context<'a> {
    prev1: &'a str,
    prev2: &'a str,
    next: &'a str,
    next2: &'a str,
}

impl<'a> Context<'a> {
    fn new(ws: &[Word], lower: &'a str, i: usize, j: usize) -> Self {
        let at = |k: Option<usize>| k.and_then(|k| ws.get(k)).map_or("", |w| &lower[w.s..w.e]);
        Context {
            prev1: at(i.checked_sub(1)),
            prev2: at(i.checked_sub(2)),
            next: at(Some(j)),
            next2: at(Some(j + 1)),
        }
    }

    fn product(&self) -> bool {
        matches!(
            self.prev1,
            "bought"
                | "got"
                | "new"
                | "own"
                | "owns"
                | "ordered"
                | "using"
                | "playing"
                | "upgraded"
        ) || (matches!(self.prev1, "a" | "an" | "the" | "my" | "our")
            && matches!(
                self.prev2,
                "bought" | "got" | "ordered" | "new" | "own" | "buy" | "buying" | "getting"
            ))
    }

    fn org(&self) -> bool {
        (matches!(self.prev1, "at" | "for" | "by" | "with") && WORK_WORDS.contains(&self.prev2))
            || matches!(self.prev1, "joined" | "joining")
    }

    fn place(&self) -> bool {
        match self.prev1 {
            "in" | "near" | "visited" | "visiting" | "around" | "across" | "outside" | "toured"
            | "explored" => true,
            "to" | "into" => MOVE_VERBS.contains(&self.prev2),
            "from" => FROM_VERBS.contains(&self.prev2),
            _ => false,
        }
    }
}

enum Decision {
    Now(Occ),
    Later(Occ),
}

#[allow(clippy::too_many_arguments)]
fn classify(
    text: &str,
    lower: &str,
    ws: &[Word],
    i: usize,
    j: usize,
    initial: bool,
    ctx: &Context<'_>,
    known: &Known,
) -> Option<Decision> {
    let (s, mut e) = (ws[i].s, ws[j - 1].e);
    if text[s..e].ends_with("'s") {
        e -= 2;
    }
    let label = text[s..e].trim_end_matches('\'').to_string();
    let l = &lower[s..s + label.len()];
    let single = j - i == 1;
    let spaced = ws.get(j).is_some_and(|w| &text[ws[j - 1].e..w.s] == " ");
    let verb_next = spaced
        && (NAME_VERBS.has(ctx.next) || (ctx.next == "and" && matches!(ctx.next2, "i" | "me")));
    let now = |kind| Some(Decision::Now(occ(s, s + label.len(), kind, label.clone())));
    if initial && single && !verb_next && !ctx.next.is_empty() {
        // "Nice work!", "Paris?": a lone sentence opener needs a verb.
        if known.is_person(&first_lower(&label)) {
            return now(EntityKind::Person);
        }
        if !(listed_phrase(l) || is_name_word(&label)) || label.ends_with("ing") {
            return None;
        }
        return (!listed_phrase(l))
            .then(|| Decision::Later(occ(s, s + label.len(), EntityKind::Person, label.clone())));
    }
    let last = l.rsplit(' ').next().unwrap_or(l);
    if COMPANIES.has(l) {
        return now(if ctx.product() {
            EntityKind::Product
        } else {
            EntityKind::Organization
        });
    }
    if PRODUCTS.has(l) {
        return now(EntityKind::Product);
    }
    if PLACES.has(l) && (!AMBIGUOUS_PLACES.has(l) || ctx.place() || !single) {
        return now(EntityKind::Place);
    }
    if (!single && ORG_SUFFIXES.has(last)) || l.starts_with("university of ") {
        return now(EntityKind::Organization);
    }
    let first_word = l.split(' ').next().unwrap_or(l);
    if !single && (PLACE_NOUNS.has(last) || matches!(first_word, "lake" | "mount" | "mt" | "isle"))
    {
        return now(EntityKind::Place);
    }
    if known.is_person(&first_lower(&label)) && !ctx.org() && !ctx.product() {
        return now(EntityKind::Person);
    }
    if ctx.org() {
        return now(EntityKind::Organization);
    }
    if ctx.product() {
        return now(EntityKind::Product);
    }
    let shaped = label.chars().any(|c| c.is_ascii_digit()) || label.split(' ').any(camel);
    if ctx.place() && !shaped {
        return now(EntityKind::Place);
    }
    if shaped {
        return now(EntityKind::Product);
    }
    let name = label
        .strip_prefix(|c: char| c.is_uppercase())
        .map_or("", |_| &label);
    let name = ["Dr. ", "Mr. ", "Mrs. ", "Ms. ", "Prof. "]
        .iter()
        .find_map(|t| name.strip_prefix(t))
        .unwrap_or(name);
    let words_ok = !name.is_empty() && name.split(' ').all(is_name_word) && j - i <= 3;
    if words_ok && !(single && label.ends_with("ing")) {
        return now(EntityKind::Person);
    }
    None
}

/// "iPhone", "MacBook", "YouTube": a lowercase letter followed by a
/// capital ("McKenzie" aside).
fn camel(w: &str) -> bool {
    !w.starts_with("Mc")
        && w.as_bytes()
            .windows(2)
            .any(|p| p[0].is_ascii_lowercase() && p[1].is_ascii_uppercase())
}

/// Settles what waited for the whole batch: sentence-initial names and
/// unnamed relatives. `speaker` is the display name ("User", "Caroline").
pub(super) fn resolve(found: &mut Found, speaker: &str, known: &Known) {
    for p in std::mem::take(&mut found.pending) {
        match p {
            Pending::Initial(o) => {
                if known.is_person(&first_lower(&o.label)) {
                    found.occs.push(o);
                }
            }
            Pending::Relation { s, e, rel } => {
                let named = known.rels.get(&format!("{}|{rel}", speaker.to_lowercase()));
                let o = match named {
                    Some(name) => occ(s, e, EntityKind::Person, name.clone()),
                    None => {
                        let label = format!("{speaker}'s {rel}");
                        Occ {
                            s,
                            e,
                            kind: EntityKind::Person,
                            key: format!("person:{}", label.to_lowercase()),
                            label,
                        }
                    }
                };
                found.occs.push(o);
            }
        }
    }
    found.occs.sort_by_key(|o| (o.s, o.e));
}
