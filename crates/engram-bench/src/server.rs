//! The server under test: either an `engram` child process spawned on a
//! fresh data directory and a free port, or a server already running
//! elsewhere (`--addr`). Either way the bench talks to it only over gRPC.

use anyhow::{Context, bail};
use clap::Args;
use engram_auth::Claims;
use serde::Serialize;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// How long tokens minted by the bench stay valid; longer than any run.
const TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

/// Options choosing and configuring the server under test.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Target an already-running server instead of spawning one, e.g.
    /// `http://127.0.0.1:50051` (its memory is then not reported).
    #[arg(long, global = true)]
    pub addr: Option<String>,
    /// HS256 secret the server given by --addr verifies tokens with.
    #[arg(
        long,
        global = true,
        env = "ENGRAM_BENCH_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// The `engram` binary to spawn [default: `engram` next to this executable].
    #[arg(long, global = true)]
    pub server_bin: Option<PathBuf>,
    /// Data directory of the spawned server [default: a fresh temporary
    /// directory, removed at the end].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Models directory of the spawned server (filled by scripts/setup.sh).
    #[arg(long, global = true, default_value = "models")]
    pub models_dir: PathBuf,
    /// TOML configuration file passed to the spawned server.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Where the spawned server's log goes [default: a file in a temporary
    /// directory, shown only if the server fails].
    #[arg(long, global = true)]
    pub server_log: Option<PathBuf>,
    /// Seconds to wait for the spawned server to report SERVING.
    #[arg(long, global = true, default_value_t = 180)]
    pub startup_timeout: u64,
}

/// Memory of the server process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// Peak resident set size (`VmHWM`), KiB.
    pub vm_hwm_kib: u64,
    /// Current resident set size (`VmRSS`), KiB.
    pub vm_rss_kib: u64,
    /// Its anonymous part (`RssAnon`: heap, never reclaimed without
    /// swap), KiB; 0 where the kernel does not report it.
    pub rss_anon_kib: u64,
    /// Its file-backed part (`RssFile`: memory-mapped files, which the
    /// kernel may drop under pressure and read again), KiB.
    pub rss_file_kib: u64,
}

impl Memory {
    /// `VmHWM` and `VmRSS` of a `/proc/<pid>/status` text.
    pub fn parse_status(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
        };
        Some(Self {
            vm_hwm_kib: field("VmHWM")?,
            vm_rss_kib: field("VmRSS")?,
            rss_anon_kib: field("RssAnon").unwrap_or(0),
            rss_file_kib: field("RssFile").unwrap_or(0),
        })
    }

    /// The memory of this process (for in-process benchmarks).
    pub fn of_this_process() -> Option<Self> {
        Self::parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
    }

    /// Peak RSS in MiB.
    pub fn hwm_mib(&self) -> f64 {
        self.vm_hwm_kib as f64 / 1024.0
    }

    /// Current RSS in MiB.
    pub fn rss_mib(&self) -> f64 {
        self.vm_rss_kib as f64 / 1024.0
    }
}

/// A spawned `engram serve`.
struct ServerProcess {
    child: Child,
    log_path: PathBuf,
    // Held so the temporary data directory and log live as long as the child.
    _scratch: tempfile::TempDir,
}

impl ServerProcess {
    /// The last `lines` lines of the server log, for error messages.
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Never leave a server behind when the bench fails or is interrupted.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The server the bench measures.
pub struct Target {
    endpoint: String,
    secret: Vec<u8>,
    process: Option<ServerProcess>,
    data_dir: Option<PathBuf>,
}

impl Target {
    /// Spawns a server, or connects to `--addr`, and waits until it serves.
    pub async fn start(args: &ServerArgs) -> anyhow::Result<Self> {
        if let Some(addr) = &args.addr {
            let secret = args
                .secret
                .clone()
                .context("--addr needs --secret (the server's HS256 secret)")?;
            let mut target = Self {
                endpoint: addr.clone(),
                secret: secret.into_bytes(),
                process: None,
                data_dir: None,
            };
            target
                .wait_serving(Duration::from_secs(args.startup_timeout))
                .await?;
            return Ok(target);
        }
        let mut target = spawn(args)?;
        let waited = target
            .wait_serving(Duration::from_secs(args.startup_timeout))
            .await;
        if let Err(e) = waited {
            let tail = target
                .process
                .as_ref()
                .map(|p| p.log_tail(30))
                .unwrap_or_default();
            return Err(e.context(format!("server log (last lines):\n{tail}")));
        }
        Ok(target)
    }

    /// The data directory given with `--data-dir` to a spawned server
    /// (kept after the run, so a benchmark may reuse what it wrote).
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.data_dir.as_deref()
    }

    /// The server's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A new connection. Each concurrent worker gets its own, as separate
    /// clients of a deployment would.
    pub async fn connect(&self) -> anyhow::Result<Channel> {
        Endpoint::from_shared(self.endpoint.clone())?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .with_context(|| format!("cannot connect to {}", self.endpoint))
    }

