//! `bench speed`: Recall and Remember against the floor the embedding
//! model sets, as the store grows, quiet and while enrichment drains a
//! backlog.
//!
//! The run first measures the embedding model alone, in this process (the
//! same model and thread count as the server): one query at a time, and
//! the texts of the first writes in Remember-sized calls. Every server
//! figure is then reported beside it: Recall p50 minus the model's query
//! p50 is what the service adds; Remember turns/s over the model's texts/s
//! is how close ingest runs to the model.
//!
//! The store is grown in steps (e.g. to 10k, then to 100k fragments) with
//! synthetic but realistic traffic: the ~5.9k LoCoMo turns replayed by many
//! users of one tenant (org `speed`), each user a 100-turn conversation cut
//! from the corpus at its own offset. Texts therefore repeat across users,
//! as common phrases do in a real deployment, while fragment ids differ
//! because the scope is part of the id. Growth writes active memory only,
//! so the quiet figures are quiet; the backlog phase then writes turns
//! *with* enrichment and measures Recall while the consumer works.

mod load;
mod plan;
mod report;

pub use report::{BacklogReport, RecallCell, SizeReport, SpeedReport};

use crate::dataset;
use crate::rng::Rng;
use crate::server::Target;
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use engram_proto::v1::RecallMode;
use plan::{plan_calls, user_name};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Tenant of the synthetic traffic.
const ORG: &str = "speed";
/// Start of the synthetic users' conversations.
const BASE_TIME: &str = "2024-01-01T09:00:00Z";

/// Options of `bench speed`.
#[derive(Debug, Clone, Args)]
pub struct SpeedArgs {
    /// The LoCoMo data file (source of texts and questions).
    #[arg(long, default_value = "../shared/bench/locomo10.json")]
    pub data: PathBuf,
    /// The models directory of the in-process floor (scripts/setup.sh).
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// ONNX Runtime intra-op threads of the floor (the server's default).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Store sizes to grow to and measure at, ascending, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub fragments: Vec<usize>,
    /// Recall calls measured per (mode, top_k) cell, one client.
    #[arg(long, default_value_t = 300)]
    pub queries: usize,
    /// Recall modes measured.
    #[arg(long, value_delimiter = ',', default_value = "active,deep")]
    pub modes: Vec<String>,
    /// `top_k` values measured.
    #[arg(long, value_delimiter = ',', default_value = "10,30")]
    pub top_ks: Vec<i32>,
    /// Concurrent Recall clients of the throughput runs (active, first
    /// top_k), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "16,200")]
    pub clients: Vec<usize>,
    /// Turns per Remember call.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Concurrent Remember clients.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Fragments per synthetic user (one user = one conversation).
    #[arg(long, default_value_t = 100)]
    pub fragments_per_user: usize,
    /// Stored texts the floor embeds (the first fragments' texts).
    #[arg(long, default_value_t = 2_000)]
    pub floor_texts: usize,
    /// Turns written with enrichment after the last size, Recall measured
    /// while the consumer drains them (0: no backlog phase).
    #[arg(long, default_value_t = 3_000)]
    pub backlog_turns: usize,
    /// Seconds to wait after each growth step before measuring, so the
    /// store's optimizer (which runs after writes pause) is not measured
    /// as query latency.
    #[arg(long, default_value_t = 20)]
    pub settle_secs: u64,
    /// The target already holds the fragments of `--fragments` from an
    /// earlier run with the same `--fragments-per-user` (a kept
    /// `--data-dir`, or `--addr`): write nothing, measure Recall (the
    /// Remember figures of such a run are zero).
    #[arg(long)]
    pub grown: bool,
    /// Surfaces of the one-client Recall cells: `grpc`, or `grpc,rest` to
    /// measure each (mode, top_k) cell over both, call by call on the same
    /// questions (cells named "mode (rest)" beside "mode").
    #[arg(long, value_delimiter = ',', default_value = "grpc")]
    pub surfaces: Vec<String>,
    /// Unmeasured Recall calls before each measurement.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Seed of the query and user choice.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Write the results as JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn mode_of(name: &str) -> anyhow::Result<RecallMode> {
    match name {
        "active" => Ok(RecallMode::Active),
        "deep" => Ok(RecallMode::Deep),
        other => bail!("unknown recall mode {other:?}: expected active or deep"),
    }
}

