//! Key configuration and token verification.

use crate::AuthError;
use crate::jwks::{JwksOptions, JwksUrl, KeySet, Lookup, RefreshHandle, Remote, VerifyKey};
use crate::token::{self, TokenHeader};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;
use std::sync::Arc;

/// Longest bearer token accepted by default, bytes. Real tokens are well
/// under 2 KiB; the HTTP/2 transport refuses header lists over 16 KiB.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest token lifetime accepted by default: 30 days.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECS: u64 = 30 * 24 * 3600;

/// The claims Engram reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant. Required.
    pub org_id: String,
    /// End user; falls back to `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Subject (used as user id when `user_id` is absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Default session for calls that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Role inside the workspace (viewer, member, admin, owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Expiry, seconds since the epoch. Required.
    pub exp: u64,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience (the first, when the token names several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// The end user of the token: `user_id`, else `sub`.
    pub fn user(&self) -> Option<&str> {
        self.user_id
            .as_deref()
            .or(self.sub.as_deref())
            .filter(|s| !s.is_empty())
    }
}

/// Where verification keys come from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Shared HS256 secret (development, single-team deployments).
    Hs256Secret(Vec<u8>),
    /// RS256 public key, PEM.
    Rs256Pem(Vec<u8>),
    /// ES256 public key, PEM.
    Es256Pem(Vec<u8>),
    /// A JWKS document (RSA, EC and Ed25519 keys selected by `kid`).
    Jwks(String),
    /// A JWKS document fetched from a URL, cached and refreshed
    /// ([`AuthConfig::jwks`]).
    JwksUrl(JwksUrl),
}

/// Never prints the secret (nor key material: it is not needed to debug).
impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Hs256Secret(s) => write!(f, "Hs256Secret(<redacted, {} bytes>)", s.len()),
            KeySource::Rs256Pem(p) => write!(f, "Rs256Pem(<{} bytes>)", p.len()),
            KeySource::Es256Pem(p) => write!(f, "Es256Pem(<{} bytes>)", p.len()),
            KeySource::Jwks(d) => write!(f, "Jwks(<{} bytes>)", d.len()),
            KeySource::JwksUrl(u) => write!(f, "JwksUrl({u})"),
        }
    }
}

/// Verification settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The keys.
    pub keys: KeySource,
    /// Required `iss`, if any (a token without `iss` is then refused).
    pub issuer: Option<String>,
    /// Required `aud`, if any (a token without `aud` is then refused).
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and the lifetime cap, seconds.
    pub leeway_secs: u64,
    /// Tokens whose `exp` is more than this after their `iat`, or after
    /// now, are refused, seconds.
    pub max_token_lifetime_secs: u64,
    /// Longest token accepted, bytes; longer ones are refused before any
    /// parsing.
    pub max_token_bytes: usize,
    /// How a [`KeySource::JwksUrl`] is fetched.
    pub jwks: JwksOptions,
}

impl AuthConfig {
    /// `keys` with the default limits: no issuer or audience, 30 s leeway,
    /// [`DEFAULT_MAX_TOKEN_LIFETIME_SECS`], [`DEFAULT_MAX_TOKEN_BYTES`].
    pub fn new(keys: KeySource) -> Self {
        Self {
            keys,
            issuer: None,
            audience: None,
            leeway_secs: 30,
            max_token_lifetime_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            jwks: JwksOptions::default(),
        }
    }
}

#[derive(Clone)]
enum Keys {
    /// Keys known at start-up.
    Static(Arc<KeySet>),
    /// Keys of a JWKS URL.
    Remote(Arc<Remote>),
}

/// Verifies tokens against one [`AuthConfig`].
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
    max_token_lifetime_secs: u64,
    max_token_bytes: usize,
}

/// Shows the key source's kind and size, never a secret.
impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("JwtVerifier");
        match &self.keys {
            Keys::Static(set) => d.field("keys", &set.len()),
            Keys::Remote(remote) => d.field("jwks", remote),
        };
        d.field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("max_token_lifetime_secs", &self.max_token_lifetime_secs)
            .finish()
    }
}

/// Algorithms a public key set may hold; HMAC never (see [`crate::jwks`]).
fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

