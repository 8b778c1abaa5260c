//! `bench locomo`: LoCoMo retrieval quality through the real gRPC API.
//!
//! Each conversation is its own scope (org `locomo`, user = `sample_id`,
//! session = `session_N`). Every session is written with Remember, each turn
//! stamped with its session's date; every question with evidence is then
//! recalled across all sessions of its conversation (empty `session_id`),
//! and the returned turn ids are mapped back to LoCoMo `dia_id`s.

use crate::dataset::{self, Conversation, category_name};
use crate::server::{Memory, Target, authed};
use crate::stats::{self, Calibration, IngestRun, Latency};
use anyhow::{Context, bail};
use clap::Args;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::{
    GetJobRequest, JobState, RecallMode, RecallRequest, RememberRequest, Scope, Turn,
};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Tenant all LoCoMo conversations are written under.
const ORG: &str = "locomo";
/// Cut-offs reported, as in the LoCoMo paper's retrieval table (R@50 is out
/// of reach: the server caps top_k at 30).
const KS: [usize; 3] = [5, 10, 25];
/// Equal-width bins of the calibration error.
const ECE_BINS: usize = 10;
/// Calibration event: at least one evidence turn among the first this many
/// turn hits (`KS[1]`).
const CALIBRATION_K: usize = 10;
/// Conversations `0..FIT_HALF` fit the confidence model; the rest report it.
const FIT_HALF: usize = 5;

/// Options of `bench locomo`.
#[derive(Debug, Clone, Args)]
pub struct LocomoArgs {
    /// The LoCoMo data file.
    #[arg(long, default_value = "../shared/bench/locomo10.json")]
    pub data: PathBuf,
    /// Use only the first N conversations.
    #[arg(long)]
    pub limit_conversations: Option<usize>,
    /// Write the full results (with per-question detail) as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Hits requested per question (the server accepts 1..=50, caps at 30).
    #[arg(long, default_value_t = 25)]
    pub top_k: i32,
    /// Most turns per Remember call (the server's ingest.max_turns_per_call).
    #[arg(long, default_value_t = 512)]
    pub max_turns_per_call: usize,
    /// Recall modes to score, in order (`active`, `deep`).
    #[arg(long, value_delimiter = ',', default_value = "active,deep")]
    pub modes: Vec<String>,
    /// Longest wait for enrichment of all writes before the questions, seconds.
    #[arg(long, default_value_t = 1800)]
    pub enrich_timeout_secs: u64,
}

/// Recall@k of a group of questions, in percent.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Group label, e.g. `1 multi-hop`.
    pub label: String,
    /// Questions scored.
    pub questions: usize,
    /// R@5, %.
    pub recall_at_5: f64,
    /// R@10, %.
    pub recall_at_10: f64,
    /// R@25, %.
    pub recall_at_25: f64,
}

/// What happened to one question.
#[derive(Debug, Clone, Serialize)]
pub struct QuestionResult {
    /// Conversation.
    pub sample_id: String,
    /// Category code.
    pub category: u8,
    /// The question.
    pub question: String,
    /// Evidence turn ids (normalized).
    pub evidence: Vec<String>,
    /// `dia_id`s of the returned turns in rank order (`?` for an id that is
    /// not a turn of this conversation).
    pub retrieved: Vec<String>,
    /// Recall at each of 5, 10, 25 (fraction).
    pub recall: [f64; 3],
    /// The server's confidence.
    pub confidence: f64,
    /// The confidence features the server reported (explain header).
    pub features: Vec<f64>,
    /// Index of the conversation in the data file (fit half: < 5).
    pub conversation: usize,
    /// Recall latency, ms.
    pub latency_ms: f64,
}

