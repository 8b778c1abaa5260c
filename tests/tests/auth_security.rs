//! The auth path of a real server, attacked: unsigned tokens, key
//! confusion, far-future expiry, missing or mistyped `org_id`, oversized
//! tokens, and a JWKS URL that is down, slow, or rotating its keys. Every
//! refusal is UNAUTHENTICATED with a message saying why (UNAVAILABLE with
//! a retry hint while the JWKS endpoint has not answered), and the server's
//! logs and spans, captured at TRACE level, never hold the secret, the
//! tokens or the JWKS URL's credentials.

use engram_proto::v1::GetJobRequest;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_tests::{SECRET, TestServer, claims, token};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::Code;
use tonic_types::StatusExt;

// ---------------------------------------------------------------- logs

/// Everything every tracing event and span of this test binary printed.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing, at TRACE level for every crate (tonic, h2, hyper,
/// reqwest included), with span creation and close events and their fields.
fn capture_logs() {
    LOGS.get_or_init(|| {
        use tracing_subscriber::util::SubscriberInitExt;
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(buf.clone());
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_span_events(
                tracing_subscriber::fmt::format::FmtSpan::NEW
                    | tracing_subscriber::fmt::format::FmtSpan::CLOSE,
            )
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish()
            .try_init()
            .expect("the only subscriber of this binary");
        buf
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.get().expect("capturing").lock().unwrap()).into_owned()
}

/// Fails when any of `secrets` (or, for a JWT, its signature) was logged.
fn assert_never_logged(secrets: &[&str]) {
    let logs = logs();
    eprintln!(
        "checked {} bytes of captured logs ({} lines from h2)",
        logs.len(),
        logs.lines().filter(|l| l.contains(" h2::")).count()
    );
    assert!(
        logs.contains("refused unauthenticated call") && logs.contains("grpc"),
        "the capture sees the auth layer's debug lines and the call spans"
    );
    for s in secrets {
        assert!(!logs.contains(s), "logged: {s:.40}…");
        if let Some(sig) = s.rsplit('.').next().filter(|sig| sig.len() >= 16) {
            assert!(!logs.contains(sig), "logged a signature: {sig:.40}…");
        }
    }
}

// ---------------------------------------------------------------- tokens

fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/engram-auth/testdata")
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(keys_dir().join(name)).unwrap()
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&pem("rs256-private.pem")).unwrap()
}

