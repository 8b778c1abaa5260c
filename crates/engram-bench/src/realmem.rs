//! `bench realmem`: RealMemBench retrieval through the real gRPC API,
//! online and at session level (protocol in
//! `../shared/bench/realmem/README.md`).
//!
//! Each person is one user (org `realmem`, user = [`slug`] of the name,
//! session = `session_uuid`), and their sessions are replayed in file
//! order. Before a session is written, each of its query turns is recalled
//! in every requested mode over everything written so far for that user
//! (empty `session_id`); its gold is the next Assistant turn's
//! `memory_session_uuids`, less the sessions not written yet, and a query
//! left without gold is skipped and counted. The session is then written
//! with Remember (every non-empty turn, `content` only, never
//! `extracted_memory` or `memory_used`), and its enrichment jobs are
//! awaited so deep recall of the next queries sees them. Returned turn
//! hits are mapped to their sessions through the Remember responses; the
//! distinct sessions in rank order give recall_any@k and recall_all@k.
//!
//! The people sorted by file name split in two ([`FIT_PEOPLE`]): the
//! confidence model is fitted on the first five only and its calibration
//! is reported on the last five; every figure is given per split. Query
//! turns carry `category_name` and `session_type`, so figures are also
//! given by each.
//!
//! [`slug`]: crate::realmem_data::slug
//! [`FIT_PEOPLE`]: crate::realmem_data::FIT_PEOPLE

mod replay;

use crate::locomo::{recall_mode, recall_turns, wait_jobs};
use crate::realmem_data::{self, Session};
use crate::realmem_report::{
    Counts, ModeOutcome, PersonSummary, QueryResult, RealmemReport, distinct_sessions, mode_report,
    session_recall,
};
use crate::server::{Target, authed};
use crate::stats::IngestRun;
use anyhow::{Context, bail};
use clap::Args;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::{RecallMode, RememberRequest, Scope, Turn};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// Tenant all RealMem people are written under.
const ORG: &str = "realmem";

/// Options of `bench realmem`.
#[derive(Debug, Clone, Args)]
pub struct RealmemArgs {
    /// The directory of RealMem person files.
    #[arg(long, default_value = "../shared/bench/realmem")]
    pub data: PathBuf,
    /// Only these people, comma-separated (names, slugs or file stems).
    #[arg(long, value_delimiter = ',')]
    pub people: Vec<String>,
    /// Use only the first N people (after --people).
    #[arg(long)]
    pub limit_people: Option<usize>,
    /// Replay only the first N sessions of each person.
    #[arg(long)]
    pub limit_sessions: Option<usize>,
    /// Write the full results (with per-query detail) as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Hits requested per query (the server accepts 1..=50, caps at 30).
    #[arg(long, default_value_t = 25)]
    pub top_k: i32,
    /// Most turns per Remember call (the server's ingest.max_turns_per_call).
    #[arg(long, default_value_t = 512)]
    pub max_turns_per_call: usize,
    /// Longest turn the server accepts (its ingest.max_text_chars); longer
    /// turns are sent as consecutive pieces of at most this many characters
    /// and counted. To send them whole, raise both: run the bench with
    /// `ENGRAM__INGEST__MAX_TEXT_CHARS=100000` (the spawned server inherits
    /// it) and `--max-text-chars 100000`.
    #[arg(long, default_value_t = 16_000)]
    pub max_text_chars: usize,
    /// Recall modes to score, in order (`active`, `deep`).
    #[arg(long, value_delimiter = ',', default_value = "active,deep")]
    pub modes: Vec<String>,
    /// Do not wait for a session's enrichment before the next queries (deep
    /// recall then sees whatever enrichment has finished).
    #[arg(long)]
    pub skip_enrich_wait: bool,
    /// Longest wait for one session's enrichment, seconds.
    #[arg(long, default_value_t = 600)]
    pub enrich_timeout_secs: u64,
    /// Write every session first (each turn tagged with metadata
    /// `realmem_seq`, its session's place in the file), then ask each query
    /// with the filter `realmem_seq < its session's place`: what the online
    /// protocol sees, except that BM25's IDF counts later sessions too.
    /// With `--data-dir` the writes are kept and reused by the next run
    /// (a parameter sweep then costs only the queries).
    #[arg(long)]
    pub replay: bool,
}

