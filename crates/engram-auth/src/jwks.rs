//! Key sets: the keys of a JWKS document, selected by `kid` and algorithm,
//! and a JWKS URL fetched over HTTP(S), cached, and refreshed periodically
//! and on an unknown `kid`.

use crate::AuthError;
use crate::token::{TokenHeader, b64url_decode};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Largest JWKS document accepted: real sets are a few KiB, and a
/// misbehaving endpoint must not make the server buffer without end.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// RSA keys shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;

/// One verification key.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    /// `kid`, if the key has one.
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The keys a verifier accepts, each bound to one algorithm.
#[derive(Clone)]
pub(crate) struct KeySet {
    keys: Vec<VerifyKey>,
}

/// Which keys of a set may verify a token.
pub(crate) enum Lookup<'a> {
    /// These keys (at least one), all of the token's algorithm.
    Found(Vec<&'a VerifyKey>),
    /// The token's `kid` names a key of another algorithm.
    WrongAlgorithm(Algorithm),
    /// The token's `kid` names no key, and the set's keys have ids.
    UnknownKid,
    /// No key of the token's algorithm.
    NoKeyForAlgorithm,
}

impl KeySet {
    /// A set of `keys`.
    pub fn new(keys: Vec<VerifyKey>) -> Self {
        Self { keys }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key ids, for logs (`-` for a key without one).
    pub fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .map(|k| k.kid.as_deref().unwrap_or("-"))
            .collect()
    }

    /// The algorithms of the set, e.g. `RS256, ES256`.
    pub fn algorithms(&self) -> String {
        let mut algs: Vec<String> = self.keys.iter().map(|k| format!("{:?}", k.alg)).collect();
        algs.sort();
        algs.dedup();
        algs.join(", ")
    }

    /// The keys that may verify a token with `header`. A key without a
    /// `kid` may verify any token of its algorithm (a single PEM key, or a
    /// JWKS entry without id); a token without `kid` is tried against
    /// every key of its algorithm.
    pub fn lookup(&self, header: &TokenHeader) -> Lookup<'_> {
        let of_alg = |k: &&VerifyKey| k.alg == header.alg;
        if let Some(kid) = &header.kid {
            let named: Vec<&VerifyKey> = self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            if let Some(first) = named.first() {
                let found: Vec<&VerifyKey> = named.iter().copied().filter(of_alg).collect();
                return if found.is_empty() {
                    Lookup::WrongAlgorithm(first.alg)
                } else {
                    Lookup::Found(found)
                };
            }
            let anonymous: Vec<&VerifyKey> = self
                .keys
                .iter()
                .filter(|k| k.kid.is_none())
                .filter(of_alg)
                .collect();
            if !anonymous.is_empty() {
                return Lookup::Found(anonymous);
            }
            if self.keys.iter().any(|k| k.kid.is_some()) {
                return Lookup::UnknownKid;
            }
            return Lookup::NoKeyForAlgorithm;
        }
        let found: Vec<&VerifyKey> = self.keys.iter().filter(of_alg).collect();
        if found.is_empty() {
            Lookup::NoKeyForAlgorithm
        } else {
            Lookup::Found(found)
        }
    }
}

/// Reads the signature keys of a JWKS document.
///
/// A key is skipped (and named in the returned notes) when it is not for
/// signatures (`use` other than `sig`, `key_ops` without `verify`), is
/// symmetric (`kty: oct`: whoever can read the set could sign tokens with
/// it), names an algorithm its key type cannot verify (`kty: RSA` with
/// `alg: ES256`, an EC key on another curve than its `alg`), is an RSA key
/// under 2048 bits, or cannot be parsed. Fails when no key is left.
pub(crate) fn parse_jwks(doc: &[u8]) -> Result<(KeySet, Vec<String>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(doc).map_err(|e| format!("jwks is not JSON: {e}"))?;
    let entries = value
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("jwks has no \"keys\" array")?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let label = entry
            .get("kid")
            .and_then(|k| k.as_str())
            .map(|k| format!("key {k:?}"))
            .unwrap_or_else(|| format!("key #{i}"));
        match verify_key(entry) {
            Ok(k) => keys.push(k),
            Err(why) => skipped.push(format!("{label}: {why}")),
        }
    }
    if keys.is_empty() {
        return Err(format!(
            "jwks holds no usable signature key (RSA, EC P-256/P-384 or Ed25519){}",
            if skipped.is_empty() {
                String::new()
            } else {
                format!(": {}", skipped.join("; "))
            }
        ));
    }
    Ok((KeySet::new(keys), skipped))
}

