//! The REST surface, called with `curl` against a real `engram serve`:
//! the seeds' examples (bodies verbatim, host and token replaced), each
//! route against its gRPC counterpart, and every error status produced by
//! a real condition.

use engram_proto::v1::credit_service_client::CreditServiceClient;
use engram_proto::v1::memory_service_client::MemoryServiceClient;
use engram_proto::v1::*;
use engram_server::StreamKind;
use engram_testkit::NatsServer;
use engram_tests::{SECRET, TestServer, authed, claims, test_config, wait_health};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_types::StatusExt;

/// A curl answer: status, headers (lower-case names), body as JSON.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

/// Runs `curl -sS -i` with `args` against `url` (HTTP/1.1, as curl speaks
/// to a plaintext URL by default).
async fn curl(args: Vec<String>, url: String) -> Answer {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "-i"])
            .args(&args)
            .arg(&url)
            .output()
    })
    .await
    .expect("join")
    .expect("curl runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 answer");
    let (mut head, mut body) = text.split_once("\r\n\r\n").expect("headers and body");
    // A large body is sent after the server's "100 Continue".
    while head.starts_with("HTTP/1.1 100") {
        (head, body) = body.split_once("\r\n\r\n").expect("headers and body");
    }
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn url(server: &TestServer, path: &str) -> String {
    format!("http://{}{path}", server.addr)
}

/// `curl -X method` with a bearer token and, if given, a JSON body.
async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&str>,
) -> Answer {
    let mut args = vec![
        "-X".to_owned(),
        method.to_owned(),
        "-H".to_owned(),
        format!("Authorization: Bearer {token}"),
    ];
    // The body goes through a file: one argument may hold 128 KiB at most.
    let file = tempfile::NamedTempFile::new().expect("body file");
    if let Some(b) = body {
        std::fs::write(file.path(), b).expect("body written");
        args.extend([
            "-H".to_owned(),
            "content-type: application/json".to_owned(),
            "--data-binary".to_owned(),
            format!("@{}", file.path().display()),
        ]);
    }
    curl(args, url(server, path)).await
}

fn token_as(org: &str, user: &str, role: &str) -> String {
    let mut c = claims(org, user, 3600);
    c.role = Some(role.into());
    engram_auth::mint_hs256(SECRET.as_bytes(), &c).expect("mint")
}

