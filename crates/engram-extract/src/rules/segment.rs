//! Text handling: the speaker prefix, cleaning, words, sentences, clauses,
//! fillers and the final polish of an observation sentence.
//!
//! Everything works on byte ranges of one cleaned string so that date and
//! entity positions found once per turn can be matched to clauses.

use super::lexicon::{FILLERS, SOFT_FILLERS, STOP_CAPS};
use crate::dates::DateMention;

/// A word: byte range in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Word {
    /// First byte.
    pub s: usize,
    /// Byte after the last.
    pub e: usize,
}

/// A sentence: byte range without its final punctuation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sentence {
    pub s: usize,
    pub e: usize,
    /// Ended with a question mark.
    pub question: bool,
}

pub(super) use crate::speaker::split_speaker;

fn is_emoji(c: char) -> bool {
    matches!(c as u32,
        0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF | 0x2300..=0x23FF
        | 0xFE00..=0xFE0F | 0x200D | 0x20E3 | 0xE0000..=0xE007F | 0x3030 | 0x303D)
}

const EMOTICONS: &[&str] = &[
    ":)", ":-)", ":(", ":-(", ":D", ":-D", ";)", ";-)", ":P", ":p", "<3", "xD", "XD", ":')", ":'(",
    "^^", "^_^", ":/", ":o", ":O",
];

/// Normalizes quotes and dashes, drops emojis, emoticons and control
/// characters, and collapses blanks (newlines stay: they end sentences).
pub(super) fn clean(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = match c {
            '\u{2019}' | '\u{2018}' | '\u{02BC}' | '`' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{2026}' => {
                out.push_str("...");
                continue;
            }
            '\u{00A0}' | '\t' | '\r' => ' ',
            c if is_emoji(c) => continue,
            c if c.is_control() && c != '\n' => continue,
            c => c,
        };
        if c == ' ' && (out.is_empty() || out.ends_with([' ', '\n'])) {
            continue;
        }
        if c == '\n' && out.ends_with(' ') {
            out.pop();
        }
        out.push(c);
    }
    if out.contains([':', ';', '<', 'x', 'X', '^']) {
        out = out
            .split(' ')
            .filter(|t| !EMOTICONS.contains(t))
            .collect::<Vec<_>>()
            .join(" ");
    }
    out.trim().to_string()
}

/// The words of `text[from..to]`: letters and digits, with inner
/// apostrophes ("I'm"), hyphens ("co-worker"), digit separators ("3.5",
/// "1,000") and ampersands between capitals ("H&M").
pub(super) fn words(text: &str, from: usize, to: usize) -> Vec<Word> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut prev: Option<char> = None;
    let mut it = text[from..to].char_indices().peekable();
    while let Some((i, c)) = it.next() {
        let next = it.peek().map(|&(_, n)| n);
        let inner = start.is_some()
            && match c {
                '\'' => {
                    prev.is_some_and(char::is_alphanumeric) && next.is_some_and(char::is_alphabetic)
                }
                '-' => next.is_some_and(char::is_alphanumeric),
                '.' | ',' => {
                    prev.is_some_and(|p| p.is_ascii_digit())
                        && next.is_some_and(|n| n.is_ascii_digit())
                }
                '&' => prev.is_some_and(char::is_uppercase) && next.is_some_and(char::is_uppercase),
                _ => false,
            };
        if c.is_alphanumeric() || inner {
            start.get_or_insert(i);
        } else if let Some(s) = start.take() {
            out.push(Word {
                s: from + s,
                e: from + i,
            });
        }
        prev = Some(c);
    }
    if let Some(s) = start {
        out.push(Word { s: from + s, e: to });
    }
    out
}

/// The first word of `text[from..to]`.
fn first_word(text: &str, from: usize, to: usize) -> Option<Word> {
    let end = text[from..to]
        .char_indices()
        .skip_while(|(_, c)| !c.is_alphanumeric())
        .find(|&(_, c)| {
            c.is_whitespace() || matches!(c, ',' | '.' | '!' | '?' | ';' | ':' | '"' | '(' | ')')
        })
        .map_or(to, |(i, _)| from + i);
    words(text, from, end).into_iter().next()
}

