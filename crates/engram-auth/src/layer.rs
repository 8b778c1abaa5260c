//! The tower layer that authenticates every gRPC call.

use crate::{AuthError, JwtVerifier};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Paths reachable without a token: probes and tooling (gRPC health and
/// reflection, the OpenAPI document) must work before a client has
/// credentials.
const PUBLIC_PREFIXES: &[&str] = &["/grpc.health.v1.", "/grpc.reflection.", "/openapi.json"];

/// How a refused call is answered: the refusal and the request's headers
/// (which say whether the caller speaks gRPC, grpc-web or plain HTTP) give
/// the response. The server supplies it, so that a refusal is rendered by
/// the same mapping as every other error of the surface.
pub type Refusal =
    Arc<dyn Fn(AuthError, &http::HeaderMap) -> http::Response<tonic::body::Body> + Send + Sync>;

/// Verifies `authorization: Bearer <jwt>` and stores the [`crate::Claims`]
/// in the request extensions; refuses through the [`Refusal`] otherwise
/// (UNAUTHENTICATED, or UNAVAILABLE while a JWKS URL has not answered yet).
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Arc<JwtVerifier>,
    refuse: Refusal,
}

impl std::fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLayer")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// A layer verifying with `verifier`, answering refusals with `refuse`.
    pub fn new(verifier: Arc<JwtVerifier>, refuse: Refusal) -> Self {
        Self { verifier, refuse }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
            refuse: Arc::clone(&self.refuse),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<JwtVerifier>,
    refuse: Refusal,
}

