//! The results of `bench realmem`: session recall scoring, the per-split
//! and per-mode figures, the confidence refit, and the markdown summary.

use crate::realmem_data::{DataNotes, FIT_PEOPLE, Split};
use crate::server::Memory;
use crate::stats::{self, Calibration, IngestRun, Latency};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::Duration;

/// Equal-width bins of the calibration error.
const ECE_BINS: usize = 10;
/// Calibration event: a gold session among the first this many distinct
/// sessions (any@5).
const CALIBRATION_K: usize = 5;

/// Session recall of one query at k = 5 and 10.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SessionRecall {
    /// A gold session among the first 5 distinct sessions.
    pub any_at_5: bool,
    /// Every gold session among the first 5.
    pub all_at_5: bool,
    /// A gold session among the first 10.
    pub any_at_10: bool,
    /// Every gold session among the first 10.
    pub all_at_10: bool,
}

/// The distinct sessions of `ranked` turn hits in rank order; `None` (a
/// hit that is no known turn) is left out rather than taking a rank.
pub fn distinct_sessions(ranked: &[Option<&str>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in ranked.iter().flatten() {
        if !out.iter().any(|o| o == s) {
            out.push((*s).to_string());
        }
    }
    out
}

/// Scores `sessions` (distinct, in rank order) against `gold`; all false
/// when `gold` is empty.
pub fn session_recall(gold: &[String], sessions: &[String]) -> SessionRecall {
    let at = |k: usize| {
        let top = &sessions[..k.min(sessions.len())];
        let found = gold.iter().filter(|g| top.contains(g)).count();
        let distinct: HashSet<&String> = gold.iter().collect();
        (found > 0, !gold.is_empty() && found >= distinct.len())
    };
    let (any_at_5, all_at_5) = at(5);
    let (any_at_10, all_at_10) = at(10);
    SessionRecall {
        any_at_5,
        all_at_5,
        any_at_10,
        all_at_10,
    }
}

/// What one recall mode returned for a query.
#[derive(Debug, Clone, Serialize)]
pub struct ModeOutcome {
    /// `active` or `deep`.
    pub mode: String,
    /// Distinct sessions of the turn hits, in rank order.
    pub sessions: Vec<String>,
    /// Turn hits returned.
    pub turn_hits: usize,
    /// Turn hits that were no turn written for this user.
    pub foreign_hits: usize,
    /// The scores.
    pub recall: SessionRecall,
    /// The server's confidence.
    pub confidence: f64,
    /// The confidence features the server reported (explain header).
    pub features: Vec<f64>,
    /// Recall latency, ms.
    pub latency_ms: f64,
}

/// What happened to one scored query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    /// Person name.
    pub person: String,
    /// The person's split.
    pub split: Split,
    /// `query_id`.
    pub query_id: String,
    /// The session the query turn is in (not yet written when asked).
    pub session_uuid: String,
    /// Its `session_identifier`, e.g. `Enhanced:S10059`.
    pub session_identifier: String,
    /// Index of that session in the person's file.
    pub session_index: usize,
    /// Index of the query turn in its session.
    pub turn_index: usize,
    /// `category_name`.
    pub category: Option<String>,
    /// `session_type`.
    pub session_type: Option<String>,
    /// `topic`.
    pub topic: Option<String>,
    /// The query text.
    pub query: String,
    /// Gold sessions already written (the ones scored).
    pub gold: Vec<String>,
    /// Gold sessions left out: not written yet when the query was asked.
    pub gold_dropped: Vec<String>,
    /// One outcome per mode, in `--modes` order.
    pub modes: Vec<ModeOutcome>,
}

/// Session recall of a group of queries, in percent.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Group label, e.g. `category Dynamic Updating`.
    pub label: String,
    /// Queries scored.
    pub queries: usize,
    /// any@5, %.
    pub any_at_5: f64,
    /// all@5, %.
    pub all_at_5: f64,
    /// any@10, %.
    pub any_at_10: f64,
    /// all@10, %.
    pub all_at_10: f64,
}

/// One mode on one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// `fit` or `report`.
    pub split: Split,
    /// Overall, by category, by session type.
    pub rows: Vec<Row>,
    /// The server's own confidence against the calibration event.
    pub server_calibration: Calibration,
    /// Recall latency of this split's queries.
    pub recall: Latency,
}