    /// A token for `org`/`user`, signed with the server's secret. It
    /// carries the admin role: the bench acts for many users of its tenant,
    /// as a backend does.
    pub fn token(&self, org: &str, user: &str) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = Claims {
            org_id: org.into(),
            user_id: Some(user.into()),
            sub: None,
            session_id: None,
            role: Some("admin".into()),
            exp: now + TOKEN_TTL_SECS,
            iat: Some(now),
            iss: None,
            aud: None,
        };
        Ok(engram_auth::mint_hs256(&self.secret, &claims)?)
    }

    /// Memory of the spawned server; `None` for `--addr` or off Linux.
    pub fn memory(&self) -> Option<Memory> {
        let pid = self.process.as_ref()?.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Memory::parse_status(&status)
    }

    /// Stops a spawned server: SIGTERM, then its drain, then SIGKILL if it
    /// outlives the wait.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let Some(mut p) = self.process.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(p.child.id())?);
        // The child may already be gone; then there is nothing to signal.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = p.child.try_wait()? {
                if !status.success() {
                    eprintln!(
                        "bench: server exited with {status}; log tail:\n{}",
                        p.log_tail(20)
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                eprintln!("bench: server ignored sigterm for 40 s; killing it");
                p.child.kill()?;
                p.child.wait()?;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the standard health service until it reports SERVING. The
    /// listener accepts before the model is loaded, so a TCP connect alone
    /// proves nothing; each attempt is bounded so a stalled one is retried.
    async fn wait_serving(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last_err = String::from("no attempt yet");
        while started.elapsed() < timeout {
            if let Some(p) = self.process.as_mut()
                && let Some(status) = p.child.try_wait()?
            {
                bail!("server exited during start-up with {status}");
            }
            match tokio::time::timeout(Duration::from_secs(2), self.health_check()).await {
                Ok(Ok(ServingStatus::Serving)) => {
                    eprintln!(
                        "bench: server at {} serving after {:.1} s",
                        self.endpoint,
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Ok(Ok(other)) => last_err = format!("health status {other:?}"),
                Ok(Err(e)) => last_err = format!("{e:#}"),
                Err(_) => last_err = "health check timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!(
            "server at {} not serving after {} s (last: {last_err})",
            self.endpoint,
            timeout.as_secs()
        )
    }

    async fn health_check(&self) -> anyhow::Result<ServingStatus> {
        let channel = Endpoint::from_shared(self.endpoint.clone())?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        Ok(ServingStatus::try_from(resp.into_inner().status).unwrap_or(ServingStatus::Unknown))
    }
}

/// `engram` next to the running bench executable (both land in the same
/// cargo target directory).
fn default_server_bin() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name("engram"))
}

fn free_port() -> anyhow::Result<u16> {
    // Bind port 0, read the port and release it for the child. Another
    // process could grab it in between; on a bench machine that is unlikely.
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

fn random_secret() -> anyhow::Result<String> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    Ok(format!("engram-bench-{:x}-{nanos:x}", std::process::id()))
}

fn spawn(args: &ServerArgs) -> anyhow::Result<Target> {
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => default_server_bin()?,
    };
    if !bin.is_file() {
        bail!(
            "server binary {} not found: run `cargo build --release -p engram` (or pass --server-bin)",
            bin.display()
        );
    }
    let models = std::path::absolute(&args.models_dir)?;
    if !models.is_dir() {
        bail!(
            "models directory {} not found: run `bash scripts/setup.sh` (or pass --models-dir)",
            models.display()
        );
    }
    let scratch = tempfile::Builder::new().prefix("engram-bench-").tempdir()?;
    let data_dir = match &args.data_dir {
        Some(d) => std::path::absolute(d)?,
        None => scratch.path().join("data"),
    };
    let log_path = args
        .server_log
        .clone()
        .unwrap_or_else(|| scratch.path().join("server.log"));
    let log = File::create(&log_path)
        .with_context(|| format!("cannot create server log {}", log_path.display()))?;
    let port = free_port()?;
    let secret = random_secret()?;
    let mut cmd = Command::new(&bin);
    cmd.arg("--data-dir").arg(&data_dir);
    if let Some(c) = &args.config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ENGRAM__AUTH__HS256_SECRET", &secret)
        .env("ENGRAM__EMBEDDER__MODELS_DIR", &models)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    eprintln!(
        "bench: started {} (pid {}) on 127.0.0.1:{port}, data {}, log {}",
        bin.display(),
        child.id(),
        data_dir.display(),
        log_path.display()
    );
    Ok(Target {
        endpoint: format!("http://127.0.0.1:{port}"),
        secret: secret.into_bytes(),
        data_dir: args.data_dir.as_ref().map(|_| data_dir.clone()),
        process: Some(ServerProcess {
            child,
            log_path,
            _scratch: scratch,
        }),
    })
}

/// Wraps `msg` in a request carrying `token` as a bearer token.
pub fn authed<T>(msg: T, token: &str) -> anyhow::Result<tonic::Request<T>> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_memory_fields() {
        let status =
            "Name:\tengram\nVmPeak:\t 900000 kB\nVmHWM:\t  512000 kB\nVmRSS:\t  400000 kB\n";
        let m = Memory::parse_status(status).unwrap();
        assert_eq!((m.vm_hwm_kib, m.vm_rss_kib), (512_000, 400_000));
        assert_eq!((m.rss_anon_kib, m.rss_file_kib), (0, 0));
        assert_eq!(m.hwm_mib(), 500.0);
        let split = Memory::parse_status(&format!(
            "{status}RssAnon:\t  300000 kB\nRssFile:\t   99000 kB\n"
        ))
        .unwrap();
        assert_eq!((split.rss_anon_kib, split.rss_file_kib), (300_000, 99_000));
        assert!(Memory::parse_status("Name:\tx\n").is_none());
    }
}