/// Everything `bench locomo` measured.
#[derive(Debug, Clone, Serialize)]
pub struct LocomoReport {
    /// Server URL.
    pub endpoint: String,
    /// Data file.
    pub data: String,
    /// Conversations used.
    pub conversations: usize,
    /// Sessions written.
    pub sessions: usize,
    /// `top_k` sent with each Recall.
    pub top_k: i32,
    /// Questions in the conversations used.
    pub questions_total: usize,
    /// Questions without evidence, skipped.
    pub questions_skipped_no_evidence: usize,
    /// Questions whose evidence strings needed lenient parsing.
    pub questions_evidence_repaired: usize,
    /// Evidence ids naming no turn of their conversation (never findable).
    pub evidence_ids_absent: usize,
    /// Returned turn ids that were not turns of the queried conversation.
    pub foreign_hits: usize,
    /// One report per recall mode.
    pub modes: Vec<ModeReport>,
    /// Time from the first Remember until every write's job was ready.
    pub enrichment_seconds: f64,
    /// Ingest phase.
    pub ingest: IngestRun,
    /// Server memory after ingest.
    pub memory_after_ingest: Option<Memory>,
    /// Server memory after the questions.
    pub memory_after_recall: Option<Memory>,
}

/// The results of one recall mode.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// `active` or `deep`.
    pub mode: String,
    /// By category, then overall, then overall without category 5.
    pub rows: Vec<Row>,
    /// Recall latency over all scored questions.
    pub recall: Latency,
    /// The server's confidence on the report half (conversations 6-10).
    pub calibration_report_half: Calibration,
    /// The server's confidence on all questions.
    pub calibration_all: Calibration,
    /// A logistic model fitted on the fit half (conversations 1-5).
    pub fitted: crate::fit::Logistic,
    /// That model's calibration on the report half.
    pub fitted_report_half: Calibration,
    /// Per-question detail.
    pub questions: Vec<QuestionResult>,
}