/// Runs the RealMem benchmark against `target`.
pub async fn run(target: &Target, args: &RealmemArgs) -> anyhow::Result<RealmemReport> {
    let modes: Vec<(String, RecallMode)> = args
        .modes
        .iter()
        .map(|name| recall_mode(name).map(|m| (name.clone(), m)))
        .collect::<anyhow::Result<_>>()?;
    if args.max_text_chars == 0 {
        bail!("--max-text-chars must be at least 1");
    }
    let mut people = realmem_data::load(&args.data, &args.people)?;
    if let Some(n) = args.limit_people {
        people.truncate(n);
    }
    if people.is_empty() {
        bail!("no people to run");
    }
    let channel = target.connect().await?;
    let mut client = Clients {
        ingest: IngestServiceClient::new(channel.clone()),
        recall: RecallServiceClient::new(channel.clone()),
        jobs: JobServiceClient::new(channel),
    };
    let started = Instant::now();
    let mut counts = Counts::default();
    let mut results = Vec::new();
    let mut summaries = Vec::new();
    let mut remember_lat = Vec::new();
    let mut ingest_secs = 0.0;
    let mut wait_secs = 0.0;
    for person in &people {
        let t = Instant::now();
        let token = target.token(ORG, &person.slug)?;
        let sessions = &person.sessions[..args
            .limit_sessions
            .map_or(person.sessions.len(), |n| n.min(person.sessions.len()))];
        let all_uuids: HashSet<&str> = person.sessions.iter().map(|s| s.uuid.as_str()).collect();
        let mut fragments: HashMap<String, String> = HashMap::new();
        let mut written: HashSet<&str> = HashSet::new();
        let scored_before = results.len();
        if args.replay {
            let t_ingest = Instant::now();
            fragments = replay::written(
                target.data_dir(),
                &mut client.ingest,
                &mut client.jobs,
                &token,
                person,
                sessions,
                args,
                &mut counts,
                &mut remember_lat,
            )
            .await?;
            ingest_secs += t_ingest.elapsed().as_secs_f64();
        }
        for (si, session) in sessions.iter().enumerate() {
            for q in &session.queries {
                counts.queries_total += 1;
                counts.queries_gold_repaired += usize::from(q.gold_repaired);
                if q.gold.is_empty() {
                    counts.queries_without_gold += 1;
                    counts.queries_without_gold_turn += usize::from(!q.has_gold_turn);
                    continue;
                }
                let (gold, dropped): (Vec<String>, Vec<String>) = q
                    .gold
                    .iter()
                    .cloned()
                    .partition(|g| written.contains(g.as_str()));
                for d in &dropped {
                    if *d == session.uuid {
                        counts.gold_dropped_same_session += 1;
                    } else if all_uuids.contains(d.as_str()) {
                        counts.gold_dropped_later_session += 1;
                    } else {
                        counts.gold_dropped_unknown += 1;
                    }
                }
                if gold.is_empty() {
                    counts.queries_skipped_no_prior_gold += 1;
                    continue;
                }
                let mut outcomes = Vec::with_capacity(modes.len());
                for (name, mode) in &modes {
                    let o = recall_turns(
                        &mut client.recall,
                        &token,
                        ORG,
                        &person.slug,
                        &q.text,
                        *mode,
                        args.top_k,
                        args.replay.then(|| replay::before(si)),
                    )
                    .await
                    .with_context(|| {
                        format!("{name} recall of {} of {}", q.query_id, person.name)
                    })?;
                    let ranked: Vec<Option<&str>> = o
                        .hit_ids
                        .iter()
                        .map(|id| fragments.get(id).map(String::as_str))
                        .collect();
                    let sessions = distinct_sessions(&ranked);
                    let foreign_hits = ranked.iter().filter(|r| r.is_none()).count();
                    counts.foreign_hits += foreign_hits;
                    outcomes.push(ModeOutcome {
                        mode: name.clone(),
                        recall: session_recall(&gold, &sessions),
                        sessions,
                        turn_hits: ranked.len(),
                        foreign_hits,
                        confidence: o.confidence,
                        features: o.features,
                        latency_ms: o.latency.as_secs_f64() * 1000.0,
                    });
                }
                counts.queries_scored += 1;
                results.push(QueryResult {
                    person: person.name.clone(),
                    split: person.split,
                    query_id: q.query_id.clone(),
                    session_uuid: session.uuid.clone(),
                    session_identifier: session.identifier.clone(),
                    session_index: si,
                    turn_index: q.turn_index,
                    category: q.category.clone(),
                    session_type: q.session_type.clone(),
                    topic: q.topic.clone(),
                    query: q.text.clone(),
                    gold,
                    gold_dropped: dropped,
                    modes: outcomes,
                });
            }
            if args.replay {
                written.insert(session.uuid.as_str());
                continue;
            }
            let t_ingest = Instant::now();
            let turns = session_turns(session, args.max_text_chars, &mut counts);
            let job_ids = remember_session(
                &mut client.ingest,
                &token,
                &person.slug,
                session,
                &turns,
                args.max_turns_per_call,
                None,
                &mut fragments,
                &mut remember_lat,
            )
            .await
            .with_context(|| format!("ingest of session {} of {}", session.uuid, person.name))?;
            ingest_secs += t_ingest.elapsed().as_secs_f64();
            written.insert(session.uuid.as_str());
            if !args.skip_enrich_wait {
                let t_wait = Instant::now();
                let deadline = t_wait + Duration::from_secs(args.enrich_timeout_secs);
                wait_jobs(&mut client.jobs, &token, &job_ids, deadline)
                    .await
                    .with_context(|| format!("enrichment of session {}", session.uuid))?;
                wait_secs += t_wait.elapsed().as_secs_f64();
            }
            if (si + 1) % 50 == 0 {
                eprintln!(
                    "realmem: {}: {} of {} sessions, {} queries scored",
                    person.name,
                    si + 1,
                    sessions.len(),
                    results.len() - scored_before
                );
            }
        }
        counts.sessions += sessions.len();
        eprintln!(
            "realmem: {} ({} split): {} sessions, {} queries scored in {:.1} s",
            person.name,
            person.split.name(),
            sessions.len(),
            results.len() - scored_before,
            t.elapsed().as_secs_f64()
        );
        summaries.push(PersonSummary {
            name: person.name.clone(),
            user_id: person.slug.clone(),
            file: person.file.clone(),
            split: person.split,
            sessions: sessions.len(),
            queries_scored: results.len() - scored_before,
            notes: person.notes,
        });
    }
    let memory_after_run = target.memory();
    let modes = modes
        .iter()
        .enumerate()
        .map(|(m, (name, _))| mode_report(m, name, &results))
        .collect();
    Ok(RealmemReport {
        endpoint: target.endpoint().to_string(),
        data: args.data.display().to_string(),
        top_k: args.top_k,
        max_text_chars: args.max_text_chars,
        people: summaries,
        counts,
        modes,
        enrichment_wait_seconds: (!args.skip_enrich_wait).then_some(wait_secs),
        ingest: IngestRun::new(counts.turns_sent, &remember_lat, ingest_secs),
        memory_after_run,
        wall_seconds: started.elapsed().as_secs_f64(),
        queries: results,
    })
}

