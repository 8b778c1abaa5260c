//! The tower layer that authenticates every gRPC call.

use crate::{AuthError, JwtVerifier};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// gRPC services reachable without a token: probes and tooling must work
/// before a client has credentials.
const PUBLIC_PREFIXES: &[&str] = &["/grpc.health.v1.", "/grpc.reflection."];

/// Verifies `authorization: Bearer <jwt>` and stores the [`crate::Claims`]
/// in the request extensions; refuses with `UNAUTHENTICATED` otherwise.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    verifier: Arc<JwtVerifier>,
}

impl AuthLayer {
    /// A layer verifying with `verifier`.
    pub fn new(verifier: Arc<JwtVerifier>) -> Self {
        Self { verifier }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct AuthService<S> {
    inner: S,
    verifier: Arc<JwtVerifier>,
}

fn bearer<B>(req: &http::Request<B>) -> Result<&str, AuthError> {
    let value = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token.trim())
}

impl<S, B, RB> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if !PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
            match bearer(&req).and_then(|t| self.verifier.verify(t)) {
                Ok(claims) => {
                    req.extensions_mut().insert(claims);
                }
                Err(e) => {
                    tracing::debug!(path = %path, error = %e, "refused unauthenticated call");
                    let status: tonic::Status = e.into();
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        Box::pin(self.inner.call(req))
    }
}
