//! One clause → one third-person sentence, and its category.
//!
//! Rewriting, word by word:
//! - `I` → the speaker, and the verb after it (skipping adverbs) agrees:
//!   "I am"/"I'm" → "is", "I have"/"I've" → "has", "I do not"/"I don't" →
//!   "does not", "I can't" → "cannot", "I'd" → "would" ("had" before a
//!   participle), "I'll" → "will", a present verb takes -s/-es/-ies ("loves",
//!   "goes", "studies"), past forms and modals stay.
//! - `me` → the speaker, `my`/`mine` → `"<speaker>'s"`, `myself` →
//!   "themselves".
//! - `we` → `"<speaker> and family"` when the turn mentions family (kids,
//!   husband, ...), otherwise `"<speaker> and others"`; its verbs stay plural;
//!   `us` → "them", `our` → "their" after a `we` subject, otherwise
//!   `"<speaker>'s"`; `ourselves` → "themselves".
//! - "my sister Ana" → "Ana" when it opens the clause (Ana becomes the
//!   subject), otherwise `"<speaker>'s sister Ana"`; each such pair also yields
//!   `"Ana is <speaker>'s sister."`.
//! - "gonna" → "going to", "wanna" → "want to", "kinda" → "kind of".
//!
//! "you" is left as it is (whom it means is not known here).

use super::lexicon::{
    ADVERBS, ELIDED_I, ELIDED_IM, GERUND_SUBJECT_VERBS, HEALTH, IRREGULAR_PAST, Lexicon, MODALS,
    PARTICIPLES, PETS, PLACE_PAIRS, PLACE_WORDS, PLAN_PAIRS, PLAN_WORDS, POSSESSION_WORDS,
    PREFERENCE_LEADS, PREFERENCE_PAIRS, PREFERENCE_WORDS, RELATION_ADJECTIVES, RELATIONS,
    RELATIONSHIP_WORDS, WORK,
};
use super::segment::{Word, words};
use crate::Category;

/// Who a rewritten clause is about.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Subject {
    /// The speaker (I, my ..., we).
    Speaker,
    /// A named third person ("my sister Ana ...", "Ana works ...").
    Named(String),
}

/// The tense of the first verb after the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tense {
    Unknown,
    Present,
    /// A past form other than was/were.
    Past,
    /// was/were.
    PastBe,
    /// have/has + participle.
    Perfect,
    Future,
}

/// A rewritten clause.
#[derive(Debug)]
pub(super) struct Rewrite {
    pub text: String,
    pub subject: Option<Subject>,
    /// A singular first-person word (I, me, my, mine, myself) was rewritten.
    pub first_person: bool,
    /// The clause addresses someone ("you", "your").
    pub you: bool,
    pub tense: Tense,
    /// (name, relation) pairs: "my sister Ana" → ("Ana", "sister").
    pub rels: Vec<(String, String)>,
}

/// ``my [adjectives] <relation> [Name]`` starting at word `k` (which is
/// "my" or "our").
pub(super) struct RelMatch {
    /// The relation as written ("older sister").
    pub rel: (usize, usize),
    /// The name, possessive stripped, and the index of the word after it.
    pub name: Option<(String, usize)>,
    /// Index of the word after the relation noun.
    pub end: usize,
}

/// Finds "my sister Ana" at word `k`. `is_name_word` says whether a
/// capitalized word can be a person's name.
pub(super) fn relation_at(
    text: &str,
    lower: &str,
    ws: &[Word],
    k: usize,
    is_name_word: &dyn Fn(&str) -> bool,
) -> Option<RelMatch> {
    let lw = |i: usize| &lower[ws[i].s..ws[i].e];
    let mut j = k + 1;
    while j < ws.len() && j < k + 3 && RELATION_ADJECTIVES.has(lw(j)) && !RELATIONS.has(lw(j)) {
        j += 1;
    }
    if j >= ws.len() || !RELATIONS.has(lw(j)) {
        return None;
    }
    let rel = (ws[k + 1].s, ws[j].e);
    let end = j + 1;
    let joins = |i: usize| &text[ws[i - 1].e..ws[i].s] == " ";
    let mut name = None;
    if end < ws.len() && joins(end) && is_name_word(&text[ws[end].s..ws[end].e]) {
        let mut m = end + 1;
        if m < ws.len()
            && &text[ws[m - 1].e..ws[m].s] == " "
            && is_name_word(&text[ws[m].s..ws[m].e])
        {
            m += 1;
        }
        let label = text[ws[end].s..ws[m - 1].e]
            .trim_end_matches("'s")
            .to_string();
        name = Some((label, m));
    }
    Some(RelMatch { rel, name, end })
}