/// Runs the speed benchmark against `target`.
pub async fn run(target: &Target, args: &SpeedArgs) -> anyhow::Result<SpeedReport> {
    if args.fragments.windows(2).any(|w| w[0] >= w[1]) || args.fragments.is_empty() {
        bail!("--fragments must be ascending sizes, e.g. 10000,100000");
    }
    let modes = args
        .modes
        .iter()
        .map(|m| mode_of(m).map(|mode| (m.clone(), mode)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_k = *args.top_ks.first().context("--top-ks is empty")?;
    let rest = match args.surfaces.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["grpc"] => false,
        ["grpc", "rest"] | ["rest", "grpc"] => true,
        _ => bail!("--surfaces: expected grpc or grpc,rest"),
    };
    let convs = dataset::load(&args.data)?;
    let corpus: Vec<String> = convs
        .iter()
        .flat_map(|c| {
            c.sessions
                .iter()
                .flat_map(|s| s.turns.iter().map(|t| t.indexed_text()))
        })
        .collect();
    let questions: Vec<String> = convs
        .iter()
        .flat_map(|c| c.qa.iter().map(|q| q.question.clone()))
        .collect();
    if corpus.is_empty() || questions.is_empty() {
        bail!("the data file holds no turns or no questions");
    }
    let per_user = args.fragments_per_user.max(1);
    let base: DateTime<Utc> = BASE_TIME.parse()?;

    // The floor: the model alone, on the questions and on the texts the
    // first writes carry, before the server has any work.
    // The floor's model stays loaded: one-client cells time it again on
    // each query, in step with the calls.
    let paired: Arc<dyn engram_core::Embedder>;
    let floor = {
        let mut opts = engram_embed::OrtEmbedderOptions::from_models_dir(&args.models_dir);
        opts.intra_threads = args.threads;
        let model = tokio::task::spawn_blocking(move || engram_embed::OrtEmbedder::load(opts))
            .await?
            .context("embedding model for the floor (run scripts/setup.sh)")?;
        let texts: Vec<String> = plan_calls(
            0,
            args.floor_texts.max(1),
            per_user,
            args.batch,
            &corpus,
            base,
            false,
        )
        .into_iter()
        .flat_map(|c| c.request.turns.into_iter().map(|t| t.text))
        .collect();
        let queries: Vec<String> = questions
            .iter()
            .take(args.queries.max(50))
            .cloned()
            .collect();
        let floor = crate::embed::measure(&model, &queries, &texts, args.batch).await?;
        paired = Arc::new(model) as Arc<dyn engram_core::Embedder>;
        floor
    };
    eprintln!(
        "speed: floor: query p50 {:.2} ms p99 {:.2} ms; {:.1} texts/s and {:.1} queries/s in calls of {}",
        floor.single_query.p50_ms,
        floor.single_query.p99_ms,
        floor.texts_per_sec,
        floor.queries_per_sec,
        args.batch
    );

    let max = args.fragments.last().copied().unwrap_or_default();
    let backlog_users = args.backlog_turns.div_ceil(per_user);
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..max.div_ceil(per_user) + backlog_users)
            .map(|u| target.token(ORG, &user_name(u)))
            .collect::<anyhow::Result<_>>()?,
    );
    let mut rng = Rng(args.seed);
    let mut sizes = Vec::new();
    let mut have = 0;
    let mut prev_users = 0;
    for &size in &args.fragments {
        eprintln!("speed: growing the store from {have} to {size} fragments");
        let ingest = if args.grown {
            crate::stats::IngestRun::new(0, &[], 0.0)
        } else {
            let calls = plan_calls(have, size, per_user, args.batch, &corpus, base, false);
            load::ingest(target, calls, tokens.clone(), args.concurrency, true)
                .await?
                .run
        };
        eprintln!(
            "speed: wrote {} turns in {:.1} s ({:.1} turns/s)",
            ingest.turns, ingest.seconds, ingest.turns_per_sec
        );
        have = size;
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        let users = size.div_ceil(per_user);
        let mut recall = Vec::new();
        let mut empty = 0;
        // Each user's first Recall of a mode waits for the user's term
        // statistics (cached afterwards): measured apart, once per new user
        // and mode, so the cells below measure the steady state.
        for (name, mode) in &modes {
            let first: Vec<(usize, String)> = (prev_users..users)
                .map(|u| (u, questions[rng.below(questions.len())].clone()))
                .collect();
            if first.is_empty() {
                continue;
            }
            let run =
                load::recall_run(target, &first, &tokens, *mode, first_k, 1, Some(&paired)).await?;
            empty += run.empty;
            recall.push(RecallCell::new(
                &format!("{name}, a user's first call"),
                first_k,
                1,
                &run,
                &floor,
            ));
            eprintln!(
                "speed: at {size} fragments {}",
                recall.last().map(RecallCell::line).unwrap_or_default()
            );
        }
        prev_users = users;
        let mut plan = |n: usize| -> Vec<(usize, String)> {
            (0..n)
                .map(|_| {
                    (
                        rng.below(users),
                        questions[rng.below(questions.len())].clone(),
                    )
                })
                .collect()
        };
        for (name, mode) in &modes {
            for &k in &args.top_ks {
                let warm = plan(args.warmup);
                load::recall_run(target, &warm, &tokens, *mode, k, 1, None).await?;
                if rest {
                    let queries = plan(args.queries);
                    let (grpc, over_rest) =
                        load::recall_pair_run(target, &queries, &tokens, *mode, k, Some(&paired))
                            .await?;
                    empty += grpc.empty + over_rest.empty;
                    recall.push(RecallCell::new(name, k, 1, &grpc, &floor));
                    recall.push(RecallCell::new(
                        &format!("{name} (rest)"),
                        k,
                        1,
                        &over_rest,
                        &floor,
                    ));
                    for cell in &recall[recall.len() - 2..] {
                        eprintln!("speed: at {size} fragments {}", cell.line());
                    }
                    continue;
                }
                let run = load::recall_run(
                    target,
                    &plan(args.queries),
                    &tokens,
                    *mode,
                    k,
                    1,
                    Some(&paired),
                )
                .await?;
                empty += run.empty;
                recall.push(RecallCell::new(name, k, 1, &run, &floor));
                eprintln!(
                    "speed: at {size} fragments {}",
                    recall.last().map(RecallCell::line).unwrap_or_default()
                );
            }
        }
        for &clients in &args.clients {
            let calls = args.queries.max(clients * 4);
            let run = load::recall_run(
                target,
                &plan(calls),
                &tokens,
                RecallMode::Active,
                first_k,
                clients,
                Some(&paired),
            )
            .await?;
            empty += run.empty;
            recall.push(RecallCell::new("active", first_k, clients, &run, &floor));
            eprintln!(
                "speed: at {size} fragments {}",
                recall.last().map(RecallCell::line).unwrap_or_default()
            );
        }
        sizes.push(SizeReport {
            fragments: size,
            users,
            remember_vs_floor: ingest.turns_per_sec / floor.texts_per_sec.max(1e-9),
            ingest,
            recall,
            empty_recalls: empty,
            memory: target.memory(),
        });
    }

    let backlog = if args.backlog_turns > 0 {
        Some(
            backlog(
                target, args, &corpus, &questions, &tokens, &floor, &mut rng, max,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(SpeedReport {
        endpoint: target.endpoint().to_string(),
        batch: args.batch,
        concurrency: args.concurrency,
        queries: args.queries,
        floor,
        sizes,
        backlog,
    })
}

/// Writes `backlog_turns` with enrichment for new users, then measures
/// active Recall (first top_k, one client) on the grown users while the
/// consumer drains them, and how long the drain took.
#[allow(clippy::too_many_arguments)]
async fn backlog(
    target: &Target,
    args: &SpeedArgs,
    corpus: &[String],
    questions: &[String],
    tokens: &Arc<Vec<String>>,
    floor: &crate::embed::Floor,
    rng: &mut Rng,
    grown: usize,
) -> anyhow::Result<BacklogReport> {
    let per_user = args.fragments_per_user.max(1);
    let first_k = args.top_ks.first().copied().unwrap_or(10);
    let users = grown.div_ceil(per_user);
    let start = users * per_user;
    let base: DateTime<Utc> = BASE_TIME.parse()?;
    eprintln!(
        "speed: writing a backlog of {} turns with enrichment",
        args.backlog_turns
    );
    let calls = plan_calls(
        start,
        start + args.backlog_turns,
        per_user,
        args.batch,
        corpus,
        base,
        true,
    );
    let written = load::ingest(target, calls, tokens.clone(), args.concurrency, false).await?;
    let plan: Vec<(usize, String)> = (0..args.queries)
        .map(|_| {
            (
                rng.below(users),
                questions[rng.below(questions.len())].clone(),
            )
        })
        .collect();
    let run = load::recall_run(
        target,
        &plan,
        tokens,
        RecallMode::Active,
        first_k,
        1,
        // Not paired: the model in this process would add to the load the
        // cell measures.
        None,
    )
    .await?;
    let (still_draining, drained_after_s) = match &written.last_job {
        Some((user, job)) => {
            let pending = load::job_pending(target, &tokens[*user], job).await?;
            let waited =
                load::wait_for_job(target, &tokens[*user], job, Duration::from_secs(3_600)).await?;
            (
                pending,
                written.run.seconds + run.wall.as_secs_f64() + waited.as_secs_f64(),
            )
        }
        None => (false, 0.0),
    };
    let report = BacklogReport {
        turns: written.run.turns,
        write: written.run,
        recall: RecallCell::new("active", first_k, 1, &run, floor),
        still_draining,
        drained_after_s,
    };
    eprintln!("speed: during the backlog {}", report.recall.line());
    Ok(report)
}
