//! The prompt: the fixed system message, the numbered turn lines of the
//! user message, and how a batch is cut into calls.

use std::ops::Range;

use chrono::{DateTime, SecondsFormat};

use crate::TurnInput;

/// The system message: the answer's exact JSON shape and the rules.
pub(super) const SYSTEM: &str = r#"You extract durable facts from a conversation for a long-term memory.

You receive numbered turns, one per line: "[i] <timestamp> <role>: <text>". The timestamp (RFC 3339, UTC) is when the turn was said. A text that starts with "Name: " (one to three capitalized words and a colon) was spoken by that person.

Answer with one JSON object and nothing else, with exactly this shape:
{"observations":[{"turn":0,"subject":"User","category":"health","text":"User is allergic to shellfish.","date":null}],"entities":[{"label":"Ana Lopez","kind":"person","turns":[0,2]}]}

Observations:
- One atomic fact per observation, written as one third-person sentence that ends with a period and makes sense without the conversation: "User is allergic to shellfish.", not "I am allergic to shellfish." or "He is allergic.".
- "turn" is the index i of the turn the fact comes from.
- "subject" is who the fact is about: "User" for the user, "Assistant" for the assistant, the speaker's name when the turn starts with "Name: ", or the name of the person talked about. The text starts with the subject.
- Resolve relative dates ("yesterday", "last week", "next month", "two years ago") against the turn's timestamp and write the absolute date in the text: "on 7 May 2023" for a day, "in May 2023" for a month, "in 2023" for a year. Set "date" to that date as "YYYY-MM-DD", "YYYY-MM" or "YYYY"; set it to null when the fact has no date.
- "category" is one of: "preference" (likes, dislikes, favourites), "plan" (intentions, scheduled things), "health" (allergies, conditions, diets, medication), "possession" (things someone has or owns), "relationship" (family, friends, partners, colleagues), "place" (where someone lives, moved, travelled), "work" (jobs, employers, studies), "event" (something that happened), "other".
- Keep facts about people: their lives, preferences, plans and what happened to them. Skip greetings, small talk, questions that state no fact, and generic advice.
- At most 500 characters per text. Do not repeat a fact.

Entities:
- Each person, place, organization, product, date and quantity the turns mention, once.
- "label" is the fullest name used ("Ana Lopez"), without a possessive ("Ana", not "Ana's").
- "kind" is one of: "person", "place", "organization", "product", "date", "quantity".
- "turns" lists the indices of the turns that mention it.

Use only the keys shown. When nothing is worth keeping, answer {"observations":[],"entities":[]}."#;

/// The turns of one call: their range in the batch and their prompt lines.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Call {
    /// Which turns of the whole batch this call covers.
    pub range: Range<usize>,
    /// One line per turn, numbered from 0 within the call.
    pub lines: Vec<String>,
}

/// Cuts `turns` into calls of at most `max_turns` turns whose lines (each
/// counted with its newline) total at most `max_chars` characters; a turn
/// whose line alone is longer has its text truncated.
pub(super) fn plan(turns: &[TurnInput], max_turns: usize, max_chars: usize) -> Vec<Call> {
    let max_turns = max_turns.max(1);
    let mut calls = Vec::new();
    let mut current = Call {
        range: 0..0,
        lines: Vec::new(),
    };
    let mut chars = 0;
    for (i, turn) in turns.iter().enumerate() {
        let mut line = render_line(current.lines.len(), turn, max_chars);
        let mut len = line.chars().count() + 1;
        if !current.lines.is_empty()
            && (current.lines.len() >= max_turns || chars + len > max_chars)
        {
            calls.push(std::mem::replace(
                &mut current,
                Call {
                    range: i..i,
                    lines: Vec::new(),
                },
            ));
            chars = 0;
            line = render_line(0, turn, max_chars);
            len = line.chars().count() + 1;
        }
        current.lines.push(line);
        current.range.end = i + 1;
        chars += len;
    }
    if !current.lines.is_empty() {
        calls.push(current);
    }
    calls
}

