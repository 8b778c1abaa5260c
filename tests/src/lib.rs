//! Harness for the end-to-end tests: starts a real `engram` server (the
//! embedded default, the real model) on a free port in a temporary data
//! directory, and mints tokens for it.

pub mod faults;

use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::{GetJobRequest, Job, JobState};
use engram_server::{Backends, Config, Role};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// HS256 secret the test servers verify with.
pub const SECRET: &str = "engram-test-secret-0123456789abcdef";

/// The repository's models directory (filled by scripts/setup.sh).
pub fn models_dir() -> PathBuf {
    std::env::var_os("ENGRAM_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

/// The shutdown signal a test server runs until.
type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A running server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), engram_server::ServerError>>>,
}

impl TestServer {
    /// Starts a server on `data_dir` that verifies HS256 tokens with
    /// [`SECRET`].
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(data_dir, |_| {}).await
    }

    /// Starts a server on `data_dir` with the test defaults changed by
    /// `adjust` (which may, say, swap the HS256 secret for a public key).
    pub async fn start_with(
        data_dir: &Path,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = test_config(data_dir);
        adjust(&mut config);
        Self::spawn(config, |config, listener, stop| {
            engram_server::run(config, listener, stop)
        })
        .await
    }

    /// Starts `role` as `engram <role>` does: it opens its own backends
    /// from `config`, so their start-up is part of what is tested.
    pub async fn start_role_opening(role: Role, config: Config) -> anyhow::Result<Self> {
        Self::spawn(config, move |config, listener, stop| {
            engram_server::run_role(role, config, listener, stop)
        })
        .await
    }

    /// Starts `role` on backends the test opened itself (several roles in
    /// one test process can share them).
    pub async fn start_role(
        role: Role,
        config: Config,
        backends: Backends,
    ) -> anyhow::Result<Self> {
        Self::spawn(config, move |config, listener, stop| {
            engram_server::run_with(role, config, backends, listener, stop)
        })
        .await
    }

    /// Validates `config`, binds a free port and runs `serve` on it until
    /// [`TestServer::stop`] (or drop) resolves the shutdown future.
    async fn spawn<F, Fut>(config: Config, serve: F) -> anyhow::Result<Self>
    where
        F: FnOnce(Config, tokio::net::TcpListener, Shutdown) -> Fut,
        Fut: std::future::Future<Output = Result<(), engram_server::ServerError>> + Send + 'static,
    {
        config.validate()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(serve(
            config,
            listener,
            Box::pin(async move {
                let _ = rx.await;
            }),
        ));
        Ok(Self {
            addr,
            stop: Some(tx),
            task: Some(task),
        })
    }

    /// A channel to the server (retries until it accepts).
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        let url = format!("http://{}", self.addr);
        for _ in 0..200 {
            if let Ok(c) = Channel::from_shared(url.clone())?.connect().await {
                return Ok(c);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        anyhow::bail!("server at {url} never accepted")
    }

    /// Ingest client.
    pub async fn ingest(&self) -> anyhow::Result<IngestServiceClient<Channel>> {
        Ok(IngestServiceClient::new(self.channel().await?))
    }

    /// Recall client.
    pub async fn recall(&self) -> anyhow::Result<RecallServiceClient<Channel>> {
        Ok(RecallServiceClient::new(self.channel().await?))
    }

    /// Job client.
    pub async fn jobs(&self) -> anyhow::Result<JobServiceClient<Channel>> {
        Ok(JobServiceClient::new(self.channel().await?))
    }

    /// Polls `job_id` until it reaches a final state (ready or failed) or
    /// `timeout` passes; returns the last record seen.
    pub async fn wait_job(
        &self,
        token: &str,
        job_id: &str,
        timeout: std::time::Duration,
    ) -> anyhow::Result<Job> {
        let mut client = self.jobs().await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = client
                .get_job(authed(
                    GetJobRequest {
                        job_id: job_id.to_owned(),
                    },
                    token,
                ))
                .await;
            match job {
                Ok(r) => {
                    let job = r.into_inner().job.expect("a job");
                    let state = job.state();
                    if state == JobState::Ready || state == JobState::Failed {
                        return Ok(job);
                    }
                    if tokio::time::Instant::now() > deadline {
                        anyhow::bail!("job {job_id} still {state:?} after {timeout:?}: {job:?}");
                    }
                }
                Err(s) if s.code() == tonic::Code::NotFound => {
                    if tokio::time::Instant::now() > deadline {
                        anyhow::bail!("job {job_id} never appeared");
                    }
                }
                Err(s) => return Err(s.into()),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The overall (`""`) or one service's health status.
    pub async fn health(
        &self,
        service: &str,
    ) -> anyhow::Result<tonic_health::pb::health_check_response::ServingStatus> {
        let mut client = tonic_health::pb::health_client::HealthClient::new(self.channel().await?);
        let r = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        Ok(r.status())
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await??;
        }
        Ok(())
    }
}

impl Drop for TestServer {
    /// A test that fails before `stop` still shuts its server down cleanly
    /// (before its temporary data directory is removed), so the failure is
    /// reported instead of being lost in a flush panic on a deleted path.
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::task::block_in_place(|| {
                let _ = tokio::runtime::Handle::current().block_on(t);
            });
        }
    }
}