/// Abbreviations whose period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "prof", "vs", "approx", "mt", "ft", "ave", "gen",
    "col", "lt", "sgt", "capt", "rev", "fig", "dept", "est", "min", "max", "govt", "univ", "jan",
    "feb", "aug", "sept", "oct", "nov", "dec",
];

/// Whether the period at byte `i` ends a sentence.
fn period_ends(text: &str, i: usize) -> bool {
    let before = &text[..i];
    // The position after the last character that is not part of the word
    // (that character may be several bytes long: "→.").
    let word_start = before
        .char_indices()
        .rfind(|&(_, c)| !(c.is_alphanumeric() || c == '.'))
        .map_or(0, |(p, c)| p + c.len_utf8());
    let word = &before[word_start..];
    if word.is_empty() {
        return true;
    }
    if word.contains('.') {
        return false; // "e.g", "U.S"
    }
    let mut cs = word.chars();
    if let (Some(c), None) = (cs.next(), cs.next())
        && c.is_uppercase()
        && c != 'I'
    {
        return false; // an initial
    }
    !ABBREVIATIONS.contains(&word.to_ascii_lowercase().as_str())
}

/// Splits `text` into sentences at `.`, `!`, `?` (and runs of them) followed
/// by a blank, and at newlines; not after abbreviations, initials or inside
/// numbers.
pub(super) fn sentences(text: &str) -> Vec<Sentence> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut push = |s: usize, e: usize, question: bool| {
        let piece = &text[s..e];
        let lead = piece.len() - piece.trim_start().len();
        let trail = piece.len() - piece.trim_end().len();
        if lead + trail < piece.len() {
            out.push(Sentence {
                s: s + lead,
                e: e - trail,
                question,
            });
        }
    };
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\n' => {
                push(start, i, false);
                i += 1;
                start = i;
            }
            c @ (b'.' | b'!' | b'?') => {
                if c == b'.' && !period_ends(text, i) {
                    i += 1;
                    continue;
                }
                let mut j = i;
                let mut question = false;
                while j < b.len() && matches!(b[j], b'.' | b'!' | b'?' | b'"' | b')') {
                    question |= b[j] == b'?';
                    j += 1;
                }
                if j < b.len() && !b[j].is_ascii_whitespace() {
                    i = j;
                    continue;
                }
                push(start, i, question);
                start = j;
                i = j;
            }
            _ => i += 1,
        }
    }
    push(start, b.len(), false);
    out
}

/// Words that open a first-person clause.
pub(super) fn is_first_person_subject(lower: &str) -> bool {
    matches!(
        lower,
        "i" | "i'm"
            | "i've"
            | "i'd"
            | "i'll"
            | "im"
            | "ive"
            | "we"
            | "we're"
            | "we've"
            | "we'll"
            | "we'd"
    )
}

/// Conjunctions after which a new first-person clause starts.
fn is_split_conjunction(lower: &str) -> bool {
    matches!(
        lower,
        "and"
            | "but"
            | "so"
            | "because"
            | "cause"
            | "since"
            | "though"
            | "although"
            | "while"
            | "then"
            | "plus"
            | "yet"
            | "or"
            | "whereas"
    )
}

/// Pronouns that open a clause about someone else ("..., it was great").
fn is_other_subject(lower: &str) -> bool {
    matches!(
        lower,
        "it" | "it's"
            | "it'll"
            | "he"
            | "she"
            | "they"
            | "he's"
            | "she's"
            | "they're"
            | "they've"
            | "they'll"
    )
}

/// Subordinators that may follow a conjunction ("but when I ...").
pub(super) fn is_subordinator(lower: &str) -> bool {
    matches!(
        lower,
        "when" | "if" | "since" | "because" | "while" | "after" | "before" | "once" | "whenever"
    )
}

