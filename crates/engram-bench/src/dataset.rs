//! The LoCoMo data file (`locomo10.json`): conversations, sessions, turns and
//! questions, with the file's quirks smoothed over.
//!
//! Sessions are keys `session_N` next to `session_N_date_time`, so the
//! conversation object is read as untyped JSON rather than a fixed struct.

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;
use std::path::Path;

/// One LoCoMo sample: a long two-person conversation and its questions.
#[derive(Debug, Clone)]
pub struct Conversation {
    /// `sample_id`, e.g. `conv-26`.
    pub sample_id: String,
    /// First speaker (sent as role `user`).
    pub speaker_a: String,
    /// Second speaker (sent as role `assistant`).
    pub speaker_b: String,
    /// Sessions in order of their number.
    pub sessions: Vec<Session>,
    /// Questions.
    pub qa: Vec<Question>,
}

/// One session of a conversation.
#[derive(Debug, Clone)]
pub struct Session {
    /// The number N of `session_N`.
    pub number: u32,
    /// When the session happened.
    pub date: DateTime<Utc>,
    /// Turns in order.
    pub turns: Vec<DialogTurn>,
}

/// One turn of a session.
#[derive(Debug, Clone)]
pub struct DialogTurn {
    /// Who spoke.
    pub speaker: String,
    /// Turn id, e.g. `D1:3`.
    pub dia_id: String,
    /// What was said.
    pub text: String,
    /// Caption of a shared image, if any.
    pub blip_caption: Option<String>,
}

impl DialogTurn {
    /// The text indexed for the turn: `"{speaker}: {text}"` plus
    /// `" [shares {caption}]"` when it carries an image. This is the
    /// format of the reference points in `../shared/bench/README.md`, so the
    /// numbers compare; captions already read "a photo of …".
    pub fn indexed_text(&self) -> String {
        match &self.blip_caption {
            Some(c) => format!("{}: {} [shares {}]", self.speaker, self.text, c),
            None => format!("{}: {}", self.speaker, self.text),
        }
    }
}

/// One question with its evidence turns.
#[derive(Debug, Clone)]
pub struct Question {
    /// The question text.
    pub question: String,
    /// Evidence turn ids, normalized (see [`parse_evidence`]).
    pub evidence: Vec<String>,
    /// 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop, 5 adversarial.
    pub category: u8,
    /// Whether any raw evidence string needed lenient parsing.
    pub evidence_repaired: bool,
}

/// Name of a LoCoMo question category (codes as in the dataset and in
/// `../shared/bench/README.md`).
pub fn category_name(category: u8) -> &'static str {
    match category {
        1 => "multi-hop",
        2 => "temporal",
        3 => "open-domain",
        4 => "single-hop",
        5 => "adversarial",
        _ => "unknown",
    }
}

/// Parses a LoCoMo session date such as `"1:56 pm on 8 May, 2023"`. The file
/// names no time zone, so the time is taken as UTC.
pub fn parse_session_date(s: &str) -> anyhow::Result<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), "%I:%M %p on %d %B, %Y")
        .map(|t| t.and_utc())
        .with_context(|| format!("session date {s:?} is not like \"1:56 pm on 8 May, 2023\""))
}

