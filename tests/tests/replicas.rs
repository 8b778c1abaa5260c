//! Two ingest replicas write the same requests at the same moment while
//! their NATS publishes fail now and then (before reaching NATS, or after
//! NATS stored the event but before the acknowledgement came back): no
//! acknowledged turn may be lost and every job completes. An earlier
//! version rolled a failed write back by deleting its turns, which could
//! delete turns the other replica had just acknowledged; the stripe lock
//! that orders writes of one session covers one process only, so the
//! replicas here are two servers with their own ingest services (and
//! locks) over one NATS JetStream and one store. The same holds for
//! StoreMemory, whose failed publish once failed and refunded a memory the
//! other replica had acknowledged.

use async_trait::async_trait;
use engram_core::{
    Kind, OutboundMessage, PublishAck, ScopeFilter, StreamError, Subscription, TurnStream,
};
use engram_proto::v1::credit_service_client::CreditServiceClient;
use engram_proto::v1::memory_service_client::MemoryServiceClient;
use engram_proto::v1::*;
use engram_server::{Backends, Role, StreamKind};
use engram_testkit::NatsServer;
use engram_tests::{TestServer, authed, test_config, token};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The real NATS stream, with one publish in three failing: half of those
/// before the event reaches NATS, half after NATS stored it (a lost ack).
struct FlakyStream {
    inner: Arc<dyn TurnStream>,
    state: AtomicU64,
    failed: AtomicU64,
}

impl FlakyStream {
    fn new(inner: Arc<dyn TurnStream>, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            inner,
            state: AtomicU64::new(seed),
            failed: AtomicU64::new(0),
        })
    }

    fn roll(&self) -> u64 {
        let s = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (s >> 31) % 6
    }
}

#[async_trait]
impl TurnStream for FlakyStream {
    async fn publish(&self, message: OutboundMessage) -> Result<PublishAck, StreamError> {
        match self.roll() {
            0 => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err(StreamError::Unavailable(
                    "injected: connection lost before the publish".into(),
                ))
            }
            1 => {
                self.inner.publish(message).await?;
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err(StreamError::Unavailable(
                    "injected: acknowledgement lost".into(),
                ))
            }
            _ => self.inner.publish(message).await,
        }
    }

    async fn subscribe(&self) -> Result<Box<dyn Subscription>, StreamError> {
        self.inner.subscribe().await
    }

    async fn ready(&self) -> Result<(), StreamError> {
        self.inner.ready().await
    }

    async fn backlog(&self) -> Result<u64, StreamError> {
        self.inner.backlog().await
    }
}

fn request(i: usize) -> RememberRequest {
    let turn = |k: usize, text: String| Turn {
        role: if k == 0 { "user" } else { "assistant" }.into(),
        text,
        timestamp: format!("2026-05-08T14:{i:02}:{k:02}Z"),
        observations: Vec::new(),
    };
    RememberRequest {
        scope: Some(Scope {
            org_id: "org_r".into(),
            user_id: String::new(),
            session_id: "chat-1".into(),
        }),
        turns: vec![
            turn(
                0,
                format!("Request {i}: I moved to Lyon → in May {}.", 2000 + i),
            ),
            turn(1, format!("Noted for request {i}.")),
        ],
        options: None,
        metadata: None,
    }
}

