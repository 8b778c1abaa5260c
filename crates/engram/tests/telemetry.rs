//! Telemetry of a real `engram serve` process: its spans go to an OTLP
//! receiver run by this test (a gRPC server implementing the OTLP trace
//! service), one trace runs from Remember through the turn stream into the
//! enrichment consumer, the spans are flushed on SIGTERM, and the
//! Prometheus endpoint's counters move with the calls made.

mod common;

use common::{Process, authed, channel, embedded_env, free_port, token, wait_job_ready};
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One exported span, as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

#[derive(Default, Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /metrics` over plain HTTP/1.0.
fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint accepts");
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: engram\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    body
}

/// The value of the sample whose line starts with `name{` and holds every
/// one of `labels`; 0 when there is none yet.
fn sample(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn remember(session: &str, text: &str) -> RememberRequest {
    RememberRequest {
        scope: Some(Scope {
            org_id: "org_t".into(),
            user_id: String::new(),
            session_id: session.into(),
        }),
        turns: vec![Turn {
            role: "user".into(),
            text: text.into(),
            timestamp: "2026-05-08T14:00:00Z".into(),
            observations: vec![],
        }],
        options: None,
        metadata: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_remember_into_enrichment_and_metrics_move() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let data = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut env = embedded_env(data.path());
    env.extend([
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            format!("http://{otlp}"),
        ),
        // Nothing is exported before shutdown, so what arrives proves the flush.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "600000".to_owned()),
        ("ENGRAM__METRICS__LISTEN".to_owned(), metrics.clone()),
    ]);
    let tok = token(&env, "org_t", "u1");
    let mut server = Process::spawn("serve", &env);
    server.wait_serving().await;
    let ch = channel(&server.addr).await;
    let mut ingest = IngestServiceClient::new(ch.clone());
    let mut jobs = JobServiceClient::new(ch);

    let before = scrape(&metrics);
    let remember_ok = ["method=\"engram.v1.IngestService/Remember\"", "code=\"OK\""];
    let remember_unauth = [
        "method=\"engram.v1.IngestService/Remember\"",
        "code=\"UNAUTHENTICATED\"",
    ];

    // A caller that traces: its context arrives in the metadata.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let mut req = authed(remember("traced", "I'm allergic to shellfish."), &tok);
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{caller_trace}-{caller_span}-01")
            .parse()
            .unwrap(),
    );
    let traced_job = ingest
        .remember(req)
        .await
        .unwrap()
        .into_inner()
        .passive_job_id
        .unwrap();
    // A caller that does not: the server starts the trace.
    let untraced_job = ingest
        .remember(authed(
            remember("untraced", "My sister Ana moved to Lyon last May."),
            &tok,
        ))
        .await
        .unwrap()
        .into_inner()
        .passive_job_id
        .unwrap();
    let refused = ingest
        .remember(tonic::Request::new(remember("x", "no token")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // REST: a traced call, and one refused without a token, both counted
    // by route template and HTTP status.
    let rest_trace = "5cf92f3577b34da6a3ce929d0e0e4737";
    let curl = |args: Vec<String>| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .output()
            .expect("curl runs");
        String::from_utf8(out.stdout).unwrap()
    };
    let status = curl(vec![
        "-X".into(),
        "POST".into(),
        "-H".into(),
        format!("authorization: Bearer {tok}"),
        "-H".into(),
        "content-type: application/json".into(),
        "-H".into(),
        format!("traceparent: 00-{rest_trace}-{caller_span}-01"),
        "-d".into(),
        r#"{"scope": {"org_id": "org_t", "session_id": "rest"}, "turns": [{"role": "user", "text": "I play the cello.", "timestamp": "2026-05-08T14:00:00Z"}]}"#.into(),
        format!("{}/ingestion/memory", server.addr),
    ]);
    assert_eq!(status, "202");
    let status = curl(vec![
        "-X".into(),
        "POST".into(),
        "-H".into(),
        "content-type: application/json".into(),
        "-d".into(),
        "{}".into(),
        format!("{}/recall", server.addr),
    ]);
    assert_eq!(status, "401");
    wait_job_ready(&mut jobs, &traced_job, &tok).await;
    wait_job_ready(&mut jobs, &untraced_job, &tok).await;

    let after = scrape(&metrics);
    assert_eq!(
        sample(&after, "engram_grpc_requests_total", &remember_ok)
            - sample(&before, "engram_grpc_requests_total", &remember_ok),
        2.0,
        "{after}"
    );
    assert_eq!(
        sample(&after, "engram_grpc_requests_total", &remember_unauth),
        1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "engram_grpc_request_duration_seconds_count",
            &remember_ok
        ) >= 2.0
    );
    assert!(
        sample(&after, "engram_jobs_total", &["state=\"ready\""]) >= 2.0,
        "{after}"
    );
    assert!(
        sample(&after, "engram_stream_deliveries_total", &[]) >= 2.0,
        "{after}"
    );
    assert!(
        sample(&after, "engram_embed_batch_size_count", &[]) >= 2.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "engram_vector_store_duration_seconds_count",
            &["op=\"upsert\""]
        ) >= 2.0,
        "{after}"
    );
    assert!(after.contains("engram_stream_backlog"), "{after}");
    let rest_ok = [
        "route=\"/ingestion/memory\"",
        "method=\"POST\"",
        "status=\"202\"",
    ];
    assert_eq!(
        sample(&after, "engram_http_requests_total", &rest_ok),
        1.0,
        "{after}"
    );
    let rest_unauth = ["route=\"/recall\"", "status=\"401\""];
    assert_eq!(
        sample(&after, "engram_http_requests_total", &rest_unauth),
        1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "engram_http_request_duration_seconds_count",
            &rest_ok
        ) >= 1.0,
        "{after}"
    );

    server.terminate(Duration::from_secs(30));

    let spans = receiver.spans.lock().unwrap().clone();
    let find = |name: &str, trace: &str| -> Vec<Received> {
        spans
            .iter()
            .filter(|s| s.name == name && s.trace_id == trace)
            .cloned()
            .collect()
    };
    // The traced call continues the caller's trace under the caller's span.
    let rpc = find("engram.v1.IngestService/Remember", caller_trace);
    assert_eq!(rpc.len(), 1, "{spans:#?}");
    assert_eq!(rpc[0].parent, caller_span);
    assert!(
        rpc[0].service.contains("engram-serve"),
        "{:?}",
        rpc[0].service
    );
    // The REST call continues its caller's trace too.
    let rest = find("POST /ingestion/memory", rest_trace);
    assert_eq!(rest.len(), 1, "{spans:#?}");
    assert_eq!(rest[0].parent, caller_span);
    let publish = find("publish turns", caller_trace);
    assert_eq!(publish.len(), 1, "{spans:#?}");
    let enrich = find("enrich turns", caller_trace);
    assert_eq!(enrich.len(), 1, "{spans:#?}");
    assert_eq!(
        enrich[0].parent, publish[0].span_id,
        "enrichment follows the publish"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "embed" && s.trace_id == caller_trace),
        "{spans:#?}"
    );

    // The untraced call starts a trace of its own that enrichment joins.
    let own: Vec<&Received> = spans
        .iter()
        .filter(|s| s.name == "engram.v1.IngestService/Remember" && s.trace_id != caller_trace)
        .collect();
    assert!(!own.is_empty(), "{spans:#?}");
    assert!(
        own.iter()
            .any(|r| !find("enrich turns", &r.trace_id).is_empty()),
        "{spans:#?}"
    );
}
