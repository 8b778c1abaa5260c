//! The gRPC side of overload protection: a tower layer, inside the auth
//! layer (it needs the tenant of the verified claims), that admits each
//! call through an [`engram_limits::Limiter`] and caps request messages.
//!
//! Refusals are answered at once with `RESOURCE_EXHAUSTED`, `ErrorInfo`
//! (reason, the limit's configuration key and value) and a `RetryInfo`
//! hint; nothing waits for capacity, so an overloaded server answers fast
//! instead of timing its callers out.

use bytes::Bytes;
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
const WRITES: [&str; 2] = [
    "/engram.v1.IngestService/Remember",
    "/engram.v1.MemoryService/StoreMemory",
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

impl<S, RB> tower::Service<http::Request<Body>> for LimitsService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let limit = self.max_request_bytes;
        let req = req.map(|body| Body::new(Capped::new(body, limit)));
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
                    return Ok(engram_rpc::limit_status(&e).into_http());
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
}

impl Capped {
    fn new(inner: Body, limit: usize) -> Self {
        Self {
            inner,
            limit,
            prefix: [0; 5],
            have: 0,
            skip: 0,
        }
    }

    /// Follows the length-prefixed framing across chunk boundaries.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), tonic::Status> {
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
                    return Err(engram_rpc::limit_status(&e));
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
}