/// The token of `authorization: Bearer <jwt>`. The header's length is
/// checked before anything else looks at it, so an oversized header costs
/// no parsing; its value is never logged.
pub(crate) fn bearer(headers: &http::HeaderMap, max_token_bytes: usize) -> Result<&str, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if value.len() > max_token_bytes + "Bearer ".len() {
        return Err(AuthError::TooLarge {
            limit: max_token_bytes,
        });
    }
    // Two headers: which one would a proxy in front of us have checked?
    if values.next().is_some() {
        return Err(AuthError::Malformed("more than one authorization header"));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization header is not visible ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or(AuthError::Malformed("expected `Bearer <jwt>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("expected `Bearer <jwt>`"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::Malformed("empty bearer token"));
    }
    Ok(token)
}

/// What the layer decides for a call with `headers`.
pub(crate) async fn authenticate(
    headers: &http::HeaderMap,
    verifier: &JwtVerifier,
) -> Result<crate::Claims, AuthError> {
    let token = bearer(headers, verifier.max_token_bytes())?;
    verifier.verify(token).await
}

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(req));
        }
        // The service that was polled ready goes into the future; a clone
        // stays for the next call (verification may wait for keys).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let refuse = Arc::clone(&self.refuse);
        Box::pin(async move {
            match authenticate(req.headers(), &verifier).await {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                    inner.call(req).await
                }
                Err(e) => {
                    tracing::debug!(path = %req.uri().path(), reason = e.reason(), error = %e, "refused unauthenticated call");
                    Ok(refuse(e, req.headers()))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuthConfig, Claims, KeySource, mint_hs256};
    use engram_testkit::text::{hostile_text, long_text};
    use http::{HeaderMap, HeaderValue};
    use proptest::prelude::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const RS_PUBLIC: &[u8] = include_bytes!("../testdata/rs256-public.pem");
    const ES_PUBLIC: &[u8] = include_bytes!("../testdata/es256-public.pem");
    const RS_PRIVATE: &[u8] = include_bytes!("../testdata/rs256-private.pem");

    fn verifiers() -> Vec<JwtVerifier> {
        let rsa = jsonwebtoken::EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap();
        let mut jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&rsa, jsonwebtoken::Algorithm::RS256)
                .unwrap();
        jwk.common.key_id = Some("k1".into());
        let doc = serde_json::json!({ "keys": [jwk] }).to_string();
        [
            KeySource::Hs256Secret(SECRET.to_vec()),
            KeySource::Rs256Pem(RS_PUBLIC.to_vec()),
            KeySource::Es256Pem(ES_PUBLIC.to_vec()),
            KeySource::Jwks(doc),
        ]
        .into_iter()
        .map(|k| JwtVerifier::new(AuthConfig::new(k)).unwrap())
        .collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn headers(value: HeaderValue) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value);
        h
    }

    fn valid_token() -> String {
        let claims = Claims {
            org_id: "org".into(),
            user_id: None,
            sub: Some("u".into()),
            session_id: None,
            role: None,
            exp: jsonwebtoken::get_current_timestamp() + 600,
            iat: None,
            iss: None,
            aud: None,
        };
        mint_hs256(SECRET, &claims).unwrap()
    }

    /// The verdict on `value` from every verifier: a refusal, which is
    /// UNAUTHENTICATED (never INTERNAL or UNKNOWN), or, for a valid token,
    /// claims.
    fn refused_everywhere(
        rt: &tokio::runtime::Runtime,
        h: &HeaderMap,
    ) -> Result<(), TestCaseError> {
        for v in verifiers() {
            match rt.block_on(authenticate(h, &v)) {
                Err(e) => {
                    prop_assert!(e.is_refusal(), "{:?}", e);
                }
                Ok(c) => prop_assert!(false, "accepted {:?}", c),
            }
        }
        Ok(())
    }

    #[test]
    fn header_shapes() {
        let rt = runtime();
        let v = &verifiers()[0];
        let token = valid_token();
        let ok =
            |s: &str| rt.block_on(authenticate(&headers(HeaderValue::from_str(s).unwrap()), v));
        assert!(ok(&format!("Bearer {token}")).is_ok());
        assert!(ok(&format!("bearer   {token}  ")).is_ok());
        assert_eq!(
            rt.block_on(authenticate(&HeaderMap::new(), v)),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            ok(&format!("Basic {token}")),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(ok(&token), Err(AuthError::Malformed(_))));
        assert!(matches!(ok("Bearer "), Err(AuthError::Malformed(_))));
        let mut two = headers(HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        two.append(
            http::header::AUTHORIZATION,
            HeaderValue::from_str("Bearer x.y.z").unwrap(),
        );
        assert!(matches!(
            rt.block_on(authenticate(&two, v)),
            Err(AuthError::Malformed(_))
        ));
        let latin1 = HeaderValue::from_bytes(b"Bearer \xe9t\xe9").unwrap();
        assert!(matches!(
            rt.block_on(authenticate(&headers(latin1), v)),
            Err(AuthError::Malformed(_))
        ));
        let huge = format!("Bearer {}", "a".repeat(1 << 20));
        assert_eq!(
            ok(&huge),
            Err(AuthError::TooLarge {
                limit: crate::DEFAULT_MAX_TOKEN_BYTES
            })
        );
    }

    /// base64url segments, some of them encoding JSON headers with every
    /// algorithm name an attacker would try.
    fn segments() -> impl Strategy<Value = String> {
        let b64 = "[A-Za-z0-9_-]{0,300}";
        let alg = prop::sample::select(vec![
            "none", "None", "HS256", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA", "",
            "RSA-OAEP", "\u{0}",
        ]);
        let header =
            (alg, prop::option::of("[a-z0-9]{0,8}"), any::<bool>()).prop_map(|(alg, kid, crit)| {
                let mut h = serde_json::json!({ "alg": alg, "typ": "JWT" });
                if let Some(k) = kid {
                    h["kid"] = k.into();
                }
                if crit {
                    h["crit"] = serde_json::json!(["b64"]);
                }
                b64url(h.to_string().as_bytes())
            });
        let body = hostile_text().prop_map(|t| {
            b64url(
                serde_json::json!({"org_id": t, "exp": u64::MAX / 2})
                    .to_string()
                    .as_bytes(),
            )
        });
        prop_oneof![
            (b64, b64, b64).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
            (header.clone(), b64, b64).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
            (header, body, b64).prop_map(|(a, b, c)| format!("{a}.{b}.{c}")),
            prop::collection::vec(b64, 0..8).prop_map(|v| v.join(".")),
        ]
    }

    fn b64url(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_header_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            let rt = runtime();
            // What the transport could hand us: only valid header values.
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                refused_everywhere(&rt, &headers(value))?;
            }
            let mut prefixed = b"Bearer ".to_vec();
            prefixed.extend_from_slice(&bytes);
            if let Ok(value) = HeaderValue::from_bytes(&prefixed) {
                refused_everywhere(&rt, &headers(value))?;
            }
        }

        #[test]
        fn hostile_and_huge_token_strings_are_refused(
            text in prop_oneof![6 => hostile_text(), 1 => long_text(20_000)],
        ) {
            let rt = runtime();
            for v in verifiers() {
                let e = rt.block_on(v.verify(&text)).expect_err("refused");
                prop_assert!(e.is_refusal(), "{:?}", e);
                if text.len() > crate::DEFAULT_MAX_TOKEN_BYTES {
                    prop_assert!(matches!(e, AuthError::TooLarge { .. }), "{:?}", e);
                }
            }
            if let Ok(value) = HeaderValue::from_str(&format!("Bearer {text}")) {
                refused_everywhere(&rt, &headers(value))?;
            }
        }

        #[test]
        fn random_base64_segments_are_refused(token in segments()) {
            let rt = runtime();
            for v in verifiers() {
                let e = rt.block_on(v.verify(&token)).expect_err("refused");
                prop_assert!(e.is_refusal(), "{:?}", e);
            }
            let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
            refused_everywhere(&rt, &headers(value))?;
        }
    }
}