impl JwtVerifier {
    /// Builds a verifier; fails when a key cannot be parsed or a limit is
    /// out of range. A JWKS URL is not fetched here: call
    /// [`JwtVerifier::spawn_refresh`] (or let the first call fetch it).
    pub fn new(config: AuthConfig) -> Result<Self, AuthError> {
        let bad = |e: jsonwebtoken::errors::Error| AuthError::Config(e.to_string());
        let single = |alg, key| {
            Keys::Static(Arc::new(KeySet::new(vec![VerifyKey {
                kid: None,
                alg,
                key,
            }])))
        };
        if config.max_token_lifetime_secs == 0 {
            return Err(AuthError::Config(
                "auth.max_token_lifetime_secs must be at least 1".into(),
            ));
        }
        if config.max_token_bytes < 256 {
            return Err(AuthError::Config(
                "auth.max_token_bytes must be at least 256".into(),
            ));
        }
        let keys = match &config.keys {
            KeySource::Hs256Secret(s) => {
                if s.len() < 16 {
                    return Err(AuthError::Config(
                        "hs256 secret must be at least 16 bytes".into(),
                    ));
                }
                single(Algorithm::HS256, DecodingKey::from_secret(s))
            }
            KeySource::Rs256Pem(p) => {
                single(Algorithm::RS256, DecodingKey::from_rsa_pem(p).map_err(bad)?)
            }
            KeySource::Es256Pem(p) => {
                single(Algorithm::ES256, DecodingKey::from_ec_pem(p).map_err(bad)?)
            }
            KeySource::Jwks(doc) => {
                let (set, skipped) = crate::jwks::parse_jwks(doc.as_bytes())
                    .map_err(|e| AuthError::Config(format!("jwks: {e}")))?;
                if !skipped.is_empty() {
                    tracing::warn!(skipped = %skipped.join("; "), "jwks keys skipped");
                }
                Keys::Static(Arc::new(set))
            }
            KeySource::JwksUrl(url) => {
                Keys::Remote(Arc::new(Remote::new(url.clone(), config.jwks)?))
            }
        };
        Ok(Self {
            keys,
            issuer: config.issuer,
            audience: config.audience,
            leeway_secs: config.leeway_secs,
            max_token_lifetime_secs: config.max_token_lifetime_secs,
            max_token_bytes: config.max_token_bytes,
        })
    }

    /// Longest token accepted, bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// For a JWKS URL: fetches the key set now and keeps refreshing it
    /// every `jwks.refresh_every` (every `jwks.min_refresh_interval` while
    /// it was never fetched) until the handle is dropped. Nothing to do
    /// for the other key sources. Needs a tokio runtime.
    pub fn spawn_refresh(&self) -> RefreshHandle {
        match &self.keys {
            Keys::Remote(remote) => remote.spawn_refresh(),
            Keys::Static(_) => RefreshHandle::default(),
        }
    }

    /// Whether keys are loaded (always, except for a JWKS URL that never
    /// answered).
    pub fn has_keys(&self) -> bool {
        match &self.keys {
            Keys::Static(_) => true,
            Keys::Remote(remote) => remote.keys().is_some(),
        }
    }