/// Splits the sentence into clauses where a new clause with its own subject
/// starts: after `;` or `:`; after a comma or dash, or a conjunction
/// ("and", "but", "so", "because", ...), followed by a first-person subject
/// ("I moved to Berlin and I love it" → two) or a pronoun ("it was
/// great"). A piece that would hold nothing but a date ("Since last May,
/// I ...") is not split off.
pub(super) fn clauses(
    text: &str,
    lower: &str,
    sent: &Sentence,
    dates: &[DateMention],
) -> Vec<(usize, usize)> {
    let ws = words(text, sent.s, sent.e);
    let lw = |k: usize| ws.get(k).map_or("", |w| &lower[w.s..w.e]);
    let opens = |k: usize, other: bool| {
        is_first_person_subject(lw(k))
            || (other && is_other_subject(lw(k)))
            || (is_subordinator(lw(k)) && is_first_person_subject(lw(k + 1)))
    };
    let mut out = Vec::new();
    let mut cur = sent.s;
    let mut first_word = 0;
    for k in 1..ws.len() {
        let gap = &text[ws[k - 1].e..ws[k].s];
        let hard = gap.contains(';') || gap.trim_end().ends_with(':');
        let soft = gap.contains([',', '\u{2013}', '\u{2014}'])
            || gap.contains(" - ")
            || gap.contains("--")
            || gap.trim() == "-";
        let conj = is_split_conjunction(lw(k));
        let (left_end, right_start, next_first) = if hard || (soft && !conj && opens(k, true)) {
            (ws[k - 1].e, ws[k].s, k)
        } else if conj
            && k + 1 < ws.len()
            && (opens(
                k + 1,
                matches!(lw(k), "and" | "but" | "so" | "yet" | "plus" | "then"),
            ) || (lw(k + 1) == "my" && gap.contains(',')))
            && text[ws[k].e..ws[k + 1].s].trim().is_empty()
            && !(matches!(lw(k + 1), "i" | "me")
                && compound_subject(text, lower, &ws[first_word..k], lw(k)))
            && !(is_subordinator(lw(k)) && k - first_word < 3)
        {
            if is_subordinator(lw(k))
                || matches!(lw(k), "though" | "although" | "whereas" | "cause")
            {
                // The subordinator stays: the clause is judged with it.
                (ws[k - 1].e, ws[k].s, k)
            } else {
                (ws[k - 1].e, ws[k + 1].s, k + 1)
            }
        } else {
            continue;
        };
        if !hard && date_only(lower, cur, left_end, dates) {
            continue;
        }
        out.push((cur, left_end));
        cur = right_start;
        first_word = next_first;
    }
    out.push((cur, sent.e));
    out
}

/// "My husband and I", "Ana and I": a short noun phrase before "and I".
fn compound_subject(text: &str, lower: &str, left: &[Word], conj: &str) -> bool {
    if !matches!(conj, "and" | "or") || left.is_empty() {
        return false;
    }
    let near = &left[left.len().saturating_sub(4)..];
    let last = near[near.len() - 1];
    let last_lower = &lower[last.s..last.e];
    near.iter()
        .any(|w| matches!(&lower[w.s..w.e], "my" | "me" | "our"))
        || (text[last.s..].starts_with(char::is_uppercase) && !STOP_CAPS.has(last_lower))
}

/// Whether `[s, e)` holds only a date expression, an optional relation word
/// before it and fillers.
fn date_only(lower: &str, s: usize, e: usize, dates: &[DateMention]) -> bool {
    let Some(m) = dates.iter().find(|m| m.start >= s && m.end <= e) else {
        return false;
    };
    let before = lower[s..m.start].trim_matches(|c: char| !c.is_alphanumeric());
    let after = lower[m.end..e].trim_matches(|c: char| !c.is_alphanumeric());
    after.is_empty()
        && before
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .all(|w| matches!(w, "since" | "before" | "after" | "until" | "by") || FILLERS.has(w))
}

/// Multi-word openers dropped like fillers.
const FILLER_PHRASES: &[&str] = &[
    "thank you",
    "oh my god",
    "oh my gosh",
    "oh my",
    "by the way",
    "to be honest",
    "of course",
    "you know what",
    "you know",
    "i mean",
    "for sure",
    "no way",
    "me too",
    "same here",
    "good job",
    "well done",
    "sounds good",
    "fair enough",
    "not gonna lie",
    "to be fair",
    "guess what",
    "believe it or not",
    "that said",
    "in fact",
    "as well",
];

