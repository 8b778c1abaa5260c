//! Stored memories when things fail: a charge is refunded when processing
//! fails for good, writes wait for provisioning, and an unreachable stream
//! is refused before anything is charged.

use engram_proto::v1::credit_service_client::CreditServiceClient;
use engram_proto::v1::memory_service_client::MemoryServiceClient;
use engram_proto::v1::*;
use engram_server::{Backends, Role, StreamKind};
use engram_testkit::NatsServer;
use engram_tests::faults::{Fault, FaultyStore};
use engram_tests::{SECRET, TestServer, authed, claims, test_config};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

fn token_as(org: &str, user: &str, role: &str) -> String {
    let mut c = claims(org, user, 3600);
    c.role = Some(role.into());
    engram_auth::mint_hs256(SECRET.as_bytes(), &c).expect("mint")
}

fn store_request(org: &str, text: &str) -> StoreMemoryRequest {
    StoreMemoryRequest {
        org_id: org.into(),
        text: text.into(),
        title: "Notes".into(),
        ..Default::default()
    }
}

async fn ledger(channel: Channel, org: &str, admin: &str) -> (i64, Vec<LedgerRow>) {
    let mut credits = CreditServiceClient::new(channel);
    let balance = credits
        .get_balance(authed(GetBalanceRequest { org_id: org.into() }, admin))
        .await
        .unwrap()
        .into_inner()
        .balance;
    let rows = credits
        .list_ledger(authed(
            ListLedgerRequest {
                org_id: org.into(),
                limit: None,
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .rows;
    (balance, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_whose_processing_fails_is_refunded() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    config.credits.enabled = true;
    config.credits.price_per_char = 10;
    config.enrich.max_deliver = 2;
    let mut backends = Backends::embedded(&config).await?;
    let faulty = FaultyStore::new(backends.store.clone(), Fault::FailMemoryChunks);
    backends.store = faulty.clone();
    let server = TestServer::start_role(Role::Serve, config, backends).await?;
    let org = "org_refund";
    let admin = token_as(org, "ada", "admin");
    let member = token_as(org, "mia", "member");
    let channel = server.channel().await?;
    // Writes wait for the first successful probe.
    let mut memory = MemoryServiceClient::new(channel.clone());
    let mut credits = CreditServiceClient::new(channel.clone());
    credits
        .top_up(authed(
            TopUpRequest {
                org_id: org.into(),
                amount: 1_000,
                idempotency_key: "initial".into(),
            },
            &admin,
        ))
        .await?;
    let text = "The spare key is under the blue flower pot.";
    let stored = loop {
        match memory
            .store_memory(authed(store_request(org, text), &member))
            .await
        {
            Ok(r) => break r,
            Err(s) if s.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    };
    let charged: u64 = stored
        .metadata()
        .get("x-credit-charged")
        .unwrap()
        .to_str()?
        .parse()?;
    assert_eq!(charged, 10 * text.chars().count() as u64);
    let memory_id = stored.into_inner().memory_id;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = memory
            .get_memory_status(authed(
                GetMemoryStatusRequest {
                    memory_id: memory_id.clone(),
                },
                &member,
            ))
            .await?
            .into_inner();
        if s.status() == MemoryStatus::Failed {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never failed: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.error.contains("injected refusal"), "{status:?}");
    assert_eq!(status.attempts, 2);

    // The refund lands with the failure (or right after it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (balance, rows) = ledger(channel.clone(), org, &admin).await;
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        if kinds == ["top_up", "charge", "refund"] {
            assert_eq!(balance, 1_000);
            assert_eq!(rows.iter().map(|r| r.delta).sum::<i64>(), balance);
            assert_eq!(rows[2].delta, charged as i64);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refund: {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Re-sending it tries again: a new charge, and (failing again) a new refund.
    let again = memory
        .store_memory(authed(store_request(org, text), &member))
        .await?;
    assert_eq!(
        again.metadata().get("x-credit-charged").unwrap().to_str()?,
        charged.to_string()
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wait_for_provisioning_and_an_unreachable_stream_charges_nothing()
-> anyhow::Result<()> {
    let mut nats = NatsServer::start();
    nats.stop();
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    config.backends.stream = StreamKind::Nats;
    config.nats.url = nats.url();
    config.nats.request_timeout_ms = 1500;
    config.credits.enabled = true;
    config.credits.price_per_char = 1;
    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    let org = "org_infra";
    let admin = token_as(org, "ada", "admin");
    let member = token_as(org, "mia", "member");
    let mut memory = MemoryServiceClient::new(server.channel().await?);

    // NATS was never reached: the memory layer is still provisioning.
    let err = memory
        .store_memory(authed(store_request(org, "First note."), &member))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "MEMORY_INFRA_NOT_READY"
    );
    assert_eq!(
        err.get_details_retry_info().unwrap().retry_delay,
        Some(Duration::from_secs(10))
    );

    nats.start_again();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.health("").await?
        != tonic_health::pb::health_check_response::ServingStatus::Serving
    {
        assert!(tokio::time::Instant::now() < deadline, "never serving");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut credits = CreditServiceClient::new(server.channel().await?);
    credits
        .top_up(authed(
            TopUpRequest {
                org_id: org.into(),
                amount: 500,
                idempotency_key: "initial".into(),
            },
            &admin,
        ))
        .await?;
    memory
        .store_memory(authed(store_request(org, "Second note."), &member))
        .await?;
    let (balance, _) = ledger(server.channel().await?, org, &admin).await;
    assert_eq!(balance, 500 - "Second note.".len() as i64);

    // NATS down after provisioning: MEMORY_UNREACHABLE, nothing charged.
    nats.stop();
    let err = memory
        .store_memory(authed(store_request(org, "Third note."), &member))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(
        err.get_details_error_info().unwrap().reason,
        "MEMORY_UNREACHABLE"
    );
    assert!(err.get_details_retry_info().unwrap().retry_delay.is_some());
    nats.start_again();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match ledger_balance(&server, org, &admin).await {
            Some(b) => {
                assert_eq!(b, 500 - "Second note.".len() as i64);
                break;
            }
            None => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "NATS never came back"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    server.stop().await
}

async fn ledger_balance(server: &TestServer, org: &str, admin: &str) -> Option<i64> {
    let mut credits = CreditServiceClient::new(server.channel().await.ok()?);
    credits
        .get_balance(authed(GetBalanceRequest { org_id: org.into() }, admin))
        .await
        .ok()
        .map(|r| r.into_inner().balance)
}