    /// Verifies `token` and returns its claims.
    ///
    /// Refuses, before any key lookup or signature check, a token over
    /// `max_token_bytes`, a malformed one, `alg: none`, and an algorithm
    /// the keys do not verify. With a JWKS URL, waits (at most
    /// `jwks.timeout`) for a key set when none is loaded, and for a refresh
    /// when `kid` is unknown (at most one per `jwks.min_refresh_interval`).
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = token::parse(token, self.max_token_bytes)?;
        match &self.keys {
            Keys::Static(set) => self.verify_with(set, &header, token),
            Keys::Remote(remote) => {
                // No fetch for what a public key set can never verify.
                if !is_asymmetric(header.alg) {
                    return Err(AuthError::AlgorithmRefused {
                        alg: format!("{:?}", header.alg),
                        accepted: "the JWKS holds public keys only (RS*, PS*, ES256, ES384, EdDSA)"
                            .into(),
                    });
                }
                let set = remote_keys(remote, &header).await?;
                self.verify_with(&set, &header, token)
            }
        }
    }

    fn verify_with(
        &self,
        set: &KeySet,
        header: &TokenHeader,
        token: &str,
    ) -> Result<Claims, AuthError> {
        let alg = format!("{:?}", header.alg);
        let keys = match set.lookup(header) {
            Lookup::Found(keys) => keys,
            Lookup::WrongAlgorithm(key_alg) => {
                return Err(AuthError::AlgorithmRefused {
                    alg,
                    accepted: format!("the key named by kid verifies {key_alg:?} only"),
                });
            }
            Lookup::UnknownKid => return Err(AuthError::UnknownKey),
            Lookup::NoKeyForAlgorithm => {
                return Err(AuthError::AlgorithmRefused {
                    alg,
                    accepted: format!("this server verifies {}", set.algorithms()),
                });
            }
        };
        let validation = self.validation(header.alg);
        for key in keys {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return self.claims(data.claims),
                // Another key of the same algorithm may have signed it.
                Err(e) if signature_failed(e.kind()) => continue,
                Err(e) => return Err(map_decode_error(e.kind())),
            }
        }
        Err(AuthError::BadSignature)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_secs;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        // Without these, a token that simply leaves the claim out passes.
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// The claims of a token whose signature, `exp`, `nbf`, `iss` and
    /// `aud` verified: checks `org_id`, the claim types and the lifetime.
    fn claims(&self, map: Map<String, Value>) -> Result<Claims, AuthError> {
        let org_id = match map.get("org_id") {
            None | Some(Value::Null) => {
                return Err(AuthError::Claim(
                    "org_id claim is missing: every token names its tenant".into(),
                ));
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(AuthError::Claim("org_id claim is empty".into()));
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(AuthError::Claim(format!(
                    "org_id claim must be a string, not {}",
                    json_type(other)
                )));
            }
        };
        let exp = seconds(&map, "exp")?
            .ok_or_else(|| AuthError::Claim("exp claim is required".into()))?;
        let iat = seconds(&map, "iat")?;
        let now = jsonwebtoken::get_current_timestamp();
        let max = self.max_token_lifetime_secs;
        if exp > now.saturating_add(max).saturating_add(self.leeway_secs)
            || iat.is_some_and(|iat| exp.saturating_sub(iat) > max)
        {
            return Err(AuthError::LifetimeTooLong { max_secs: max });
        }
        let aud = match map.get("aud") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                items.first().and_then(|v| v.as_str()).map(str::to_owned)
            }
            Some(_) => {
                return Err(AuthError::Claim(
                    "aud claim must be a string or an array of strings".into(),
                ));
            }
        };
        Ok(Claims {
            org_id,
            user_id: string(&map, "user_id")?,
            sub: string(&map, "sub")?,
            session_id: string(&map, "session_id")?,
            role: string(&map, "role")?,
            exp,
            iat,
            iss: string(&map, "iss")?,
            aud,
        })
    }
}

/// The keys of `remote` for a token with `header`: the cached set, after
/// waiting (at most the fetch timeout) for a fetch when none is cached or
/// when the token's `kid` is unknown (a key rotation).
async fn remote_keys(remote: &Arc<Remote>, header: &TokenHeader) -> Result<Arc<KeySet>, AuthError> {
    let deadline = tokio::time::Instant::now() + remote.options().timeout;
    if let Some(keys) = remote.keys() {
        if !matches!(keys.lookup(header), Lookup::UnknownKid) {
            return Ok(keys);
        }
        if let Some(rx) = remote.refresh() {
            Remote::wait(rx, deadline).await;
        }
        return Ok(remote.keys().unwrap_or(keys));
    }
    if let Some(rx) = remote.refresh() {
        Remote::wait(rx, deadline).await;
    }
    remote.keys().ok_or_else(|| AuthError::KeysUnavailable {
        retry_after: remote.retry_after(),
    })
}

/// Errors meaning "this key did not sign it".
fn signature_failed(kind: &ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
    )
}

fn map_decode_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        // jsonwebtoken reports a claim of the wrong type as missing.
        ErrorKind::MissingRequiredClaim(c) => AuthError::Claim(match c.as_str() {
            "exp" | "nbf" => format!("{c} claim is required: a number of seconds"),
            "aud" => "aud claim is required: a string or an array of strings".into(),
            _ => format!("{c} claim is required: a string"),
        }),
        ErrorKind::InvalidClaimFormat(c) => {
            AuthError::Claim(format!("{c} claim must be a number of seconds"))
        }
        ErrorKind::InvalidIssuer => AuthError::Invalid("issuer (iss) is not accepted".into()),
        ErrorKind::InvalidAudience => AuthError::Invalid("audience (aud) is not accepted".into()),
        ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidToken => {
            AuthError::Malformed("JWT payload is not a base64url JSON object")
        }
        _ => AuthError::Invalid("token does not verify".into()),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string(map: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(AuthError::Claim(format!(
            "{name} claim must be a string, not {}",
            json_type(other)
        ))),
    }
}