fn verify_key(entry: &serde_json::Value) -> Result<VerifyKey, String> {
    if entry.get("kty").and_then(|k| k.as_str()) == Some("oct") {
        return Err("symmetric (kty oct) keys are refused in a JWKS".into());
    }
    let jwk: Jwk = serde_json::from_value(entry.clone())
        .map_err(|_| "unsupported key type or malformed key".to_string())?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signature key (use is not \"sig\")".into()),
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err("key_ops does not include \"verify\"".into());
    }
    let declared = jwk.common.key_algorithm;
    let alg = match (&jwk.algorithm, declared) {
        (AlgorithmParameters::RSA(rsa), _) => {
            let bits = b64url_decode(&rsa.n)
                .map(|n| {
                    let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
                    n.first()
                        .map_or(0, |b| (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize))
                })
                .ok_or("RSA modulus is not base64url")?;
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {bits} bits refused (at least {MIN_RSA_BITS})"
                ));
            }
            match declared {
                None | Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                Some(KeyAlgorithm::RS384) => Algorithm::RS384,
                Some(KeyAlgorithm::RS512) => Algorithm::RS512,
                Some(KeyAlgorithm::PS256) => Algorithm::PS256,
                Some(KeyAlgorithm::PS384) => Algorithm::PS384,
                Some(KeyAlgorithm::PS512) => Algorithm::PS512,
                Some(other) => return Err(format!("kty RSA cannot verify alg {other}")),
            }
        }
        (AlgorithmParameters::EllipticCurve(ec), _) => {
            let alg = match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err(format!("curve {:?} is not supported", ec.curve)),
            };
            match declared {
                None => alg,
                Some(d) if d.to_string() == format!("{alg:?}") => alg,
                Some(other) => {
                    return Err(format!(
                        "kty EC on {:?} cannot verify alg {other}",
                        ec.curve
                    ));
                }
            }
        }
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(KeyAlgorithm::EdDSA))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        (AlgorithmParameters::OctetKeyPair(_), _) => {
            return Err("only Ed25519 OKP keys with alg EdDSA are supported".into());
        }
        (AlgorithmParameters::OctetKey(_), _) => {
            return Err("symmetric (kty oct) keys are refused in a JWKS".into());
        }
    };
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(VerifyKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
    })
}

/// A JWKS URL (`http://` or `https://`). Debug and Display print it
/// without credentials or query, which may carry secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct JwksUrl(reqwest::Url);

impl JwksUrl {
    /// Parses `url`; it must be `http(s)://host...`.
    pub fn parse(url: &str) -> Result<Self, AuthError> {
        let parsed = reqwest::Url::parse(url.trim())
            .map_err(|e| AuthError::Config(format!("auth.jwks_url is not a URL ({e})")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(AuthError::Config(
                "auth.jwks_url must be an http:// or https:// URL with a host".into(),
            ));
        }
        Ok(Self(parsed))
    }

    /// `scheme://host:port/path`, with `***` for credentials and query.
    pub fn redacted(&self) -> String {
        let u = &self.0;
        let creds = if u.username().is_empty() && u.password().is_none() {
            ""
        } else {
            "***@"
        };
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        let query = if u.query().is_some() { "?***" } else { "" };
        format!(
            "{}://{creds}{}{port}{}{query}",
            u.scheme(),
            u.host_str().unwrap_or_default(),
            u.path()
        )
    }

    /// Whether the keys would travel unencrypted to another machine.
    fn is_plain_http_off_host(&self) -> bool {
        self.0.scheme() == "http"
            && !matches!(self.0.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
    }
}

impl fmt::Debug for JwksUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JwksUrl({})", self.redacted())
    }
}