/// The test defaults on `data_dir`: the embedded backends, the repository's
/// models, the HS256 [`SECRET`], short drains and back-offs.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = data_dir.to_path_buf();
    config.embedder.models_dir = models_dir();
    config.auth.hs256_secret = Some(SECRET.into());
    config.server.shutdown_grace_secs = 5;
    config.enrich.backoff_base_ms = 100;
    config.enrich.backoff_max_ms = 400;
    config.enrich.drain_timeout_secs = 5;
    config
}

/// Polls the health of `service` on `server` until it reports `want` (30 s
/// at most); returns how long that took.
pub async fn wait_health(
    server: &TestServer,
    service: &str,
    want: tonic_health::pb::health_check_response::ServingStatus,
) -> std::time::Duration {
    let started = tokio::time::Instant::now();
    let deadline = started + std::time::Duration::from_secs(30);
    loop {
        let got = server.health(service).await.ok();
        if got == Some(want) {
            return started.elapsed();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "health of {service:?} at {} stayed {got:?}, wanted {want:?}",
            server.addr
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The test defaults with the turn stream on the NATS server at
/// `nats_url`, with short timeouts (ack wait 2 s, requests 1.5 s, drain 1 s)
/// so outages show quickly.
pub fn nats_test_config(data_dir: &Path, nats_url: String) -> Config {
    let mut c = test_config(data_dir);
    c.backends.stream = engram_server::StreamKind::Nats;
    c.nats.url = nats_url;
    c.nats.ack_wait_secs = 2;
    c.nats.request_timeout_ms = 1500;
    c.enrich.drain_timeout_secs = 1;
    c
}

/// Claims for `org`/`user` valid for `ttl_secs` (negative: expired).
pub fn claims(org: &str, user: &str, ttl_secs: i64) -> engram_auth::Claims {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    engram_auth::Claims {
        org_id: org.into(),
        user_id: Some(user.into()),
        sub: None,
        session_id: None,
        role: None,
        exp: (now + ttl_secs) as u64,
        iat: Some(now as u64),
        iss: None,
        aud: None,
    }
}

/// Mints an HS256 token with [`SECRET`] for `org`/`user` valid for
/// `ttl_secs` (negative: expired).
pub fn token(org: &str, user: &str, ttl_secs: i64) -> String {
    engram_auth::mint_hs256(SECRET.as_bytes(), &claims(org, user, ttl_secs)).expect("mint")
}

/// Wraps `msg` in a request carrying `token`.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    r
}
