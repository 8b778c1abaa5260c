//! Ad-hoc runs over the LoCoMo benchmark file (`/work/shared/bench/locomo10.json`
//! or `$LOCOMO`): a printout for eyeballing and a timing. Both are ignored
//! by default.

use super::*;
use crate::dates::Period;

fn turn(id: &str, role: Role, text: &str, ts_ms: i64) -> TurnInput {
    TurnInput {
        fragment_id: id.into(),
        role,
        text: text.into(),
        ts_ms,
        observations: Vec::new(),
    }
}

/// LoCoMo sessions as (session date ms, [(dia_id, "Speaker: text")]).
fn locomo() -> Vec<(i64, Vec<(String, String)>)> {
    let path =
        std::env::var("LOCOMO").unwrap_or_else(|_| "/work/shared/bench/locomo10.json".into());
    let Ok(raw) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    let data: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let mut out = Vec::new();
    for sample in data.as_array().unwrap() {
        let conv = &sample["conversation"];
        for n in 1..=40 {
            let (Some(turns), Some(when)) = (
                conv[format!("session_{n}")].as_array(),
                conv[format!("session_{n}_date_time")].as_str(),
            ) else {
                continue;
            };
            let day = crate::dates::find_dates(when, NaiveDate::from_ymd_opt(2000, 1, 1).unwrap())
                .into_iter()
                .find(|m| m.period.granularity == crate::dates::Granularity::Day)
                .map_or(0, |m| m.period.from_ms());
            let turns = turns
                .iter()
                .map(|t| {
                    let id = t["dia_id"].as_str().unwrap_or("").to_string();
                    (
                        id,
                        format!(
                            "{}: {}",
                            t["speaker"].as_str().unwrap_or(""),
                            t["text"].as_str().unwrap_or("")
                        ),
                    )
                })
                .collect();
            out.push((day + 13 * 3_600_000, turns));
        }
    }
    out
}

/// Prints what the rules make of LoCoMo: `LOCOMO_SESSIONS=0..3 cargo test
/// -p engram-extract --lib locomo_dump -- --ignored --nocapture`.
#[test]
#[ignore = "prints LoCoMo samples"]
fn locomo_dump() {
    let range = std::env::var("LOCOMO_SESSIONS").unwrap_or_else(|_| "0..2".into());
    let (a, b) = range.split_once("..").unwrap();
    let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
    for (day, turns) in locomo().into_iter().skip(a).take(b - a) {
        let inputs: Vec<TurnInput> = turns
            .iter()
            .map(|(id, text)| turn(id, Role::User, text, day))
            .collect();
        let x = RuleExtractor::new().extract_sync(&inputs);
        let grep: Vec<String> = std::env::var("LOCOMO_GREP")
            .map(|g| g.split('|').map(str::to_string).collect())
            .unwrap_or_default();
        for t in &inputs {
            if !grep.is_empty() && !grep.iter().any(|g| t.text.contains(g.as_str())) {
                continue;
            }
            println!("\n[{}] {}", t.fragment_id, t.text);
            for o in x
                .observations
                .iter()
                .filter(|o| o.source_ids[0] == t.fragment_id)
            {
                println!(
                    "   -> ({}) {}  {:?}",
                    o.category.as_str(),
                    o.text,
                    o.entity_keys
                );
            }
        }
        println!("\nENTITIES:");
        for e in x.entities.iter().filter(|_| grep.is_empty()) {
            println!("   {} {:?} {:?} {:?}", e.key, e.label, e.kind, e.source_ids);
        }
    }
}

/// Time per turn over all of LoCoMo, one session per call: `cargo test
/// --release -p engram-extract --lib locomo_speed -- --ignored --nocapture`.
#[test]
#[ignore = "timing, run in release"]
fn locomo_speed() {
    let sessions: Vec<Vec<TurnInput>> = locomo()
        .into_iter()
        .map(|(day, turns)| {
            turns
                .iter()
                .map(|(id, text)| turn(id, Role::User, text, day))
                .collect()
        })
        .collect();
    let n: usize = sessions.iter().map(Vec::len).sum();
    let rules = RuleExtractor::new();
    for s in &sessions {
        rules.extract_sync(s); // warm-up
    }
    let mut obs = 0;
    let start = std::time::Instant::now();
    for s in &sessions {
        obs += rules.extract_sync(s).observations.len();
    }
    let batch = start.elapsed();
    let start = std::time::Instant::now();
    for s in &sessions {
        for t in s {
            rules.extract_sync(std::slice::from_ref(t));
        }
    }
    let single = start.elapsed();
    println!(
        "{n} turns, {obs} observations; per session batch {:.1} µs/turn, one turn per call {:.1} µs/turn",
        batch.as_secs_f64() * 1e6 / n as f64,
        single.as_secs_f64() * 1e6 / n as f64
    );
}

#[test]
#[ignore = "debug"]
/// Prints what one text gives (said on 8 May 2023): `PROBE="I moved to Lyon"
/// cargo test -p engram-extract --lib probe -- --ignored --nocapture`.
fn probe() {
    let text = std::env::var("PROBE").unwrap_or_default();
    let ts = Period::day(NaiveDate::from_ymd_opt(2023, 5, 8).unwrap()).from_ms();
    let x = RuleExtractor::new().extract_sync(&[turn("t1", Role::User, &text, ts)]);
    for o in &x.observations {
        println!(
            "({}) {} {:?} {:?}",
            o.category.as_str(),
            o.text,
            o.entity_keys,
            o.event_ms
        );
    }
    for e in &x.entities {
        println!("  {} {:?}", e.key, e.label);
    }
}