/// The results of one recall mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// `active` or `deep`.
    pub mode: String,
    /// Fit split, then report split.
    pub splits: Vec<SplitReport>,
    /// Overall over both splits, only for comparison with the README's
    /// reference points (which are over all people).
    pub both_splits: Row,
    /// Recall latency over all scored queries.
    pub recall: Latency,
    /// A logistic model fitted on the fit people.
    pub fitted: crate::fit::Logistic,
    /// That model's calibration on the report people.
    pub fitted_report: Calibration,
}

/// Counts of what was sent, skipped and repaired.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// Sessions replayed.
    pub sessions: usize,
    /// Turns in those sessions.
    pub turns_in_data: usize,
    /// Turns sent (a split turn counts once per piece).
    pub turns_sent: usize,
    /// Empty turns not sent (the server refuses empty text).
    pub blank_turns_not_sent: usize,
    /// Turns longer than `--max-text-chars`, sent in pieces.
    pub long_turns_split: usize,
    /// Pieces those turns were sent as.
    pub long_turn_pieces: usize,
    /// Query turns met.
    pub queries_total: usize,
    /// Queries scored.
    pub queries_scored: usize,
    /// Queries whose next turn carries no gold (or an empty one).
    pub queries_without_gold: usize,
    /// Of those, queries not followed by an Assistant turn with a gold field.
    pub queries_without_gold_turn: usize,
    /// Queries skipped: none of their gold sessions was written yet.
    pub queries_skipped_no_prior_gold: usize,
    /// Queries whose gold field needed lenient parsing.
    pub queries_gold_repaired: usize,
    /// Gold ids dropped because they name the query's own session.
    pub gold_dropped_same_session: usize,
    /// Gold ids dropped because they name a later session.
    pub gold_dropped_later_session: usize,
    /// Gold ids naming no session of the person's file.
    pub gold_dropped_unknown: usize,
    /// Turn hits that were no turn written for the queried user.
    pub foreign_hits: usize,
}

/// One person as replayed.
#[derive(Debug, Clone, Serialize)]
pub struct PersonSummary {
    /// Name.
    pub name: String,
    /// User id.
    pub user_id: String,
    /// File name.
    pub file: String,
    /// Fit or report.
    pub split: Split,
    /// Sessions replayed.
    pub sessions: usize,
    /// Queries scored.
    pub queries_scored: usize,
    /// Oddities of the file.
    pub notes: DataNotes,
}

/// Everything `bench realmem` measured.
#[derive(Debug, Clone, Serialize)]
pub struct RealmemReport {
    /// Server URL.
    pub endpoint: String,
    /// Data directory.
    pub data: String,
    /// `top_k` sent with each Recall.
    pub top_k: i32,
    /// The `--max-text-chars` turns were cut at.
    pub max_text_chars: usize,
    /// The people replayed.
    pub people: Vec<PersonSummary>,
    /// What was sent and skipped.
    pub counts: Counts,
    /// One report per recall mode.
    pub modes: Vec<ModeReport>,
    /// Time spent waiting for enrichment between sessions; `None` with
    /// `--skip-enrich-wait`.
    pub enrichment_wait_seconds: Option<f64>,
    /// Ingest: turns and Remember calls; seconds are the time spent in
    /// Remember phases only (queries and waits in between excluded).
    pub ingest: IngestRun,
    /// Server memory at the end of the run.
    pub memory_after_run: Option<Memory>,
    /// Wall time of the whole run, seconds.
    pub wall_seconds: f64,
    /// Per-query detail.
    pub queries: Vec<QueryResult>,
}

/// The calibration event: a gold session among the first
/// [`CALIBRATION_K`] distinct sessions.
fn event(o: &ModeOutcome) -> bool {
    debug_assert_eq!(CALIBRATION_K, 5);
    o.recall.any_at_5
}

fn row(label: String, outcomes: &[&ModeOutcome]) -> Row {
    let pct = |f: fn(&SessionRecall) -> bool| {
        100.0
            * stats::mean(
                &outcomes
                    .iter()
                    .map(|o| f64::from(u8::from(f(&o.recall))))
                    .collect::<Vec<_>>(),
            )
    };
    Row {
        label,
        queries: outcomes.len(),
        any_at_5: pct(|r| r.any_at_5),
        all_at_5: pct(|r| r.all_at_5),
        any_at_10: pct(|r| r.any_at_10),
        all_at_10: pct(|r| r.all_at_10),
    }
}

