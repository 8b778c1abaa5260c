//! Prometheus metrics: names, units and the scrape endpoint.
//!
//! Every metric is recorded through the `metrics` facade, so code that
//! records works the same (and costs next to nothing) in a process that
//! serves no endpoint, such as a test.

use crate::TelemetryError;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;

/// Calls answered, by `method` (`package.Service/Method`) and `code`
/// (gRPC status name).
pub const GRPC_REQUESTS: &str = "engram_grpc_requests_total";
/// Time to answer a call, by `method` and `code`.
pub const GRPC_DURATION: &str = "engram_grpc_request_duration_seconds";
/// REST calls answered, by `route` (the template), `method` (the HTTP
/// verb) and `status` (the HTTP status).
pub const HTTP_REQUESTS: &str = "engram_http_requests_total";
/// Time to answer a REST call, by `route`, `method` and `status`.
pub const HTTP_DURATION: &str = "engram_http_request_duration_seconds";
/// Calls refused by a limit, by `reason` (`RATE_LIMITED`,
/// `TOO_MANY_CONCURRENT_CALLS`, `BACKLOG_FULL`, `SERVER_OVERLOADED`,
/// `REQUEST_TOO_LARGE`).
pub const LIMITED: &str = "engram_limited_total";
/// Authenticated calls in flight (what `limits.max_concurrent_requests`
/// caps).
pub const GRPC_IN_FLIGHT: &str = "engram_grpc_in_flight";
/// Time to embed one batch.
pub const EMBED_DURATION: &str = "engram_embed_duration_seconds";
/// Texts per embedded batch.
pub const EMBED_BATCH: &str = "engram_embed_batch_size";
/// Vector-store calls, by `op` and `outcome` (ok or error).
pub const STORE_DURATION: &str = "engram_vector_store_duration_seconds";
/// Messages published to the turn stream, by `outcome` (ok, duplicate, error).
pub const STREAM_PUBLISHED: &str = "engram_stream_published_total";
/// Deliveries handed to the consumer.
pub const STREAM_DELIVERIES: &str = "engram_stream_deliveries_total";
/// Deliveries of a message that had been delivered before.
pub const STREAM_REDELIVERIES: &str = "engram_stream_redeliveries_total";
/// Messages published and not yet settled (sampled by the enrichment role).
pub const STREAM_BACKLOG: &str = "engram_stream_backlog";
/// Job records written, by `state`.
pub const JOBS: &str = "engram_jobs_total";
/// Time to enrich one delivery, by `outcome` (ok or error).
pub const ENRICH_DURATION: &str = "engram_enrich_duration_seconds";
/// Panics contained inside enrichment, by `stage` (`extract`: the write
/// kept the caller's observations; `process`: the job failed at once).
pub const ENRICH_PANICS: &str = "engram_enrich_panics_total";
/// Unfinished jobs that have not moved for longer than the sweeper allows,
/// as of its last sweep.
pub const JOBS_OVERDUE: &str = "engram_jobs_overdue";
/// Events of overdue jobs the sweeper published again.
pub const JOBS_REPUBLISHED: &str = "engram_jobs_republished_total";

/// Latency buckets (seconds): from sub-millisecond searches to slow
/// enrichment batches.
const SECONDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Batch-size buckets.
const SIZES: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// Installs the global recorder and serves `GET /metrics` on `addr`, on
/// the current Tokio runtime.
pub(crate) fn install(addr: SocketAddr) -> Result<(), TelemetryError> {
    let fail = |reason: String| TelemetryError::Metrics { addr, reason };
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .map_err(|e| fail(e.to_string()))?
        .set_buckets_for_metric(Matcher::Full(EMBED_BATCH.into()), &SIZES)
        .map_err(|e| fail(e.to_string()))?
        .install()
        .map_err(|e| fail(e.to_string()))?;
    describe();
    tracing::info!(%addr, "serving prometheus metrics on /metrics");
    Ok(())
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        GRPC_REQUESTS,
        "gRPC calls answered, by method and status code"
    );
    describe_histogram!(GRPC_DURATION, Unit::Seconds, "time to answer a gRPC call");
    describe_counter!(
        HTTP_REQUESTS,
        "REST calls answered, by route, method and HTTP status"
    );
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "time to answer a REST call");
    describe_counter!(LIMITED, "calls refused by a limit, by reason");
    describe_gauge!(GRPC_IN_FLIGHT, "authenticated gRPC calls in flight");
    describe_histogram!(
        EMBED_DURATION,
        Unit::Seconds,
        "time to embed one batch of texts"
    );
    describe_histogram!(EMBED_BATCH, Unit::Count, "texts per embedded batch");
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "vector-store call latency by operation"
    );
    describe_counter!(STREAM_PUBLISHED, "messages published to the turn stream");
    describe_counter!(
        STREAM_DELIVERIES,
        "deliveries handed to the enrichment consumer"
    );
    describe_counter!(
        STREAM_REDELIVERIES,
        "deliveries of messages delivered before"
    );
    describe_gauge!(
        STREAM_BACKLOG,
        "messages published and not yet settled by the consumer"
    );
    describe_counter!(JOBS, "job records written, by state");
    describe_histogram!(
        ENRICH_DURATION,
        Unit::Seconds,
        "time to enrich one delivery"
    );
    describe_counter!(
        ENRICH_PANICS,
        "panics contained inside enrichment, by stage"
    );
    describe_gauge!(
        JOBS_OVERDUE,
        "unfinished jobs that have not moved for longer than allowed"
    );
    describe_counter!(
        JOBS_REPUBLISHED,
        "events of overdue jobs published again by the sweeper"
    );
}

/// Records the number of overdue jobs of the last sweep.
pub fn set_overdue(jobs: u64) {
    metrics::gauge!(JOBS_OVERDUE).set(jobs as f64);
}

/// Records the sampled stream backlog.
pub fn set_backlog(messages: u64) {
    metrics::gauge!(STREAM_BACKLOG).set(messages as f64);
}