/// Runs the LoCoMo benchmark against `target`.
pub async fn run(target: &Target, args: &LocomoArgs) -> anyhow::Result<LocomoReport> {
    let mut convs = dataset::load(&args.data)?;
    if let Some(n) = args.limit_conversations {
        convs.truncate(n);
    }
    if convs.is_empty() {
        bail!("no conversations to run");
    }
    let channel = target.connect().await?;
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut recall = RecallServiceClient::new(channel);

    let mut remember_lat = Vec::new();
    let mut maps = Vec::with_capacity(convs.len());
    let mut job_lists = Vec::with_capacity(convs.len());
    let started = Instant::now();
    for conv in &convs {
        let token = target.token(ORG, &conv.sample_id)?;
        let t = Instant::now();
        let (map, job_ids) = ingest_conversation(
            &mut ingest,
            &token,
            conv,
            args.max_turns_per_call,
            &mut remember_lat,
        )
        .await
        .with_context(|| format!("ingest of {}", conv.sample_id))?;
        eprintln!(
            "locomo: ingested {} ({} sessions, {} turns) in {:.1} s",
            conv.sample_id,
            conv.sessions.len(),
            map.len(),
            t.elapsed().as_secs_f64()
        );
        maps.push(map);
        job_lists.push(job_ids);
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let turns: usize = maps.iter().map(HashMap::len).sum();
    let ingest_summary = IngestRun::new(turns, &remember_lat, ingest_secs);
    let memory_after_ingest = target.memory();

    let enrich_deadline = started + Duration::from_secs(args.enrich_timeout_secs);
    let mut jobs = JobServiceClient::new(target.connect().await?);
    for (conv, job_ids) in convs.iter().zip(&job_lists) {
        let token = target.token(ORG, &conv.sample_id)?;
        wait_jobs(&mut jobs, &token, job_ids, enrich_deadline).await?;
    }
    let enrichment_seconds = started.elapsed().as_secs_f64();
    eprintln!("locomo: enrichment of every write finished after {enrichment_seconds:.1} s");

    let (mut skipped, mut repaired, mut absent, mut foreign) = (0, 0, 0, 0);
    let mut modes = Vec::new();
    for (m, name) in args.modes.iter().enumerate() {
        let mode = recall_mode(name)?;
        let mut results = Vec::new();
        let mut recall_lat = Vec::new();
        for (ci, (conv, map)) in convs.iter().zip(&maps).enumerate() {
            let token = target.token(ORG, &conv.sample_id)?;
            let known: std::collections::HashSet<&str> = map.values().map(String::as_str).collect();
            let t = Instant::now();
            for q in &conv.qa {
                let first = m == 0;
                if q.evidence.is_empty() {
                    skipped += usize::from(first);
                    continue;
                }
                if first {
                    repaired += usize::from(q.evidence_repaired);
                    absent += q
                        .evidence
                        .iter()
                        .filter(|e| !known.contains(e.as_str()))
                        .count();
                }
                let o = recall_turns(
                    &mut recall,
                    &token,
                    ORG,
                    &conv.sample_id,
                    &q.question,
                    mode,
                    args.top_k,
                    None,
                )
                .await
                .with_context(|| format!("recall of {:?} in {}", q.question, conv.sample_id))?;
                recall_lat.push(o.latency);
                let ranked: Vec<Option<String>> =
                    o.hit_ids.iter().map(|id| map.get(id).cloned()).collect();
                if first {
                    foreign += ranked.iter().filter(|r| r.is_none()).count();
                }
                results.push(QuestionResult {
                    sample_id: conv.sample_id.clone(),
                    category: q.category,
                    question: q.question.clone(),
                    evidence: q.evidence.clone(),
                    retrieved: ranked
                        .iter()
                        .map(|r| r.clone().unwrap_or_else(|| "?".into()))
                        .collect(),
                    recall: KS.map(|k| stats::recall_at_k(&q.evidence, &ranked, k)),
                    confidence: o.confidence,
                    features: o.features,
                    conversation: ci,
                    latency_ms: o.latency.as_secs_f64() * 1000.0,
                });
            }
            eprintln!(
                "locomo: {name}: recalled {} questions of {} in {:.1} s",
                conv.qa.len(),
                conv.sample_id,
                t.elapsed().as_secs_f64()
            );
        }
        modes.push(mode_report(name, results, &recall_lat));
    }
    let memory_after_recall = target.memory();

    Ok(LocomoReport {
        endpoint: target.endpoint().to_string(),
        data: args.data.display().to_string(),
        conversations: convs.len(),
        sessions: convs.iter().map(|c| c.sessions.len()).sum(),
        top_k: args.top_k,
        questions_total: convs.iter().map(|c| c.qa.len()).sum(),
        questions_skipped_no_evidence: skipped,
        questions_evidence_repaired: repaired,
        evidence_ids_absent: absent,
        foreign_hits: foreign,
        modes,
        enrichment_seconds,
        ingest: ingest_summary,
        memory_after_ingest,
        memory_after_recall,
    })
}

/// The recall mode named `name`: `active` or `deep`.
pub(crate) fn recall_mode(name: &str) -> anyhow::Result<RecallMode> {
    match name {
        "active" => Ok(RecallMode::Active),
        "deep" => Ok(RecallMode::Deep),
        other => bail!("unknown mode {other:?}: use active or deep"),
    }
}

/// What one Recall returned, reduced to what the benches score.
pub(crate) struct Recalled {
    /// Turn hit ids in rank order.
    pub hit_ids: Vec<String>,
    /// The server's confidence.
    pub confidence: f64,
    /// The confidence features (explain header).
    pub features: Vec<f64>,
    /// Time of the call.
    pub latency: Duration,
}

/// One Recall of `q` over every session of `user_id` in `org`, asking for
/// the confidence features.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn recall_turns(
    client: &mut RecallServiceClient<Channel>,
    token: &str,
    org: &str,
    user_id: &str,
    q: &str,
    mode: RecallMode,
    top_k: i32,
    filter: Option<engram_proto::v1::Filter>,
) -> anyhow::Result<Recalled> {
    let req = RecallRequest {
        scope: Some(Scope {
            org_id: org.into(),
            user_id: user_id.into(),
            // Empty: search every session of the user.
            session_id: String::new(),
        }),
        q: q.to_string(),
        mode: mode as i32,
        top_k: Some(top_k),
        include_timeline: false,
        filter,
        collection_ids: Vec::new(),
    };
    let mut request = authed(req, token)?;
    request
        .metadata_mut()
        .insert(engram_recall::EXPLAIN_KEY, "1".parse()?);
    let t = Instant::now();
    let resp = client.recall(request).await?;
    let latency = t.elapsed();
    let features = explained(resp.metadata())?;
    let resp = resp.into_inner();
    Ok(Recalled {
        hit_ids: resp
            .hits
            .map(|h| h.turns)
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.id)
            .collect(),
        confidence: resp.confidence,
        features,
        latency,
    })
}

