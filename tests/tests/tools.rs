//! The tools a user debugs with: grpcurl through reflection, and buf lint
//! on the contract. Both come from scripts/setup.sh.

use engram_tests::{TestServer, token};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tool(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.tools/bin")
        .join(name);
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_services_and_calls_recall() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    server.channel().await?;
    let addr = server.addr.to_string();
    let grpcurl = tool("grpcurl");

    let out = tokio::task::spawn_blocking({
        let (g, a) = (grpcurl.clone(), addr.clone());
        move || Command::new(g).args(["-plaintext", &a, "list"]).output()
    })
    .await??;
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for svc in [
        "engram.v1.IngestService",
        "engram.v1.RecallService",
        "grpc.health.v1.Health",
    ] {
        assert!(listed.lines().any(|l| l == svc), "{svc} not in {listed}");
    }

    let tok = token("org_a", "u1", 600);
    let remember = r#"{"scope":{"org_id":"org_a","session_id":"chat-1"},"turns":[{"role":"user","text":"I'm allergic to shellfish.","timestamp":"2026-05-08T14:00:00Z"}]}"#;
    let recall = r#"{"scope":{"org_id":"org_a","session_id":"chat-1"},"q":"any food restrictions?","top_k":3}"#;
    let out = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
        let auth = format!("authorization: Bearer {tok}");
        let r1 = Command::new(&grpcurl)
            .args([
                "-plaintext",
                "-H",
                &auth,
                "-d",
                remember,
                &addr,
                "engram.v1.IngestService/Remember",
            ])
            .output()?;
        let r2 = Command::new(&grpcurl)
            .args([
                "-plaintext",
                "-H",
                &auth,
                "-d",
                recall,
                &addr,
                "engram.v1.RecallService/Recall",
            ])
            .output()?;
        let r3 = Command::new(&grpcurl)
            .args([
                "-plaintext",
                "-d",
                recall,
                &addr,
                "engram.v1.RecallService/Recall",
            ])
            .output()?;
        Ok((r1, r2, r3))
    })
    .await??;
    assert!(
        out.0.status.success(),
        "{}",
        String::from_utf8_lossy(&out.0.stderr)
    );
    let body = String::from_utf8_lossy(&out.1.stdout);
    assert!(
        out.1.status.success(),
        "{}",
        String::from_utf8_lossy(&out.1.stderr)
    );
    assert!(body.contains("I'm allergic to shellfish."), "{body}");
    assert!(!out.2.status.success(), "recall without a token must fail");
    assert!(String::from_utf8_lossy(&out.2.stderr).contains("Unauthenticated"));
    server.stop().await?;
    Ok(())
}

#[test]
fn buf_lint_is_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(tool("buf"))
        .arg("lint")
        .current_dir(&root)
        .output()
        .expect("buf runs");
    assert!(
        out.status.success(),
        "buf lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