fn rsa_other() -> EncodingKey {
    EncodingKey::from_rsa_pem(&pem("rs256-other-private.pem")).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(&pem("es256-private.pem")).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
    claims: &serde_json::Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(Into::into);
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn hs(claims: &serde_json::Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn good_claims() -> serde_json::Value {
    serde_json::json!({"org_id": "org_a", "sub": "u1", "iat": now(), "exp": now() + 600})
}

fn with(extra: serde_json::Value) -> serde_json::Value {
    let mut c = good_claims();
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An unsigned token: `alg: none`, no signature.
fn unsigned(alg: &str, claims: &serde_json::Value) -> String {
    let header = serde_json::json!({"alg": alg, "typ": "JWT"});
    format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

fn jwks(keys: &[(&EncodingKey, Algorithm, &str)]) -> String {
    let keys: Vec<_> = keys
        .iter()
        .map(|(k, alg, kid)| {
            let mut j = jsonwebtoken::jwk::Jwk::from_encoding_key(k, *alg).unwrap();
            j.common.key_id = Some((*kid).into());
            j
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

// ---------------------------------------------------------------- calls

/// GetJob of an unknown job with `authorization: <value>`: NOT_FOUND means
/// the token was accepted.
async fn call(server: &TestServer, authorization: Option<&str>) -> tonic::Status {
    let mut client = JobServiceClient::new(server.channel().await.unwrap());
    call_on(&mut client, authorization).await
}

async fn call_on(
    client: &mut JobServiceClient<tonic::transport::Channel>,
    authorization: Option<&str>,
) -> tonic::Status {
    let mut req = tonic::Request::new(GetJobRequest {
        job_id: "0".repeat(32),
    });
    if let Some(v) = authorization {
        req.metadata_mut()
            .insert("authorization", v.parse().expect("ascii"));
    }
    client.get_job(req).await.expect_err("no such job")
}

async fn bearer(server: &TestServer, token: &str) -> tonic::Status {
    call(server, Some(&format!("Bearer {token}"))).await
}

fn assert_accepted(s: &tonic::Status) {
    assert_eq!(s.code(), Code::NotFound, "accepted token: {s:?}");
}

fn assert_refused(s: &tonic::Status, why: &str) {
    assert_eq!(s.code(), Code::Unauthenticated, "{why}: {s:?}");
    assert!(
        s.message().contains(why),
        "message {:?} says {why:?}",
        s.message()
    );
    let info = s.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.domain, "engram.dev");
    assert!(info.reason.starts_with("TOKEN_"), "{}", info.reason);
}

fn assert_unavailable(s: &tonic::Status) {
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains("JWKS"), "{}", s.message());
    let retry = s.get_details_retry_info().expect("RetryInfo");
    assert!(
        retry
            .retry_delay
            .is_some_and(|d| d >= Duration::from_secs(1))
    );
    assert_eq!(
        s.get_details_error_info().unwrap().reason,
        engram_auth::REASON_KEYS_UNAVAILABLE
    );
}

// ---------------------------------------------------------------- JWKS endpoint

#[derive(Clone)]
enum Answer {
    Keys(String),
    Slow(Duration, String),
}

/// A real HTTP/1.1 server, one request per connection, answering what the
/// test last set.
struct JwksServer {
    addr: std::net::SocketAddr,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(answer: Answer) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), answer)
    }

    fn start_on(listener: TcpListener, answer: Answer) -> Self {
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (a, h) = (a.clone(), h.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    h.fetch_add(1, Ordering::SeqCst);
                    let answer = a.lock().unwrap().clone();
                    let body = match answer {
                        Answer::Keys(b) => b,
                        Answer::Slow(d, b) => {
                            tokio::time::sleep(d).await;
                            b
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { addr, answer, hits }
    }

    fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A server verifying with the JWKS at `url`: 1 s timeout, 300 ms between
/// fetches.
async fn jwks_server(dir: &Path, url: &str) -> TestServer {
    let url = url.to_owned();
    TestServer::start_with(dir, move |c| {
        c.auth.hs256_secret = None;
        c.auth.jwks_url = Some(url);
        c.auth.jwks_timeout_ms = 1_000;
        c.auth.jwks_min_refresh_interval_ms = 300;
    })
    .await
    .unwrap()
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_is_unauthenticated_says_why_and_is_never_logged() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await.unwrap();

    let good = token("org_a", "u1", 600);
    assert_accepted(&bearer(&server, &good).await);

    let other_secret = EncodingKey::from_secret(b"some-other-secret-0123456789abcdef");
    let padded = hs(&with(serde_json::json!({"pad": "x".repeat(9_000)})));
    let cases: Vec<(&str, String, &str)> = vec![
        ("unsigned", unsigned("none", &good_claims()), "alg \"none\""),
        (
            "unsigned, capitalised",
            unsigned("None", &good_claims()),
            "alg \"none\"",
        ),
        (
            "wrong secret",
            sign(Algorithm::HS256, None, &other_secret, &good_claims()),
            "bad signature",
        ),
        ("expired", token("org_a", "u1", -300), "expired"),
        (
            "exp 400 days ahead",
            hs(&with(serde_json::json!({"exp": now() + 400 * 86_400}))),
            "lifetime too long",
        ),
        (
            "iat to exp beyond the cap",
            hs(&with(serde_json::json!({"iat": now() - 40 * 86_400}))),
            "lifetime too long",
        ),
        (
            "no org_id",
            hs(&with(serde_json::json!({"org_id": null}))),
            "org_id claim is missing",
        ),
        (
            "empty org_id",
            hs(&with(serde_json::json!({"org_id": ""}))),
            "org_id claim is empty",
        ),
        (
            "numeric org_id",
            hs(&with(serde_json::json!({"org_id": 42}))),
            "org_id claim must be a string",
        ),
        (
            "org_id array",
            hs(&with(serde_json::json!({"org_id": ["org_a"]}))),
            "org_id claim must be a string",
        ),
        (
            "RS256 token against the HS256 secret",
            sign(Algorithm::RS256, None, &rsa(), &good_claims()),
            "algorithm RS256 is not accepted",
        ),
        ("9 KiB token", padded.clone(), "too large"),
        ("not a JWT", "hello".into(), "malformed"),
    ];
    for (label, tok, why) in &cases {
        let s = bearer(&server, tok).await;
        assert_refused(&s, why);
        eprintln!("{label}: {:?} {:?}", s.code(), s.message());
    }
    assert_refused(&call(&server, None).await, "missing bearer token");
    assert_refused(
        &call(&server, Some(&format!("Basic {good}"))).await,
        "malformed",
    );

    // Up to the transport's 16 KiB header list, the auth layer refuses it.
    let s = bearer(&server, &"a".repeat(12 * 1024)).await;
    assert_refused(&s, "too large");
    // Beyond it, hyper refuses the headers (HTTP 431, or a reset) before
    // any Engram code runs: clients see UNKNOWN, but never get through.
    for size in [20 * 1024, 1 << 20] {
        let huge = "a".repeat(size);
        let s = bearer(&server, &huge).await;
        eprintln!("{size} byte token: {:?} {:?}", s.code(), s.message());
        assert_ne!(s.code(), Code::NotFound);
        assert_ne!(s.code(), Code::Ok);
    }
    // The server still serves after all that.
    assert_accepted(&bearer(&server, &good).await);
    server.stop().await.unwrap();

    let mut secrets: Vec<&str> = cases.iter().map(|(_, t, _)| t.as_str()).collect();
    secrets.extend([SECRET, good.as_str(), padded.as_str()]);
    assert_never_logged(&secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_confusion_against_a_public_key_is_refused() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir.path(), |c| {
        c.auth.hs256_secret = None;
        c.auth.rs256_public_key_file = Some(keys_dir().join("rs256-public.pem"));
    })
    .await
    .unwrap();
    let c = serde_json::to_value(claims("org_a", "u1", 600)).unwrap();
    assert_accepted(&bearer(&server, &sign(Algorithm::RS256, None, &rsa(), &c)).await);

    // HS256 keyed with the public key's PEM: the classic confusion attack.
    let public = pem("rs256-public.pem");
    let confused = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(&public),
        &c,
    );
    assert_refused(
        &bearer(&server, &confused).await,
        "algorithm HS256 is not accepted",
    );
    let es = sign(Algorithm::ES256, None, &ec(), &c);
    assert_refused(
        &bearer(&server, &es).await,
        "algorithm ES256 is not accepted",
    );
    let ps = sign(Algorithm::PS256, None, &rsa(), &c);
    assert_refused(
        &bearer(&server, &ps).await,
        "algorithm PS256 is not accepted",
    );
    let forged = sign(Algorithm::RS256, None, &rsa_other(), &c);
    assert_refused(&bearer(&server, &forged).await, "bad signature");
    assert_refused(
        &bearer(&server, &unsigned("none", &good_claims())).await,
        "alg \"none\"",
    );
    server.stop().await.unwrap();
    assert_never_logged(&[&confused, &es, &ps, &forged]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_keys_verify_rotate_by_kid_and_hide_the_url_credentials() {
    capture_logs();
    let jwks_host = JwksServer::start(Answer::Keys(jwks(&[
        (&rsa(), Algorithm::RS256, "2026-01"),
        (&ec(), Algorithm::ES256, "ec-1"),
    ])))
    .await;
    // Credentials and a query the logs must never show.
    let url = format!(
        "http://jwks-reader:pw-Zq81xLm@{}/.well-known/jwks.json?api_key=qk-77aa12",
        jwks_host.addr
    );
    let dir = tempfile::tempdir().unwrap();
    let server = jwks_server(dir.path(), &url).await;
    let c = serde_json::to_value(claims("org_a", "u1", 600)).unwrap();
    let rs = sign(Algorithm::RS256, Some("2026-01"), &rsa(), &c);
    assert_accepted(&bearer(&server, &rs).await);
    let es = sign(Algorithm::ES256, Some("ec-1"), &ec(), &c);
    assert_accepted(&bearer(&server, &es).await);
    let fetched = jwks_host.hits();

    // Wrong algorithm for the key the kid names, and HS256 against a set
    // of public keys (keyed with the set itself): refused, no fetch.
    let wrong = sign(Algorithm::ES256, Some("2026-01"), &ec(), &c);
    assert_refused(
        &bearer(&server, &wrong).await,
        "algorithm ES256 is not accepted",
    );
    let doc = jwks(&[(&rsa(), Algorithm::RS256, "2026-01")]);
    let hs = sign(
        Algorithm::HS256,
        Some("2026-01"),
        &EncodingKey::from_secret(doc.as_bytes()),
        &c,
    );
    assert_refused(
        &bearer(&server, &hs).await,
        "algorithm HS256 is not accepted",
    );
    assert_eq!(jwks_host.hits(), fetched);

    // Rotation: the issuer publishes a new key and signs with it.
    jwks_host.set(Answer::Keys(jwks(&[
        (&rsa_other(), Algorithm::RS256, "2026-02"),
        (&rsa(), Algorithm::RS256, "2026-01"),
    ])));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rotated = sign(Algorithm::RS256, Some("2026-02"), &rsa_other(), &c);
    assert_accepted(&bearer(&server, &rotated).await);
    assert_eq!(jwks_host.hits(), fetched + 1, "one fetch for the new kid");
    assert_accepted(&bearer(&server, &rs).await);
    // Made-up kids: refused, and at most one fetch per interval.
    let mut forged = Vec::new();
    for i in 0..20 {
        let t = sign(Algorithm::RS256, Some(&format!("made-up-{i}")), &rsa(), &c);
        assert_refused(&bearer(&server, &t).await, "kid");
        forged.push(t);
    }
    assert!(
        jwks_host.hits() <= fetched + 2,
        "{} fetches",
        jwks_host.hits()
    );
    server.stop().await.unwrap();

    let mut secrets = vec![
        "pw-Zq81xLm",
        "qk-77aa12",
        "jwks-reader",
        rs.as_str(),
        es.as_str(),
        wrong.as_str(),
        hs.as_str(),
        rotated.as_str(),
    ];
    secrets.extend(forged.iter().map(String::as_str));
    assert_never_logged(&secrets);
    assert!(
        logs().contains("jwks loaded"),
        "the fetch is logged, redacted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_down_at_start_is_unavailable_until_it_answers() {
    capture_logs();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let dir = tempfile::tempdir().unwrap();
    let server = jwks_server(dir.path(), &format!("http://{addr}/.well-known/jwks.json")).await;
    // It started and serves: health answers, calls get UNAVAILABLE.
    server.health("liveness").await.unwrap();
    let t = sign(
        Algorithm::RS256,
        Some("k1"),
        &rsa(),
        &serde_json::to_value(claims("org_a", "u1", 600)).unwrap(),
    );
    let started = Instant::now();
    let s = bearer(&server, &t).await;
    assert_unavailable(&s);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // What needs no key is still UNAUTHENTICATED, not UNAVAILABLE.
    assert_refused(&call(&server, None).await, "missing bearer token");
    assert_refused(
        &bearer(&server, &unsigned("none", &good_claims())).await,
        "alg \"none\"",
    );

    let jwks_host = JwksServer::start_on(
        TcpListener::bind(addr).await.unwrap(),
        Answer::Keys(jwks(&[(&rsa(), Algorithm::RS256, "k1")])),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = bearer(&server, &t).await;
        if s.code() == Code::NotFound {
            break;
        }
        assert_unavailable(&s);
        assert!(Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(jwks_host.hits() >= 1);
    server.stop().await.unwrap();
    assert_never_logged(&[&t]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jwks_url_never_holds_a_call_past_the_timeout() {
    capture_logs();
    let keys = jwks(&[(&rsa(), Algorithm::RS256, "k1")]);
    let jwks_host = JwksServer::start(Answer::Slow(Duration::from_secs(60), keys.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let server = jwks_server(dir.path(), &jwks_host.url()).await;
    let t = sign(
        Algorithm::RS256,
        Some("k1"),
        &rsa(),
        &serde_json::to_value(claims("org_a", "u1", 600)).unwrap(),
    );
    // Connected and serving first: only the call itself is timed.
    server.health("liveness").await.unwrap();
    let mut client = JobServiceClient::new(server.channel().await.unwrap());
    let header = format!("Bearer {t}");
    let mut slowest = Duration::ZERO;
    for _ in 0..4 {
        let started = Instant::now();
        let s = call_on(&mut client, Some(&header)).await;
        slowest = slowest.max(started.elapsed());
        assert_unavailable(&s);
    }
    eprintln!("slowest call against a hanging JWKS endpoint (1 s timeout): {slowest:?}");
    // Far below the hanging endpoint: the 1 s timeout ended each call (with
    // room for a loaded machine).
    assert!(slowest < Duration::from_secs(5), "{slowest:?}");

    // Once it answers in time, calls go through.
    jwks_host.set(Answer::Keys(keys));
    let deadline = Instant::now() + Duration::from_secs(10);
    while bearer(&server, &t).await.code() != Code::NotFound {
        assert!(Instant::now() < deadline, "keys never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await.unwrap();
    assert_never_logged(&[&t]);
}