/// Rows of mode `m` over `queries`: overall, then by each of `categories`
/// and `session_types` (given, so every split has the same rows).
fn rows(
    m: usize,
    queries: &[&QueryResult],
    categories: &[String],
    session_types: &[String],
) -> Vec<Row> {
    let of = |keep: &dyn Fn(&QueryResult) -> bool| -> Vec<&ModeOutcome> {
        queries
            .iter()
            .filter(|q| keep(q))
            .map(|q| &q.modes[m])
            .collect()
    };
    let mut out = vec![row("overall".into(), &of(&|_| true))];
    for c in categories {
        let keep = |q: &QueryResult| q.category.as_ref() == Some(c);
        out.push(row(format!("category {c}"), &of(&keep)));
    }
    for t in session_types {
        let keep = |q: &QueryResult| q.session_type.as_ref() == Some(t);
        out.push(row(format!("session type {t}"), &of(&keep)));
    }
    out
}

fn latency(outcomes: &[&ModeOutcome]) -> Latency {
    let samples: Vec<Duration> = outcomes
        .iter()
        .map(|o| Duration::from_secs_f64(o.latency_ms / 1000.0))
        .collect();
    Latency::of(&samples)
}

/// Mode `m`'s figures per split, and the confidence model fitted on the
/// fit people and scored on the report people.
pub fn mode_report(m: usize, name: &str, results: &[QueryResult]) -> ModeReport {
    let distinct = |f: fn(&QueryResult) -> Option<&String>| {
        let mut v: Vec<String> = results.iter().filter_map(f).cloned().collect();
        v.sort();
        v.dedup();
        v
    };
    let categories = distinct(|q| q.category.as_ref());
    let session_types = distinct(|q| q.session_type.as_ref());
    let of_split =
        |s: Split| -> Vec<&QueryResult> { results.iter().filter(|q| q.split == s).collect() };
    let splits = [Split::Fit, Split::Report]
        .into_iter()
        .map(|s| {
            let qs = of_split(s);
            let outcomes: Vec<&ModeOutcome> = qs.iter().map(|q| &q.modes[m]).collect();
            let pairs: Vec<(f64, bool)> =
                outcomes.iter().map(|o| (o.confidence, event(o))).collect();
            SplitReport {
                split: s,
                rows: rows(m, &qs, &categories, &session_types),
                server_calibration: stats::calibration(&pairs, ECE_BINS),
                recall: latency(&outcomes),
            }
        })
        .collect();
    let samples: Vec<(Vec<f64>, bool)> = of_split(Split::Fit)
        .iter()
        .map(|q| (q.modes[m].features.clone(), event(&q.modes[m])))
        .collect();
    let fitted = crate::fit::fit(&samples);
    let fitted_pairs: Vec<(f64, bool)> = of_split(Split::Report)
        .iter()
        .map(|q| (fitted.predict(&q.modes[m].features), event(&q.modes[m])))
        .collect();
    let all: Vec<&ModeOutcome> = results.iter().map(|q| &q.modes[m]).collect();
    ModeReport {
        mode: name.to_owned(),
        splits,
        both_splits: row("overall, both splits".into(), &all),
        recall: latency(&all),
        fitted,
        fitted_report: stats::calibration(&fitted_pairs, ECE_BINS),
    }
}

fn mib(m: Option<Memory>) -> String {
    m.map_or_else(
        || "n/a".into(),
        |m| format!("VmHWM {:.0} MiB, VmRSS {:.0} MiB", m.hwm_mib(), m.rss_mib()),
    )
}