/// The three clients of a run, on one connection.
struct Clients {
    ingest: IngestServiceClient<Channel>,
    recall: RecallServiceClient<Channel>,
    jobs: JobServiceClient<Channel>,
}

/// `text` cut into pieces of at most `max_chars` characters (never inside
/// a character); one piece when it fits.
pub fn pieces(text: &str, max_chars: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(max_chars.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// The turns of `session` as sent: `content` only, stamped with the
/// session's date plus one second per turn index; empty turns left out
/// (the server refuses them, and they say nothing), over-long turns sent
/// as consecutive pieces of the same role and time.
pub fn session_turns(session: &Session, max_chars: usize, counts: &mut Counts) -> Vec<Turn> {
    let mut out = Vec::with_capacity(session.turns.len());
    counts.turns_in_data += session.turns.len();
    for (i, t) in session.turns.iter().enumerate() {
        if t.content.trim().is_empty() {
            counts.blank_turns_not_sent += 1;
            continue;
        }
        let parts = pieces(&t.content, max_chars);
        if parts.len() > 1 {
            counts.long_turns_split += 1;
            counts.long_turn_pieces += parts.len();
        }
        let timestamp = crate::dataset::turn_timestamp(session.date, i);
        for text in parts {
            out.push(Turn {
                role: t.speaker.role().into(),
                text,
                timestamp: timestamp.clone(),
                observations: Vec::new(),
            });
        }
    }
    counts.turns_sent += out.len();
    out
}

/// Writes `turns` of `session` (split at `max_turns` per call, with
/// `metadata` on each write), records fragment id → session uuid, and
/// returns the writes' job ids.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn remember_session(
    client: &mut IngestServiceClient<Channel>,
    token: &str,
    user_id: &str,
    session: &Session,
    turns: &[Turn],
    max_turns: usize,
    metadata: Option<prost_types::Struct>,
    fragments: &mut HashMap<String, String>,
    latencies: &mut Vec<Duration>,
) -> anyhow::Result<Vec<String>> {
    let mut job_ids = Vec::new();
    for chunk in turns.chunks(max_turns.max(1)) {
        let req = RememberRequest {
            scope: Some(Scope {
                org_id: ORG.into(),
                user_id: user_id.into(),
                session_id: session.uuid.clone(),
            }),
            turns: chunk.to_vec(),
            options: None,
            metadata: metadata.clone(),
        };
        let t = Instant::now();
        let resp = client.remember(authed(req, token)?).await?.into_inner();
        latencies.push(t.elapsed());
        if resp.active_fragment_ids.len() != chunk.len() {
            bail!(
                "remember returned {} fragment ids for {} turns",
                resp.active_fragment_ids.len(),
                chunk.len()
            );
        }
        job_ids.extend(resp.passive_job_id);
        for id in resp.active_fragment_ids {
            fragments.insert(id, session.uuid.clone());
        }
    }
    Ok(job_ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realmem_data::{DialogTurn, Speaker};

    fn ids(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pieces_cut_at_characters_not_bytes() {
        assert_eq!(pieces("abcdef", 4), ids(&["abcd", "ef"]));
        assert_eq!(pieces("abc", 3), ids(&["abc"]));
        assert_eq!(pieces("ééé€", 2), ids(&["éé", "é€"]));
        assert!(pieces("", 3).is_empty());
    }

    #[test]
    fn session_turns_are_stamped_and_cleaned() {
        let turn = |speaker, content: &str| DialogTurn {
            speaker,
            content: content.into(),
        };
        let session = Session {
            uuid: "aaaa0001".into(),
            identifier: "S1".into(),
            date: realmem_data::parse_session_date("2025-12-21 (Sunday)").unwrap(),
            turns: vec![
                turn(Speaker::User, "hello"),
                turn(Speaker::Assistant, "  "),
                turn(Speaker::Assistant, "abcdefghij"),
                turn(Speaker::User, "bye"),
            ],
            queries: vec![],
        };
        let mut counts = Counts::default();
        let turns = session_turns(&session, 5, &mut counts);
        let got: Vec<(&str, &str, &str)> = turns
            .iter()
            .map(|t| (t.role.as_str(), t.text.as_str(), t.timestamp.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("user", "hello", "2025-12-21T12:00:00Z"),
                ("assistant", "abcde", "2025-12-21T12:00:02Z"),
                ("assistant", "fghij", "2025-12-21T12:00:02Z"),
                ("user", "bye", "2025-12-21T12:00:03Z"),
            ]
        );
        assert_eq!(
            (
                counts.turns_in_data,
                counts.turns_sent,
                counts.blank_turns_not_sent,
                counts.long_turns_split,
                counts.long_turn_pieces
            ),
            (4, 4, 1, 1, 2)
        );
    }
}
