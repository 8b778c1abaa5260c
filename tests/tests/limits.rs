//! Overload protection on a real server: per-tenant rate, concurrency and
//! backlog limits answer `RESOURCE_EXHAUSTED` with `RetryInfo` and the
//! reason while other tenants are unaffected; the server-wide cap and the
//! request-size cap answer the same way; and a load test of 200 clients
//! over Recall and Remember sees no error but the deliberate refusals of
//! the tenant over its limits, with a quiet tenant's Recall latency
//! printed before and during the flood.
//!
//! The load test's flood lasts `ENGRAM_LOAD_SECS` seconds (20 by default);
//! `cargo test -p engram-tests --test limits -- --ignored` runs a 60 s soak.

use engram_limits::{
    REASON_BACKLOG_FULL, REASON_RATE_LIMITED, REASON_REQUEST_TOO_LARGE, REASON_SERVER_OVERLOADED,
    REASON_TOO_MANY_CONCURRENT_CALLS,
};
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::*;
use engram_server::ExtractorKind;
use engram_testkit::chat::{ChatServer, Script};
use engram_tests::{TestServer, authed, token};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

fn scope(org: &str) -> Option<Scope> {
    Some(Scope {
        org_id: org.into(),
        user_id: String::new(),
        session_id: "chat-1".into(),
    })
}

fn remember(org: &str, texts: &[String]) -> RememberRequest {
    RememberRequest {
        scope: scope(org),
        turns: texts
            .iter()
            .enumerate()
            .map(|(i, text)| Turn {
                role: "user".into(),
                text: text.clone(),
                timestamp: format!("2026-05-08T14:{:02}:{:02}Z", (i / 60) % 60, i % 60),
                observations: Vec::new(),
            })
            .collect(),
        options: None,
        metadata: None,
    }
}

fn recall(org: &str, q: &str) -> RecallRequest {
    RecallRequest {
        scope: scope(org),
        q: q.into(),
        mode: RecallMode::Active as i32,
        top_k: Some(5),
        include_timeline: false,
        filter: None,
        collection_ids: Vec::new(),
    }
}

/// A write slow enough to hold a call slot for a while: many turns to embed.
fn big_write(org: &str, n: u64) -> RememberRequest {
    let texts: Vec<String> = (0..400)
        .map(|i| format!("holder {n} turn {i}: the quick brown fox jumps over the lazy dog"))
        .collect();
    remember(org, &texts)
}

/// Checks the refusal is `RESOURCE_EXHAUSTED` with `reason`, a retry hint
/// (when `retry`) and metadata naming `limit`.
fn assert_refused(s: &tonic::Status, reason: &str, limit: &str, retry: bool) {
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    let info = s.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, reason, "{s:?}");
    assert_eq!(info.metadata.get("limit").map(String::as_str), Some(limit));
    assert!(info.metadata.contains_key("value"), "{:?}", info.metadata);
    let hint = s.get_details_retry_info().and_then(|r| r.retry_delay);
    if retry {
        assert!(hint.is_some_and(|d| d > Duration::ZERO), "RetryInfo: {s:?}");
    } else {
        assert!(
            hint.is_none(),
            "no RetryInfo when a retry cannot help: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_is_refused_and_others_are_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.limits.requests_per_sec_per_org = 2;
        c.limits.burst_per_org = 3;
    })
    .await?;
    let (a, b) = (token("org_rate_a", "u", 600), token("org_rate_b", "u", 600));
    let mut client = server.recall().await?;

    // 30 calls need 13 s at 2/s after the burst of 3: some are refused.
    let mut refused = None;
    let mut ok = 0;
    for _ in 0..30 {
        match client
            .recall(authed(recall("org_rate_a", "colour"), &a))
            .await
        {
            Ok(_) => ok += 1,
            Err(s) => {
                assert_refused(
                    &s,
                    REASON_RATE_LIMITED,
                    "limits.requests_per_sec_per_org",
                    true,
                );
                refused = Some(s);
            }
        }
    }
    let refused = refused.expect("a tenant over its rate is refused");
    let hint = refused
        .get_details_retry_info()
        .unwrap()
        .retry_delay
        .unwrap();
    assert!(
        hint <= Duration::from_secs(1),
        "one token comes back every 500 ms: {hint:?}"
    );
    assert!(ok >= 3, "the burst is admitted: {ok}");

    // Another tenant has its own bucket.
    for _ in 0..3 {
        client
            .recall(authed(recall("org_rate_b", "colour"), &b))
            .await
            .expect("another tenant is unaffected");
    }
    // Probes are never limited.
    assert_eq!(server.health("").await?, ServingStatus::Serving);
    server.stop().await
}