impl fmt::Display for JwksUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// How a JWKS URL is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksOptions {
    /// Longest wait for one fetch (connect, answer and body); also the
    /// longest a call waits for keys.
    pub timeout: Duration,
    /// How often the key set is fetched again.
    pub refresh_every: Duration,
    /// Least time between two fetches: a token with an unknown `kid`, or
    /// calls while the endpoint is down, fetch at most this often.
    pub min_refresh_interval: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(2_000),
            refresh_every: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(10),
        }
    }
}

/// Keeps the periodic JWKS refresh running; dropping it stops it.
#[must_use = "dropping the handle stops the periodic refresh"]
#[derive(Debug, Default)]
pub struct RefreshHandle(Option<tokio::task::AbortHandle>);

impl Drop for RefreshHandle {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

#[derive(Default)]
struct State {
    keys: Option<Arc<KeySet>>,
    last_attempt: Option<Instant>,
    in_flight: bool,
}

/// A JWKS URL and its cached key set.
pub(crate) struct Remote {
    url: JwksUrl,
    client: reqwest::Client,
    options: JwksOptions,
    state: Mutex<State>,
    /// Bumped after every fetch attempt, so that calls can wait for one.
    attempts: watch::Sender<u64>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("options", &self.options)
            .field("keys", &self.keys().map(|k| k.len()))
            .finish()
    }
}