impl ModeReport {
    /// This mode's tables.
    fn markdown(&self, s: &mut String) {
        let _ = writeln!(s, "### mode {}\n", self.mode);
        let _ = writeln!(
            s,
            "| split | group | queries | any@5 | all@5 | any@10 | all@10 |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        for sp in &self.splits {
            for r in &sp.rows {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                    sp.split.name(),
                    r.label,
                    r.queries,
                    r.any_at_5,
                    r.all_at_5,
                    r.any_at_10,
                    r.all_at_10
                );
            }
        }
        let b = &self.both_splits;
        let _ = writeln!(
            s,
            "\n{} ({} queries; only to compare with the README's reference points): \
             any@5 {:.1}, all@5 {:.1}, any@10 {:.1}, all@10 {:.1}\n",
            b.label, b.queries, b.any_at_5, b.all_at_5, b.any_at_10, b.all_at_10
        );
        let _ = writeln!(
            s,
            "| recall latency | calls | p50 ms | p99 ms | mean ms | max ms |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        let lat = self
            .splits
            .iter()
            .map(|sp| (sp.split.name(), &sp.recall))
            .chain([("all", &self.recall)]);
        for (label, r) in lat {
            let _ = writeln!(
                s,
                "| {label} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                r.n, r.p50_ms, r.p99_ms, r.mean_ms, r.max_ms
            );
        }
        let _ = writeln!(
            s,
            "\nconfidence (event: a gold session among the first {CALIBRATION_K} distinct sessions; {ECE_BINS} bins):\n"
        );
        let _ = writeln!(s, "| | queries | ECE | mean confidence | hit rate |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        let cal = self
            .splits
            .iter()
            .map(|sp| {
                (
                    format!("server, {} people", sp.split.name()),
                    &sp.server_calibration,
                )
            })
            .chain([(
                "refit on the fit people, report people".to_string(),
                &self.fitted_report,
            )]);
        for (label, c) in cal {
            let _ = writeln!(
                s,
                "| {label} | {} | {:.3} | {:.3} | {:.3} |",
                c.n, c.ece, c.mean_confidence, c.hit_rate
            );
        }
        let f = &self.fitted;
        let _ = writeln!(
            s,
            "\nfitted on the fit people: bias {:.4}, weights [{}] ({})\n",
            f.bias,
            f.weights
                .iter()
                .map(|w| format!("{w:.4}"))
                .collect::<Vec<_>>()
                .join(", "),
            engram_recall::FEATURE_NAMES.join(", ")
        );
    }
}

impl RealmemReport {
    /// The report as markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let c = &self.counts;
        let in_split = |sp: Split| self.people.iter().filter(|p| p.split == sp).count();
        let _ = writeln!(
            s,
            "## RealMem retrieval: {} people ({} fit, {} report; the first {FIT_PEOPLE} files fit), \
             {} sessions, {} turns sent, {} queries scored (top_k {})\n",
            self.people.len(),
            in_split(Split::Fit),
            in_split(Split::Report),
            c.sessions,
            c.turns_sent,
            c.queries_scored,
            self.top_k
        );
        let _ = writeln!(
            s,
            "each query is recalled before its session is written, over the user's earlier sessions; \
             the returned turn hits give distinct sessions in rank order; any@k = a gold session among \
             the first k, all@k = every gold session among them, in % of queries.\n"
        );
        let _ = writeln!(
            s,
            "{} query turns: {} without gold ({} with no gold turn), {} skipped (no gold session written yet), {} gold fields \
             parsed leniently; gold ids dropped: {} the query's own session, {} a later session, {} \
             unknown. {} empty turns not sent; {} turns over {} characters sent as {} pieces; {} hits \
             were no turn of the queried user.\n",
            c.queries_total,
            c.queries_without_gold,
            c.queries_without_gold_turn,
            c.queries_skipped_no_prior_gold,
            c.queries_gold_repaired,
            c.gold_dropped_same_session,
            c.gold_dropped_later_session,
            c.gold_dropped_unknown,
            c.blank_turns_not_sent,
            c.long_turns_split,
            self.max_text_chars,
            c.long_turn_pieces,
            c.foreign_hits
        );
        for m in &self.modes {
            m.markdown(&mut s);
        }
        let i = &self.ingest;
        let _ = writeln!(s, "| speed | |");
        let _ = writeln!(s, "|---|---|");
        let _ = writeln!(
            s,
            "| ingest | {} turns in {} Remember calls, {:.1} s in Remember, {:.1} turns/s; Remember p50 {:.1} ms, p99 {:.1} ms |",
            i.turns, i.calls, i.seconds, i.turns_per_sec, i.remember.p50_ms, i.remember.p99_ms
        );
        let wait = self.enrichment_wait_seconds.map_or_else(
            || "not awaited (--skip-enrich-wait)".into(),
            |w| format!("{w:.1} s waiting for jobs between sessions"),
        );
        let _ = writeln!(s, "| enrichment | {wait} |");
        let _ = writeln!(s, "| run | {:.1} s wall time |", self.wall_seconds);
        let _ = writeln!(
            s,
            "| server memory after the run | {} |",
            mib(self.memory_after_run)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn distinct_sessions_skip_duplicates_and_unknown_hits() {
        let ranked = [Some("a"), None, Some("b"), Some("a"), None, Some("c")];
        assert_eq!(distinct_sessions(&ranked), ids(&["a", "b", "c"]));
        assert!(distinct_sessions(&[None, None]).is_empty());
    }

    #[test]
    fn session_recall_any_and_all_within_k() {
        let ranked: Vec<String> = (1..=12).map(|i| format!("s{i}")).collect();
        // One gold at rank 3, one at rank 7.
        let r = session_recall(&ids(&["s3", "s7"]), &ranked);
        assert_eq!(
            r,
            SessionRecall {
                any_at_5: true,
                all_at_5: false,
                any_at_10: true,
                all_at_10: true
            }
        );
        // Duplicated gold counts once; a gold never returned blocks all@k.
        let r = session_recall(&ids(&["s3", "s3"]), &ranked);
        assert!(r.all_at_5 && r.any_at_5);
        let r = session_recall(&ids(&["s1", "zz"]), &ranked);
        assert!(r.any_at_5 && !r.all_at_5 && !r.all_at_10);
        let r = session_recall(&ids(&["s11"]), &ranked);
        assert_eq!(r, SessionRecall::default());
        assert_eq!(session_recall(&[], &ranked), SessionRecall::default());
        assert_eq!(session_recall(&ids(&["s1"]), &[]), SessionRecall::default());
        // Fewer than k sessions returned.
        let r = session_recall(&ids(&["s2"]), &ids(&["s1", "s2"]));
        assert!(r.all_at_5 && r.all_at_10);
    }

    fn result(split: Split, category: &str, any5: bool, confidence: f64) -> QueryResult {
        QueryResult {
            person: "p".into(),
            split,
            query_id: "Q-1".into(),
            session_uuid: "s".into(),
            session_identifier: "S1".into(),
            session_index: 0,
            turn_index: 2,
            category: Some(category.into()),
            session_type: Some("single_session".into()),
            topic: None,
            query: "q".into(),
            gold: ids(&["g"]),
            gold_dropped: vec![],
            modes: vec![ModeOutcome {
                mode: "active".into(),
                sessions: vec![],
                turn_hits: 0,
                foreign_hits: 0,
                recall: SessionRecall {
                    any_at_5: any5,
                    all_at_5: any5,
                    any_at_10: true,
                    all_at_10: false,
                },
                confidence,
                features: vec![f64::from(u8::from(any5)), 0.5],
                latency_ms: 2.0,
            }],
        }
    }

    #[test]
    fn mode_report_keeps_splits_apart() {
        let rs = vec![
            result(Split::Fit, "A", true, 0.9),
            result(Split::Fit, "B", false, 0.9),
            result(Split::Report, "A", false, 0.2),
            result(Split::Report, "A", false, 0.2),
            result(Split::Report, "B", true, 0.2),
        ];
        let m = mode_report(0, "active", &rs);
        assert_eq!(m.splits.len(), 2);
        let (fit, report) = (&m.splits[0], &m.splits[1]);
        assert_eq!((fit.split, report.split), (Split::Fit, Split::Report));
        let labels: Vec<&str> = fit.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            vec![
                "overall",
                "category A",
                "category B",
                "session type single_session"
            ]
        );
        assert_eq!((fit.rows[0].queries, fit.rows[0].any_at_5), (2, 50.0));
        let r = &report.rows;
        assert_eq!((r[0].queries, r[1].queries, r[2].queries), (3, 2, 1));
        assert!((r[0].any_at_5 - 100.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            (r[1].any_at_5, r[2].any_at_5, r[0].any_at_10, r[0].all_at_10),
            (0.0, 100.0, 100.0, 0.0)
        );
        assert_eq!(
            (fit.server_calibration.n, report.server_calibration.n),
            (2, 3)
        );
        assert!((fit.server_calibration.ece - 0.4).abs() < 1e-9);
        assert!((report.server_calibration.hit_rate - 1.0 / 3.0).abs() < 1e-9);
        // The refit saw only the fit people and is scored on the report people.
        assert_eq!(m.fitted_report.n, 3);
        assert_eq!((m.both_splits.queries, m.recall.n), (5, 5));
    }
}
