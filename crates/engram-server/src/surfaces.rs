//! The surfaces of the port: the service cores a role has, and the one
//! router over them (gRPC with grpc-web, REST, MCP at `/mcp`, the OpenAPI
//! document) under the shared layers (telemetry, CORS, auth, limits).

use crate::role::{Role, need};
use crate::{Backends, Config, ServerError};
use engram_ingest::{IngestConfig, IngestServiceImpl, JobServiceImpl};
use engram_memory::{CollectionServiceImpl, CreditServiceImpl, MemoryServiceImpl, Workspace};
use engram_proto::v1::collection_service_server::CollectionServiceServer;
use engram_proto::v1::credit_service_server::CreditServiceServer;
use engram_proto::v1::ingest_service_server::IngestServiceServer;
use engram_proto::v1::job_service_server::JobServiceServer;
use engram_proto::v1::memory_service_server::MemoryServiceServer;
use engram_proto::v1::recall_service_server::RecallServiceServer;
use engram_recall::{RecallConfig, RecallServiceImpl};
use engram_rest::Cores;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tower::Layer as _;

/// The service cores `role` serves, over `backends`.
pub(crate) fn cores(
    role: Role,
    config: &Config,
    backends: &Backends,
    provisioned: &Arc<AtomicBool>,
) -> Result<Cores, ServerError> {
    let mut cores = engram_rest::Cores::default();
    if role.ingests() {
        let stream = need(&backends.stream, "turn stream", role)?;
        let jobs = need(&backends.jobs, "job store", role)?;
        let ingest = Arc::new(IngestServiceImpl::new(
            backends.store.clone(),
            backends.embedder.clone(),
            Arc::clone(&stream),
            jobs.clone(),
            IngestConfig {
                max_text_chars: config.ingest.max_text_chars,
                max_turns_per_call: config.ingest.max_turns_per_call,
                max_metadata_bytes: config.ingest.max_metadata_bytes,
            },
        ));
        let workspace = Arc::new(Workspace {
            store: backends.store.clone(),
            embedder: backends.embedder.clone(),
            stream,
            jobs: jobs.clone(),
            credits: need(&backends.credits, "credit store", role)?,
            collections: backends.collections.clone(),
            config: config.memory_config(),
            provisioned: Arc::clone(provisioned),
        });
        let job_service = Arc::new(JobServiceImpl::new(jobs));
        let memory = Arc::new(MemoryServiceImpl::new(Arc::clone(&workspace)));
        let collections = Arc::new(CollectionServiceImpl::new(Arc::clone(&workspace)));
        let credits = Arc::new(CreditServiceImpl::new(workspace));
        cores.ingest = Some(ingest);
        cores.jobs = Some(job_service);
        cores.memory = Some(memory);
        cores.collections = Some(collections);
        cores.credits = Some(credits);
    }
    if role.recalls() {
        let recall = Arc::new(
            RecallServiceImpl::new(
                backends.store.clone(),
                backends.embedder.clone(),
                RecallConfig {
                    prefetch_active: config.recall.prefetch_active,
                    prefetch_deep: config.recall.prefetch_deep,
                    deep: config.recall.deep,
                    ..RecallConfig::default()
                },
            )
            .with_collections(backends.collections.clone()),
        );
        cores.recall = Some(recall);
    }
    Ok(cores)
}

/// The routes of the port, every surface over `cores`: gRPC (with
/// grpc-web) under `/engram.v1.*/`, health and reflection, REST, MCP at
/// `/mcp`; a JSON 404 (gRPC: UNIMPLEMENTED) for anything else.
pub(crate) fn routes<H>(
    cores: Cores,
    config: &Config,
    limiter: &Arc<engram_limits::Limiter>,
    health_service: tonic_health::pb::health_server::HealthServer<H>,
) -> Result<tonic::service::Routes, ServerError>
where
    H: tonic_health::pb::health_server::Health,
{
    let max_request = config.limits.max_request_bytes;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(engram_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Config(format!("reflection: {e}")))?;
    // grpcurl and many tools still speak only v1alpha reflection.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(engram_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Config(format!("reflection: {e}")))?;
    // gRPC and REST share one port and one router: the gRPC services under
    // `/engram.v1.*/`, the REST routes beside them, over the same cores.
    // grpc-web (browsers) on the gRPC services only: its layer answers 400
    // to any other HTTP/1.1 request, which REST calls are.
    let grpc_web = tonic_web::GrpcWebLayer::new();
    let mut grpc = tonic::service::RoutesBuilder::default();
    grpc.add_service(grpc_web.layer(health_service))
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    if let Some(ingest) = &cores.ingest {
        grpc.add_service(
            grpc_web.layer(
                IngestServiceServer::from_arc(Arc::clone(ingest))
                    .max_decoding_message_size(max_request),
            ),
        );
    }
    if let Some(jobs) = &cores.jobs {
        grpc.add_service(grpc_web.layer(
            JobServiceServer::from_arc(Arc::clone(jobs)).max_decoding_message_size(max_request),
        ));
    }
    if let Some(memory) = &cores.memory {
        grpc.add_service(
            grpc_web.layer(
                MemoryServiceServer::from_arc(Arc::clone(memory))
                    .max_decoding_message_size(max_request),
            ),
        );
    }
    if let Some(collections) = &cores.collections {
        grpc.add_service(
            grpc_web.layer(
                CollectionServiceServer::from_arc(Arc::clone(collections))
                    .max_decoding_message_size(max_request),
            ),
        );
    }
    if let Some(credits) = &cores.credits {
        grpc.add_service(
            grpc_web.layer(
                CreditServiceServer::from_arc(Arc::clone(credits))
                    .max_decoding_message_size(max_request),
            ),
        );
    }
    if let Some(recall) = &cores.recall {
        grpc.add_service(
            grpc_web.layer(
                RecallServiceServer::from_arc(Arc::clone(recall))
                    .max_decoding_message_size(max_request),
            ),
        );
    }
    let mcp = engram_mcp::EngramMcp::new(cores.clone(), None).with_limiter(Arc::clone(limiter));
    let app = grpc
        .routes()
        .into_axum_router()
        .merge(engram_rest::router(cores, max_request))
        .nest_service("/mcp", engram_mcp::http_service(mcp, max_request))
        .fallback(engram_rest::not_found);
    Ok(tonic::service::Routes::from(app))
}

/// The CORS policy of `origins` (`server.cors_allowed_origins`); `None`
/// when empty. Browsers may send the token and the grpc-web headers, and
/// read the gRPC status headers and the billing headers.
pub(crate) fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use http::header::{AUTHORIZATION, CONTENT_TYPE};
    use http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Validated at start-up (`ServerSettings::validate`).
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let name = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                CONTENT_TYPE,
                AUTHORIZATION,
                name("x-grpc-web"),
                name("x-user-agent"),
                name("grpc-timeout"),
                name("traceparent"),
                name("tracestate"),
            ])
            .expose_headers([
                name("grpc-status"),
                name("grpc-message"),
                name("grpc-status-details-bin"),
                name("retry-after"),
                name("x-credit-balance"),
                name("x-credit-charged"),
                name("x-billing-tx"),
            ])
            .max_age(Duration::from_secs(24 * 60 * 60)),
    )
}