impl Remote {
    /// No fetch yet: [`Remote::refresh`] or [`Remote::spawn_refresh`] start one.
    pub fn new(url: JwksUrl, options: JwksOptions) -> Result<Self, AuthError> {
        if options.timeout.is_zero() || options.refresh_every.is_zero() {
            return Err(AuthError::Config(
                "auth.jwks_timeout_ms and auth.jwks_refresh_secs must be at least 1".into(),
            ));
        }
        if url.is_plain_http_off_host() {
            tracing::warn!(url = %url, "auth.jwks_url is plain http: keys can be replaced in transit; use https");
        }
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("engram/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AuthError::Config(format!("jwks http client: {e}")))?;
        Ok(Self {
            url,
            client,
            options,
            state: Mutex::new(State::default()),
            attempts: watch::channel(0).0,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached key set, if one was ever fetched.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.state().keys.clone()
    }

    /// The fetch options.
    pub fn options(&self) -> JwksOptions {
        self.options
    }

    /// When a call refused for missing keys should retry: when the next
    /// fetch may start, and at least a second from now.
    pub fn retry_after(&self) -> Duration {
        let st = self.state();
        let next = st.last_attempt.map_or(Duration::ZERO, |t| {
            self.options
                .min_refresh_interval
                .saturating_sub(t.elapsed())
        });
        Duration::from_secs(next.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Starts a fetch unless one is running (then joins it) or one started
    /// less than `min_refresh_interval` ago (then returns `None`). The
    /// receiver changes when the fetch ends, successful or not.
    pub fn refresh(self: &Arc<Self>) -> Option<watch::Receiver<u64>> {
        let mut st = self.state();
        if st.in_flight {
            return Some(self.attempts.subscribe());
        }
        if st
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.options.min_refresh_interval)
        {
            return None;
        }
        // Without a runtime (a synchronous caller) there is nothing to run it.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        st.in_flight = true;
        st.last_attempt = Some(Instant::now());
        let rx = self.attempts.subscribe();
        drop(st);
        // The fetch runs on its own: a call that stops waiting for it (its
        // deadline passed, or the client went away) does not cancel it.
        let me = Arc::clone(self);
        runtime.spawn(async move { me.fetch().await });
        Some(rx)
    }

    /// Waits until the fetch `rx` belongs to ends, or `deadline`.
    pub async fn wait(mut rx: watch::Receiver<u64>, deadline: tokio::time::Instant) {
        let _ = tokio::time::timeout_at(deadline, rx.changed()).await;
    }

    /// Fetches the key set now and every `refresh_every` (every
    /// `min_refresh_interval` while none was ever fetched), until the
    /// handle or the verifier is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) -> RefreshHandle {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: the JWKS is fetched on demand only");
            return RefreshHandle(None);
        };
        let weak = Arc::downgrade(self);
        let task = runtime.spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                if let Some(rx) = me.refresh() {
                    let deadline = tokio::time::Instant::now() + me.options.timeout * 2;
                    Remote::wait(rx, deadline).await;
                }
                let pause = if me.keys().is_some() {
                    me.options.refresh_every
                } else {
                    me.options.min_refresh_interval
                };
                drop(me);
                tokio::time::sleep(pause).await;
            }
        });
        RefreshHandle(Some(task.abort_handle()))
    }

    async fn fetch(&self) {
        // Clears `in_flight` and wakes the waiters however the fetch ends.
        struct Done<'a>(&'a Remote);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.state().in_flight = false;
                self.0.attempts.send_modify(|n| *n += 1);
            }
        }
        let _done = Done(self);
        let started = Instant::now();
        let result = match tokio::time::timeout(self.options.timeout, self.download()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?}", self.options.timeout)),
        };
        match result {
            Ok((set, skipped)) => {
                if !skipped.is_empty() {
                    tracing::warn!(url = %self.url, skipped = %skipped.join("; "), "jwks keys skipped");
                }
                let mut st = self.state();
                let changed = st.keys.as_ref().is_none_or(|old| old.kids() != set.kids());
                if changed {
                    tracing::info!(url = %self.url, kids = ?set.kids(), elapsed_ms = started.elapsed().as_millis() as u64, "jwks loaded");
                } else {
                    tracing::debug!(url = %self.url, "jwks refreshed, unchanged");
                }
                st.keys = Some(Arc::new(set));
            }
            Err(error) => {
                let kept = self.state().keys.is_some();
                tracing::warn!(url = %self.url, %error, kept_last_good_keys = kept, "jwks fetch failed");
            }
        }
    }

    async fn download(&self) -> Result<(KeySet, Vec<String>), String> {
        // reqwest errors print the URL, which may hold credentials.
        let clean = |e: reqwest::Error| {
            let e = e.without_url();
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            msg
        };
        let mut response = self
            .client
            .get(self.url.0.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(clean)?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(format!("jwks larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(clean)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("jwks larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        parse_jwks(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_printed_without_secrets() {
        let u = JwksUrl::parse("https://user:hunter2@idp.example:8443/keys?token=s3cret").unwrap();
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("s3cret"),
                "{shown}"
            );
            assert!(!shown.contains("user"), "{shown}");
            assert!(shown.contains("idp.example:8443/keys"), "{shown}");
        }
        assert!(JwksUrl::parse("ftp://idp.example/keys").is_err());
        assert!(JwksUrl::parse("file:///etc/keys.json").is_err());
        assert!(JwksUrl::parse("not a url").is_err());
        assert!(
            !JwksUrl::parse("http://127.0.0.1:1/k")
                .unwrap()
                .is_plain_http_off_host()
        );
        assert!(
            JwksUrl::parse("http://idp/k")
                .unwrap()
                .is_plain_http_off_host()
        );
    }

    #[test]
    fn documents_without_keys_or_json_are_refused() {
        assert!(parse_jwks(b"nope").is_err());
        assert!(parse_jwks(b"{}").is_err());
        assert!(parse_jwks(b"{\"keys\":[]}").is_err());
        let e = parse_jwks(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#)
            .err()
            .unwrap();
        assert!(e.contains("symmetric"), "{e}");
    }
}
