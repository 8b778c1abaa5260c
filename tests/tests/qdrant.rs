//! A Qdrant server behind a proxy the test can cut: when the vector store
//! stops answering, ingest and recall answer UNAVAILABLE (with a retry
//! hint), health turns NOT_SERVING, and service resumes when it is back.
//! Runs when `QDRANT_URL` names a Qdrant server's gRPC port; otherwise it
//! prints why it is skipped.

use engram_proto::v1::*;
use engram_server::VectorStoreKind;
use engram_tests::{TestServer, authed, test_config, token};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

/// Forwards connections from a local port to `upstream` until dropped or cut.
struct Proxy {
    addr: SocketAddr,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(listen: SocketAddr, upstream: String) -> Self {
        let listener = TcpListener::bind(listen).await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, tasks }
    }

    /// Drops the listener and every forwarded connection.
    fn cut(mut self) -> SocketAddr {
        self.tasks.abort_all();
        self.addr
    }
}

fn request() -> RememberRequest {
    RememberRequest {
        scope: Some(Scope {
            org_id: "org_q".into(),
            user_id: String::new(),
            session_id: "s".into(),
        }),
        turns: vec![Turn {
            role: "user".into(),
            text: "I'm allergic to shellfish.".into(),
            timestamp: "2026-05-08T14:00:00Z".into(),
            observations: vec!["User is allergic to shellfish.".into()],
        }],
        options: None,
        metadata: None,
    }
}

fn recall() -> RecallRequest {
    RecallRequest {
        scope: Some(Scope {
            org_id: "org_q".into(),
            user_id: String::new(),
            session_id: "s".into(),
        }),
        q: "food allergy".into(),
        mode: RecallMode::Active as i32,
        top_k: Some(5),
        include_timeline: false,
        filter: None,
        collection_ids: Vec::new(),
    }
}

async fn wait_health(server: &TestServer, want: ServingStatus) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.health("").await.ok() != Some(want) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health never became {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_qdrant_is_unavailable_for_ingest_and_recall_until_it_is_back()
-> anyhow::Result<()> {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        println!(
            "skipped: QDRANT_URL is not set (point it at a Qdrant server's gRPC port, e.g. http://127.0.0.1:6334)"
        );
        return Ok(());
    };
    let upstream = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::start("127.0.0.1:0".parse()?, upstream.clone()).await;
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    config.backends.vector_store = VectorStoreKind::Qdrant;
    config.qdrant.url = format!("http://{}", proxy.addr);
    config.qdrant.collection = format!("engram_outage_{}", std::process::id());
    config.qdrant.timeout = Duration::from_millis(1500);
    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    wait_health(&server, ServingStatus::Serving).await;
    let tok = token("org_q", "u1", 3600);
    let first = server
        .ingest()
        .await?
        .remember(authed(request(), &tok))
        .await?
        .into_inner();
    assert_eq!(
        server
            .wait_job(
                &tok,
                first.passive_job_id.as_deref().unwrap(),
                Duration::from_secs(30)
            )
            .await?
            .state(),
        JobState::Ready
    );

    let addr = proxy.cut();
    let mut second = request();
    second.turns[0].text = "I also avoid peanuts.".into();
    let e = server
        .ingest()
        .await?
        .remember(authed(second.clone(), &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(
        e.get_details_error_info().unwrap().reason,
        "MEMORY_UNREACHABLE"
    );
    assert!(e.get_details_retry_info().is_some());
    let e = server
        .recall()
        .await?
        .recall(authed(recall(), &tok))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    wait_health(&server, ServingStatus::NotServing).await;

    let _proxy = Proxy::start(addr, upstream).await;
    wait_health(&server, ServingStatus::Serving).await;
    let r = server
        .ingest()
        .await?
        .remember(authed(second, &tok))
        .await?
        .into_inner();
    assert!(r.usage.unwrap().tokens_in > 0);
    let hits = server
        .recall()
        .await?
        .recall(authed(recall(), &tok))
        .await?
        .into_inner()
        .hits
        .unwrap();
    assert!(hits.turns.iter().any(|h| h.text.contains("shellfish")));
    server.stop().await
}
