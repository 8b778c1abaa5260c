//! grpc-web, as a browser speaks it (HTTP/1.1, `application/grpc-web+proto`
//! and `-text`, length-prefixed frames, trailers in the body), sent with
//! `curl`; and the CORS preflight a browser makes before it.

use base64::Engine;
use engram_proto::v1::*;
use engram_tests::{TestServer, token};
use prost::Message;
use std::collections::HashMap;
use std::process::Command;

/// One length-prefixed, uncompressed grpc-web frame of `msg`.
fn frame(msg: &impl Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    out.extend(body);
    out
}

/// The messages and trailers of a grpc-web response body.
fn unframe(mut body: &[u8]) -> (Vec<Vec<u8>>, HashMap<String, String>) {
    let (mut messages, mut trailers) = (Vec::new(), HashMap::new());
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n") {
                if let Some((k, v)) = line.split_once(':') {
                    trailers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
            }
        } else {
            messages.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    (messages, trailers)
}

/// Response headers (lower-case) and body of a curl call.
fn curl(args: &[String]) -> (u16, HashMap<String, String>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "-D"])
        .arg(&headers)
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = std::fs::read_to_string(&headers).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let map = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, map, out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_remembers_and_recalls_over_grpc_web() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.server.cors_allowed_origins = vec!["https://app.example.com".into()];
    })
    .await?;
    server.channel().await?;
    let tok = token("org_web", "ana", 600);
    let scope = Scope {
        org_id: "org_web".into(),
        session_id: "tab-1".into(),
        ..Default::default()
    };
    let files = tempfile::tempdir()?;

    // Remember, binary grpc-web.
    let remember = files.path().join("remember.bin");
    std::fs::write(
        &remember,
        frame(&RememberRequest {
            scope: Some(scope.clone()),
            turns: vec![Turn {
                role: "user".into(),
                text: "My cat is called Miso 🐈 and she hates the vacuum.".into(),
                timestamp: "2026-05-08T14:00:00Z".into(),
                observations: vec![],
            }],
            ..Default::default()
        }),
    )?;
    let (status, headers, body) = tokio::task::spawn_blocking({
        let (server_addr, remember, tok) = (server.addr, remember.clone(), tok.clone());
        move || {
            let s = TestServerAddr(server_addr);
            s.call(
                "engram.v1.IngestService/Remember",
                &remember,
                Some(&tok),
                false,
            )
        }
    })
    .await?;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"].starts_with("application/grpc-web"),
        "{headers:?}"
    );
    let (messages, trailers) = unframe(&body);
    assert_eq!(
        trailers.get("grpc-status").map(String::as_str),
        Some("0"),
        "{trailers:?} {headers:?}"
    );
    let remembered = RememberResponse::decode(messages[0].as_slice())?;
    assert_eq!(remembered.active_fragment_ids.len(), 1);

    // Recall, grpc-web-text (base64 frames, as browsers without binary
    // streams send them).
    let recall = files.path().join("recall.b64");
    let request = frame(&RecallRequest {
        scope: Some(scope),
        q: "what is the cat's name?".into(),
        top_k: Some(3),
        ..Default::default()
    });
    std::fs::write(
        &recall,
        base64::engine::general_purpose::STANDARD.encode(request),
    )?;
    let (status, headers, body) = tokio::task::spawn_blocking({
        let (server_addr, recall, tok) = (server.addr, recall.clone(), tok.clone());
        move || {
            TestServerAddr(server_addr).call(
                "engram.v1.RecallService/Recall",
                &recall,
                Some(&tok),
                true,
            )
        }
    })
    .await?;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"].starts_with("application/grpc-web-text"),
        "{headers:?}"
    );
    // Each frame is base64 on its own, with padding.
    let text = String::from_utf8(body)?;
    let mut decoded = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let end = rest
            .find('=')
            .map(|i| i + rest[i..].chars().take_while(|c| *c == '=').count())
            .unwrap_or(rest.len());
        decoded.extend(base64::engine::general_purpose::STANDARD.decode(&rest[..end])?);
        rest = &rest[end..];
    }
    let (messages, trailers) = unframe(&decoded);
    assert_eq!(
        trailers.get("grpc-status").map(String::as_str),
        Some("0"),
        "{trailers:?} {headers:?}"
    );
    let recalled = RecallResponse::decode(messages[0].as_slice())?;
    let hits = recalled.hits.unwrap();
    assert!(hits.turns[0].text.contains("Miso"), "{:?}", hits.turns);

    // Without a token: UNAUTHENTICATED in the headers (trailers-only), as
    // grpc-web, readable by the page through CORS.
    let (status, headers, _) = tokio::task::spawn_blocking({
        let (server_addr, remember) = (server.addr, remember.clone());
        move || {
            TestServerAddr(server_addr).call(
                "engram.v1.IngestService/Remember",
                &remember,
                None,
                false,
            )
        }
    })
    .await?;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("grpc-status").map(String::as_str),
        Some("16"),
        "{headers:?}"
    );
    assert!(
        headers["content-type"].starts_with("application/grpc-web"),
        "{headers:?}"
    );

    // The browser's preflight: allowed for the configured origin only.
    let preflight = |origin: &'static str| {
        let addr = server.addr;
        move || {
            curl(&[
                "-X".into(),
                "OPTIONS".into(),
                "-H".into(),
                format!("origin: {origin}"),
                "-H".into(),
                "access-control-request-method: POST".into(),
                "-H".into(),
                "access-control-request-headers: content-type,x-grpc-web,authorization".into(),
                format!("http://{addr}/engram.v1.RecallService/Recall"),
            ])
        }
    };
    let (status, headers, _) =
        tokio::task::spawn_blocking(preflight("https://app.example.com")).await?;
    assert!((200..300).contains(&status), "{status} {headers:?}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    let allowed = headers["access-control-allow-headers"].to_ascii_lowercase();
    for h in ["authorization", "x-grpc-web", "content-type"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let (_, headers, _) = tokio::task::spawn_blocking(preflight("https://evil.example")).await?;
    assert!(
        !headers.contains_key("access-control-allow-origin"),
        "{headers:?}"
    );
    server.stop().await
}

/// The address of a test server, for calls made off the async runtime.
struct TestServerAddr(std::net::SocketAddr);

impl TestServerAddr {
    fn call(
        &self,
        method: &str,
        body: &std::path::Path,
        token: Option<&str>,
        text: bool,
    ) -> (u16, HashMap<String, String>, Vec<u8>) {
        let mut args = vec![
            "-X".to_owned(),
            "POST".to_owned(),
            "-H".to_owned(),
            format!(
                "content-type: application/grpc-web{}",
                if text { "-text" } else { "+proto" }
            ),
            "-H".to_owned(),
            "x-grpc-web: 1".to_owned(),
            "-H".to_owned(),
            "origin: https://app.example.com".to_owned(),
        ];
        if text {
            args.extend([
                "-H".to_owned(),
                "accept: application/grpc-web-text".to_owned(),
            ]);
        }
        if let Some(t) = token {
            args.extend(["-H".to_owned(), format!("authorization: Bearer {t}")]);
        }
        args.extend([
            "--data-binary".to_owned(),
            format!("@{}", body.display()),
            format!("http://{}/{method}", self.0),
        ]);
        curl(&args)
    }
}