/// The RFC 3339 timestamp of the `index`-th turn of a session: the session's
/// date plus one second per turn, so turns keep their order in time.
pub fn turn_timestamp(session: DateTime<Utc>, index: usize) -> String {
    (session + TimeDelta::seconds(index as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Normalizes raw evidence strings into `D<session>:<turn>` ids and says
/// whether any needed repair.
///
/// The file has malformed entries: several ids in one string separated by
/// `;` or spaces (`"D8:6; D9:17"`), a stray colon (`"D:11:26"`), a leading
/// zero (`"D30:05"`) and a bare `"D"`. Each string is split on `;`, `,` and
/// whitespace; each piece that holds exactly two numbers becomes
/// `D{a}:{b}` without leading zeros; pieces with fewer numbers are dropped.
/// Duplicates are removed, first occurrence kept.
pub fn parse_evidence(raw: &[String]) -> (Vec<String>, bool) {
    let mut out: Vec<String> = Vec::new();
    let mut repaired = false;
    for s in raw {
        for piece in s.split(|c: char| c == ';' || c == ',' || c.is_whitespace()) {
            if piece.is_empty() {
                continue;
            }
            let nums: Vec<u32> = piece
                .split(|c: char| !c.is_ascii_digit())
                .filter(|n| !n.is_empty())
                .filter_map(|n| n.parse().ok())
                .collect();
            let id = match nums.as_slice() {
                [a, b] => format!("D{a}:{b}"),
                _ => {
                    repaired = true;
                    continue;
                }
            };
            if id != piece || piece.len() != s.len() {
                repaired = true;
            }
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    (out, repaired)
}

/// Reads and parses `locomo10.json`.
pub fn load(path: &Path) -> anyhow::Result<Vec<Conversation>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read LoCoMo data {} (pass --data)", path.display()))?;
    let root: Value = serde_json::from_str(&text).context("LoCoMo data is not JSON")?;
    let samples = root.as_array().context("LoCoMo data is not a JSON array")?;
    samples.iter().map(parse_sample).collect()
}

fn str_field<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("missing string field {key:?}"))
}

fn parse_sample(v: &Value) -> anyhow::Result<Conversation> {
    let sample_id = str_field(v, "sample_id")?.to_string();
    let ctx = || format!("sample {sample_id}");
    let conv = v
        .get("conversation")
        .context("missing conversation")
        .with_context(ctx)?;
    let map = conv
        .as_object()
        .context("conversation is not an object")
        .with_context(ctx)?;
    let mut sessions = Vec::new();
    for (key, value) in map {
        let Some(number) = key
            .strip_prefix("session_")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(turns) = value.as_array() else {
            continue;
        };
        // Some `session_N_date_time` keys have no session; only sessions with
        // turns need a date.
        let date_key = format!("{key}_date_time");
        let date =
            parse_session_date(str_field(conv, &date_key).with_context(ctx)?).with_context(ctx)?;
        let turns = turns
            .iter()
            .map(|t| {
                Ok(DialogTurn {
                    speaker: str_field(t, "speaker")?.to_string(),
                    dia_id: str_field(t, "dia_id")?.to_string(),
                    text: str_field(t, "text")?.to_string(),
                    blip_caption: t
                        .get("blip_caption")
                        .and_then(Value::as_str)
                        .filter(|c| !c.trim().is_empty())
                        .map(str::to_string),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("{key} of sample {sample_id}"))?;
        if !turns.is_empty() {
            sessions.push(Session {
                number,
                date,
                turns,
            });
        }
    }
    sessions.sort_by_key(|s| s.number);
    let qa = v
        .get("qa")
        .and_then(Value::as_array)
        .context("missing qa")
        .with_context(ctx)?
        .iter()
        .map(|q| {
            let raw: Vec<String> = q
                .get("evidence")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            let (evidence, evidence_repaired) = parse_evidence(&raw);
            let category = q
                .get("category")
                .and_then(Value::as_u64)
                .context("missing category")?;
            if !(1..=5).contains(&category) {
                bail!("category {category} is outside 1..=5");
            }
            Ok(Question {
                question: str_field(q, "question")?.to_string(),
                evidence,
                category: category as u8,
                evidence_repaired,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .with_context(ctx)?;
    Ok(Conversation {
        speaker_a: str_field(conv, "speaker_a").with_context(ctx)?.to_string(),
        speaker_b: str_field(conv, "speaker_b").with_context(ctx)?.to_string(),
        sample_id,
        sessions,
        qa,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(raw: &[&str]) -> (Vec<String>, bool) {
        parse_evidence(&raw.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn session_dates_parse_to_rfc3339() {
        let d = parse_session_date("1:56 pm on 8 May, 2023").unwrap();
        assert_eq!(turn_timestamp(d, 0), "2023-05-08T13:56:00Z");
        assert_eq!(turn_timestamp(d, 61), "2023-05-08T13:57:01Z");
        let d = parse_session_date("9:49 am on 27 January, 2023").unwrap();
        assert_eq!(turn_timestamp(d, 0), "2023-01-27T09:49:00Z");
        let d = parse_session_date("12:09 am on 13 September, 2023").unwrap();
        assert_eq!(turn_timestamp(d, 0), "2023-09-13T00:09:00Z");
        assert!(parse_session_date("yesterday").is_err());
    }

    #[test]
    fn evidence_is_parsed_leniently() {
        assert_eq!(
            ev(&["D1:3", "D2:10"]),
            (vec!["D1:3".into(), "D2:10".into()], false)
        );
        assert_eq!(
            ev(&["D8:6; D9:17"]),
            (vec!["D8:6".into(), "D9:17".into()], true)
        );
        assert_eq!(ev(&["D:11:26"]), (vec!["D11:26".into()], true));
        assert_eq!(ev(&["D30:05"]), (vec!["D30:5".into()], true));
        assert_eq!(ev(&["D"]), (vec![], true));
        assert_eq!(
            ev(&["D9:1 D4:4 D4:6", "D4:4"]),
            (vec!["D9:1".into(), "D4:4".into(), "D4:6".into()], true)
        );
        assert_eq!(ev(&[]), (vec![], false));
    }

    #[test]
    fn indexed_text_mentions_the_photo() {
        let mut t = DialogTurn {
            speaker: "Caroline".into(),
            dia_id: "D1:5".into(),
            text: "Look!".into(),
            blip_caption: None,
        };
        assert_eq!(t.indexed_text(), "Caroline: Look!");
        t.blip_caption = Some("a photo of a dog".into());
        assert_eq!(
            t.indexed_text(),
            "Caroline: Look! [shares a photo of a dog]"
        );
    }

    #[test]
    fn the_shared_locomo_file_parses_when_present() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/locomo10.json");
        if !path.exists() {
            return;
        }
        let convs = load(&path).unwrap();
        let sessions: usize = convs.iter().map(|c| c.sessions.len()).sum();
        let turns: usize = convs
            .iter()
            .flat_map(|c| &c.sessions)
            .map(|s| s.turns.len())
            .sum();
        let qa: Vec<&Question> = convs.iter().flat_map(|c| &c.qa).collect();
        assert_eq!(
            (convs.len(), sessions, turns, qa.len()),
            (10, 272, 5882, 1986)
        );
        assert_eq!(qa.iter().filter(|q| q.evidence.is_empty()).count(), 4);
        let per_cat: Vec<usize> = (1..=5)
            .map(|c| qa.iter().filter(|q| q.category == c).count())
            .collect();
        assert_eq!(per_cat, vec![282, 321, 96, 841, 446]);
    }

    #[test]
    fn samples_parse_with_sorted_sessions() {
        let v: Value = serde_json::json!({
            "sample_id": "conv-x",
            "conversation": {
                "speaker_a": "A", "speaker_b": "B",
                "session_10_date_time": "1:00 pm on 2 May, 2023",
                "session_10": [{"speaker": "B", "dia_id": "D10:1", "text": "late"}],
                "session_2_date_time": "1:00 pm on 1 May, 2023",
                "session_2": [{"speaker": "A", "dia_id": "D2:1", "text": "hi", "blip_caption": "a photo of a cat"}],
                "session_3_date_time": "1:00 pm on 3 May, 2023"
            },
            "qa": [{"question": "q?", "answer": 2022, "evidence": ["D2:1"], "category": 2}]
        });
        let c = parse_sample(&v).unwrap();
        assert_eq!(
            c.sessions.iter().map(|s| s.number).collect::<Vec<_>>(),
            vec![2, 10]
        );
        assert_eq!(
            c.sessions[0].turns[0].blip_caption.as_deref(),
            Some("a photo of a cat")
        );
        assert_eq!(c.qa[0].evidence, vec!["D2:1".to_string()]);
    }
}
