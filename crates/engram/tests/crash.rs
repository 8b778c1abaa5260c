//! Crash suite on the embedded default: `engram serve` is killed with
//! SIGKILL (no cooperative shutdown) at random moments while several
//! clients send Remember and StoreMemory calls, and restarted on the same
//! data directory; clients retry what was not acknowledged. Afterwards every
//! acknowledged call re-sent bills nothing and returns the same ids
//! (nothing lost), each turn is stored once (nothing duplicated), every job
//! and memory reaches READY (nothing stuck) and the credit ledger balances.
//!
//! The same on NATS JetStream, where every other kill hits `nats-server`,
//! and with the roles as separate processes (`engram ingest`, `engram
//! enrich`, `engram recall`) over NATS and a Qdrant server, where the kills
//! go to ingest, enrich and `nats-server` in turn.
//! `ENGRAM_CRASH_KILLS` sets the number of kills per test (default 5;
//! RELIABILITY.md has a run with more).

use engram_proto::v1::credit_service_client::CreditServiceClient;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::memory_service_client::MemoryServiceClient;
use engram_proto::v1::*;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};

mod common;

use common::{authed, embedded_env, engram, free_port, token_as, wait_job_ready};

const CLIENTS: usize = 4;
/// Calls each client makes at least (it goes on until the kills are over).
const MIN_CALLS_PER_CLIENT: usize = 6;
const PRICE_PER_CHAR: u64 = 3;
const TOP_UP: u64 = 1_000_000_000;