async fn until_acked(server: &TestServer, req: RememberRequest, tok: &str) -> RememberResponse {
    let mut ingest = server.ingest().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ingest.remember(authed(req.clone(), tok)).await {
            Ok(r) => return r.into_inner(),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(Instant::now() < deadline, "never acknowledged: {status:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_with_a_flaky_stream_lose_no_acknowledged_turn() -> anyhow::Result<()> {
    const REQUESTS: usize = 24;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    config.backends.stream = StreamKind::Nats;
    config.nats.url = nats.url();
    config.nats.ack_wait_secs = 2;
    config.enrich.sweep_interval_ms = 300;
    config.enrich.overdue_after_secs = 2;
    let (backends, replicas, enrich, flaky) = flaky_replicas(&config).await?;
    let tok = token("org_r", "u1", 3600);

    // Each request to both replicas at once.
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        for r in &replicas {
            let (r, tok) = (Arc::clone(r), tok.clone());
            tasks.push(tokio::spawn(async move {
                until_acked(&r, request(i), &tok).await
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await?);
    }
    let failures: u64 = flaky.iter().map(|f| f.failed.load(Ordering::Relaxed)).sum();
    assert!(
        failures > 0,
        "the stream must have failed for the test to mean anything"
    );

    // Every acknowledged turn is there, now and after enrichment.
    for r in &acked {
        let have = backends
            .store
            .existing("org_r", &r.active_fragment_ids)
            .await?;
        assert_eq!(have.len(), 2, "acknowledged turns lost: {r:?}");
        let job = replicas[0]
            .wait_job(
                &tok,
                r.passive_job_id.as_deref().unwrap(),
                Duration::from_secs(60),
            )
            .await?;
        assert_eq!(job.state(), JobState::Ready, "{job:?}");
    }
    let turns = backends
        .store
        .count(&ScopeFilter {
            kinds: vec![Kind::Turn],
            ..ScopeFilter::tenant("org_r")
        })
        .await?;
    assert_eq!(turns, (REQUESTS * 2) as u64, "each turn stored once");
    println!(
        "two replicas: {} calls acknowledged, {failures} publishes failed on purpose, lost 0, duplicated 0",
        acked.len()
    );
    stop_all(enrich, replicas).await
}

async fn stop_all(enrich: TestServer, replicas: Vec<Arc<TestServer>>) -> anyhow::Result<()> {
    enrich.stop().await?;
    for r in replicas {
        Arc::try_unwrap(r).ok().unwrap().stop().await?;
    }
    Ok(())
}

/// The shared backends, two ingest replicas, the enrichment role and the
/// replicas' flaky streams.
type Replicas = (
    Backends,
    Vec<Arc<TestServer>>,
    TestServer,
    Vec<Arc<FlakyStream>>,
);

/// Two ingest replicas over one real NATS, each with its own flaky stream.
async fn flaky_replicas(config: &engram_server::Config) -> anyhow::Result<Replicas> {
    let backends = Backends::open(config, Role::Serve).await?;
    let real = backends.stream.clone().unwrap();
    let flaky = vec![
        FlakyStream::new(real.clone(), 7),
        FlakyStream::new(real, 1234),
    ];
    let mut replicas = Vec::new();
    for f in &flaky {
        let mut b = backends.clone();
        b.stream = Some(f.clone() as Arc<dyn TurnStream>);
        replicas.push(Arc::new(
            TestServer::start_role(Role::Ingest, config.clone(), b).await?,
        ));
    }
    let enrich = TestServer::start_role(Role::Enrich, config.clone(), backends.clone()).await?;
    Ok((backends, replicas, enrich, flaky))
}

fn admin_token(org: &str) -> String {
    let mut c = engram_tests::claims(org, "ada", 3600);
    c.role = Some("admin".into());
    engram_auth::mint_hs256(engram_tests::SECRET.as_bytes(), &c).expect("mint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_with_a_flaky_stream_store_each_memory_once_and_bill_it_once()
-> anyhow::Result<()> {
    const MEMORIES: usize = 16;
    const PRICE: u64 = 3;
    let org = "org_m";
    let nats = NatsServer::start();
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    config.backends.stream = StreamKind::Nats;
    config.nats.url = nats.url();
    config.nats.ack_wait_secs = 2;
    config.enrich.sweep_interval_ms = 300;
    config.enrich.overdue_after_secs = 2;
    config.credits.enabled = true;
    config.credits.price_per_char = PRICE;
    let (_, replicas, enrich, flaky) = flaky_replicas(&config).await?;
    let admin = admin_token(org);
    let tok = token(org, "u1", 3600);
    let mut credits = CreditServiceClient::new(replicas[0].channel().await?);
    credits
        .top_up(authed(
            TopUpRequest {
                org_id: org.into(),
                amount: 1_000_000,
                idempotency_key: "initial".into(),
            },
            &admin,
        ))
        .await?;

    let text = |i: usize| format!("Memory {i}: the gate code → {} «changed» 🚪.", 4000 + i);
    let mut tasks = Vec::new();
    for i in 0..MEMORIES {
        for r in &replicas {
            let (r, tok, text) = (Arc::clone(r), tok.clone(), text(i));
            tasks.push(tokio::spawn(async move {
                let mut memory = MemoryServiceClient::new(r.channel().await.unwrap());
                let req = StoreMemoryRequest {
                    org_id: org.into(),
                    text,
                    title: "Notes".into(),
                    ..Default::default()
                };
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    match memory.store_memory(authed(req.clone(), &tok)).await {
                        Ok(r) => return r.into_inner().memory_id,
                        Err(status) => {
                            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                            assert!(Instant::now() < deadline, "never acknowledged: {status:?}");
                        }
                    }
                }
            }));
        }
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.push(t.await?);
    }
    let failures: u64 = flaky.iter().map(|f| f.failed.load(Ordering::Relaxed)).sum();
    assert!(
        failures > 0,
        "the stream must have failed for the test to mean anything"
    );
    acked.sort();
    acked.dedup();
    assert_eq!(
        acked.len(),
        MEMORIES,
        "one memory per text, whichever replica"
    );

    let mut memory = MemoryServiceClient::new(replicas[1].channel().await?);
    for id in &acked {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = memory
                .get_memory_status(authed(
                    GetMemoryStatusRequest {
                        memory_id: id.clone(),
                    },
                    &tok,
                ))
                .await?
                .into_inner();
            match s.status() {
                MemoryStatus::Ready => break,
                MemoryStatus::Failed => panic!("an acknowledged memory failed: {s:?}"),
                _ => {
                    assert!(Instant::now() < deadline, "never ready: {s:?}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
    // Charged once each, never refunded.
    let rows = credits
        .list_ledger(authed(
            ListLedgerRequest {
                org_id: org.into(),
                limit: Some(1000),
            },
            &admin,
        ))
        .await?
        .into_inner()
        .rows;
    let kinds = |k: &str| rows.iter().filter(|r| r.kind == k).count();
    assert_eq!(kinds("charge"), MEMORIES, "{rows:?}");
    assert_eq!(kinds("refund"), 0, "{rows:?}");
    let billed: u64 = (0..MEMORIES)
        .map(|i| PRICE * text(i).chars().count() as u64)
        .sum();
    let balance = credits
        .get_balance(authed(GetBalanceRequest { org_id: org.into() }, &admin))
        .await?
        .into_inner()
        .balance;
    assert_eq!(balance, 1_000_000 - billed as i64);
    println!(
        "two replicas: {} StoreMemory calls acknowledged, {failures} publishes failed on purpose, lost 0, billed once each",
        MEMORIES * 2
    );
    stop_all(enrich, replicas).await
}
