//! What the binary's tests share: running `engram` as a child process with
//! environment configuration, reaching it, and authenticating to it.

#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// HS256 secret the child processes verify tokens with.
pub const SECRET: &str = "engram-process-test-secret-0123456789";

/// The repository's models directory (filled by scripts/setup.sh).
pub fn models_dir() -> PathBuf {
    std::env::var_os("ENGRAM_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// A free TCP port on 127.0.0.1 (free when asked; taken by whoever binds first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The environment of a process on the embedded default in `data_dir`.
pub fn embedded_env(data_dir: &Path) -> Vec<(String, String)> {
    vec![
        ("ENGRAM__AUTH__HS256_SECRET".into(), SECRET.into()),
        (
            "ENGRAM__EMBEDDER__MODELS_DIR".into(),
            models_dir().display().to_string(),
        ),
        (
            "ENGRAM__STORAGE__DATA_DIR".into(),
            data_dir.display().to_string(),
        ),
    ]
}

/// `engram <args>` with `env` added to the test's environment.
pub fn engram(args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_engram"));
    cmd.args(args)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn");
    cmd
}

/// A token for `org`/`user` minted by `engram token` with `env`.
pub fn token(env: &[(String, String)], org: &str, user: &str) -> String {
    token_as(env, org, user, None)
}

/// A token for `org`/`user` with a role claim, minted by `engram token`.
#[allow(dead_code)] // not every test binary mints roles
pub fn token_as(env: &[(String, String)], org: &str, user: &str, role: Option<&str>) -> String {
    let mut args = vec!["token", "--org", org, "--user", user];
    if let Some(r) = role {
        args.extend(["--role", r]);
    }
    let out = engram(&args, env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A running `engram` process, killed if the test ends without stopping it.
/// Its stderr goes to a log file that failure messages include.
pub struct Process {
    /// The child.
    pub child: Child,
    /// Its gRPC address, `http://127.0.0.1:port`.
    pub addr: String,
    log: tempfile::NamedTempFile,
}

impl Process {
    /// Runs `engram <role> --listen 127.0.0.1:<free port>` with `env`.
    pub fn spawn(role: &str, env: &[(String, String)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = engram(&[role, "--listen", &addr], env)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("engram starts");
        Process {
            child,
            addr: format!("http://{addr}"),
            log,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Waits until the health service reports `SERVING` for every service
    /// (60 s at most); fails with the log if the process exits first.
    pub async fn wait_serving(&mut self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("engram exited ({status}) before serving:\n{}", self.log());
            }
            let check = async {
                let channel = tonic::transport::Endpoint::from_shared(self.addr.clone())?
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(5))
                    .connect()
                    .await?;
                let reply = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await?;
                anyhow::Ok(reply.into_inner().status())
            };
            let last = match check.await {
                Ok(ServingStatus::Serving) => return,
                Ok(status) => format!("health {status:?}"),
                Err(e) => format!("{e:#}"),
            };
            assert!(
                Instant::now() < deadline,
                "engram at {} not serving after 60 s ({last}):\n{}",
                self.addr,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends SIGTERM and expects a clean exit within `timeout`.
    pub fn terminate(mut self, timeout: Duration) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "engram did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "engram exited with {status} on SIGTERM:\n{}",
            self.log()
        );
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A channel to `addr`, retried until the process accepts (60 s at most).
pub async fn channel(addr: &str) -> Channel {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(c) = Channel::from_shared(addr.to_owned())
            .unwrap()
            .connect()
            .await
        {
            return c;
        }
        assert!(Instant::now() < deadline, "{addr} never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `msg` with a bearer token.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Polls `GetJob` until `job_id` is READY (60 s at most); errors while the
/// process is still connecting its dependencies are retried.
pub async fn wait_job_ready(
    jobs: &mut engram_proto::v1::job_service_client::JobServiceClient<Channel>,
    job_id: &str,
    token: &str,
) {
    use engram_proto::v1::{GetJobRequest, JobState};
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = jobs
            .get_job(authed(
                GetJobRequest {
                    job_id: job_id.to_owned(),
                },
                token,
            ))
            .await;
        let last = match reply {
            Ok(r) => match r.into_inner().job {
                Some(job) if job.state() == JobState::Ready => return,
                other => format!("{other:?}"),
            },
            Err(status) => format!("{status:?}"),
        };
        assert!(
            Instant::now() < deadline,
            "job {job_id} never ready: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
