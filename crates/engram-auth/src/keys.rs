//! Key configuration and token verification.

use crate::AuthError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

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
    /// Audience.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Shared HS256 secret (development, single-team deployments).
    Hs256Secret(Vec<u8>),
    /// RS256 public key, PEM.
    Rs256Pem(Vec<u8>),
    /// ES256 public key, PEM.
    Es256Pem(Vec<u8>),
    /// A JWKS document (RS256/ES256 keys selected by `kid`).
    Jwks(String),
}

/// Verification settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The keys.
    pub keys: KeySource,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, seconds.
    pub leeway_secs: u64,
}

/// Verifies tokens against one [`AuthConfig`].
#[derive(Clone)]
pub struct JwtVerifier {
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    config: AuthConfig,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl JwtVerifier {
    /// Builds a verifier; fails when a key cannot be parsed.
    pub fn new(config: AuthConfig) -> Result<Self, AuthError> {
        let bad = |e: jsonwebtoken::errors::Error| AuthError::Config(e.to_string());
        let keys = match &config.keys {
            KeySource::Hs256Secret(s) => {
                if s.len() < 16 {
                    return Err(AuthError::Config(
                        "hs256 secret must be at least 16 bytes".into(),
                    ));
                }
                vec![(None, Algorithm::HS256, DecodingKey::from_secret(s))]
            }
            KeySource::Rs256Pem(p) => {
                vec![(
                    None,
                    Algorithm::RS256,
                    DecodingKey::from_rsa_pem(p).map_err(bad)?,
                )]
            }
            KeySource::Es256Pem(p) => {
                vec![(
                    None,
                    Algorithm::ES256,
                    DecodingKey::from_ec_pem(p).map_err(bad)?,
                )]
            }
            KeySource::Jwks(doc) => {
                let set: JwkSet = serde_json::from_str(doc)
                    .map_err(|e| AuthError::Config(format!("jwks: {e}")))?;
                let mut keys = Vec::new();
                for jwk in &set.keys {
                    let alg = match &jwk.algorithm {
                        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => {
                            Algorithm::ES256
                        }
                        _ => continue,
                    };
                    keys.push((
                        jwk.common.key_id.clone(),
                        alg,
                        DecodingKey::from_jwk(jwk).map_err(bad)?,
                    ));
                }
                if keys.is_empty() {
                    return Err(AuthError::Config("jwks holds no RSA or EC key".into()));
                }
                keys
            }
        };
        Ok(Self { keys, config })
    }

    /// Verifies `token` and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("undecodable header: {e}")))?;
        let (_, alg, key) = self
            .keys
            .iter()
            .find(|(kid, alg, _)| {
                *alg == header.alg && (kid.is_none() || header.kid.is_none() || *kid == header.kid)
            })
            .ok_or_else(|| {
                AuthError::Invalid(format!(
                    "algorithm {:?} or key id is not accepted",
                    header.alg
                ))
            })?;
        let mut v = Validation::new(*alg);
        v.leeway = self.config.leeway_secs;
        v.set_required_spec_claims(&["exp"]);
        match &self.config.issuer {
            Some(iss) => v.set_issuer(&[iss]),
            None => v.iss = None,
        }
        match &self.config.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
                _ => AuthError::Invalid(e.to_string()),
            }
        })?;
        if data.claims.org_id.is_empty() {
            return Err(AuthError::Invalid("org_id claim is empty".into()));
        }
        Ok(data.claims)
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

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

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

    fn config(keys: KeySource) -> AuthConfig {
        AuthConfig {
            keys,
            issuer: None,
            audience: None,
            leeway_secs: 0,
        }
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(config(KeySource::Hs256Secret(SECRET.to_vec()))).unwrap()
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[test]
    fn accepts_a_valid_token() {
        let t = mint_hs256(SECRET, &claims(now() + 60)).unwrap();
        assert_eq!(verifier().verify(&t).unwrap().org_id, "org_a");
    }

    #[test]
    fn rejects_expired_wrong_key_and_garbage() {
        let t = mint_hs256(SECRET, &claims(now() - 120)).unwrap();
        assert_eq!(verifier().verify(&t), Err(AuthError::Expired));
        let t = mint_hs256(b"another-secret-another-secret!!", &claims(now() + 60)).unwrap();
        assert!(matches!(verifier().verify(&t), Err(AuthError::Invalid(_))));
        assert!(matches!(
            verifier().verify("abc"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn short_secret_is_a_config_error() {
        let r = JwtVerifier::new(config(KeySource::Hs256Secret(b"short".to_vec())));
        assert!(matches!(r, Err(AuthError::Config(_))));
    }

    #[test]
    fn issuer_is_enforced_when_configured() {
        let mut c = claims(now() + 60);
        c.iss = Some("someone-else".into());
        let t = mint_hs256(SECRET, &c).unwrap();
        let v = JwtVerifier::new(AuthConfig {
            issuer: Some("engram".into()),
            ..config(KeySource::Hs256Secret(SECRET.to_vec()))
        })
        .unwrap();
        assert!(matches!(v.verify(&t), Err(AuthError::Invalid(_))));
    }

    fn pem_verifier(keys: KeySource) -> JwtVerifier {
        JwtVerifier::new(config(keys)).unwrap()
    }

    fn sign(alg: Algorithm, key: EncodingKey, c: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(alg), c, &key).unwrap()
    }

    const RS_PRIVATE: &[u8] = include_bytes!("../testdata/rs256-private.pem");
    const RS_PUBLIC: &[u8] = include_bytes!("../testdata/rs256-public.pem");
    const RS_OTHER_PRIVATE: &[u8] = include_bytes!("../testdata/rs256-other-private.pem");
    const ES_PRIVATE: &[u8] = include_bytes!("../testdata/es256-private.pem");
    const ES_PUBLIC: &[u8] = include_bytes!("../testdata/es256-public.pem");

    #[test]
    fn rs256_public_key_verifies_its_tokens_only() {
        let v = pem_verifier(KeySource::Rs256Pem(RS_PUBLIC.to_vec()));
        let key = EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap();
        let t = sign(Algorithm::RS256, key.clone(), &claims(now() + 60));
        assert_eq!(v.verify(&t).unwrap().user(), Some("u1"));

        let expired = sign(Algorithm::RS256, key, &claims(now() - 120));
        assert_eq!(v.verify(&expired), Err(AuthError::Expired));

        let other = EncodingKey::from_rsa_pem(RS_OTHER_PRIVATE).unwrap();
        let forged = sign(Algorithm::RS256, other, &claims(now() + 60));
        assert!(matches!(v.verify(&forged), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn es256_public_key_verifies_its_tokens_only() {
        let v = pem_verifier(KeySource::Es256Pem(ES_PUBLIC.to_vec()));
        let key = EncodingKey::from_ec_pem(ES_PRIVATE).unwrap();
        let t = sign(Algorithm::ES256, key, &claims(now() + 60));
        assert_eq!(v.verify(&t).unwrap().org_id, "org_a");

        let rs = EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap();
        let wrong_alg = sign(Algorithm::RS256, rs, &claims(now() + 60));
        assert!(matches!(v.verify(&wrong_alg), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn hs256_token_signed_with_the_public_key_is_refused() {
        // The classic algorithm-confusion attack: the public key is public,
        // so an HS256 token keyed with it must not pass an RS256 verifier.
        let v = pem_verifier(KeySource::Rs256Pem(RS_PUBLIC.to_vec()));
        let t = mint_hs256(RS_PUBLIC, &claims(now() + 60)).unwrap();
        assert!(matches!(v.verify(&t), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn garbage_pem_is_a_config_error() {
        let r = JwtVerifier::new(config(KeySource::Rs256Pem(b"not a key".to_vec())));
        assert!(matches!(r, Err(AuthError::Config(_))));
    }
}
