//! Engram's telemetry, set up once per process by the binary:
//!
//! - logs through `tracing` (text or JSON on stderr);
//! - OpenTelemetry traces exported over OTLP/gRPC when the standard `OTEL_*`
//!   variables name an endpoint (off otherwise), with W3C trace context read
//!   from gRPC metadata and carried through the turn stream;
//! - Prometheus metrics on their own port when one is configured.
//!
//! The services never touch exporters: they get a [`GrpcTelemetryLayer`]
//! around their router, ports wrapped by the [`instrument`] decorators, and
//! [`consume_span`] for each delivery the consumer works on.

mod grpc;
pub mod instrument;
pub mod metrics;
mod trace;

pub use grpc::{GrpcTelemetry, GrpcTelemetryLayer, RouteOf, grpc_code_name};
pub use trace::{consume_span, context_fields, follow_context};

use std::net::SocketAddr;

/// Errors setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An `OTEL_*` variable asks for something this build cannot do.
    #[error("telemetry configuration: {0}")]
    Config(String),
    /// The OTLP exporter could not be built.
    #[error("otlp exporter: {0}")]
    Exporter(String),
    /// The metrics endpoint could not be installed.
    #[error("metrics endpoint on {addr}: {reason}")]
    Metrics {
        /// Where it was to listen.
        addr: SocketAddr,
        /// Why it could not.
        reason: String,
    },
    /// The global subscriber or recorder was already set in this process.
    #[error("telemetry already initialised: {0}")]
    AlreadySet(String),
}

/// How a process reports.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// `tracing` filter directives (`RUST_LOG` wins when set).
    pub log_filter: String,
    /// Logs as JSON lines instead of text.
    pub log_json: bool,
    /// Service name for traces when `OTEL_SERVICE_NAME` is unset.
    pub service_name: String,
    /// Where to serve Prometheus metrics (`/metrics`); none serves none.
    pub metrics_listen: Option<SocketAddr>,
}

/// Telemetry of a running process. [`Telemetry::shutdown`] flushes what is
/// buffered; call it after the server has stopped.
#[must_use = "dropping telemetry without shutdown loses buffered spans"]
pub struct Telemetry {
    tracing: Option<trace::Tracing>,
}

impl Telemetry {
    /// Installs the global subscriber (logs, and traces when `OTEL_*`
    /// asks for them). Call once, outside any async runtime.
    pub fn init(options: &TelemetryOptions) -> Result<Self, TelemetryError> {
        use tracing_subscriber::Layer;
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let env = |name: &str| std::env::var(name).ok();
        let traces = trace::Tracing::from_env(&env, &options.service_name)?;
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&options.log_filter));
        let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        let fmt = if options.log_json {
            fmt.json().with_filter(filter).boxed()
        } else {
            fmt.with_filter(filter).boxed()
        };
        let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> = vec![fmt];
        if let Some(t) = &traces {
            // Its own filter: a quiet log level must not thin out traces,
            // and only Engram's spans are worth exporting.
            let ours = tracing_subscriber::filter::Targets::new()
                .with_target("engram", tracing::Level::INFO);
            layers.push(t.layer().with_filter(ours).boxed());
        }
        tracing_subscriber::registry()
            .with(layers)
            .try_init()
            .map_err(|e| TelemetryError::AlreadySet(e.to_string()))?;
        if let Some(t) = &traces {
            tracing::info!(endpoint = %t.endpoint, "exporting traces over otlp");
        }
        Ok(Self { tracing: traces })
    }

    /// Serves Prometheus metrics on `options.metrics_listen`, if set.
    /// Needs a Tokio runtime (the endpoint runs on it).
    pub fn serve_metrics(options: &TelemetryOptions) -> Result<(), TelemetryError> {
        match options.metrics_listen {
            Some(addr) => metrics::install(addr),
            None => Ok(()),
        }
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.tracing.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. Blocks
    /// (bounded by the exporter's timeout); call outside async code.
    pub fn shutdown(self) {
        if let Some(t) = self.tracing {
            t.shutdown();
        }
    }
}
