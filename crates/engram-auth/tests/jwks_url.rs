//! A JWKS URL served by a real HTTP/1.1 server on a free port: keys are
//! fetched, cached, refreshed on an unknown `kid` at most once per
//! interval, kept when a refresh fails, and a down or slow endpoint is
//! `UNAVAILABLE` within the timeout, never a hang.

use engram_auth::{AuthConfig, AuthError, Claims, JwksOptions, JwksUrl, JwtVerifier, KeySource};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RS_PRIVATE: &[u8] = include_bytes!("../testdata/rs256-private.pem");
const RS_OTHER_PRIVATE: &[u8] = include_bytes!("../testdata/rs256-other-private.pem");
const ES_PRIVATE: &[u8] = include_bytes!("../testdata/es256-private.pem");

/// What the endpoint answers.
#[derive(Clone)]
enum Answer {
    /// 200 with this body.
    Keys(String),
    /// This status, empty body.
    Status(u16),
    /// Nothing for this long, then the body.
    Slow(Duration, String),
}

/// A one-request-per-connection HTTP/1.1 server.
struct JwksServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(answer: Answer) -> Self {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), answer)
    }

    fn start_on(listener: TcpListener, answer: Answer) -> Self {
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let answer = Arc::new(Mutex::new(answer));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
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
                    let (status, body) = match answer {
                        Answer::Keys(b) => (200, b),
                        Answer::Status(s) => (s, String::new()),
                        Answer::Slow(d, b) => {
                            tokio::time::sleep(d).await;
                            (200, b)
                        }
                    };
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { url, answer, hits }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap()
}

fn rsa_other() -> EncodingKey {
    EncodingKey::from_rsa_pem(RS_OTHER_PRIVATE).unwrap()
}

fn ec() -> EncodingKey {
    EncodingKey::from_ec_pem(ES_PRIVATE).unwrap()
}

/// A JWKS document of the public halves of `keys`.
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