/// Narrows `[s, e)` past leading fillers ("Yeah,", "Oh wow", "Thanks,
/// Mel!"), vocatives (a known name followed by a comma) and trailing
/// laughter or vocatives (", Mel"), and trims punctuation at both ends.
pub(super) fn trim_fillers(
    text: &str,
    lower: &str,
    mut s: usize,
    mut e: usize,
    is_name: &dyn Fn(&str) -> bool,
) -> (usize, usize) {
    let skip = |s: usize, e: usize| {
        s + text[s..e]
            .find(|c: char| c.is_alphanumeric() || c == '"' || c == '$')
            .unwrap_or(e - s)
    };
    loop {
        s = skip(s, e);
        if s >= e {
            return (e, e);
        }
        let rest = &lower[s..e];
        if let Some(p) = FILLER_PHRASES
            .iter()
            .find(|p| rest.starts_with(*p) && !rest[p.len()..].starts_with(char::is_alphanumeric))
        {
            s += p.len();
            continue;
        }
        let Some(w) = first_word(text, s, e) else {
            return (e, e);
        };
        let lw = &lower[w.s..w.e];
        let after = text[w.e..e].trim_start_matches(' ');
        let punct_next = after.is_empty()
            || after.starts_with([',', '!', '.', ';', ':', '-', '\u{2013}', '\u{2014}']);
        let filler = FILLERS.has(lw) || (SOFT_FILLERS.has(lw) && punct_next);
        let vocative = punct_next && !after.starts_with('.') && is_name(&text[w.s..w.e]);
        if w.s == s && (filler || vocative) {
            s = w.e;
        } else {
            break;
        }
    }
    let mut ws = words(text, s, e);
    while let Some(last) = ws.last() {
        let lw = &lower[last.s..last.e];
        let gap_before = ws.len().checked_sub(2).map(|k| &text[ws[k].e..last.s]);
        let laugh = matches!(
            lw,
            "haha" | "hahaha" | "lol" | "lmao" | "hehe" | "rofl" | "xd" | "btw" | "though"
        );
        let vocative =
            gap_before.is_some_and(|g| g.contains(',')) && is_name(&text[last.s..last.e]);
        if (laugh || vocative) && ws.len() > 1 {
            e = ws[ws.len() - 2].e;
            ws.pop();
        } else {
            break;
        }
    }
    let piece = &text[s..e];
    let lead = piece.len()
        - piece
            .trim_start_matches(|c: char| c.is_whitespace() || ",;:-".contains(c))
            .len();
    let trail = piece.len()
        - piece
            .trim_end_matches(|c: char| c.is_whitespace() || ",;:-.!?\u{2013}\u{2014}".contains(c))
            .len();
    if lead + trail >= piece.len() {
        (e, e)
    } else {
        (s + lead, e - trail)
    }
}

/// Words that should not end an observation.
const DANGLING: &[&str] = &["and", "but", "so", "or", "because", "which", "the", "a"];

/// Polishes a rewritten clause into one sentence: blanks collapsed, no
/// space before punctuation, unbalanced quotes dropped, dangling
/// conjunctions removed, first letter capitalized, at most ~300 characters,
/// final period. `None` when nothing is left.
pub(super) fn finish(raw: &str) -> Option<String> {
    let mut s = String::with_capacity(raw.len() + 1);
    for c in raw.chars() {
        if c == ' ' && s.ends_with(' ') {
            continue;
        }
        if matches!(c, ',' | '.' | '!' | '?' | ';' | ':') && s.ends_with(' ') {
            s.pop();
        }
        s.push(c);
    }
    if s.matches('"').count() % 2 == 1 {
        s.retain(|c| c != '"');
    }
    if s.matches('(').count() != s.matches(')').count() {
        s.retain(|c| c != '(' && c != ')');
    }
    let mut t = s.trim().to_string();
    if t.chars().count() > 300 {
        let cut = t.char_indices().nth(296).map_or(t.len(), |(i, _)| i);
        t.truncate(t[..cut].rfind(' ').unwrap_or(cut));
    }
    loop {
        let trimmed = t.trim_end_matches(|c: char| {
            c.is_whitespace() || ",;:-.!?'\u{2013}\u{2014}".contains(c)
        });
        let last = trimmed.rsplit(' ').next().unwrap_or("");
        if DANGLING.contains(&last.to_ascii_lowercase().as_str()) && trimmed.len() > last.len() {
            t.truncate(trimmed.len() - last.len());
        } else {
            t.truncate(trimmed.len());
            break;
        }
    }
    let mut cs = t.chars();
    let first = cs.next()?;
    let mut out = String::with_capacity(t.len() + 1);
    out.extend(first.to_uppercase());
    out.push_str(cs.as_str());
    out.push('.');
    Some(out)
}
