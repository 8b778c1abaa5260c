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

/// The official MCP Python SDK (PyPI `mcp`) against `engram serve` over
/// streamable HTTP at `/mcp` and against `engram mcp` over stdio: it
/// initializes, lists the tools, remembers a turn and recalls it; a call
/// without a valid token is refused on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_python_sdk_over_http_and_stdio() {
    let tools = env_or("ENGRAM_TOOLS_DIR", repo().join(".tools"));
    let python = installed(tools.join("pychecks/bin/python"));
    installed(common::models_dir());
    let data = tempfile::tempdir().expect("tempdir");
    let env = embedded_env(data.path());
    let mut server = Process::spawn("serve", &env);
    server.wait_serving().await;
    // `engram mcp` runs its own engine: its own data directory.
    let stdio_data = tempfile::tempdir().expect("tempdir");
    let stdio_env: serde_json::Map<String, serde_json::Value> = embedded_env(stdio_data.path())
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let out = Command::new(python)
        .arg("clients/checks/mcp_client_test.py")
        .current_dir(repo())
        .env("ENGRAM_MCP_URL", format!("{}/mcp", server.addr))
        .env("ENGRAM_TOKEN", token(&env, "org_mcp", "alice"))
        .env("ENGRAM_BIN", env!("CARGO_BIN_EXE_engram"))
        .env(
            "ENGRAM_STDIO_ENV",
            serde_json::Value::Object(stdio_env).to_string(),
        )
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "mcp client failed: {}\n--- engram log\n{}",
        describe(&out),
        server.log()
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
    server.terminate(Duration::from_secs(30));
}

/// The OpenAPI document a running server serves (without a token) passes
/// a real validator (PyPI `openapi-spec-validator`, OpenAPI 3.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_passes_a_real_validator() {
    let tools = env_or("ENGRAM_TOOLS_DIR", repo().join(".tools"));
    let validator = installed(tools.join("pychecks/bin/openapi-spec-validator"));
    installed(common::models_dir());
    let data = tempfile::tempdir().expect("tempdir");
    let env = embedded_env(data.path());
    let mut server = Process::spawn("serve", &env);
    server.wait_serving().await;
    let doc = data.path().join("openapi.json");
    let out = Command::new("curl")
        .args(["-sS", "--fail", "-o"])
        .arg(&doc)
        .arg(format!("{}/openapi.json", server.addr))
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "{}", describe(&out));
    let parsed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&doc).expect("document")).expect("JSON");
    assert_eq!(parsed["openapi"], "3.1.0");
    let out = Command::new(validator)
        .args(["--schema", "3.1"])
        .arg(&doc)
        .output()
        .expect("validator runs");
    assert!(out.status.success(), "invalid document: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
    server.terminate(Duration::from_secs(30));
}