fn token(alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        org_id: "org_a".into(),
        user_id: Some("u1".into()),
        sub: None,
        session_id: None,
        role: None,
        exp: now + 600,
        iat: Some(now),
        iss: None,
        aud: None,
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

fn verifier(url: &str, options: JwksOptions) -> JwtVerifier {
    let mut config = AuthConfig::new(KeySource::JwksUrl(JwksUrl::parse(url).unwrap()));
    config.jwks = options;
    JwtVerifier::new(config).unwrap()
}

fn fast() -> JwksOptions {
    JwksOptions {
        timeout: Duration::from_millis(500),
        refresh_every: Duration::from_secs(300),
        min_refresh_interval: Duration::from_millis(300),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_once_and_cached() {
    let server = JwksServer::start(Answer::Keys(jwks(&[
        (&rsa(), Algorithm::RS256, "rsa-1"),
        (&ec(), Algorithm::ES256, "ec-1"),
    ])))
    .await;
    let v = verifier(&server.url, fast());
    assert!(!v.has_keys());
    // The first call fetches the keys; the others use the cache.
    for _ in 0..5 {
        let c = v
            .verify(&token(Algorithm::RS256, "rsa-1", &rsa()))
            .await
            .unwrap();
        assert_eq!(c.org_id, "org_a");
        v.verify(&token(Algorithm::ES256, "ec-1", &ec()))
            .await
            .unwrap();
    }
    assert_eq!(server.hits(), 1);
    // HS256 against a public key set: refused without a fetch.
    let hs = token(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(b"whatever-secret-0123"),
    );
    let e = v.verify(&hs).await.unwrap_err();
    assert!(matches!(e, AuthError::AlgorithmRefused { .. }), "{e}");
    // An ES256 token naming the RSA key.
    let e = v
        .verify(&token(Algorithm::ES256, "rsa-1", &ec()))
        .await
        .unwrap_err();
    assert!(matches!(e, AuthError::AlgorithmRefused { .. }), "{e}");
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_at_start_is_unavailable_then_recovers() {
    // A port nobody listens on; the server comes up on it later.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/.well-known/jwks.json");
    let v = verifier(&url, fast());
    let _refresh = v.spawn_refresh();
    let t = token(Algorithm::RS256, "rsa-1", &rsa());

    let started = Instant::now();
    let e = v.verify(&t).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(e, AuthError::KeysUnavailable { .. }), "{e}");
    // Not a refusal of the caller: UNAVAILABLE with a retry hint (the
    // mapping is engram-api's, tested there).
    assert!(!e.is_refusal());
    assert_eq!(e.reason(), engram_auth::REASON_KEYS_UNAVAILABLE);
    // Refusals that need no key stay UNAUTHENTICATED while keys are missing.
    let e = v.verify("not-a-jwt").await.unwrap_err();
    assert!(e.is_refusal(), "{e}");

    let listener = TcpListener::bind(addr).await.unwrap();
    let server = JwksServer::start_on(
        listener,
        Answer::Keys(jwks(&[(&rsa(), Algorithm::RS256, "rsa-1")])),
    );
    // The periodic refresh retries every min_refresh_interval while no
    // key set was ever loaded; a call joins a fetch or starts one.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match v.verify(&t).await {
            Ok(c) => {
                assert_eq!(c.org_id, "org_a");
                break;
            }
            Err(AuthError::KeysUnavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("keys never loaded: {e}"),
        }
    }
    assert!(server.hits() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_never_holds_a_call_past_the_timeout() {
    let keys = jwks(&[(&rsa(), Algorithm::RS256, "rsa-1")]);
    let server = JwksServer::start(Answer::Slow(Duration::from_secs(30), keys.clone())).await;
    let options = JwksOptions {
        timeout: Duration::from_millis(400),
        ..fast()
    };
    let v = verifier(&server.url, options);
    let t = token(Algorithm::RS256, "rsa-1", &rsa());
    for _ in 0..3 {
        let started = Instant::now();
        let e = v.verify(&t).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, AuthError::KeysUnavailable { .. }), "{e}");
        // Far below the endpoint's 30 s: the timeout, not the endpoint, ended it
        // (with room for a loaded machine).
        assert!(took < Duration::from_secs(5), "waited {took:?}");
    }
    // Once it answers in time, keys load.
    server.set(Answer::Keys(keys));
    tokio::time::sleep(Duration::from_millis(400)).await;
    v.verify(&t).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_kid_refreshes_at_most_once_per_interval() {
    let server =
        JwksServer::start(Answer::Keys(jwks(&[(&rsa(), Algorithm::RS256, "2026-01")]))).await;
    let options = JwksOptions {
        min_refresh_interval: Duration::from_millis(500),
        ..fast()
    };
    let v = verifier(&server.url, options);
    v.verify(&token(Algorithm::RS256, "2026-01", &rsa()))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);

    // The issuer rotates: new key first in the set, old key still there.
    server.set(Answer::Keys(jwks(&[
        (&rsa_other(), Algorithm::RS256, "2026-02"),
        (&rsa(), Algorithm::RS256, "2026-01"),
    ])));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let rotated = token(Algorithm::RS256, "2026-02", &rsa_other());
    v.verify(&rotated).await.unwrap();
    assert_eq!(server.hits(), 2);
    v.verify(&token(Algorithm::RS256, "2026-01", &rsa()))
        .await
        .unwrap();

    // A flood of unknown kids right after: no fetch until the interval passed.
    for i in 0..50 {
        let t = token(Algorithm::RS256, &format!("forged-{i}"), &rsa());
        assert_eq!(v.verify(&t).await, Err(AuthError::UnknownKey));
    }
    assert_eq!(
        server.hits(),
        2,
        "unknown kids must not hammer the endpoint"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        v.verify(&token(Algorithm::RS256, "forged-x", &rsa())).await,
        Err(AuthError::UnknownKey)
    );
    assert_eq!(server.hits(), 3);
    // An unknown kid is a refusal (UNAUTHENTICATED).
    assert!(AuthError::UnknownKey.is_refusal());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_keeps_the_last_good_keys() {
    let server =
        JwksServer::start(Answer::Keys(jwks(&[(&rsa(), Algorithm::RS256, "rsa-1")]))).await;
    let options = JwksOptions {
        refresh_every: Duration::from_millis(200),
        min_refresh_interval: Duration::from_millis(100),
        ..fast()
    };
    let v = verifier(&server.url, options);
    let _refresh = v.spawn_refresh();
    let t = token(Algorithm::RS256, "rsa-1", &rsa());
    v.verify(&t).await.unwrap();
    for bad in [
        Answer::Status(500),
        Answer::Keys("{not json".into()),
        Answer::Keys(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.into()),
        Answer::Slow(Duration::from_secs(30), String::new()),
    ] {
        let before = server.hits();
        server.set(bad);
        // Wait until the periodic refresh has tried at least once.
        let deadline = Instant::now() + Duration::from_secs(5);
        while server.hits() == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(server.hits() > before, "no refresh happened");
        v.verify(&t).await.unwrap();
    }
    // A good answer again replaces the set: the old key goes away.
    server.set(Answer::Keys(jwks(&[(
        &rsa_other(),
        Algorithm::RS256,
        "rsa-2",
    )])));
    let t2 = token(Algorithm::RS256, "rsa-2", &rsa_other());
    let deadline = Instant::now() + Duration::from_secs(5);
    while v.verify(&t2).await.is_err() {
        assert!(Instant::now() < deadline, "new key set never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_handle_stops_the_refresh() {
    let server =
        JwksServer::start(Answer::Keys(jwks(&[(&rsa(), Algorithm::RS256, "rsa-1")]))).await;
    let options = JwksOptions {
        refresh_every: Duration::from_millis(100),
        min_refresh_interval: Duration::from_millis(50),
        ..fast()
    };
    let v = verifier(&server.url, options);
    let refresh = v.spawn_refresh();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        server.hits() >= 2,
        "refreshes periodically: {}",
        server.hits()
    );
    drop(refresh);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let after = server.hits();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.hits(), after);
}