/// Singular of a relation noun for "Ana is User's sister.".
fn singular(rel: &str) -> String {
    let last_start = rel.rfind(' ').map_or(0, |p| p + 1);
    let (head, last) = rel.split_at(last_start);
    let one = match last {
        "children" => "child",
        "babies" => "baby",
        "buddies" => "buddy",
        "boss" | "bus" => last,
        l if l.ends_with('s') && l.len() > 3 => &l[..l.len() - 1],
        l => l,
    };
    format!("{head}{one}")
}

/// Rewrites a first-person clause for `speaker`. `we` is what "we" becomes;
/// `is_person` says whether a lowercase first name is a known person;
/// `is_name_word` whether a capitalized word can be a name.
pub(super) fn rewrite(
    clause: &str,
    speaker: &str,
    we: &str,
    is_person: &dyn Fn(&str) -> bool,
    is_name_word: &dyn Fn(&str) -> bool,
) -> Rewrite {
    let lower = clause.to_ascii_lowercase();
    let ws = words(clause, 0, clause.len());
    let lw = |i: usize| &lower[ws[i].s..ws[i].e];
    let mut r = Rewrite {
        text: String::with_capacity(clause.len() + 32),
        subject: None,
        first_person: false,
        you: false,
        tense: Tense::Unknown,
        rels: Vec::new(),
    };
    let Some(first) = ws.first() else { return r };
    let mut we_subject = false;
    r.subject = match lw(0) {
        "i" | "i'm" | "im" | "i've" | "ive" | "i'd" | "i'll" | "me" | "my" | "mine" => {
            Some(Subject::Speaker)
        }
        "we" | "we're" | "we've" | "we'd" | "we'll" | "our" => {
            we_subject = true;
            Some(Subject::Speaker)
        }
        w if clause[first.s..].starts_with(char::is_uppercase)
            && is_person(w.trim_end_matches("'s")) =>
        {
            let mut m = 1;
            while m < ws.len().min(3)
                && &clause[ws[m - 1].e..ws[m].s] == " "
                && is_name_word(&clause[ws[m].s..ws[m].e])
            {
                m += 1;
            }
            let verbish = ws
                .get(m)
                .is_some_and(|w| clause[w.s..].starts_with(char::is_lowercase));
            verbish.then(|| {
                Subject::Named(
                    clause[first.s..ws[m - 1].e]
                        .trim_end_matches("'s")
                        .to_string(),
                )
            })
        }
        _ => None,
    };
    let mut last = 0;
    let mut pending: Option<bool> = None; // Some(plural): conjugate the next verb
    let mut k = 0;
    let out = &mut r.text;
    while k < ws.len() {
        let w = ws[k];
        let word = &clause[w.s..w.e];
        let l = lw(k);
        let gap = &clause[last..w.s];
        out.push_str(gap);
        last = w.e;
        k += 1;
        let next_l = if k < ws.len() { lw(k) } else { "" };
        if let Some(plural) = pending.take()
            && gap.trim().is_empty()
        {
            if ADVERBS.has(l) && !plural {
                out.push_str(word);
                pending = Some(plural);
                continue;
            }
            let (verb, tense) = conjugate(word, l, plural, next_l);
            if r.tense == Tense::Unknown {
                r.tense = tense;
            }
            out.push_str(&verb);
            continue;
        }
        if matches!(l, "my" | "our")
            && let Some(m) = relation_at(clause, &lower, &ws, k - 1, is_name_word)
            && let Some((name, after)) = m.name
        {
            let rel = &clause[m.rel.0..m.rel.1];
            r.rels.push((name.clone(), singular(&rel.to_lowercase())));
            if k == 1 {
                r.subject = Some(Subject::Named(name));
                out.push_str(&clause[ws[m.end].s..ws[after - 1].e]);
            } else {
                out.push_str(speaker);
                out.push_str("'s ");
                out.push_str(&clause[m.rel.0..ws[after - 1].e]);
            }
            r.first_person = true;
            last = ws[after - 1].e;
            k = after;
            continue;
        }
        let participle = PARTICIPLES.has(next_l) || is_regular_past(next_l);
        let mut fp = true;
        match l {
            "i" => {
                out.push_str(speaker);
                let plural = k >= 2 && matches!(lw(k - 2), "and" | "or");
                pending = Some(plural);
            }
            "i'm" | "im" => {
                out.push_str(speaker);
                out.push_str(" is");
                r.tense = pick(r.tense, Tense::Present);
            }
            "i've" | "ive" => {
                out.push_str(speaker);
                out.push_str(" has");
                r.tense = pick(
                    r.tense,
                    if participle {
                        Tense::Perfect
                    } else {
                        Tense::Present
                    },
                );
            }
            "i'd" => {
                out.push_str(speaker);
                out.push_str(if participle { " had" } else { " would" });
                r.tense = pick(
                    r.tense,
                    if participle {
                        Tense::Perfect
                    } else {
                        Tense::Present
                    },
                );
            }
            "i'll" => {
                out.push_str(speaker);
                out.push_str(" will");
                r.tense = pick(r.tense, Tense::Future);
            }
            "me" => out.push_str(speaker),
            "my" | "mine" => {
                out.push_str(speaker);
                out.push_str("'s");
            }
            "myself" | "ourselves" => out.push_str("themselves"),
            "we" => {
                out.push_str(we);
                pending = Some(true);
            }
            "we're" | "we've" | "we'll" | "we'd" => {
                out.push_str(we);
                out.push_str(match l {
                    "we're" => " are",
                    "we've" => " have",
                    "we'll" => " will",
                    _ if participle => " had",
                    _ => " would",
                });
                let t = match l {
                    "we'll" => Tense::Future,
                    "we've" if participle => Tense::Perfect,
                    _ => Tense::Present,
                };
                r.tense = pick(r.tense, t);
            }
            "us" => out.push_str("them"),
            "our" if we_subject => out.push_str("their"),
            "our" => {
                out.push_str(speaker);
                out.push_str("'s");
            }
            "ours" => out.push_str("theirs"),
            _ => {
                fp = false;
                if matches!(
                    l,
                    "you"
                        | "your"
                        | "you're"
                        | "you've"
                        | "yours"
                        | "yourself"
                        | "u"
                        | "ur"
                        | "you'll"
                        | "you'd"
                        | "y'all"
                ) {
                    r.you = true;
                }
                match l {
                    "gonna" => out.push_str("going to"),
                    "wanna" => out.push_str("want to"),
                    "kinda" => out.push_str("kind of"),
                    _ => out.push_str(word),
                }
            }
        }
        r.first_person |= fp
            && !matches!(
                l,
                "we" | "we're" | "we've" | "we'll" | "we'd" | "us" | "our" | "ours" | "ourselves"
            );
    }
    out.push_str(&clause[last..]);
    if r.tense == Tense::Unknown
        && let Some(Subject::Named(name)) = &r.subject
    {
        // "Ana moved ...": the tense of the word after the name.
        let n = words(name, 0, name.len()).len();
        if let Some(v) = ws.get(n) {
            r.tense = conjugate("", &lower[v.s..v.e], true, "").1;
        }
    }
    r
}