/// A NumericDate claim: whole seconds, or fractional ones rounded as
/// jsonwebtoken rounds them when it checks `exp`.
fn seconds(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    let bad = || AuthError::Claim(format!("{name} claim must be a number of seconds"));
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(Some(u)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                Ok(Some(f.round() as u64))
            }
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

/// Mints an HS256 token (development tokens, tests, benchmarks).
pub fn mint_hs256(secret: &[u8], claims: &Claims) -> Result<String, AuthError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| AuthError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::Jwk;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const RS_PRIVATE: &[u8] = include_bytes!("../testdata/rs256-private.pem");
    const RS_PUBLIC: &[u8] = include_bytes!("../testdata/rs256-public.pem");
    const RS_OTHER_PRIVATE: &[u8] = include_bytes!("../testdata/rs256-other-private.pem");
    const ES_PRIVATE: &[u8] = include_bytes!("../testdata/es256-private.pem");
    const ES_PUBLIC: &[u8] = include_bytes!("../testdata/es256-public.pem");

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            org_id: "org_a".into(),
            user_id: Some("u1".into()),
            sub: None,
            session_id: None,
            role: None,
            exp,
            iat: None,
            iss: None,
            aud: None,
        }
    }

    /// Claims as raw JSON, for shapes `Claims` cannot express.
    fn raw(extra: Value) -> Value {
        let mut v = serde_json::json!({"org_id": "org_a", "sub": "u1", "exp": now() + 60});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn verifier(keys: KeySource) -> JwtVerifier {
        JwtVerifier::new(AuthConfig::new(keys)).unwrap()
    }

    fn hs() -> JwtVerifier {
        verifier(KeySource::Hs256Secret(SECRET.to_vec()))
    }

    fn rs() -> JwtVerifier {
        verifier(KeySource::Rs256Pem(RS_PUBLIC.to_vec()))
    }

    fn es() -> JwtVerifier {
        verifier(KeySource::Es256Pem(ES_PUBLIC.to_vec()))
    }

    fn rs_key() -> EncodingKey {
        EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap()
    }

    fn es_key() -> EncodingKey {
        EncodingKey::from_ec_pem(ES_PRIVATE).unwrap()
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, c: &impl Serialize) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(Into::into);
        jsonwebtoken::encode(&h, c, key).unwrap()
    }

    fn hs_token(c: &impl Serialize) -> String {
        sign(Algorithm::HS256, None, &EncodingKey::from_secret(SECRET), c)
    }

    /// A JWK of the public half of `key`, with `kid`.
    fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
        let mut j = Jwk::from_encoding_key(key, alg).unwrap();
        j.common.key_id = Some(kid.into());
        serde_json::to_value(j).unwrap()
    }

    fn jwks(keys: Vec<Value>) -> KeySource {
        KeySource::Jwks(serde_json::json!({ "keys": keys }).to_string())
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with a hand-written header and the signature of `sig_of`.
    fn forge(header: Value, claims: &Value, sig: &str) -> String {
        format!(
            "{}.{}.{sig}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    }

    #[tokio::test]
    async fn accepts_a_valid_token() {
        let t = hs_token(&claims(now() + 60));
        let c = hs().verify(&t).await.unwrap();
        assert_eq!((c.org_id.as_str(), c.user()), ("org_a", Some("u1")));
    }

    #[tokio::test]
    async fn rejects_expired_wrong_key_and_garbage() {
        let t = hs_token(&claims(now() - 120));
        assert_eq!(hs().verify(&t).await, Err(AuthError::Expired));
        let other = EncodingKey::from_secret(b"another-secret-another-secret!!");
        let t = sign(Algorithm::HS256, None, &other, &claims(now() + 60));
        assert_eq!(hs().verify(&t).await, Err(AuthError::BadSignature));
        assert!(matches!(
            hs().verify("abc").await,
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn short_secret_and_zero_limits_are_config_errors() {
        let r = JwtVerifier::new(AuthConfig::new(KeySource::Hs256Secret(b"short".to_vec())));
        assert!(matches!(r, Err(AuthError::Config(_))));
        let r = JwtVerifier::new(AuthConfig {
            max_token_lifetime_secs: 0,
            ..AuthConfig::new(KeySource::Hs256Secret(SECRET.to_vec()))
        });
        assert!(matches!(r, Err(AuthError::Config(_))));
    }

    #[tokio::test]
    async fn issuer_and_audience_are_enforced_and_required_when_configured() {
        let v = JwtVerifier::new(AuthConfig {
            issuer: Some("engram".into()),
            audience: Some("memory".into()),
            ..AuthConfig::new(KeySource::Hs256Secret(SECRET.to_vec()))
        })
        .unwrap();
        let good = raw(serde_json::json!({"iss": "engram", "aud": ["other", "memory"]}));
        let c = v.verify(&hs_token(&good)).await.unwrap();
        assert_eq!(c.aud.as_deref(), Some("other"));
        let cases = [
            (
                serde_json::json!({"iss": "someone-else", "aud": "memory"}),
                "issuer",
            ),
            (
                serde_json::json!({"iss": "engram", "aud": "other"}),
                "audience",
            ),
            // Leaving a claim out must not skip its check.
            (
                serde_json::json!({"aud": "memory"}),
                "iss claim is required",
            ),
            (
                serde_json::json!({"iss": "engram"}),
                "aud claim is required",
            ),
            (
                serde_json::json!({"iss": 7, "aud": "memory"}),
                "iss claim is required",
            ),
        ];
        for (extra, want) in cases {
            let e = v.verify(&hs_token(&raw(extra.clone()))).await.unwrap_err();
            assert!(e.to_string().contains(want), "{extra}: {e}");
            assert!(e.is_refusal());
        }
    }

    #[tokio::test]
    async fn rs256_public_key_verifies_its_tokens_only() {
        let t = sign(Algorithm::RS256, None, &rs_key(), &claims(now() + 60));
        assert_eq!(rs().verify(&t).await.unwrap().user(), Some("u1"));
        let expired = sign(Algorithm::RS256, None, &rs_key(), &claims(now() - 120));
        assert_eq!(rs().verify(&expired).await, Err(AuthError::Expired));
        let other = EncodingKey::from_rsa_pem(RS_OTHER_PRIVATE).unwrap();
        let forged = sign(Algorithm::RS256, None, &other, &claims(now() + 60));
        assert_eq!(rs().verify(&forged).await, Err(AuthError::BadSignature));
    }

    #[tokio::test]
    async fn es256_public_key_verifies_its_tokens_only() {
        let t = sign(Algorithm::ES256, None, &es_key(), &claims(now() + 60));
        assert_eq!(es().verify(&t).await.unwrap().org_id, "org_a");
        let wrong_alg = sign(Algorithm::RS256, None, &rs_key(), &claims(now() + 60));
        let e = es().verify(&wrong_alg).await.unwrap_err();
        assert_eq!(
            e,
            AuthError::AlgorithmRefused {
                alg: "RS256".into(),
                accepted: "this server verifies ES256".into()
            }
        );
    }

    #[tokio::test]
    async fn es256_token_against_an_rsa_key_is_refused() {
        let t = sign(Algorithm::ES256, None, &es_key(), &claims(now() + 60));
        assert!(matches!(
            rs().verify(&t).await,
            Err(AuthError::AlgorithmRefused { .. })
        ));
        // PS256 is the RSA family too, but not what the key is for.
        let t = sign(Algorithm::PS256, None, &rs_key(), &claims(now() + 60));
        assert!(matches!(
            rs().verify(&t).await,
            Err(AuthError::AlgorithmRefused { .. })
        ));
    }

    #[tokio::test]
    async fn hs256_token_signed_with_the_public_key_is_refused() {
        // The classic algorithm-confusion attack: the public key is public,
        // so an HS256 token keyed with it (PEM text, or its JWK) must not
        // pass a public-key verifier, whatever key source holds it.
        let pem_key = EncodingKey::from_secret(RS_PUBLIC);
        let t = sign(Algorithm::HS256, None, &pem_key, &claims(now() + 60));
        let e = rs().verify(&t).await.unwrap_err();
        assert!(matches!(e, AuthError::AlgorithmRefused { .. }), "{e}");
        assert!(e.to_string().contains("HS256"), "{e}");
        let es_pem = EncodingKey::from_secret(ES_PUBLIC);
        let t = sign(Algorithm::HS256, None, &es_pem, &claims(now() + 60));
        assert!(matches!(
            es().verify(&t).await,
            Err(AuthError::AlgorithmRefused { .. })
        ));
        let set = verifier(jwks(vec![jwk(&rs_key(), Algorithm::RS256, "k1")]));
        let doc = serde_json::json!({"keys": [jwk(&rs_key(), Algorithm::RS256, "k1")]}).to_string();
        for secret in [RS_PUBLIC, doc.as_bytes()] {
            let t = sign(
                Algorithm::HS256,
                Some("k1"),
                &EncodingKey::from_secret(secret),
                &claims(now() + 60),
            );
            assert!(matches!(
                set.verify(&t).await,
                Err(AuthError::AlgorithmRefused { .. })
            ));
        }
    }

    #[tokio::test]
    async fn unsigned_tokens_are_refused_by_every_key_source() {
        let body = raw(serde_json::json!({}));
        let sources = [
            hs(),
            rs(),
            es(),
            verifier(jwks(vec![jwk(&rs_key(), Algorithm::RS256, "k1")])),
        ];
        for v in &sources {
            for alg in ["none", "None", "NONE"] {
                for sig in ["", "c2ln"] {
                    let t = forge(serde_json::json!({"alg": alg, "typ": "JWT"}), &body, sig);
                    assert_eq!(v.verify(&t).await, Err(AuthError::Unsigned), "{v:?} {alg}");
                    assert!(AuthError::Unsigned.is_refusal());
                }
            }
        }
    }

    #[tokio::test]
    async fn a_key_embedded_in_the_header_is_never_used() {
        // jwk/jku/x5u header parameters name the attacker's own key.
        let attacker = EncodingKey::from_rsa_pem(RS_OTHER_PRIVATE).unwrap();
        let mut h = Header::new(Algorithm::RS256);
        h.jwk = Some(Jwk::from_encoding_key(&attacker, Algorithm::RS256).unwrap());
        h.jku = Some("http://attacker.example/keys".into());
        let t = jsonwebtoken::encode(&h, &claims(now() + 60), &attacker).unwrap();
        assert_eq!(rs().verify(&t).await, Err(AuthError::BadSignature));
        let set = verifier(jwks(vec![jwk(&rs_key(), Algorithm::RS256, "k1")]));
        assert_eq!(set.verify(&t).await, Err(AuthError::BadSignature));
    }

    #[tokio::test]
    async fn lifetime_is_capped() {
        let day = 24 * 3600;
        let v = hs();
        let far = hs_token(&claims(now() + 31 * day));
        let e = v.verify(&far).await.unwrap_err();
        assert_eq!(
            e,
            AuthError::LifetimeTooLong {
                max_secs: DEFAULT_MAX_TOKEN_LIFETIME_SECS
            }
        );
        assert!(
            e.to_string().contains("auth.max_token_lifetime_secs"),
            "{e}"
        );
        assert!(e.is_refusal());
        // Issued 20 days ago for 31 days: 11 days left, still too long-lived.
        let mut c = claims(now() + 11 * day);
        c.iat = Some(now() - 20 * day);
        assert!(matches!(
            v.verify(&hs_token(&c)).await,
            Err(AuthError::LifetimeTooLong { .. })
        ));
        let mut c = claims(now() + 30 * day);
        c.iat = Some(now());
        assert!(v.verify(&hs_token(&c)).await.is_ok(), "exactly the cap");
        let absurd = hs_token(&claims(u64::MAX));
        assert!(matches!(
            v.verify(&absurd).await,
            Err(AuthError::LifetimeTooLong { .. })
        ));
        let strict = JwtVerifier::new(AuthConfig {
            max_token_lifetime_secs: 3600,
            ..AuthConfig::new(KeySource::Hs256Secret(SECRET.to_vec()))
        })
        .unwrap();
        assert!(strict.verify(&hs_token(&claims(now() + 600))).await.is_ok());
        assert!(matches!(
            strict.verify(&hs_token(&claims(now() + 7200))).await,
            Err(AuthError::LifetimeTooLong { max_secs: 3600 })
        ));
    }

    #[tokio::test]
    async fn org_id_must_be_a_non_empty_string() {
        let v = hs();
        let mut missing = raw(serde_json::json!({}));
        missing.as_object_mut().unwrap().remove("org_id");
        let cases = [
            (missing, "org_id claim is missing"),
            (
                raw(serde_json::json!({"org_id": ""})),
                "org_id claim is empty",
            ),
            (
                raw(serde_json::json!({"org_id": "  \t"})),
                "org_id claim is empty",
            ),
            (
                raw(serde_json::json!({"org_id": null})),
                "org_id claim is missing",
            ),
            (
                raw(serde_json::json!({"org_id": 42})),
                "must be a string, not a number",
            ),
            (
                raw(serde_json::json!({"org_id": ["a"]})),
                "must be a string, not an array",
            ),
            (
                raw(serde_json::json!({"org_id": {"id": "a"}})),
                "not an object",
            ),
            (raw(serde_json::json!({"org_id": true})), "not a boolean"),
        ];
        for (body, want) in cases {
            let e = v.verify(&hs_token(&body)).await.unwrap_err();
            assert!(matches!(e, AuthError::Claim(_)), "{body}: {e}");
            assert!(e.to_string().contains(want), "{body}: {e}");
            assert!(e.is_refusal(), "{body}");
        }
    }

    #[tokio::test]
    async fn other_claims_are_type_checked() {
        let v = hs();
        for (extra, want) in [
            (
                serde_json::json!({"user_id": 5}),
                "user_id claim must be a string",
            ),
            (
                serde_json::json!({"role": ["admin"]}),
                "role claim must be a string",
            ),
            (
                serde_json::json!({"exp": "tomorrow"}),
                "exp claim is required: a number",
            ),
            (serde_json::json!({"aud": 3}), "aud claim must be a string"),
            (
                serde_json::json!({"nbf": "later"}),
                "nbf claim must be a number",
            ),
        ] {
            let e = v.verify(&hs_token(&raw(extra.clone()))).await.unwrap_err();
            assert!(e.to_string().contains(want), "{extra}: {e}");
        }
        let mut body = raw(serde_json::json!({}));
        body.as_object_mut().unwrap().remove("exp");
        let e = v.verify(&hs_token(&body)).await.unwrap_err();
        assert_eq!(
            e,
            AuthError::Claim("exp claim is required: a number of seconds".into())
        );
        // Fractional NumericDates are allowed (RFC 7519 §2).
        let body = raw(serde_json::json!({"exp": now() as f64 + 60.5}));
        assert!(v.verify(&hs_token(&body)).await.is_ok());
        let body = raw(serde_json::json!({"nbf": now() + 3600}));
        assert_eq!(
            v.verify(&hs_token(&body)).await,
            Err(AuthError::NotYetValid)
        );
    }

    #[tokio::test]
    async fn oversized_tokens_are_refused_before_parsing() {
        let v = hs();
        let padded = raw(serde_json::json!({"pad": "x".repeat(DEFAULT_MAX_TOKEN_BYTES)}));
        let e = v.verify(&hs_token(&padded)).await.unwrap_err();
        assert_eq!(e, AuthError::TooLarge { limit: 8192 });
        assert!(e.is_refusal());
        // Not even a JWT: the size alone decides.
        let junk = "\u{1F600}".repeat(3000);
        assert_eq!(
            v.verify(&junk).await,
            Err(AuthError::TooLarge { limit: 8192 })
        );
    }

    #[tokio::test]
    async fn jwks_selects_by_kid_and_checks_the_key_algorithm() {
        let other = EncodingKey::from_rsa_pem(RS_OTHER_PRIVATE).unwrap();
        let v = verifier(jwks(vec![
            jwk(&rs_key(), Algorithm::RS256, "rsa-1"),
            jwk(&other, Algorithm::RS256, "rsa-2"),
            jwk(&es_key(), Algorithm::ES256, "ec-1"),
        ]));
        let c = claims(now() + 60);
        for (alg, kid, key) in [
            (Algorithm::RS256, "rsa-1", rs_key()),
            (Algorithm::RS256, "rsa-2", other.clone()),
            (Algorithm::ES256, "ec-1", es_key()),
        ] {
            let t = sign(alg, Some(kid), &key, &c);
            assert_eq!(v.verify(&t).await.unwrap().org_id, "org_a", "{kid}");
        }
        // Signed by rsa-2, claiming to be rsa-1.
        let t = sign(Algorithm::RS256, Some("rsa-1"), &other, &c);
        assert_eq!(v.verify(&t).await, Err(AuthError::BadSignature));
        // No kid: every key of the algorithm is tried.
        let t = sign(Algorithm::RS256, None, &other, &c);
        assert!(v.verify(&t).await.is_ok());
        let t = sign(Algorithm::RS256, Some("nope"), &rs_key(), &c);
        assert_eq!(v.verify(&t).await, Err(AuthError::UnknownKey));
        assert!(AuthError::UnknownKey.is_refusal());
        // An ES256 token naming the RSA key.
        let t = sign(Algorithm::ES256, Some("rsa-1"), &es_key(), &c);
        let e = v.verify(&t).await.unwrap_err();
        assert!(matches!(e, AuthError::AlgorithmRefused { .. }), "{e}");
    }

    #[tokio::test]
    async fn jwks_keys_of_the_wrong_type_or_algorithm_are_skipped() {
        let mut rsa_as_es = jwk(&rs_key(), Algorithm::RS256, "rsa-claims-es");
        rsa_as_es["alg"] = "ES256".into();
        let mut rsa_as_hs = jwk(&rs_key(), Algorithm::RS256, "rsa-claims-hs");
        rsa_as_hs["alg"] = "HS256".into();
        let mut ec_as_rs = jwk(&es_key(), Algorithm::ES256, "ec-claims-rs");
        ec_as_rs["alg"] = "RS256".into();
        let mut ec_as_es384 = jwk(&es_key(), Algorithm::ES256, "ec-claims-es384");
        ec_as_es384["alg"] = "ES384".into();
        let mut enc = jwk(&rs_key(), Algorithm::RS256, "rsa-enc");
        enc["use"] = "enc".into();
        let oct =
            serde_json::json!({"kty": "oct", "kid": "hmac", "k": b64(SECRET), "alg": "HS256"});
        let unknown = serde_json::json!({"kty": "XYZ", "kid": "alien"});
        let good = jwk(&es_key(), Algorithm::ES256, "good");
        let doc = serde_json::json!({"keys": [rsa_as_es, rsa_as_hs, ec_as_rs, ec_as_es384, enc, oct, unknown, good]});
        let (set, skipped) = crate::jwks::parse_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.kids(), vec!["good"]);
        assert_eq!(skipped.len(), 7, "{skipped:?}");
        let v = verifier(KeySource::Jwks(doc.to_string()));
        let c = claims(now() + 60);
        // Tokens naming the skipped keys, signed as each key's JWK would allow.
        let t = sign(Algorithm::RS256, Some("rsa-claims-es"), &rs_key(), &c);
        assert_eq!(v.verify(&t).await, Err(AuthError::UnknownKey));
        let t = sign(
            Algorithm::HS256,
            Some("hmac"),
            &EncodingKey::from_secret(SECRET),
            &c,
        );
        assert_eq!(v.verify(&t).await, Err(AuthError::UnknownKey));
        let t = sign(Algorithm::ES256, Some("good"), &es_key(), &c);
        assert!(v.verify(&t).await.is_ok());
        // Only unusable keys: a start-up error.
        let bad = serde_json::json!({"keys": [serde_json::json!({"kty": "oct", "k": "c2VjcmV0"})]});
        let e = JwtVerifier::new(AuthConfig::new(KeySource::Jwks(bad.to_string()))).unwrap_err();
        assert!(matches!(e, AuthError::Config(_)), "{e}");
    }

    #[test]
    fn short_rsa_keys_are_skipped() {
        // A 512-bit modulus.
        let n = b64(&[0xC1; 64]);
        let doc = serde_json::json!({"keys": [{"kty": "RSA", "kid": "weak", "n": n, "e": "AQAB"}]});
        let e = crate::jwks::parse_jwks(doc.to_string().as_bytes())
            .err()
            .unwrap();
        assert!(e.contains("512 bits"), "{e}");
    }

    #[test]
    fn garbage_pem_is_a_config_error() {
        let r = JwtVerifier::new(AuthConfig::new(KeySource::Rs256Pem(b"not a key".to_vec())));
        assert!(matches!(r, Err(AuthError::Config(_))));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let secret = b"top-secret-value-0123456789".to_vec();
        let config = AuthConfig::new(KeySource::Hs256Secret(secret.clone()));
        let v = JwtVerifier::new(config.clone()).unwrap();
        let url = JwksUrl::parse("https://bob:pa55word@idp.example/jwks?apikey=k3y").unwrap();
        let remote = JwtVerifier::new(AuthConfig::new(KeySource::JwksUrl(url.clone()))).unwrap();
        let shown = format!(
            "{config:?} {v:?} {:?} {remote:?} {:#?}",
            KeySource::Hs256Secret(secret),
            AuthConfig::new(KeySource::JwksUrl(url))
        );
        for leak in ["top-secret", "pa55word", "k3y", "bob"] {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
        // The secret's bytes as a Vec<u8> Debug would show them.
        assert!(!shown.contains("116, 111, 112"), "{shown}");
    }
}