/// The confidence features of a response (the explain header).
fn explained(metadata: &tonic::metadata::MetadataMap) -> anyhow::Result<Vec<f64>> {
    let Some(value) = metadata.get(engram_recall::EXPLAIN_KEY) else {
        bail!("the server sent no {} header", engram_recall::EXPLAIN_KEY);
    };
    value
        .to_str()?
        .split(',')
        .map(|v| v.parse::<f64>().map_err(anyhow::Error::from))
        .collect()
}

/// Fits the confidence model on the fit half and scores both models.
fn mode_report(name: &str, questions: Vec<QuestionResult>, latencies: &[Duration]) -> ModeReport {
    let (fit_half, report_half): (Vec<&QuestionResult>, Vec<&QuestionResult>) =
        questions.iter().partition(|q| q.conversation < FIT_HALF);
    let samples: Vec<(Vec<f64>, bool)> = fit_half
        .iter()
        .map(|q| (q.features.clone(), event(q)))
        .collect();
    let fitted = crate::fit::fit(&samples);
    let fitted_pairs: Vec<(f64, bool)> = report_half
        .iter()
        .map(|q| (fitted.predict(&q.features), event(q)))
        .collect();
    ModeReport {
        mode: name.to_owned(),
        rows: rows(&questions),
        recall: Latency::of(latencies),
        calibration_report_half: calibrate(report_half.iter().copied()),
        calibration_all: calibrate(questions.iter()),
        fitted,
        fitted_report_half: stats::calibration(&fitted_pairs, ECE_BINS),
        questions,
    }
}

/// The calibration event: an evidence turn among the first
/// [`CALIBRATION_K`] turn hits.
fn event(q: &QuestionResult) -> bool {
    q.recall[1] > 0.0
}