/// The user message of a call.
pub(super) fn user_message(lines: &[String]) -> String {
    let mut out = String::from("Extract the observations and entities of these turns.\n\n");
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `[i] <RFC 3339 timestamp> <role>: <text>`, the text on one line and cut
/// (with "…") so that the line, with its newline, fits `max_chars`.
pub(super) fn render_line(index: usize, turn: &TurnInput, max_chars: usize) -> String {
    let ts = DateTime::from_timestamp_millis(turn.ts_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| turn.ts_ms.to_string());
    let head = format!("[{index}] {ts} {}: ", turn.role.as_str());
    let text: String = turn
        .text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let budget = max_chars.saturating_sub(head.chars().count() + 1);
    if text.chars().count() <= budget {
        return head + &text;
    }
    let mut cut: String = text.chars().take(budget.saturating_sub(1)).collect();
    if budget > 0 {
        cut.push('…');
    }
    head + &cut
}

#[cfg(test)]
mod tests {
    use engram_core::Role;

    use super::*;

    fn turn(text: &str) -> TurnInput {
        TurnInput {
            fragment_id: "f".repeat(64),
            role: Role::User,
            text: text.to_owned(),
            // 2023-05-07T14:03:00Z
            ts_ms: 1_683_468_180_000,
            observations: Vec::new(),
        }
    }

    #[test]
    fn line_format() {
        let line = render_line(3, &turn("Ana: I moved\nto Lyon."), 10_000);
        assert_eq!(line, "[3] 2023-05-07T14:03:00Z user: Ana: I moved to Lyon.");
    }

    #[test]
    fn long_turn_is_truncated_to_fit() {
        let text = "é".repeat(500);
        let line = render_line(0, &turn(&text), 100);
        assert_eq!(line.chars().count() + 1, 100);
        assert!(line.ends_with('…'));
        assert!(line.starts_with("[0] 2023-05-07T14:03:00Z user: é"));

        // A limit below the header keeps the header only.
        let line = render_line(0, &turn("hello"), 5);
        assert_eq!(line, "[0] 2023-05-07T14:03:00Z user: ");
    }

    #[test]
    fn plan_splits_by_turns() {
        let turns: Vec<_> = (0..5).map(|i| turn(&format!("turn {i}"))).collect();
        let calls = plan(&turns, 2, 10_000);
        let ranges: Vec<_> = calls.iter().map(|c| c.range.clone()).collect();
        assert_eq!(ranges, vec![0..2, 2..4, 4..5]);
        // Numbered from 0 within each call.
        assert!(calls[1].lines[0].starts_with("[0] "));
        assert!(calls[1].lines[0].ends_with("turn 2"));
        assert!(calls[1].lines[1].starts_with("[1] "));
        assert!(plan(&[], 2, 100).is_empty());
    }

    #[test]
    fn plan_splits_by_chars() {
        // Each line is 31 + 40 = 71 characters, 72 with its newline.
        let turns: Vec<_> = (0..4).map(|_| turn(&"x".repeat(40))).collect();
        let calls = plan(&turns, 10, 150);
        let ranges: Vec<_> = calls.iter().map(|c| c.range.clone()).collect();
        assert_eq!(ranges, vec![0..2, 2..4]);
        for call in &calls {
            let total: usize = call.lines.iter().map(|l| l.chars().count() + 1).sum();
            assert!(total <= 150);
        }
        // A turn longer than the limit gets a call of its own, truncated.
        let turns = vec![turn("short"), turn(&"y".repeat(1000)), turn("short")];
        let calls = plan(&turns, 10, 200);
        let ranges: Vec<_> = calls.iter().map(|c| c.range.clone()).collect();
        assert_eq!(ranges, vec![0..1, 1..2, 2..3]);
        assert_eq!(calls[1].lines[0].chars().count() + 1, 200);
    }

    #[test]
    fn user_message_lists_lines() {
        let msg = user_message(&["[0] a".to_owned(), "[1] b".to_owned()]);
        assert!(msg.ends_with("\n\n[0] a\n[1] b\n"));
    }
}
