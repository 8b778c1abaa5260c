//! The gRPC side of overload protection: a tower layer, inside the auth
//! layer (it needs the tenant of the verified claims), that admits each
//! call through an [`engram_limits::Limiter`] and caps request messages.
//!
//! Refusals are answered at once with `RESOURCE_EXHAUSTED`, `ErrorInfo`
//! (reason, the limit's configuration key and value) and a `RetryInfo`
//! hint; nothing waits for capacity, so an overloaded server answers fast
//! instead of timing its callers out.

use bytes::Bytes;
use engram_api::ApiError;
use engram_auth::Claims;
use engram_limits::{LimitError, Limiter};
use engram_telemetry::metrics::{GRPC_IN_FLIGHT, LIMITED};
use http_body::{Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;

/// Calls that enqueue enrichment: they also count against the tenant's
/// backlog. Reads (Recall, GetJob) never do, so they keep being answered
/// however deep the backlog is.
const WRITES: [&str; 4] = [
    "/engram.v1.IngestService/Remember",
    "/engram.v1.MemoryService/StoreMemory",
    "/ingestion/memory",
    "/memory",
];

/// Wraps services in [`LimitsService`].
#[derive(Clone, Debug)]
pub(crate) struct LimitsLayer {
    limiter: Arc<Limiter>,
    max_request_bytes: usize,
}

impl LimitsLayer {
    /// Admits calls through `limiter`; refuses any request message longer
    /// than `max_request_bytes`.
    pub(crate) fn new(limiter: Arc<Limiter>, max_request_bytes: usize) -> Self {
        Self {
            limiter,
            max_request_bytes,
        }
    }
}

impl<S> tower::Layer<S> for LimitsLayer {
    type Service = LimitsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitsService {
            inner,
            limiter: Arc::clone(&self.limiter),
            max_request_bytes: self.max_request_bytes,
        }
    }
}

/// See [`LimitsLayer`].
#[derive(Clone, Debug)]
pub(crate) struct LimitsService<S> {
    inner: S,
    limiter: Arc<Limiter>,
    max_request_bytes: usize,
}

impl<S> tower::Service<http::Request<Body>> for LimitsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let limit = self.max_request_bytes;
        // gRPC messages are capped as they stream in (their length prefix
        // says how long they are); a REST body is capped by the REST
        // router, which answers 413 with a JSON error.
        let content_type = req.headers().get(http::header::CONTENT_TYPE).cloned();
        let req = if engram_api::is_grpc_content_type(content_type.as_ref()) {
            // grpc-web-text is base64 until grpc-web decodes it (further in):
            // its frames cannot be read here, so its whole body is capped
            // at the base64 length of a message at the limit.
            let text = content_type
                .as_ref()
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc-web-text"));
            req.map(|body| Body::new(Capped::new(body, limit).base64(text)))
        } else {
            req
        };
        // Health and reflection carry no claims: probes are never limited,
        // so an overloaded process is not restarted for being busy.
        let Some(org_id) = req.extensions().get::<Claims>().map(|c| c.org_id.clone()) else {
            return Box::pin(self.inner.call(req));
        };
        let write = WRITES.contains(&req.uri().path());
        // The service that was polled ready is the one that must be called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limiter = Arc::clone(&self.limiter);
        Box::pin(async move {
            let permit = match limiter.admit(&org_id, write).await {
                Ok(permit) => permit,
                Err(e) => {
                    metrics::counter!(LIMITED, "reason" => e.reason()).increment(1);
                    tracing::debug!(org_id = %org_id, path = %req.uri().path(), reason = e.reason(), error = %e, "refused call over a limit");
                    drain(req.into_body()).await;
                    return Ok(engram_api::refusal(
                        ApiError::from(&e),
                        content_type.as_ref(),
                    ));
                }
            };
            metrics::gauge!(GRPC_IN_FLIGHT).set(f64::from(limiter.in_flight()));
            let response = inner.call(req).await;
            // Unary calls are complete when their response is: the body
            // holds the encoded message.
            drop(permit);
            metrics::gauge!(GRPC_IN_FLIGHT).set(f64::from(limiter.in_flight()));
            response
        })
    }
}