/// Polls every job until it is ready; a failed job or the deadline ends
/// the run.
pub(crate) async fn wait_jobs(
    client: &mut JobServiceClient<Channel>,
    token: &str,
    job_ids: &[String],
    deadline: Instant,
) -> anyhow::Result<()> {
    for job_id in job_ids {
        loop {
            let req = GetJobRequest {
                job_id: job_id.clone(),
            };
            let state = match client.get_job(authed(req, token)?).await {
                Ok(resp) => resp.into_inner().job.map(|j| (j.state(), j.error)),
                Err(status) if status.code() == tonic::Code::NotFound => None,
                Err(status) => return Err(status.into()),
            };
            match state {
                Some((JobState::Ready, _)) => break,
                Some((JobState::Failed, error)) => bail!("job {job_id} failed: {error}"),
                _ if Instant::now() > deadline => {
                    bail!("job {job_id} not ready before the enrichment timeout")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    Ok(())
}

/// Writes one conversation, a Remember per session (split at
/// `max_turns`), and returns fragment id → `dia_id` and the writes' job ids.
async fn ingest_conversation(
    client: &mut IngestServiceClient<Channel>,
    token: &str,
    conv: &Conversation,
    max_turns: usize,
    latencies: &mut Vec<Duration>,
) -> anyhow::Result<(HashMap<String, String>, Vec<String>)> {
    let mut map = HashMap::new();
    let mut job_ids = Vec::new();
    for session in &conv.sessions {
        let turns: Vec<(String, Turn)> = session
            .turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                // Engram knows user and assistant turns; speaker A plays the
                // user, speaker B the assistant.
                let role = if t.speaker == conv.speaker_a {
                    "user"
                } else if t.speaker == conv.speaker_b {
                    "assistant"
                } else {
                    bail!(
                        "turn {} is by {:?}, neither speaker of the conversation",
                        t.dia_id,
                        t.speaker
                    );
                };
                let turn = Turn {
                    role: role.into(),
                    text: t.indexed_text(),
                    timestamp: dataset::turn_timestamp(session.date, i),
                    observations: Vec::new(),
                };
                Ok((t.dia_id.clone(), turn))
            })
            .collect::<anyhow::Result<_>>()?;
        for chunk in turns.chunks(max_turns.max(1)) {
            let req = RememberRequest {
                scope: Some(Scope {
                    org_id: ORG.into(),
                    user_id: conv.sample_id.clone(),
                    session_id: format!("session_{}", session.number),
                }),
                turns: chunk.iter().map(|(_, t)| t.clone()).collect(),
                options: None,
                metadata: None,
            };
            let t = Instant::now();
            let resp = client
                .remember(authed(req, token)?)
                .await
                .with_context(|| format!("remember of session_{}", session.number))?
                .into_inner();
            latencies.push(t.elapsed());
            if resp.active_fragment_ids.len() != chunk.len() {
                bail!(
                    "remember returned {} fragment ids for {} turns",
                    resp.active_fragment_ids.len(),
                    chunk.len()
                );
            }
            job_ids.extend(resp.passive_job_id);
            for (id, (dia_id, _)) in resp.active_fragment_ids.into_iter().zip(chunk) {
                map.insert(id, dia_id.clone());
            }
        }
    }
    Ok((map, job_ids))
}

fn row(label: String, results: &[&QuestionResult]) -> Row {
    let pct =
        |i: usize| 100.0 * stats::mean(&results.iter().map(|r| r.recall[i]).collect::<Vec<_>>());
    Row {
        label,
        questions: results.len(),
        recall_at_5: pct(0),
        recall_at_10: pct(1),
        recall_at_25: pct(2),
    }
}

/// Rows by category, overall, and overall without category 5.
fn rows(results: &[QuestionResult]) -> Vec<Row> {
    let mut out: Vec<Row> = (1..=5u8)
        .map(|c| {
            let of: Vec<&QuestionResult> = results.iter().filter(|r| r.category == c).collect();
            row(format!("{c} {}", category_name(c)), &of)
        })
        .collect();
    out.push(row(
        "overall (1-5)".into(),
        &results.iter().collect::<Vec<_>>(),
    ));
    out.push(row(
        "overall without adversarial (1-4)".into(),
        &results
            .iter()
            .filter(|r| r.category != 5)
            .collect::<Vec<_>>(),
    ));
    // The splits: constants are chosen on the fit half only, results are
    // quoted from the report half.
    out.push(row(
        "fit half (conversations 1-5), 1-5".into(),
        &results
            .iter()
            .filter(|r| r.conversation < FIT_HALF)
            .collect::<Vec<_>>(),
    ));
    out.push(row(
        "report half (conversations 6-10), 1-5".into(),
        &results
            .iter()
            .filter(|r| r.conversation >= FIT_HALF)
            .collect::<Vec<_>>(),
    ));
    out
}

fn calibrate<'a>(results: impl Iterator<Item = &'a QuestionResult>) -> Calibration {
    // recall[1] is R@10: above zero exactly when an evidence turn is in the top 10.
    debug_assert_eq!(KS[1], CALIBRATION_K);
    let pairs: Vec<(f64, bool)> = results.map(|r| (r.confidence, event(r))).collect();
    stats::calibration(&pairs, ECE_BINS)
}

fn mib(m: Option<Memory>) -> String {
    m.map_or_else(
        || "n/a".into(),
        |m| format!("VmHWM {:.0} MiB, VmRSS {:.0} MiB", m.hwm_mib(), m.rss_mib()),
    )
}

fn calibration_rows(s: &mut String, rows: &[(&str, &Calibration)]) {
    let _ = writeln!(s, "| | questions | ECE | mean confidence | hit rate |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (label, c) in rows {
        let _ = writeln!(
            s,
            "| {label} | {} | {:.3} | {:.3} | {:.3} |",
            c.n, c.ece, c.mean_confidence, c.hit_rate
        );
    }
}

impl ModeReport {
    /// This mode's tables.
    fn markdown(&self, s: &mut String) {
        let _ = writeln!(s, "### mode {}\n", self.mode);
        let _ = writeln!(s, "| category | questions | R@5 | R@10 | R@25 |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|");
        for r in &self.rows {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {:.1} |",
                r.label, r.questions, r.recall_at_5, r.recall_at_10, r.recall_at_25
            );
        }
        let r = &self.recall;
        let _ = writeln!(
            s,
            "\nrecall latency: {} calls; p50 {:.1} ms, p99 {:.1} ms, mean {:.1} ms, max {:.1} ms\n",
            r.n, r.p50_ms, r.p99_ms, r.mean_ms, r.max_ms
        );
        let _ = writeln!(
            s,
            "confidence (event: an evidence turn among the first {CALIBRATION_K} turn hits; {ECE_BINS} bins):\n"
        );
        calibration_rows(
            s,
            &[
                (
                    "server, report half (conversations 6-10)",
                    &self.calibration_report_half,
                ),
                ("server, all conversations", &self.calibration_all),
                (
                    "refit on conversations 1-5, report half",
                    &self.fitted_report_half,
                ),
            ],
        );
        let f = &self.fitted;
        let _ = writeln!(
            s,
            "\nfitted on conversations 1-5: bias {:.4}, weights [{}] ({})\n",
            f.bias,
            f.weights
                .iter()
                .map(|w| format!("{w:.4}"))
                .collect::<Vec<_>>()
                .join(", "),
            engram_recall::FEATURE_NAMES.join(", ")
        );
        let _ = writeln!(s, "reliability, server confidence on the report half:\n");
        let _ = writeln!(s, "| bin | questions | mean confidence | hit rate |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        for b in &self.calibration_report_half.bins {
            if b.n > 0 {
                let _ = writeln!(
                    s,
                    "| {:.1}-{:.1} | {} | {:.3} | {:.3} |",
                    b.lo, b.hi, b.n, b.mean_confidence, b.hit_rate
                );
            }
        }
        let _ = writeln!(s);
    }
}