/// One `engram` process (`serve`, or one role) on a fixed address, so
/// clients find it again after a restart.
struct Server {
    role: &'static str,
    addr: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Server {
    fn spawn(
        role: &'static str,
        addr: &str,
        env: &[(String, String)],
        logs: &std::path::Path,
        run: usize,
    ) -> Self {
        let log = logs.join(format!("{role}-{run}.log"));
        let child = engram(&[role, "--listen", addr], env)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("engram starts");
        Server {
            role,
            addr: addr.to_owned(),
            child,
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no flush.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(addr: &str) -> Option<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .ok()
}

/// A small deterministic generator (the test must not need a crate for it).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn remember_request(client: usize, call: usize) -> RememberRequest {
    let turn = |k: usize, text: String| Turn {
        role: if k == 0 { "user" } else { "assistant" }.into(),
        text,
        timestamp: {
            let t = call * 2 + k;
            format!(
                "2026-05-{:02}T{client:02}:{:02}:{:02}Z",
                8 + t / 3600,
                t / 60 % 60,
                t % 60
            )
        },
        observations: if k == 0 {
            vec![format!("User {client} said fact {call}.")]
        } else {
            Vec::new()
        },
    };
    RememberRequest {
        scope: Some(Scope {
            org_id: "org_crash".into(),
            user_id: String::new(),
            session_id: format!("c{client}"),
        }),
        turns: vec![
            turn(
                0,
                format!("Client {client} call {call}: I moved to Lyon → for job {call} 🎉"),
            ),
            turn(
                1,
                format!("Noted, client {client} call {call} — “congrats”."),
            ),
        ],
        options: None,
        metadata: None,
    }
}

fn store_request(client: usize, call: usize) -> StoreMemoryRequest {
    StoreMemoryRequest {
        org_id: "org_crash".into(),
        text: format!(
            "Policy {client}-{call}: economy class under six hours → business above. Hotels at most {} EUR.",
            100 + call
        ),
        title: format!("policy {client}-{call}"),
        extract: true,
        ..Default::default()
    }
}

enum Acked {
    Remember(RememberRequest, RememberResponse),
    Store(StoreMemoryRequest, StoreMemoryResponse),
}

/// Sends one call until it is acknowledged: every error (the server dying
/// mid-call, refusing connections, UNAVAILABLE while it starts) is retried.
async fn until_acked(addr: &str, token: &str, client: usize, call: usize) -> Acked {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = String::from("no connection");
    loop {
        assert!(
            Instant::now() < deadline,
            "call {client}/{call} never acknowledged; last: {last}"
        );
        let Some(channel) = connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let result = if call % 3 == 2 {
            let req = store_request(client, call);
            MemoryServiceClient::new(channel)
                .store_memory(authed(req.clone(), token))
                .await
                .map(|r| Acked::Store(req, r.into_inner()))
        } else {
            let req = remember_request(client, call);
            IngestServiceClient::new(channel)
                .remember(authed(req.clone(), token))
                .await
                .map(|r| Acked::Remember(req, r.into_inner()))
        };
        match result {
            Ok(acked) => return acked,
            Err(status) => {
                use tonic::Code::*;
                // A refusal is a verdict, not a crash: retrying cannot help.
                assert!(
                    !matches!(
                        status.code(),
                        InvalidArgument | Unauthenticated | PermissionDenied | FailedPrecondition
                    ),
                    "call {client}/{call} refused: {status:?}"
                );
                last = format!("{:?}: {}", status.code(), status.message());
                tokio::time::sleep(Duration::from_millis(50)).await
            }
        }
    }
}

async fn wait_serving(server: &mut Server) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!(
                "engram {} exited ({status}) after a restart:\n{}",
                server.role,
                server.log()
            );
        }
        if let Some(channel) = connect(&server.addr).await {
            let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if health.is_ok_and(|h| h.into_inner().status == 1) {
                return channel;
            }
        }
        assert!(
            Instant::now() < deadline,
            "engram {} not serving after restart:\n{}",
            server.role,
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kills() -> usize {
    std::env::var("ENGRAM_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_writes_loses_duplicates_and_strands_nothing() {
    let data = tempfile::tempdir().unwrap();
    suite(
        "embedded",
        embedded_env(data.path()),
        kills(),
        None,
        &["serve"],
    )
    .await;
}

/// `engram serve` on NATS JetStream: the kills alternate between the
/// process (ingest and enrich, mid-job) and `nats-server` itself, which is
/// restarted on its store directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_engram_and_of_nats_loses_duplicates_and_strands_nothing() {
    let nats = engram_testkit::NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut env = embedded_env(data.path());
    env.push(("ENGRAM__BACKENDS__STREAM".into(), "nats".into()));
    env.push(("ENGRAM__NATS__URL".into(), nats.url()));
    env.push(("ENGRAM__NATS__ACK_WAIT_SECS".into(), "2".into()));
    env.push(("ENGRAM__NATS__REQUEST_TIMEOUT_MS".into(), "1500".into()));
    suite("nats", env, kills(), Some(nats), &["serve"]).await;
}

/// The three roles as processes over NATS JetStream and a Qdrant server
/// (`QDRANT_URL`; skipped with the reason printed without one): the kills
/// go in turn to `engram ingest`, to `engram enrich` (which is always mid-job
/// while the clients write) and to `nats-server`. `engram recall` runs
/// beside them and is not killed; the checks go through ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_ingest_enrich_and_nats_loses_duplicates_and_strands_nothing() {
    let Ok(qdrant_url) = std::env::var("QDRANT_URL") else {
        println!(
            "skipped: QDRANT_URL is not set (point it at a Qdrant server's gRPC port to SIGKILL the roles as processes)"
        );
        return;
    };
    let nats = engram_testkit::NatsServer::start();
    let data = tempfile::tempdir().unwrap();
    let mut env = embedded_env(data.path());
    for (k, v) in [
        ("ENGRAM__BACKENDS__STREAM", "nats".to_owned()),
        ("ENGRAM__BACKENDS__VECTOR_STORE", "qdrant".to_owned()),
        ("ENGRAM__NATS__URL", nats.url()),
        ("ENGRAM__NATS__ACK_WAIT_SECS", "2".to_owned()),
        ("ENGRAM__NATS__REQUEST_TIMEOUT_MS", "1500".to_owned()),
        ("ENGRAM__QDRANT__URL", qdrant_url),
        (
            "ENGRAM__QDRANT__COLLECTION",
            format!("engram_crash_{}", std::process::id()),
        ),
    ] {
        env.push((k.to_owned(), v));
    }
    // Each of the three is killed at least twice.
    suite(
        "roles",
        env,
        kills().max(6),
        Some(nats),
        &["ingest", "enrich", "recall"],
    )
    .await;
}

/// Writes from [`CLIENTS`] clients to the first of `roles` while `kills`
/// SIGKILLs hit, in turn, each of `roles` but `recall` and (with `nats`)
/// `nats-server`, then checks every acknowledged call.
async fn suite(
    name: &str,
    mut env: Vec<(String, String)>,
    kills: usize,
    mut nats: Option<engram_testkit::NatsServer>,
    roles: &[&'static str],
) {
    let logs = tempfile::tempdir().unwrap();
    env.push(("ENGRAM__CREDITS__ENABLED".into(), "true".into()));
    env.push((
        "ENGRAM__CREDITS__PRICE_PER_CHAR".into(),
        PRICE_PER_CHAR.to_string(),
    ));
    // A job caught by a kill is redelivered after the queue's ack wait or
    // found by the sweeper; keep both short so the test does not wait.
    env.push(("ENGRAM__ENRICH__SWEEP_INTERVAL_MS".into(), "500".into()));
    env.push(("ENGRAM__ENRICH__OVERDUE_AFTER_SECS".into(), "3".into()));
    let admin = token_as(&env, "org_crash", "ada", Some("admin"));
    let mut fleet: Vec<Server> = roles
        .iter()
        .map(|role| {
            let addr = format!("127.0.0.1:{}", free_port());
            Server::spawn(role, &addr, &env, logs.path(), 0)
        })
        .collect();
    for server in &mut fleet {
        wait_serving(server).await;
    }
    let addr = fleet[0].addr.clone();
    let channel = wait_serving(&mut fleet[0]).await;
    let top_up = CreditServiceClient::new(channel)
        .top_up(authed(
            TopUpRequest {
                org_id: "org_crash".into(),
                amount: TOP_UP,
                idempotency_key: "crash-suite".into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top_up.balance, TOP_UP as i64);

    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let killing = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (addr, admin, acked, done, killing) = (
            addr.clone(),
            admin.clone(),
            acked.clone(),
            done.clone(),
            killing.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut call = 0;
            while call < MIN_CALLS_PER_CLIENT || killing.load(Ordering::SeqCst) {
                let a = until_acked(&addr, &admin, client, call).await;
                acked.lock().await.push(a);
                call += 1;
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }

    // Kill at random moments while the clients write (and the consumer
    // enriches what they wrote).
    let mut rng = Lcg(0x5eed_cafe);
    let targets: Vec<usize> = (0..fleet.len())
        .filter(|&i| fleet[i].role != "recall")
        .collect();
    let turns = targets.len() + usize::from(nats.is_some());
    for run in 1..=kills {
        tokio::time::sleep(Duration::from_millis(100 + rng.next(600))).await;
        let before = acked.lock().await.len();
        match targets.get((run - 1) % turns) {
            Some(&i) => {
                let server = &mut fleet[i];
                server.kill();
                println!(
                    "{name} kill {run} (engram {}): {before} calls acknowledged before it",
                    server.role
                );
                *server = Server::spawn(server.role, &server.addr, &env, logs.path(), run);
            }
            None => {
                let nats = nats.as_mut().expect("a turn for nats-server");
                nats.stop();
                println!("{name} kill {run} (nats-server): {before} calls acknowledged before it");
                tokio::time::sleep(Duration::from_millis(rng.next(500))).await;
                nats.start_again();
            }
        }
        for server in &mut fleet {
            wait_serving(server).await;
        }
    }
    killing.store(false, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), CLIENTS);

    let channel = wait_serving(&mut fleet[0]).await;
    let acked = std::mem::take(&mut *acked.lock().await);
    assert!(acked.len() >= CLIENTS * MIN_CALLS_PER_CLIENT);
    let mut ingest = IngestServiceClient::new(channel.clone());
    let mut memory = MemoryServiceClient::new(channel.clone());
    let mut jobs = JobServiceClient::new(channel.clone());
    let mut billed_chars = 0u64;
    let mut fragments: HashSet<String> = HashSet::new();
    let mut memories: HashMap<String, u64> = HashMap::new();
    for a in &acked {
        match a {
            Acked::Remember(req, first) => {
                // Nothing lost: the same ids again, nothing billed.
                let again = ingest
                    .remember(authed(req.clone(), &admin))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(again.job_id, first.job_id);
                assert_eq!(again.active_fragment_ids, first.active_fragment_ids);
                assert_eq!(again.usage.unwrap().tokens_in, 0, "re-sent after a crash");
                fragments.extend(first.active_fragment_ids.iter().cloned());
                // Nothing stuck.
                wait_job_ready(&mut jobs, first.passive_job_id.as_deref().unwrap(), &admin).await;
            }
            Acked::Store(req, first) => {
                let again = memory
                    .store_memory(authed(req.clone(), &admin))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(again.memory_id, first.memory_id);
                assert_eq!(again.characters, 0, "re-sent memories are not billed");
                memories.insert(first.memory_id.clone(), req.text.chars().count() as u64);
                billed_chars += first.characters;
                wait_job_ready(&mut jobs, &first.memory_id, &admin).await;
                let status = memory
                    .get_memory_status(authed(
                        GetMemoryStatusRequest {
                            memory_id: first.memory_id.clone(),
                        },
                        &admin,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(status.status(), MemoryStatus::Ready);
            }
        }
    }
    // Nothing duplicated: every turn is one fragment (ids derive from the
    // content), and each Remember's two turns are distinct.
    let remembers = acked
        .iter()
        .filter(|a| matches!(a, Acked::Remember(..)))
        .count();
    assert_eq!(fragments.len(), remembers * 2);

    // The ledger balances: each memory charged once (a charge that a crash
    // interrupted is either kept with its memory or refunded).
    let balance = CreditServiceClient::new(channel)
        .get_balance(authed(
            GetBalanceRequest {
                org_id: "org_crash".into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .balance;
    let charged: u64 = memories.values().sum::<u64>() * PRICE_PER_CHAR;
    assert_eq!(
        balance,
        TOP_UP as i64 - charged as i64,
        "balance after {} memories ({billed_chars} characters billed by acknowledged calls)",
        memories.len()
    );
    println!(
        "crash suite ({name}): {kills} kills, {} calls acknowledged ({remembers} Remember, {} StoreMemory), lost 0, duplicated 0, stuck 0",
        acked.len(),
        memories.len()
    );
}
