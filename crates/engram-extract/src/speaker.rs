//! The transcript convention of naming the speaker: `"Caroline: I went..."`.

/// Prefixes with a colon that are not speakers.
const NOT_SPEAKERS: &[&str] = &[
    "note",
    "update",
    "edit",
    "ps",
    "p.s",
    "re",
    "answer",
    "question",
    "summary",
    "todo",
    "warning",
    "error",
    "example",
    "tip",
    "reminder",
    "subject",
    "title",
    "date",
    "time",
    "location",
    "address",
    "step",
    "link",
    "source",
    "fact",
    "fyi",
    "important",
    "info",
    "hint",
    "context",
    "output",
    "input",
    "result",
    "results",
    "goal",
    "task",
    "status",
    "i",
];

/// A leading `"Name: "`: one to three capitalized words and a colon.
/// Returns the name and the rest of the text.
pub fn split_speaker(raw: &str) -> Option<(&str, &str)> {
    let head = raw.trim_start();
    // The colon is looked for in the first 48 bytes, cut back to a
    // character boundary (a multi-byte character may straddle byte 48).
    let mut window = head.len().min(48);
    while !head.is_char_boundary(window) {
        window -= 1;
    }
    let colon = head[..window].find(':')?;
    let name = head[..colon].trim();
    let rest = &head[colon + 1..];
    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) || name.is_empty() {
        return None;
    }
    let words: Vec<&str> = name.split(' ').collect();
    let word_ok = |w: &&str| {
        let mut cs = w.chars();
        cs.next().is_some_and(char::is_uppercase)
            && cs.all(|c| c.is_alphabetic() || matches!(c, '.' | '\'' | '-'))
    };
    let lower = name.to_lowercase();
    let ok = (1..=3).contains(&words.len())
        && words.iter().all(word_ok)
        && !(words.len() == 1 && name.chars().count() == 1)
        && !NOT_SPEAKERS.contains(&lower.as_str());
    ok.then(|| (name, rest.trim_start()))
}