impl LocomoReport {
    /// The report as markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## LoCoMo retrieval: {} conversations, {} sessions, {} turns, {} questions (top_k {})\n",
            self.conversations, self.sessions, self.ingest.turns, self.questions_total, self.top_k
        );
        let _ = writeln!(
            s,
            "recall = share of a question's evidence turns among the first k turn hits, averaged over questions. \
             skipped {} questions without evidence; {} had malformed evidence strings parsed leniently; \
             {} evidence ids name no turn of their conversation; {} hits were not turns of the queried conversation.\n",
            self.questions_skipped_no_evidence,
            self.questions_evidence_repaired,
            self.evidence_ids_absent,
            self.foreign_hits
        );
        for m in &self.modes {
            m.markdown(&mut s);
        }
        let i = &self.ingest;
        let _ = writeln!(s, "| speed | |");
        let _ = writeln!(s, "|---|---|");
        let _ = writeln!(
            s,
            "| ingest | {} turns in {} Remember calls, {:.1} s, {:.1} turns/s; Remember p50 {:.1} ms, p99 {:.1} ms |",
            i.turns, i.calls, i.seconds, i.turns_per_sec, i.remember.p50_ms, i.remember.p99_ms
        );
        let _ = writeln!(
            s,
            "| enrichment | every job ready {:.1} s after the first Remember |",
            self.enrichment_seconds
        );
        let _ = writeln!(
            s,
            "| server memory after ingest | {} |",
            mib(self.memory_after_ingest)
        );
        let _ = writeln!(
            s,
            "| server memory after recall | {} |",
            mib(self.memory_after_recall)
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(category: u8, recall: [f64; 3], confidence: f64) -> QuestionResult {
        QuestionResult {
            sample_id: "c".into(),
            category,
            question: "q".into(),
            evidence: vec!["D1:1".into()],
            retrieved: vec![],
            recall,
            confidence,
            features: vec![],
            conversation: 0,
            latency_ms: 1.0,
        }
    }

    #[test]
    fn rows_average_by_category_and_overall() {
        let mut rs = vec![
            result(1, [0.0, 0.5, 1.0], 0.5),
            result(1, [1.0, 1.0, 1.0], 0.5),
            result(5, [0.0, 0.0, 0.0], 0.5),
        ];
        rs[1].conversation = FIT_HALF;
        let rows = rows(&rs);
        assert_eq!(rows.len(), 9);
        assert_eq!((rows[7].questions, rows[7].recall_at_5), (2, 0.0));
        assert_eq!((rows[8].questions, rows[8].recall_at_5), (1, 100.0));
        assert_eq!(rows[0].label, "1 multi-hop");
        assert_eq!(
            (rows[0].questions, rows[0].recall_at_5, rows[0].recall_at_10),
            (2, 50.0, 75.0)
        );
        assert_eq!(rows[1].questions, 0);
        assert_eq!(rows[4].label, "5 adversarial");
        let overall = &rows[5];
        assert_eq!(overall.questions, 3);
        assert!((overall.recall_at_25 - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!((rows[6].questions, rows[6].recall_at_25), (2, 100.0));
        let c = calibrate(rs.iter());
        assert_eq!(c.n, 3);
        assert!((c.hit_rate - 2.0 / 3.0).abs() < 1e-9);
    }
}
