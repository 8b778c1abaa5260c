//! OpenTelemetry traces over OTLP/gRPC, configured by the standard `OTEL_*`
//! variables, and W3C trace-context propagation.

use crate::TelemetryError;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Where spans go, and the runtime their export runs on.
pub(crate) struct Tracing {
    provider: SdkTracerProvider,
    runtime: tokio::runtime::Runtime,
    /// The endpoint named by the environment (for the start-up log).
    pub(crate) endpoint: String,
}

/// The span exporter, decided from `OTEL_*` variables (looked up through
/// `env`): `None` when no OTLP endpoint is set, the SDK is disabled, or the
/// traces exporter is `none`.
fn otlp_endpoint(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, TelemetryError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    match set("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
        None | Some("otlp") => {}
        Some("none") => return Ok(None),
        Some(other) => {
            return Err(TelemetryError::Config(format!(
                "OTEL_TRACES_EXPORTER={other} is not supported: use otlp or none"
            )));
        }
    }
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(p) = protocol
        && p.trim() != "grpc"
    {
        return Err(TelemetryError::Config(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={p} is not supported: engram exports OTLP over grpc (set it to grpc, usually port 4317)"
        )));
    }
    Ok(set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")))
}

impl Tracing {
    /// Sets up OTLP export when the environment asks for it.
    pub(crate) fn from_env(
        env: &dyn Fn(&str) -> Option<String>,
        service_name: &str,
    ) -> Result<Option<Self>, TelemetryError> {
        let Some(endpoint) = otlp_endpoint(env)? else {
            return Ok(None);
        };
        // The SDK exports from its own thread with a plain executor, but the
        // tonic channel needs a Tokio reactor: exports run on this runtime.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let exporter = {
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?
        };
        let mut resource = Resource::builder();
        if env("OTEL_SERVICE_NAME").is_none_or(|v| v.trim().is_empty()) {
            resource = resource.with_service_name(service_name.to_owned());
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(OnRuntime {
                inner: Arc::new(exporter),
                runtime: runtime.handle().clone(),
            })
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        Ok(Some(Self {
            provider,
            runtime,
            endpoint,
        }))
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans.
    pub(crate) fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("engram"))
    }

    /// Flushes and stops the exporter, then its runtime.
    pub(crate) fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("engram: flushing traces failed: {error}");
        }
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

/// The OTLP exporter, its exports driven on a runtime of its own.
#[derive(Debug)]
struct OnRuntime {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    runtime: tokio::runtime::Handle,
}

impl SpanExporter for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let inner = Arc::clone(&self.inner);
        let task = self.runtime.spawn(async move { inner.export(batch).await });
        async move {
            task.await
                .unwrap_or_else(|e| Err(OTelSdkError::InternalFailure(e.to_string())))
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        // Called while the provider is built, before the exporter is shared.
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}

/// The W3C trace-context fields (`traceparent`, `tracestate`) of `span`,
/// to carry beside a message; empty when tracing is off.
pub fn context_fields(span: &tracing::Span) -> Vec<(String, String)> {
    let mut fields = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut fields);
    let mut fields: Vec<(String, String)> = fields.into_iter().collect();
    fields.sort();
    fields
}

/// Makes `span` a child of the remote span described by `fields` (W3C
/// trace-context fields); nothing happens when they carry no valid context.
pub fn follow_context<'a>(
    span: &tracing::Span,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) {
    let fields: HashMap<String, String> = fields
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    if !fields.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&fields);
    // Fails only when the span is disabled or already started its trace.
    let _ = span.set_parent(parent);
}

/// The span the enrichment consumer works on one delivery in, continuing
/// the trace of the call that published it.
pub fn consume_span(
    job_id: &str,
    attempt: u64,
    trace_context: &[(String, String)],
) -> tracing::Span {
    let span = tracing::info_span!(
        "enrich",
        otel.name = "enrich turns",
        otel.kind = "consumer",
        messaging.operation = "process",
        job_id,
        attempt,
    );
    follow_context(
        &span,
        trace_context.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_set() {
        assert_eq!(otlp_endpoint(&env_of(&[])).unwrap(), None);
        assert_eq!(
            otlp_endpoint(&env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")])).unwrap(),
            Some("http://c:4317".to_owned())
        );
        // The traces-specific endpoint wins.
        assert_eq!(
            otlp_endpoint(&env_of(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:4317"),
            ]))
            .unwrap(),
            Some("http://t:4317".to_owned())
        );
    }

    #[test]
    fn disabling_variables_turn_export_off() {
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let env = env_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), off]);
            assert_eq!(otlp_endpoint(&env).unwrap(), None, "{off:?}");
        }
    }

    #[test]
    fn unsupported_protocols_and_exporters_are_refused_by_name() {
        let err = otlp_endpoint(&env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"),
            "{err}"
        );
        let err = otlp_endpoint(&env_of(&[("OTEL_TRACES_EXPORTER", "zipkin")])).unwrap_err();
        assert!(err.to_string().contains("zipkin"), "{err}");
    }

    #[test]
    fn without_a_valid_traceparent_nothing_is_followed() {
        // No subscriber: spans are disabled, and a bad header must not panic.
        let span = tracing::info_span!("t");
        follow_context(&span, [("traceparent", "garbage")]);
        follow_context(&span, [("other", "x")]);
        assert!(context_fields(&span).is_empty());
    }
}