/// Keeps one slow call of `org` in flight until `stop` is set (a call of
/// its own that meets a limit is sent again).
fn hold(
    server: &TestServer,
    org: &'static str,
    n: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<anyhow::Result<u64>> {
    let tok = token(org, "u", 600);
    let url = format!("http://{}", server.addr);
    tokio::spawn(async move {
        let mut client = IngestServiceClient::new(Channel::from_shared(url)?.connect().await?);
        let mut calls = 0;
        while !stop.load(Ordering::Relaxed) {
            calls += 1;
            match client
                .remember(authed(big_write(org, n * 1_000_000 + calls), &tok))
                .await
            {
                Ok(_) => {}
                Err(s) if s.code() == Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(s) => return Err(s.into()),
            }
        }
        Ok(calls)
    })
}

/// Sends Recall as `org` until one is refused with `reason`, for at most
/// 200 tries; returns the refusal.
async fn refused_recall(
    client: &mut RecallServiceClient<Channel>,
    org: &str,
    reason: &str,
) -> tonic::Status {
    let tok = token(org, "u", 600);
    for _ in 0..200 {
        match client.recall(authed(recall(org, "fox"), &tok)).await {
            Err(s) if s.code() == Code::ResourceExhausted => {
                let got = s.get_details_error_info().map(|i| i.reason);
                if got.as_deref() == Some(reason) {
                    return s;
                }
            }
            Err(s) => panic!("unexpected status: {s:?}"),
            Ok(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{org} was never refused with {reason}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_are_capped_per_tenant_and_per_server() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.limits.concurrent_calls_per_org = 2;
        c.limits.max_concurrent_requests = 4;
    })
    .await?;
    let mut client = server.recall().await?;
    let stop = Arc::new(AtomicBool::new(false));

    // Tenant A keeps its 2 slots busy: its next call is refused at once.
    let mut holders = vec![
        hold(&server, "org_conc_a", 1, stop.clone()),
        hold(&server, "org_conc_a", 2, stop.clone()),
    ];
    let s = refused_recall(&mut client, "org_conc_a", REASON_TOO_MANY_CONCURRENT_CALLS).await;
    assert_refused(
        &s,
        REASON_TOO_MANY_CONCURRENT_CALLS,
        "limits.concurrent_calls_per_org",
        true,
    );
    // Tenant B is unaffected meanwhile.
    let b = token("org_conc_b", "u", 600);
    for _ in 0..3 {
        client
            .recall(authed(recall("org_conc_b", "fox"), &b))
            .await
            .expect("another tenant is unaffected");
    }

    // With B's 2 slots busy too the server is full: a third tenant is
    // refused, and health still answers.
    holders.push(hold(&server, "org_conc_b", 3, stop.clone()));
    holders.push(hold(&server, "org_conc_b", 4, stop.clone()));
    let s = refused_recall(&mut client, "org_conc_c", REASON_SERVER_OVERLOADED).await;
    assert_refused(
        &s,
        REASON_SERVER_OVERLOADED,
        "limits.max_concurrent_requests",
        true,
    );
    assert_eq!(server.health("").await?, ServingStatus::Serving);

    stop.store(true, Ordering::Relaxed);
    for h in holders {
        h.await??;
    }
    // Slots come back once the calls are answered.
    let c = token("org_conc_c", "u", 600);
    client
        .recall(authed(recall("org_conc_c", "fox"), &c))
        .await
        .expect("capacity is given back");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beyond_the_backlog_are_refused_while_reads_go_on() -> anyhow::Result<()> {
    // Every extraction waits for a model that never answers until its
    // timeout, one job at a time: jobs stay unfinished for seconds.
    let chat = ChatServer::start((0..64).map(|_| Script::Hang).collect()).await;
    let dir = tempfile::tempdir()?;
    let url = chat.url.clone();
    let server = TestServer::start_with(dir.path(), move |c| {
        c.limits.max_backlog_per_org = 3;
        c.enrich.concurrency = 1;
        c.extract.extractor = ExtractorKind::Llm;
        c.extract.llm_url = url;
        c.extract.llm_model = "test-model".into();
        c.extract.llm_timeout_ms = 3_000;
    })
    .await?;
    let a = token("org_back_a", "u", 600);
    let mut ingest = server.ingest().await?;
    let mut jobs = Vec::new();
    for i in 0..3 {
        let r = ingest
            .remember(authed(
                remember("org_back_a", &[format!("I parked on level {i}.")]),
                &a,
            ))
            .await?
            .into_inner();
        jobs.push(r.passive_job_id.expect("a job"));
    }
    let s = ingest
        .remember(authed(
            remember("org_back_a", &["I parked on level 9.".into()]),
            &a,
        ))
        .await
        .expect_err("the fourth unfinished write is refused");
    assert_refused(&s, REASON_BACKLOG_FULL, "limits.max_backlog_per_org", true);
    let info = s.get_details_error_info().unwrap();
    assert_eq!(info.metadata["value"], "3");
    assert_eq!(info.metadata["pending"], "3");

    // Reads of the same tenant keep being answered, and another tenant
    // still writes.
    let hits = server
        .recall()
        .await?
        .recall(authed(recall("org_back_a", "where did I park"), &a))
        .await?
        .into_inner();
    assert!(hits.hits.is_some());
    let b = token("org_back_b", "u", 600);
    ingest
        .remember(authed(remember("org_back_b", &["I like tea.".into()]), &b))
        .await
        .expect("another tenant's backlog is its own");

    // Once the jobs are final the tenant writes again.
    for job in &jobs {
        server.wait_job(&a, job, Duration::from_secs(60)).await?;
    }
    ingest
        .remember(authed(
            remember("org_back_a", &["I parked on level 9.".into()]),
            &a,
        ))
        .await
        .expect("the backlog drained");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_size_cap_is_resource_exhausted() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.limits.max_request_bytes = 64 * 1024;
    })
    .await?;
    let tok = token("org_size", "u", 600);
    let mut ingest = server.ingest().await?;
    let big = "x".repeat(100 * 1024);
    let s = ingest
        .remember(authed(remember("org_size", &[big]), &tok))
        .await
        .expect_err("over the cap");
    assert_refused(
        &s,
        REASON_REQUEST_TOO_LARGE,
        "limits.max_request_bytes",
        false,
    );
    assert_eq!(
        s.get_details_error_info().unwrap().metadata["value"],
        "65536"
    );
    // Under the cap, on the same connection, calls go through.
    let texts: Vec<String> = (0..8)
        .map(|i| format!("{i} {}", "y".repeat(4000)))
        .collect();
    ingest
        .remember(authed(remember("org_size", &texts), &tok))
        .await
        .expect("under the cap");
    server.stop().await
}

/// What one load-test client saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    refused: BTreeMap<String, u64>,
    errors: Vec<String>,
    latencies: Vec<Duration>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        for (k, v) in other.refused {
            *self.refused.entry(k).or_default() += v;
        }
        self.errors.extend(other.errors);
        self.latencies.extend(other.latencies);
    }

    fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// p50 and p99 in milliseconds.
    fn percentiles(&self) -> (f64, f64) {
        let mut l = self.latencies.clone();
        l.sort();
        let at = |p: f64| {
            if l.is_empty() {
                return 0.0;
            }
            let i = ((p * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
            l[i].as_secs_f64() * 1000.0
        };
        (at(0.50), at(0.99))
    }
}

const QUIET: &str = "org_quiet";
const NOISY: &str = "org_noisy";

/// One client: Recall (and, for the noisy tenant, every third call a
/// Remember) until `until`, pausing `think` between calls; after a
/// refusal it waits what RetryInfo says, at most 50 ms (an impatient
/// client).
async fn client(
    channel: Channel,
    org: &'static str,
    id: u64,
    think: Duration,
    until: Instant,
    seq: Arc<AtomicU64>,
) -> Tally {
    let tok = token(org, "u", 3600);
    let mut recall_client = RecallServiceClient::new(channel.clone());
    let mut ingest = IngestServiceClient::new(channel);
    let mut t = Tally::default();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let write = org == NOISY && n.is_multiple_of(3);
        let started = Instant::now();
        let result = if write {
            let k = seq.fetch_add(1, Ordering::Relaxed);
            let mut req = authed(
                remember(
                    org,
                    &[format!(
                        "client {id} note {k}: the meeting moved to room {k}."
                    )],
                ),
                &tok,
            );
            req.set_timeout(Duration::from_secs(30));
            ingest.remember(req).await.map(|_| ())
        } else {
            let mut req = authed(recall(org, "which room is the meeting in"), &tok);
            req.set_timeout(Duration::from_secs(30));
            recall_client.recall(req).await.map(|_| ())
        };
        let took = started.elapsed();
        match result {
            Ok(()) => {
                t.ok += 1;
                if !write {
                    t.latencies.push(took);
                }
                tokio::time::sleep(think).await;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                let reason = s
                    .get_details_error_info()
                    .map_or_else(|| "none".to_owned(), |i| i.reason);
                *t.refused.entry(reason).or_default() += 1;
                let wait = s
                    .get_details_retry_info()
                    .and_then(|r| r.retry_delay)
                    .unwrap_or(Duration::from_millis(50))
                    .min(Duration::from_millis(50));
                tokio::time::sleep(wait.max(think)).await;
            }
            Err(s) => t
                .errors
                .push(format!("{org}: {:?} {}", s.code(), s.message())),
        }
    }
    t
}

