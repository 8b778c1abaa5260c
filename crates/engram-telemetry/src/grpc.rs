//! A tower layer that gives every call a server span (continuing the
//! caller's W3C trace context from its metadata) and counts it: gRPC calls
//! by method and status code, REST calls by route and HTTP status.

use crate::metrics::{GRPC_DURATION, GRPC_REQUESTS, HTTP_DURATION, HTTP_REQUESTS};
use crate::trace::follow_context;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tracing::Instrument;

/// The route template of a non-gRPC path (`/memory/{memory_id}/status`),
/// or `None` for a path nothing serves: ids must not become labels.
pub type RouteOf = fn(&str) -> Option<&'static str>;

/// Wraps services in [`GrpcTelemetry`]. Put it outermost, so refusals by
/// inner layers (authentication) are counted too.
#[derive(Debug, Clone, Copy)]
pub struct GrpcTelemetryLayer {
    route_of: RouteOf,
}

impl GrpcTelemetryLayer {
    /// A layer naming REST calls by `route_of`.
    pub fn new(route_of: RouteOf) -> Self {
        Self { route_of }
    }
}

impl<S> tower::Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            route_of: self.route_of,
        }
    }
}

/// See [`GrpcTelemetryLayer`].
#[derive(Debug, Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    route_of: RouteOf,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcTelemetry<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !grpc {
            return self.call_http(req);
        }
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let (service, rpc) = method.split_once('/').unwrap_or((method.as_str(), ""));
        let span = tracing::info_span!(
            "grpc",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %rpc,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        follow_headers(&span, req.headers());
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(req));
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => status_code(response.headers()),
                    // The transport failed the call: tonic reports it as UNKNOWN.
                    Err(_) => 2,
                };
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", code);
                if code != 0 {
                    span.record("otel.status_code", "ERROR");
                }
                let labels = [
                    ("method", method),
                    ("code", grpc_code_name(code).to_owned()),
                ];
                metrics::counter!(GRPC_REQUESTS, &labels).increment(1);
                metrics::histogram!(GRPC_DURATION, &labels).record(started.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

/// A call's answer, boxed.
type Answer<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S> GrpcTelemetry<S> {
    /// A REST call: an `http` server span and counts by route and status.
    fn call_http<ReqBody, ResBody>(
        &mut self,
        req: http::Request<ReqBody>,
    ) -> Answer<http::Response<ResBody>, S::Error>
    where
        S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
        S::Future: Send + 'static,
    {
        let route = (self.route_of)(req.uri().path()).unwrap_or("unmatched");
        let verb = req.method().as_str().to_owned();
        let span = tracing::info_span!(
            "http",
            otel.name = %format_args!("{verb} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %verb,
            http.route = route,
            http.response.status_code = tracing::field::Empty,
        );
        follow_headers(&span, req.headers());
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(req));
        Box::pin(
            async move {
                let result = future.await;
                let status = match &result {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 500,
                };
                let span = tracing::Span::current();
                span.record("http.response.status_code", status);
                if status >= 500 {
                    span.record("otel.status_code", "ERROR");
                }
                let labels = [
                    ("route", route.to_owned()),
                    ("method", verb),
                    ("status", status.to_string()),
                ];
                metrics::counter!(HTTP_REQUESTS, &labels).increment(1);
                metrics::histogram!(HTTP_DURATION, &labels).record(started.elapsed().as_secs_f64());
                result
            }
            .instrument(span),
        )
    }
}

/// Continues the caller's W3C trace context (`traceparent`, `tracestate`)
/// from the request headers (gRPC metadata are headers too).
fn follow_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    follow_context(
        span,
        engram_core::TRACE_CONTEXT_FIELDS
            .into_iter()
            .filter_map(|name| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| (name, v))
            }),
    );
}

/// The call's status from its response headers. A failed unary call is
/// answered with headers only, `grpc-status` among them; a successful one
/// sends its status in trailers, which have not been sent yet: no status
/// in the headers means OK.
fn status_code(headers: &http::HeaderMap) -> i32 {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The canonical name of a gRPC status code (`UNKNOWN` for codes outside
/// the standard set).
pub fn grpc_code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|i| NAMES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_comes_from_headers_and_defaults_to_ok() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_code(&h), 0);
        h.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert_eq!(status_code(&h), 16);
        assert_eq!(grpc_code_name(16), "UNAUTHENTICATED");
        assert_eq!(grpc_code_name(3), "INVALID_ARGUMENT");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
        assert_eq!(grpc_code_name(-1), "UNKNOWN");
    }
}
