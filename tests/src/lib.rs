//! Harness for the end-to-end tests: starts a real `engram` server (the
//! embedded default, the real model) on a free port in a temporary data
//! directory, and mints tokens for it.

use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_server::Config;
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
        let mut config = Config::default();
        config.storage.data_dir = data_dir.to_path_buf();
        config.embedder.models_dir = models_dir();
        config.auth.hs256_secret = Some(SECRET.into());
        config.server.shutdown_grace_secs = 5;
        adjust(&mut config);
        config.validate()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(engram_server::run(config, listener, async move {
            let _ = rx.await;
        }));
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
