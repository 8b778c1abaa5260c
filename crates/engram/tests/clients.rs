//! The client examples in other languages, run against a real `engram serve`
//! process: `clients/python/engram_client_test.py` (grpcio) and
//! `clients/node/client.test.js` (@grpc/grpc-js). Each test starts the
//! binary on a free port with a fresh data directory and a known HS256
//! secret, waits until its health service reports `SERVING`, mints a token
//! with `engram token`, runs the client (token → Remember → Recall, plus
//! the `UNAUTHENTICATED` and `INVALID_ARGUMENT` checks), then stops the
//! server with SIGTERM and expects a clean exit.
//!
//! The interpreters' packages come from `scripts/setup-clients.sh` (run by
//! `scripts/setup.sh`); when they are missing the test fails and says so.

mod common;

use common::{Process, embedded_env, token};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn env_or(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

/// `path`, which setup installs, or a failure that says how to get it.
fn installed(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path
}

fn describe(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Starts `engram serve` on a fresh data directory, runs `client` against
/// it with `ENGRAM_ADDR` and `ENGRAM_TOKEN` set, expects the client to
/// succeed, and stops the server with SIGTERM.
async fn run_client(mut client: Command) {
    installed(common::models_dir());
    let data = tempfile::tempdir().expect("tempdir");
    let mut env = embedded_env(data.path());
    env.push(("ENGRAM__SERVER__SHUTDOWN_GRACE_SECS".into(), "5".into()));
    let mut server = Process::spawn("serve", &env);
    server.wait_serving().await;
    let shown = format!("{client:?}");
    let out = client
        .current_dir(repo())
        .env("ENGRAM_ADDR", server.addr.trim_start_matches("http://"))
        .env("ENGRAM_TOKEN", token(&env, "org_clients", "alice"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{shown} does not start ({e}): run scripts/setup.sh"));
    assert!(
        out.status.success(),
        "{shown} failed: {}\n--- engram log\n{}",
        describe(&out),
        server.log()
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    server.terminate(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_remembers_and_recalls() {
    let tools = env_or("ENGRAM_TOOLS_DIR", repo().join(".tools"));
    let python = installed(tools.join("pyclients/bin/python"));
    let mut client = Command::new(python);
    client.arg("clients/python/engram_client_test.py");
    run_client(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_client_remembers_and_recalls() {
    installed(repo().join("clients/node/node_modules/@grpc/grpc-js"));
    installed(repo().join("clients/node/node_modules/@grpc/proto-loader"));
    let mut client = Command::new("node");
    client.args(["--test", "clients/node/client.test.js"]);
    run_client(client).await;
}