/// The seeds' org id, as their examples spell it.
const SEED_ORG: &str = "org_…";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_curl_examples_answer_with_the_seeds_shapes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    server.channel().await?;
    wait_health(&server, "", ServingStatus::Serving).await;
    let jwt = token_as(SEED_ORG, "user_1", "member");

    // Ingest memory: the seed's example, verbatim.
    let ingest = r#"{
    "scope": {"org_id":"org_…","session_id":"chat-1"},
    "turns": [
      {"role":"user","text":"hello","timestamp":"2026-05-08T14:00:00Z"}
    ]
  }"#;
    let run = |body: &'static str, path: &'static str| {
        curl(
            vec![
                "-X".into(),
                "POST".into(),
                "-H".into(),
                format!("Authorization: Bearer {jwt}"),
                "-H".into(),
                "content-type: application/json".into(),
                "-d".into(),
                body.into(),
            ],
            url(&server, path),
        )
    };
    let first = run(ingest, "/ingestion/memory").await;
    assert_eq!(first.status, 202, "{first:?}");
    let b = &first.body;
    assert!(b["job_id"].as_str().is_some_and(|s| s.len() == 32), "{b}");
    assert_eq!(b["active_fragment_ids"].as_array().map(Vec::len), Some(1));
    assert!(b["passive_job_id"].is_string(), "{b}");
    assert!(b["usage"]["tokens_in"].as_u64().unwrap() > 0, "{b}");
    assert_eq!(b["usage"]["tokens_out"], 0);
    // Re-sent: the same write, nothing billed again.
    let again = run(ingest, "/ingestion/memory").await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["job_id"], first.body["job_id"]);
    assert_eq!(again.body["usage"]["tokens_in"], 0);

    // The seed's full body (options and metadata); passive off: no job.
    let full = r#"{
  "scope": {
    "org_id": "org_…",
    "user_id": "user_1",
    "session_id": "chat-1"
  },
  "turns": [
    {
      "role": "user",
      "text": "I'm allergic to shellfish.",
      "timestamp": "2026-05-08T14:00:00Z"
    },
    {
      "role": "assistant",
      "text": "Got it.",
      "timestamp": "2026-05-08T14:00:01Z"
    }
  ],
  "options":  { "write_active": true, "write_passive": false },
  "metadata": { "channel": "support" }
}"#;
    let stored = run(full, "/ingestion/memory").await;
    assert_eq!(stored.status, 202, "{stored:?}");
    assert_eq!(stored.body["passive_job_id"], Value::Null);
    assert_eq!(
        stored.body["active_fragment_ids"].as_array().map(Vec::len),
        Some(2)
    );

    // Recall: the seed's example, verbatim.
    let recall = r#"{
    "scope": {"org_id":"org_…","session_id":"chat-1"},
    "q": "any food restrictions?",
    "top_k": 3
  }"#;
    let r = run(recall, "/recall").await;
    assert_eq!(r.status, 200, "{r:?}");
    let b = &r.body;
    for key in ["turns", "observations", "entities"] {
        assert!(b["hits"][key].is_array(), "hits.{key}: {b}");
    }
    assert_eq!(b["timeline"], Value::Null);
    assert_eq!(b["mode"], "active");
    assert!((0.0..=1.0).contains(&b["confidence"].as_f64().unwrap()));
    assert!(b["usage"]["tokens_in"].as_u64().unwrap() > 0);
    let top = &b["hits"]["turns"][0];
    assert_eq!(top["kind"], "turn");
    assert!(top["text"].as_str().unwrap().contains("shellfish"), "{b}");
    assert!(top["score"].is_number());
    assert!(
        top["timestamp"]
            .as_str()
            .is_some_and(|t| t.bytes().all(|c| c.is_ascii_digit())),
        "{top}"
    );
    assert!(top["id"].as_str().is_some_and(|s| s.len() == 64), "{top}");

    // The seed's limit: a memory of 100,000 characters (emoji: 400 kB of
    // UTF-8, escaped as \uXXXX pairs here, 1.2 MB of JSON) fits the default
    // body limit; one more character is a 400 naming `text`.
    let escaped: String = "\\ud83e\\udd90".repeat(100_000);
    let body = format!(r#"{{"text": "{escaped}", "title": "shrimp"}}"#);
    let big = call(&server, "POST", "/memory", &jwt, Some(&body)).await;
    assert_eq!(big.status, 202, "{:?}", big.body);
    let body = format!(r#"{{"text": "{escaped}x"}}"#);
    let over = call(&server, "POST", "/memory", &jwt, Some(&body)).await;
    assert_eq!(over.status, 400, "{:?}", over.body);
    assert_eq!(over.body["details"]["field_violations"][0]["field"], "text");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_memory_over_rest_is_charged_polled_and_matches_grpc() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.credits.enabled = true;
        c.credits.price_per_char = 1;
    })
    .await?;
    server.channel().await?;
    // Stored memories wait for the memory layer's first health probe.
    wait_health(&server, "", ServingStatus::Serving).await;
    let org = "org_store";
    let admin = token_as(org, "ada", "admin");
    let member = token_as(org, "mia", "member");
    let viewer = token_as(org, "vic", "viewer");
    let text = "The quarterly report is due on the first Monday of each quarter.";
    let body = json!({"text": text, "title": "Deadlines", "type": "user", "extract": true,
        "metadata": {"team": "finance"}})
    .to_string();

    // 402 with the amounts: the wallet is empty.
    let poor = call(&server, "POST", "/memory", &member, Some(&body)).await;
    assert_eq!(poor.status, 402, "{poor:?}");
    assert_eq!(poor.body["code"], "INSUFFICIENT_CREDITS");
    assert_eq!(poor.body["details"]["required"], text.len());
    assert_eq!(poor.body["details"]["available"], 0);
    assert_eq!(poor.body["details"]["shortfall"], text.len());

    // 403 POLICY_DENY: a viewer may not store.
    let denied = call(&server, "POST", "/memory", &viewer, Some(&body)).await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(denied.body["code"], "POLICY_DENY");

    let top = call(
        &server,
        "POST",
        "/credits/top-up",
        &admin,
        Some(r#"{"amount": 1000, "idempotency_key": "first"}"#),
    )
    .await;
    assert_eq!(
        (top.status, &top.body["added"]),
        (200, &json!(1000)),
        "{top:?}"
    );

    let stored = call(&server, "POST", "/memory", &member, Some(&body)).await;
    assert_eq!(stored.status, 202, "{stored:?}");
    assert_eq!(stored.body["success"], true);
    assert_eq!(stored.body["status"], "pending");
    let memory_id = stored.body["memory_id"].as_str().unwrap().to_owned();
    assert_eq!(stored.headers["x-credit-charged"], text.len().to_string());
    assert_eq!(
        stored.headers["x-credit-balance"],
        (1000 - text.len()).to_string()
    );
    assert!(stored.headers.contains_key("x-billing-tx"));

    // The same request over gRPC: the same memory, nothing charged again.
    let mut grpc = MemoryServiceClient::new(server.channel().await?);
    let g = grpc
        .store_memory(authed(
            StoreMemoryRequest {
                org_id: org.into(),
                text: text.into(),
                title: "Deadlines".into(),
                r#type: MemoryType::User as i32,
                extract: true,
                metadata: Some(engram_proto::json::json_to_struct(
                    json!({"team": "finance"}).as_object().unwrap(),
                )),
                ..Default::default()
            },
            &member,
        ))
        .await?;
    assert_eq!(g.metadata().get("x-credit-charged").unwrap(), "0");
    assert_eq!(g.get_ref().memory_id, memory_id);

    // Poll the status until it is ready; REST and gRPC agree on it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = call(
            &server,
            "GET",
            &format!("/memory/{memory_id}/status"),
            &member,
            None,
        )
        .await;
        assert_eq!(s.status, 200, "{s:?}");
        if s.body["status"] == "ready" {
            break s;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let g = grpc
        .get_memory_status(authed(
            GetMemoryStatusRequest {
                memory_id: memory_id.clone(),
            },
            &member,
        ))
        .await?
        .into_inner();
    assert_eq!(status.body["chunks"], g.chunks);
    assert_eq!(status.body["observations"], g.observations);
    assert!(status.body["created_at"].as_str().unwrap().ends_with('Z'));

    // Another tenant's memory: 403; an unknown one: 404; a malformed id: 400.
    let stranger = token_as("org_other", "sam", "admin");
    let s = call(
        &server,
        "GET",
        &format!("/memory/{memory_id}/status"),
        &stranger,
        None,
    )
    .await;
    assert_eq!(s.status, 403, "{s:?}");
    let s = call(
        &server,
        "GET",
        &format!("/memory/{}/status", "0".repeat(32)),
        &member,
        None,
    )
    .await;
    assert_eq!(s.status, 404, "{s:?}");
    let s = call(&server, "GET", "/memory/xyz/status", &member, None).await;
    assert_eq!(s.status, 400, "{s:?}");
    // A segment that is not UTF-8 once decoded: a JSON 400 naming it.
    let s = call(&server, "GET", "/memory/%FF%FE/status", &member, None).await;
    assert_eq!(s.status, 400, "{s:?}");
    assert_eq!(
        s.body["details"]["field_violations"][0]["field"],
        "memory_id"
    );
    assert_eq!(
        s.body["details"]["field_violations"][0]["field"],
        "memory_id"
    );

    // The ledger and balance over REST equal gRPC's.
    let ledger = call(&server, "GET", "/credits/ledger?limit=10", &admin, None).await;
    assert_eq!(ledger.status, 200, "{ledger:?}");
    let kinds: Vec<&str> = ledger.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["top_up", "charge"]);
    let balance = call(&server, "GET", "/credits/balance", &admin, None).await;
    let mut credits = CreditServiceClient::new(server.channel().await?);
    let g = credits
        .get_balance(authed(GetBalanceRequest { org_id: org.into() }, &admin))
        .await?
        .into_inner();
    assert_eq!(balance.body["balance"], g.balance);
    assert_eq!(balance.body["enabled"], true);
    let bad = call(&server, "GET", "/credits/ledger?limit=many", &admin, None).await;
    assert_eq!(bad.status, 400, "{bad:?}");

    // Recall finds the stored memory over both surfaces, identically.
    let q = json!({"scope": {"org_id": org}, "q": "when is the quarterly report due?", "top_k": 5});
    let rest = call(&server, "POST", "/recall", &member, Some(&q.to_string())).await;
    assert_eq!(rest.status, 200, "{rest:?}");
    let mut recall = server.recall().await?;
    let g = recall
        .recall(authed(
            RecallRequest {
                scope: Some(Scope {
                    org_id: org.into(),
                    ..Default::default()
                }),
                q: "when is the quarterly report due?".into(),
                top_k: Some(5),
                ..Default::default()
            },
            &member,
        ))
        .await?
        .into_inner();
    let rest_ids: Vec<&str> = rest.body["hits"]["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    let hits = g.hits.unwrap();
    let grpc_ids: Vec<&str> = hits.turns.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(rest_ids, grpc_ids);
    assert!(!rest_ids.is_empty());
    assert_eq!(rest.body["hits"]["turns"][0]["kind"], "memory");
    assert_eq!(rest.body["hits"]["turns"][0]["memory_id"], memory_id);
    let scores: Vec<f64> = rest.body["hits"]["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    for (r, g) in scores.iter().zip(&hits.turns) {
        assert!((r - f64::from(g.score)).abs() < 1e-6, "{r} vs {}", g.score);
    }
    assert!((rest.body["confidence"].as_f64().unwrap() - g.confidence).abs() < 1e-9);
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_agrees_with_grpc_and_bad_input_is_a_400() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    server.channel().await?;
    let org = "org_rest";
    let member = token_as(org, "mia", "member");
    let admin = token_as(org, "ada", "admin");

    // Remember over REST; GetJob over both.
    let body = json!({"scope": {"org_id": org, "session_id": "s1"},
        "turns": [{"role": "user", "text": "My sister Ana moved to Lyon 🇫🇷 last May. مرحبا", "timestamp": "2026-01-10T09:00:00Z"}]})
    .to_string();
    let r = call(&server, "POST", "/ingestion/memory", &member, Some(&body)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let job_id = r.body["passive_job_id"].as_str().unwrap().to_owned();
    let fragment = r.body["active_fragment_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // The same write over gRPC is the same write: same ids, nothing billed.
    let g = server
        .ingest()
        .await?
        .remember(authed(
            RememberRequest {
                scope: Some(Scope {
                    org_id: org.into(),
                    session_id: "s1".into(),
                    ..Default::default()
                }),
                turns: vec![Turn {
                    role: "user".into(),
                    text: "My sister Ana moved to Lyon 🇫🇷 last May. مرحبا".into(),
                    timestamp: "2026-01-10T09:00:00Z".into(),
                    observations: vec![],
                }],
                ..Default::default()
            },
            &member,
        ))
        .await?
        .into_inner();
    assert_eq!(g.job_id, r.body["job_id"].as_str().unwrap());
    assert_eq!(g.active_fragment_ids, std::slice::from_ref(&fragment));
    assert_eq!(g.passive_job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(g.usage.unwrap().tokens_in, 0);
    server
        .wait_job(&member, &job_id, Duration::from_secs(60))
        .await?;
    let job = call(&server, "GET", &format!("/jobs/{job_id}"), &member, None).await;
    assert_eq!(job.status, 200, "{job:?}");
    assert_eq!(job.body["state"], "ready");
    let mut jobs = server.jobs().await?;
    let g = jobs
        .get_job(authed(
            GetJobRequest {
                job_id: job_id.clone(),
            },
            &member,
        ))
        .await?
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.body["observations"], g.observations);
    assert_eq!(job.body["entities"], g.entities);

    // Deep recall with a timeline over both: the same hits.
    let q = json!({"scope": {"org_id": org, "session_id": "s1"}, "q": "where does Ana live?",
        "mode": "deep", "include_timeline": true});
    let rest = call(&server, "POST", "/recall", &member, Some(&q.to_string())).await;
    assert_eq!(rest.status, 200, "{rest:?}");
    assert_eq!(rest.body["mode"], "deep");
    assert!(rest.body["timeline"].is_string());
    let g = server
        .recall()
        .await?
        .recall(authed(
            RecallRequest {
                scope: Some(Scope {
                    org_id: org.into(),
                    session_id: "s1".into(),
                    ..Default::default()
                }),
                q: "where does Ana live?".into(),
                mode: RecallMode::Deep as i32,
                include_timeline: true,
                ..Default::default()
            },
            &member,
        ))
        .await?
        .into_inner();
    let hits = g.hits.unwrap();
    let ids = |kind: &str| -> Vec<String> {
        rest.body["hits"][kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids("turns"),
        hits.turns.iter().map(|h| h.id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        ids("observations"),
        hits.observations
            .iter()
            .map(|h| h.id.clone())
            .collect::<Vec<_>>()
    );
    assert!(!hits.observations.is_empty());
    assert_eq!(rest.body["hits"]["observations"][0]["kind"], "observation");
    assert_eq!(rest.body["timeline"].as_str(), g.timeline.as_deref());

    // REST over HTTP/2 (prior knowledge, as h2c clients speak it).
    let q = json!({"scope": {"org_id": org}, "q": "Ana"}).to_string();
    let h2 = curl(
        vec![
            "--http2-prior-knowledge".into(),
            "-X".into(),
            "POST".into(),
            "-H".into(),
            format!("Authorization: Bearer {member}"),
            "-H".into(),
            "content-type: application/json".into(),
            "-d".into(),
            q,
        ],
        url(&server, "/recall"),
    )
    .await;
    assert_eq!(h2.status, 200, "{h2:?}");
    assert!(!h2.body["hits"]["turns"].as_array().unwrap().is_empty());

    // A metadata filter, over REST, that nothing matches.
    let q = json!({"scope": {"org_id": org}, "q": "Ana",
        "filter": {"all": [{"equals": {"key": "channel", "value": "email"}}, {"exists": {"key": "channel"}}]}});
    let filtered = call(&server, "POST", "/recall", &member, Some(&q.to_string())).await;
    assert_eq!(filtered.status, 200, "{filtered:?}");
    assert_eq!(filtered.body["hits"]["turns"], json!([]));

    // The same invalid request over both: the same fields named.
    let bad = json!({"scope": {"org_id": org}, "q": "", "top_k": 99});
    let rest = call(&server, "POST", "/recall", &member, Some(&bad.to_string())).await;
    assert_eq!(rest.status, 400, "{rest:?}");
    assert_eq!(rest.body["code"], "INVALID_ARGUMENT");
    let fields: Vec<&str> = rest.body["details"]["field_violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.get("field").and_then(Value::as_str).unwrap())
        .collect();
    let err = server
        .recall()
        .await?
        .recall(authed(
            RecallRequest {
                scope: Some(Scope {
                    org_id: org.into(),
                    ..Default::default()
                }),
                q: String::new(),
                top_k: Some(99),
                ..Default::default()
            },
            &member,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let grpc_fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|f| f.field)
        .collect();
    assert_eq!(fields, grpc_fields);

    // Malformed JSON, a wrong content type, unknown fields, a wrong type,
    // an unknown enum value: all 400 naming where (never 415 or 422).
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("{\"q\": ", None, "body"),
        (r#"{"q": "x"}"#, Some("text/plain"), "content-type"),
        (
            r#"{"q": "x", "scope": {"org_id": "o"}, "topk": 3}"#,
            None,
            "topk",
        ),
        (r#"{"q": 5}"#, None, "q"),
        (r#"{"q": "x", "mode": "fast"}"#, None, "mode"),
    ];
    for (body, ct, field) in cases {
        let a = curl(
            vec![
                "-X".into(),
                "POST".into(),
                "-H".into(),
                format!("Authorization: Bearer {member}"),
                "-H".into(),
                format!("content-type: {}", ct.unwrap_or("application/json")),
                "-d".into(),
                body.into(),
            ],
            url(&server, "/recall"),
        )
        .await;
        assert_eq!(a.status, 400, "{body}: {a:?}");
        assert_eq!(
            a.body["details"]["field_violations"][0]["field"], field,
            "{body}: {a:?}"
        );
    }
    // A method a route does not serve, and a route nobody serves.
    let a = call(&server, "GET", "/recall", &member, None).await;
    assert_eq!(a.status, 405, "{a:?}");
    let a = call(&server, "GET", "/nowhere", &member, None).await;
    assert_eq!(a.status, 404, "{a:?}");
    assert_eq!(a.body["code"], "NOT_FOUND");

    // Collections: create (201), list, delete; a duplicate with other members: 409.
    let c = call(
        &server,
        "POST",
        "/memory/collections",
        &admin,
        Some(r#"{"name": "Support", "members": ["mia"]}"#),
    )
    .await;
    assert_eq!(c.status, 201, "{c:?}");
    let collection_id = c.body["collection_id"].as_str().unwrap().to_owned();
    let dup = call(
        &server,
        "POST",
        "/memory/collections",
        &admin,
        Some(r#"{"name": "Support", "members": ["zed"]}"#),
    )
    .await;
    assert_eq!(dup.status, 409, "{dup:?}");
    let listed = call(&server, "GET", "/memory/collections", &member, None).await;
    let names: Vec<&str> = listed.body["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["personal", "Support"]);
    let gone = call(
        &server,
        "DELETE",
        &format!("/memory/collections/{collection_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(gone.status, 200, "{gone:?}");
    let gone = call(
        &server,
        "DELETE",
        &format!("/memory/collections/{collection_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(gone.status, 404, "{gone:?}");

    // Forget the turn over REST: it and what was derived from it go.
    let forget = json!({"fragment_id": fragment}).to_string();
    let f = call(&server, "POST", "/memory/forget", &member, Some(&forget)).await;
    assert_eq!(f.status, 200, "{f:?}");
    assert_eq!(f.body["turns"], 1);
    assert!(f.body["observations"].as_u64().unwrap() >= 1, "{f:?}");
    let two = call(
        &server,
        "POST",
        "/memory/forget",
        &member,
        Some(r#"{"fragment_id": "a", "session_id": "s1"}"#),
    )
    .await;
    assert_eq!(two.status, 400, "{two:?}");
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_service_are_json_on_rest_and_statuses_on_grpc() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start_with(dir.path(), |c| {
        c.limits.requests_per_sec_per_org = 1;
        c.limits.burst_per_org = 2;
        c.limits.max_request_bytes = 4096;
    })
    .await?;
    server.channel().await?;
    let q = r#"{"scope": {"org_id": "org_lim"}, "q": "anything"}"#;

    // 401: no token, an expired one, a malformed header.
    let a = curl(
        vec![
            "-X".into(),
            "POST".into(),
            "-H".into(),
            "content-type: application/json".into(),
            "-d".into(),
            q.into(),
        ],
        url(&server, "/recall"),
    )
    .await;
    assert_eq!(a.status, 401, "{a:?}");
    assert_eq!(a.body["code"], "TOKEN_MISSING");
    assert_eq!(a.body["status"], "UNAUTHENTICATED");
    let expired = engram_tests::token("org_lim", "u", -60);
    let a = call(&server, "POST", "/recall", &expired, Some(q)).await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (401, Some("TOKEN_EXPIRED"))
    );
    // gRPC callers still get a status, not JSON.
    let err = server
        .recall()
        .await?
        .recall(tonic::Request::new(RecallRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // 403: another tenant's org in the body.
    let tok = token_as("org_lim", "u", "member");
    let a = call(
        &server,
        "POST",
        "/recall",
        &tok,
        Some(r#"{"scope": {"org_id": "org_x"}, "q": "y"}"#),
    )
    .await;
    assert_eq!(
        (a.status, a.body["code"].as_str()),
        (403, Some("POLICY_DENY")),
        "{a:?}"
    );

    // 413: a body over limits.max_request_bytes, answered as JSON.
    let big = json!({"scope": {"org_id": "org_big"}, "q": "x".repeat(8000)}).to_string();
    let a = call(
        &server,
        "POST",
        "/recall",
        &token_as("org_big", "u", "member"),
        Some(&big),
    )
    .await;
    assert_eq!(a.status, 413, "{a:?}");
    assert_eq!(a.body["code"], "REQUEST_TOO_LARGE");

    // 429 with Retry-After once the tenant's bucket is empty.
    let mut limited = None;
    for _ in 0..10 {
        let a = call(&server, "POST", "/recall", &tok, Some(q)).await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
    }
    let a = limited.expect("the rate limit refused a call");
    assert_eq!(a.body["code"], "RATE_LIMITED");
    assert!(
        a.headers["retry-after"].parse::<u64>().unwrap() >= 1,
        "{a:?}"
    );
    assert_eq!(
        a.body["details"]["limit"],
        "limits.requests_per_sec_per_org"
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_writes_while_nats_is_down_are_503_with_retry_after() -> anyhow::Result<()> {
    let mut nats = NatsServer::start();
    nats.stop();
    let dir = tempfile::tempdir()?;
    let mut config = test_config(dir.path());
    config.backends.stream = StreamKind::Nats;
    config.nats.url = nats.url();
    config.nats.request_timeout_ms = 1500;
    let server = TestServer::start_with(dir.path(), |c| *c = config.clone()).await?;
    let org = "org_down";
    let member = token_as(org, "mia", "member");
    let store = r#"{"text": "A note.", "title": "n"}"#;

    // Never reached: MEMORY_INFRA_NOT_READY, retry in ~10 s.
    let a = call(&server, "POST", "/memory", &member, Some(store)).await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["code"], "MEMORY_INFRA_NOT_READY");
    assert_eq!(a.headers["retry-after"], "10");

    nats.start_again();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while server.health("").await?
        != tonic_health::pb::health_check_response::ServingStatus::Serving
    {
        assert!(tokio::time::Instant::now() < deadline, "never serving");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let a = call(&server, "POST", "/memory", &member, Some(store)).await;
    assert_eq!(a.status, 202, "{a:?}");

    // Down after provisioning: MEMORY_UNREACHABLE, and an ingestion too.
    nats.stop();
    let a = call(
        &server,
        "POST",
        "/memory",
        &member,
        Some(r#"{"text": "Another."}"#),
    )
    .await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["code"], "MEMORY_UNREACHABLE");
    assert!(a.headers.contains_key("retry-after"));
    let turns = json!({"scope": {"org_id": org}, "turns": [{"role": "user", "text": "hi", "timestamp": "2026-05-08T14:00:00Z"}]});
    let a = call(
        &server,
        "POST",
        "/ingestion/memory",
        &member,
        Some(&turns.to_string()),
    )
    .await;
    assert_eq!(a.status, 503, "{a:?}");
    assert_eq!(a.body["code"], "MEMORY_UNREACHABLE");
    nats.start_again();
    server.stop().await
}

/// Every route the OpenAPI document lists is one these tests call: a route
/// added to the document without a test fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_exercised_here() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    server.channel().await?;
    // No token: the document is public.
    let doc = curl(vec![], url(&server, "/openapi.json")).await;
    assert_eq!(doc.status, 200, "{doc:?}");
    let mut documented: Vec<String> = Vec::new();
    for (path, ops) in doc.body["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let mut exercised = vec![
        "POST /ingestion/memory",
        "POST /recall",
        "GET /jobs/{job_id}",
        "POST /memory",
        "GET /memory/{memory_id}/status",
        "POST /memory/forget",
        "POST /memory/collections",
        "GET /memory/collections",
        "DELETE /memory/collections/{collection_id}",
        "GET /credits/balance",
        "POST /credits/top-up",
        "GET /credits/ledger",
    ];
    exercised.sort_unstable();
    assert_eq!(documented, exercised);
    server.stop().await
}
