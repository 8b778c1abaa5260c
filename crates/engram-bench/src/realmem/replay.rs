//! `bench realmem --replay`: every session written up front, each query
//! filtered to the sessions before its own.
//!
//! Each write carries metadata `realmem_seq` = the session's place in the
//! person's file, which observations inherit from their turns, so a query
//! of session `i` asked with `realmem_seq < i` sees what the online
//! protocol sees at that moment. Two things differ: BM25's IDF (a
//! collection statistic) counts the later sessions too, and a recall with
//! a metadata filter searches no entities (entities carry no metadata; no
//! turn's rank depends on them). With `--data-dir`, what was written is
//! recorded per person in `<data-dir>/bench-realmem/<user>.json` and reused
//! by the next run with the same data and splitting options.

use super::{RealmemArgs, remember_session, session_turns};
use crate::locomo::wait_jobs;
use crate::realmem_data::{Person, Session};
use crate::realmem_report::Counts;
use anyhow::Context;
use engram_proto::v1::Filter;
use engram_proto::v1::filter::Condition;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// The metadata key of a session's place in its file.
const SEQ: &str = "realmem_seq";

/// What a person's writes left behind, as recorded for reuse.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Written {
    /// Sessions written.
    sessions: usize,
    /// `--max-text-chars` they were written with.
    max_text_chars: usize,
    /// Fragment id → session uuid.
    fragments: HashMap<String, String>,
}

/// The filter of a query of the session at place `seq`: earlier sessions.
pub(super) fn before(seq: usize) -> Filter {
    Filter {
        condition: Some(Condition::Range(engram_proto::v1::NumberRange {
            key: SEQ.into(),
            gt: None,
            gte: None,
            lt: Some(seq as f64),
            lte: None,
        })),
    }
}

fn seq_metadata(seq: usize) -> prost_types::Struct {
    prost_types::Struct {
        fields: [(
            SEQ.to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::NumberValue(seq as f64)),
            },
        )]
        .into(),
    }
}

/// The fragments of `person`'s `sessions`: read back from the record in
/// `data_dir` when one matches, otherwise written now (every session, then
/// all enrichment awaited) and recorded there.
#[allow(clippy::too_many_arguments)]
pub(super) async fn written(
    data_dir: Option<&Path>,
    ingest: &mut IngestServiceClient<Channel>,
    jobs: &mut JobServiceClient<Channel>,
    token: &str,
    person: &Person,
    sessions: &[Session],
    args: &RealmemArgs,
    counts: &mut Counts,
    latencies: &mut Vec<Duration>,
) -> anyhow::Result<HashMap<String, String>> {
    let record = data_dir.map(|d| {
        d.join("bench-realmem")
            .join(format!("{}.json", person.slug))
    });
    if let Some(path) = &record
        && let Ok(bytes) = std::fs::read(path)
    {
        let w: Written = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a replay record", path.display()))?;
        if w.sessions == sessions.len() && w.max_text_chars == args.max_text_chars {
            eprintln!(
                "realmem: {}: reusing {} sessions written earlier ({})",
                person.name,
                w.sessions,
                path.display()
            );
            return Ok(w.fragments);
        }
        anyhow::bail!(
            "{} records {} sessions at --max-text-chars {}, this run asks for {} at {}: \
             use another --data-dir",
            path.display(),
            w.sessions,
            w.max_text_chars,
            sessions.len(),
            args.max_text_chars
        );
    }
    let mut fragments = HashMap::new();
    let mut job_ids = Vec::new();
    for (si, session) in sessions.iter().enumerate() {
        let turns = session_turns(session, args.max_text_chars, counts);
        job_ids.extend(
            remember_session(
                ingest,
                token,
                &person.slug,
                session,
                &turns,
                args.max_turns_per_call,
                Some(seq_metadata(si)),
                &mut fragments,
                latencies,
            )
            .await
            .with_context(|| format!("ingest of session {} of {}", session.uuid, person.name))?,
        );
    }
    if !args.skip_enrich_wait {
        let deadline = Instant::now() + Duration::from_secs(args.enrich_timeout_secs);
        wait_jobs(jobs, token, &job_ids, deadline)
            .await
            .with_context(|| format!("enrichment of {}", person.name))?;
    }
    if let Some(path) = &record {
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        let w = Written {
            sessions: sessions.len(),
            max_text_chars: args.max_text_chars,
            fragments,
        };
        std::fs::write(path, serde_json::to_vec(&w)?)?;
        return Ok(w.fragments);
    }
    Ok(fragments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_sees_only_earlier_sessions() {
        let Some(Condition::Range(r)) = before(7).condition else {
            panic!("a range");
        };
        assert_eq!((r.key.as_str(), r.lt, r.gte), (SEQ, Some(7.0), None));
        let m = seq_metadata(3);
        assert_eq!(
            m.fields[SEQ].kind,
            Some(prost_types::value::Kind::NumberValue(3.0))
        );
    }
}