fn pick(current: Tense, t: Tense) -> Tense {
    if current == Tense::Unknown {
        t
    } else {
        current
    }
}

fn is_regular_past(l: &str) -> bool {
    (l.len() > 3 && l.ends_with("ed") && !l.ends_with("eed"))
        || matches!(
            l,
            "agreed" | "freed" | "guaranteed" | "disagreed" | "decreed"
        )
}

/// The verb `word` (lowercase `l`) after a singular first-person subject,
/// in the third person, and its tense. Plural subjects keep the word.
fn conjugate(word: &str, l: &str, plural: bool, next: &str) -> (String, Tense) {
    let participle = PARTICIPLES.has(next) || is_regular_past(next);
    let tense = match l {
        "will" | "won't" | "shall" | "gonna" | "wanna" => Tense::Future,
        "was" | "were" | "wasn't" | "weren't" => Tense::PastBe,
        "have" | "has" | "haven't" if participle => Tense::Perfect,
        _ if IRREGULAR_PAST.has(l) || is_regular_past(l) => Tense::Past,
        _ => Tense::Present,
    };
    if plural {
        return (word.to_string(), tense);
    }
    let fixed = match l {
        "am" | "are" => "is",
        "were" => "was",
        "aren't" | "ain't" => "is not",
        "weren't" => "wasn't",
        "have" => "has",
        "haven't" => "hasn't",
        "do" => "does",
        "don't" | "dont" => "does not",
        "can't" | "cant" => "cannot",
        "gonna" => "is going to",
        "wanna" => "wants to",
        "gotta" => "has to",
        "be" => "is",
        "go" => "goes",
        _ => "",
    };
    if !fixed.is_empty() {
        return (fixed.to_string(), tense);
    }
    let verbal = l.starts_with(|c: char| c.is_ascii_lowercase())
        && l.chars().all(|c| c.is_ascii_lowercase() || c == '-');
    if MODALS.has(l) || tense != Tense::Present || !verbal || l.len() < 2 {
        return (word.to_string(), tense);
    }
    (third_person(word, l), tense)
}

/// "love" → "loves", "go" → "goes", "study" → "studies", "watch" →
/// "watches".
fn third_person(word: &str, l: &str) -> String {
    let b = l.as_bytes();
    let n = b.len();
    if l.ends_with(['s', 'x', 'z', 'o']) || l.ends_with("sh") || l.ends_with("ch") {
        format!("{word}es")
    } else if l.ends_with('y') && n > 1 && !matches!(b[n - 2], b'a' | b'e' | b'i' | b'o' | b'u') {
        format!("{}ies", &word[..word.len() - 1])
    } else {
        format!("{word}s")
    }
}