/// Longest a refusal waits for the rest of its request.
const DRAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// Reads what is left of a refused request (capped at the request-size
/// limit, for at most [`DRAIN_WAIT`]) before the refusal is answered. A
/// response that ends the stream while the request is still open makes the
/// HTTP/2 server reset the stream, and frames the client had in flight then
/// count as its errors: under a sustained flood of refusals a connection
/// collects enough of them to be closed with GOAWAY, failing every call on
/// it, a quiet tenant's too (seen in the 60 s soak: ~60 transport errors).
async fn drain(body: Body) {
    let mut body = std::pin::pin!(body);
    let read = async {
        while let Some(frame) =
            std::future::poll_fn(|cx| http_body::Body::poll_frame(body.as_mut(), cx)).await
        {
            if frame.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_WAIT, read).await;
}

/// A request body that fails with `RESOURCE_EXHAUSTED` as soon as a gRPC
/// message's length prefix exceeds the limit, before the message is
/// buffered. tonic's own `max_decoding_message_size` would answer
/// `OUT_OF_RANGE` instead, which clients do not treat as a size limit.
struct Capped {
    inner: Body,
    limit: usize,
    /// The 5-byte prefix (compression flag, big-endian length) so far.
    prefix: [u8; 5],
    have: usize,
    /// Bytes of the current message still to pass.
    skip: usize,
    /// The body is base64 text (grpc-web-text): count its bytes instead.
    base64: Option<usize>,
}

impl Capped {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            prefix: [0; 5],
            have: 0,
            skip: 0,
            base64: None,
        }
    }

    /// For a base64 body: caps its length at that of one message at the
    /// limit (4 characters per 3 bytes, with its 5-byte prefix) instead of
    /// reading frames.
    fn base64(mut self, text: bool) -> Self {
        self.base64 = text.then_some(0);
        self
    }

    fn too_large(&self, size: usize) -> tonic::Status {
        let e = LimitError::RequestTooLarge {
            size,
            limit: self.limit,
        };
        metrics::counter!(LIMITED, "reason" => e.reason()).increment(1);
        tracing::debug!(
            size,
            limit = self.limit,
            "refused request over the size limit"
        );
        ApiError::from(&e).into()
    }

    /// Follows the length-prefixed framing across chunk boundaries.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
        if let Some(seen) = &mut self.base64 {
            *seen += data.len();
            let seen = *seen;
            // A limit-sized message is limit + 5 bytes framed: that many
            // base64 characters, rounded up to whole quads, and one quad
            // of slack.
            if seen > (self.limit + 5).div_ceil(3) * 4 + 4 {
                return Err(self.too_large(seen / 4 * 3));
            }
            return Ok(());
        }
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.prefix[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            if self.have == 5 {
                self.have = 0;
                let [_, a, b, c, d] = self.prefix;
                let size = u32::from_be_bytes([a, b, c, d]) as usize;
                if size > self.limit {
                    return Err(self.too_large(size));
                }
                self.skip = size;
            }
        }
        Ok(())
    }
}

impl http_body::Body for Capped {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.scan(data)
                {
                    return Poll::Ready(Some(Err(status)));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.extend(std::iter::repeat_n(7u8, len));
        m
    }

    #[test]
    fn framing_is_followed_across_chunks() {
        let mut c = Capped::new(Body::empty(), 10);
        let mut bytes = message(10);
        bytes.extend(message(3));
        // Any split of two messages within the limit passes.
        for chunk in bytes.chunks(3) {
            c.scan(chunk).expect("within the limit");
        }
        assert_eq!((c.have, c.skip), (0, 0));
        // A prefix split over two chunks is still read.
        let big = message(11);
        c.scan(&big[..2]).expect("prefix not complete yet");
        let s = c.scan(&big[2..]).unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn base64_bodies_are_capped_by_length_not_frames() {
        // "AAAA" read as a frame prefix would claim a message of ~1 GB.
        let mut c = Capped::new(Body::empty(), 10).base64(true);
        c.scan(b"AAAAAAAAAAAAAAAA")
            .expect("16 characters: 12 bytes, one message of 7");
        c.scan(b"AAAAAAAA")
            .expect("24 characters: within the slack");
        let s = c.scan(b"AAAA").unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    }
}