/// Runs `clients` of `org` over `channels` until `until`.
fn spawn_clients(
    channels: &[Channel],
    org: &'static str,
    clients: u64,
    think: Duration,
    until: Instant,
    seq: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..clients)
        .map(|i| {
            let channel = channels[i as usize % channels.len()].clone();
            tokio::spawn(client(channel, org, i, think, until, Arc::clone(seq)))
        })
        .collect()
}

async fn join(handles: Vec<tokio::task::JoinHandle<Tally>>) -> anyhow::Result<Tally> {
    let mut all = Tally::default();
    for h in handles {
        all.merge(h.await?);
    }
    Ok(all)
}

async fn load(flood: Duration) -> anyhow::Result<()> {
    const CLIENTS: u64 = 200;
    const QUIET_CLIENTS: u64 = 4;
    let baseline = Duration::from_secs(5);
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.limits.requests_per_sec_per_org = 100;
        c.limits.burst_per_org = 100;
        c.limits.concurrent_calls_per_org = 16;
        c.limits.max_backlog_per_org = 200;
        c.limits.max_concurrent_requests = 128;
    })
    .await?;
    // 20 connections, 10 clients each.
    let mut channels = Vec::new();
    for _ in 0..20 {
        channels.push(server.channel().await?);
    }
    let seq = Arc::new(AtomicU64::new(0));
    let quiet_tok = token(QUIET, "u", 600);
    let seed = IngestServiceClient::new(channels[0].clone())
        .remember(authed(
            remember(
                QUIET,
                &[
                    "The meeting moved to room 4.".into(),
                    "Lunch is at noon.".into(),
                ],
            ),
            &quiet_tok,
        ))
        .await?
        .into_inner();
    server
        .wait_job(&quiet_tok, &seed.job_id, Duration::from_secs(60))
        .await?;

    // The quiet tenant alone: 4 clients, 100 ms between calls (~40/s, well
    // under its 100/s).
    let think = Duration::from_millis(100);
    let until = Instant::now() + baseline;
    let before = join(spawn_clients(
        &channels,
        QUIET,
        QUIET_CLIENTS,
        think,
        until,
        &seq,
    ))
    .await?;

    // The same, while the noisy tenant floods with the other 196 clients.
    let until = Instant::now() + flood;
    let quiet = spawn_clients(&channels, QUIET, QUIET_CLIENTS, think, until, &seq);
    let noisy = spawn_clients(
        &channels,
        NOISY,
        CLIENTS - QUIET_CLIENTS,
        Duration::ZERO,
        until,
        &seq,
    );
    let during = join(quiet).await?;
    let noisy = join(noisy).await?;

    let (b50, b99) = before.percentiles();
    let (d50, d99) = during.percentiles();
    let (n50, n99) = noisy.percentiles();
    let secs = flood.as_secs_f64();
    println!(
        "load: {CLIENTS} clients ({QUIET_CLIENTS} quiet, {} noisy), flood {secs:.0} s",
        CLIENTS - QUIET_CLIENTS
    );
    println!(
        "| clients | flood s | calls ok | RESOURCE_EXHAUSTED | errors | quiet Recall p50 / p99 ms before | quiet Recall p50 / p99 ms during | noisy admitted Recall p50 / p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {CLIENTS} | {secs:.0} | {} ({:.0}/s) | {} {:?} | {} | {b50:.1} / {b99:.1} | {d50:.1} / {d99:.1} | {n50:.1} / {n99:.1} |",
        during.ok + noisy.ok,
        (during.ok + noisy.ok) as f64 / secs,
        noisy.refused_total() + during.refused_total(),
        noisy.refused,
        before.errors.len() + during.errors.len() + noisy.errors.len(),
    );
    println!(
        "quiet: {} calls before ({} refused), {} during ({} refused); noisy: {} ok, {} refused",
        before.ok,
        before.refused_total(),
        during.ok,
        during.refused_total(),
        noisy.ok,
        noisy.refused_total()
    );

    let errors: Vec<_> = before
        .errors
        .iter()
        .chain(&during.errors)
        .chain(&noisy.errors)
        .take(10)
        .collect();
    assert!(errors.is_empty(), "errors other than refusals: {errors:?}");
    assert_eq!(before.refused_total(), 0, "{:?}", before.refused);
    assert_eq!(
        during.refused_total(),
        0,
        "the quiet tenant is never refused: {:?}",
        during.refused
    );
    assert!(
        before.ok > 0 && during.ok > 0,
        "the quiet tenant was answered"
    );
    assert!(
        noisy.ok > 0,
        "the noisy tenant is admitted up to its limits"
    );
    // 196 clients against 16 slots and 100/s: refusals are certain.
    assert!(noisy.refused_total() > 0, "the noisy tenant is limited");
    // A sanity bound, not a speed assertion: the figures are in RELIABILITY.md.
    assert!(
        d99 < 10_000.0,
        "quiet Recall p99 during the flood: {d99} ms"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_200_clients_only_the_noisy_tenant_is_refused() -> anyhow::Result<()> {
    let secs = std::env::var("ENGRAM_LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    load(Duration::from_secs(secs)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a 60 s soak; run with --ignored"]
async fn soak_200_clients_for_a_minute() -> anyhow::Result<()> {
    load(Duration::from_secs(60)).await
}