/// Words that open a clause whose "I" was left out ("Gonna continue my
/// edu", "Just signed up for a class"): `Some("I ")` or `Some("I'm ")`.
/// `ws` are the clause's lowercase words.
pub(super) fn elided_subject(ws: &[&str]) -> Option<&'static str> {
    let first = ws.first().copied().unwrap_or("");
    let second = ws.get(1).copied().unwrap_or("");
    let noun_subject = matches!(
        second,
        "is" | "was" | "are" | "were" | "has" | "had" | "will" | "can" | "of" | "and" | "'s"
    );
    if noun_subject || (first == "gonna" && second == "be") {
        return None;
    }
    if first == "been" {
        return (!matches!(second, "a" | "an" | "the" | "such")).then_some("I've ");
    }
    if ELIDED_I.has(first)
        || (first == "just" && (IRREGULAR_PAST.has(second) || is_regular_past(second)))
    {
        return Some("I ");
    }
    if first == "just" && ELIDED_IM.has(second) {
        return Some("I'm ");
    }
    // A gerund may be the subject ("Taking care of ourselves is vital").
    let gerund_subject = ws.iter().any(|w| GERUND_SUBJECT_VERBS.has(w));
    (ELIDED_IM.has(first) && !gerund_subject).then_some("I'm ")
}

/// The category of a first-person clause from its lowercase words (before
/// rewriting), the tense of its main verb and whether it carries a past or
/// a future date.
pub(super) fn categorize(ws: &[&str], tense: Tense, dated: bool, future_date: bool) -> Category {
    let seq = |a: &str, b: &str| ws.windows(2).any(|p| p[0] == a && p[1] == b);
    let mut pairs: Vec<String> = Vec::with_capacity(ws.len());
    for p in ws.windows(2) {
        pairs.push(format!("{} {}", p[0], p[1]));
    }
    let pair = |lex: &Lexicon| pairs.iter().any(|p| lex.has(p));
    let any = |lex: &Lexicon| ws.iter().any(|w| lex.has(w));
    if any(&HEALTH) {
        return Category::Health;
    }
    if tense == Tense::Future || future_date || any(&PLAN_WORDS) || pair(&PLAN_PAIRS) {
        return Category::Plan;
    }
    let verb_like = |p: &[&str]| {
        PREFERENCE_LEADS.has(p[0])
            && matches!(
                p[1],
                "like" | "likes" | "love" | "loves" | "enjoy" | "prefer" | "adore"
            )
    };
    if any(&PREFERENCE_WORDS)
        || pair(&PREFERENCE_PAIRS)
        || ws.windows(2).any(verb_like)
        || (seq("can't", "stand"))
    {
        return Category::Preference;
    }
    let work_verb = |p: &[&str]| {
        matches!(p[0], "work" | "works" | "worked" | "working")
            && matches!(p[1], "at" | "for" | "as" | "in")
    };
    if ws
        .iter()
        .any(|w| WORK.has(w) && !matches!(*w, "work" | "works" | "worked" | "working"))
        || ws.windows(2).any(work_verb)
    {
        return Category::Work;
    }
    if any(&PLACE_WORDS) || pair(&PLACE_PAIRS) {
        return Category::Place;
    }
    let person = |b: &str| RELATIONS.has(b) && !PETS.has(b);
    let kin = |p: &[&str]| {
        matches!(p[0], "my" | "our" | "a" | "two" | "three" | "four")
            && (person(p[1])
                || (RELATION_ADJECTIVES.has(p[1]) && p.get(2).is_some_and(|w| person(w))))
    };
    if ws.windows(3).any(kin) || ws.windows(2).any(kin) || any(&RELATIONSHIP_WORDS) {
        return Category::Relationship;
    }
    let counted = |b: &str| {
        matches!(
            b,
            "a" | "an" | "new" | "two" | "three" | "four" | "five" | "some" | "my"
        ) || b.starts_with(|c: char| c.is_ascii_digit())
    };
    let subject = |w: &str| {
        matches!(
            w,
            "i" | "we" | "i've" | "we've" | "also" | "still" | "just" | "now" | "already"
        )
    };
    let possession = any(&POSSESSION_WORDS)
        || ws
            .windows(2)
            .any(|p| subject(p[0]) && matches!(p[1], "own" | "owns"))
        || ws
            .windows(3)
            .any(|p| subject(p[0]) && matches!(p[1], "have" | "got") && counted(p[2]));
    if possession {
        return Category::Possession;
    }
    if matches!(tense, Tense::Past | Tense::Perfect) || dated {
        return Category::Event;
    }
    Category::Other
}
