//! The gRPC server of each role: services, health, reflection, auth, the
//! enrichment consumer, and shutdown.

use crate::role::{Role, need};
use crate::{Backends, Config, ServerError};
use engram_auth::{AuthLayer, JwtVerifier};
use engram_enrich::Enricher;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

const INGEST: &str = "engram.v1.IngestService";
const RECALL: &str = "engram.v1.RecallService";
const JOBS: &str = "engram.v1.JobService";
/// The workspace services run beside ingest and depend on what it does.
const WORKSPACE: [&str; 3] = [
    "engram.v1.MemoryService",
    "engram.v1.CollectionService",
    "engram.v1.CreditService",
];
/// Health name that is SERVING for as long as the process serves calls,
/// whatever its dependencies say: what a liveness probe should ask (the
/// other names follow NATS and Qdrant, and restarting a process does not
/// bring a dependency back).
pub const LIVENESS: &str = "liveness";
/// Health name that is SERVING while no job is overdue (see
/// `engram_enrich::sweeper`) and NOT_SERVING while some are; how many is
/// the `engram_jobs_overdue` gauge. Not part of readiness: a stuck job is
/// no reason to take a process out of service.
pub const OVERDUE_JOBS: &str = "overdue-jobs";
/// How often dependencies are probed for the health service.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// Runs every role in one process with the backends `config` names (the
/// embedded default unless configured otherwise) until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_role(Role::Serve, config, listener, shutdown).await
}

/// Runs one role with the backends `config` names until `shutdown` resolves.
pub async fn run_role(
    role: Role,
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate_role(role)?;
    let backends = Backends::open(&config, role).await?;
    run_with(role, config, backends, listener, shutdown).await
}

/// Runs everything in one process, as `serve` does, serving MCP on
/// stdin/stdout for the caller of `token` instead of a port (`engram mcp`),
/// until the client closes stdin or `shutdown` resolves.
pub async fn run_mcp(
    config: Config,
    token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    config.validate_role(Role::Serve)?;
    let backends = Backends::open(&config, Role::Serve).await?;
    run_front(
        Role::Serve,
        config,
        backends,
        Front::McpStdio { token },
        shutdown,
    )
    .await
}

/// Runs `role` on given backends until `shutdown` resolves, then drains
/// in-flight calls (bounded by `server.shutdown_grace_secs`) and in-flight
/// enrichment (bounded by `enrich.drain_timeout_secs`), and closes the store.
pub async fn run_with(
    role: Role,
    config: Config,
    backends: Backends,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_front(role, config, backends, Front::Listener(listener), shutdown).await
}

/// Runs `role` on given backends, serving its calls on `front`, until
/// `shutdown` resolves (or, over stdio, the client closes stdin).
pub async fn run_front(
    role: Role,
    config: Config,
    backends: Backends,
    front: Front,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let mut backends = backends.instrumented();
    // A write's backlog is counted from the job records it creates, so
    // every user of the job store (writes, consumer, sweeper) shares the
    // tracking one; the limiter re-checks through the plain one.
    let limiter = Arc::new(
        engram_limits::Limiter::new(
            config.limits.limits_config(),
            backends.jobs.clone().filter(|_| role.ingests()),
        )
        .map_err(|e| ServerError::Config(e.to_string()))?,
    );
    backends.jobs = backends.jobs.map(|jobs| limiter.track(jobs));
    let max_request = config.limits.max_request_bytes;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(LIVENESS, ServingStatus::Serving)
        .await;
    // NOT_SERVING until the dependencies have answered once.
    for name in ["", INGEST, RECALL, JOBS].into_iter().chain(WORKSPACE) {
        health
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
    let provisioned = Arc::new(AtomicBool::new(false));
    let overdue = Arc::new(AtomicU64::new(0));
    let prober = tokio::spawn(probe_health(
        role,
        backends.clone(),
        health.clone(),
        stop_rx.clone(),
        Arc::clone(&provisioned),
        Arc::clone(&overdue),
    ));
    // Every role with job records counts overdue jobs; those that enrich
    // also publish their events again.
    let sweeper = backends.jobs.clone().map(|jobs| {
        tokio::spawn(engram_enrich::sweeper::run(
            jobs,
            backends.stream.clone().filter(|_| role.enriches()),
            config.enrich.sweep_config(),
            Arc::clone(&overdue),
            stopped(stop_rx.clone()),
        ))
    });

    let consumer = if role.enriches() {
        let stream = need(&backends.stream, "turn stream", role)?;
        let jobs = need(&backends.jobs, "job store", role)?;
        let credits = need(&backends.credits, "credit store", role)?;
        let enricher = Arc::new(
            Enricher::new(
                backends.store.clone(),
                backends.background_embedder.clone(),
                jobs,
                config.extract.extractor()?,
            )
            .with_credits(credits)
            .with_pressure(backends.pressure.clone()),
        );
        Some(tokio::spawn(engram_enrich::run(
            enricher,
            stream,
            config.enrich.consumer_config(),
            stopped(stop_rx.clone()),
        )))
    } else {
        None
    };

    let verifier = Arc::new(JwtVerifier::new(config.auth_config()?)?);
    // A JWKS URL is fetched in the background, so a down identity provider
    // never delays start-up; held until this function returns.
    let _jwks_refresh = verifier.spawn_refresh();
    let cores = crate::surfaces::cores(role, &config, &backends, &provisioned)?;
    let listener = match front {
        Front::Listener(listener) => listener,
        Front::McpStdio { token } => {
            let claims = verifier.verify(&token).await?;
            let mcp =
                engram_mcp::EngramMcp::new(cores, Some(claims)).with_limiter(Arc::clone(&limiter));
            let signal = async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            };
            let result = crate::mcp::serve_stdio(mcp, signal).await;
            return finish(consumer, prober, sweeper, &backends)
                .await
                .and(result);
        }
    };
    let routes = crate::surfaces::routes(cores, &config, &limiter, health_service)?;
    // Telemetry outermost: calls refused by authentication or a limit are
    // counted too. CORS next: it answers browsers' preflights, which carry
    // no token, itself. Limits inside auth: they are per tenant, from the
    // claims. HTTP/1.1 too: REST clients (curl) and grpc-web speak it.
    let router = Server::builder()
        .accept_http1(true)
        .layer(engram_telemetry::GrpcTelemetryLayer::new(
            engram_rest::route_of,
        ))
        .layer(tower::util::option_layer(crate::surfaces::cors(
            &config.server.cors_allowed_origins,
        )))
        .layer(AuthLayer::new(
            verifier,
            Arc::new(|e, headers: &http::HeaderMap| {
                engram_api::refusal(e.into(), headers.get(http::header::CONTENT_TYPE))
            }),
        ))
        .layer(crate::limits::LimitsLayer::new(
            Arc::clone(&limiter),
            max_request,
        ))
        .add_routes(routes);

    let addr = listener.local_addr().map_err(|source| ServerError::Io {
        path: "listener".into(),
        source,
    })?;
    tracing::info!(%addr, role = role.as_str(), data_dir = %config.storage.data_dir.display(), "engram serving");

    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let signal = {
        let stop_rx = stop_rx.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: draining in-flight calls");
            let _ = stop_tx.send(true);
            let _ = stopped(stop_rx).await;
        }
    };
    // Nagle's algorithm would hold a response's last small frame until the
    // client's delayed ACK (~40 ms on Linux): every unary call would pay it.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)));
    let server = router.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        () = async {
            stopped(stop_rx.clone()).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "drain timed out; closing with calls in flight");
            Ok(())
        }
    };
    finish(consumer, prober, sweeper, &backends).await?;
    result.map_err(ServerError::from)
}

/// What a process serves its calls on.
#[derive(Debug)]
pub enum Front {
    /// gRPC, grpc-web, REST and MCP over HTTP on this listener.
    Listener(TcpListener),
    /// MCP over stdin/stdout (`engram mcp`), for the caller of `token`.
    McpStdio {
        /// The JWT every tool call acts with, verified at start.
        token: String,
    },
}

/// Waits for the enrichment consumer's drain, stops the background tasks
/// and closes the store.
async fn finish(
    consumer: Option<tokio::task::JoinHandle<()>>,
    prober: tokio::task::JoinHandle<()>,
    sweeper: Option<tokio::task::JoinHandle<()>>,
    backends: &Backends,
) -> Result<(), ServerError> {
    if let Some(consumer) = consumer
        && let Err(error) = consumer.await
    {
        tracing::error!(%error, "enrichment consumer ended abnormally");
    }
    prober.abort();
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    backends.store.close().await?;
    tracing::info!("engram stopped");
    Ok(())
}

/// Probes the dependencies every [`HEALTH_INTERVAL`] and publishes the
/// result: a service is SERVING only while everything it calls answers.
async fn probe_health(
    role: Role,
    backends: Backends,
    health: HealthReporter,
    mut stop: watch::Receiver<bool>,
    provisioned: Arc<AtomicBool>,
    overdue: Arc<AtomicU64>,
) {
    let mut last: Option<(bool, bool)> = None;
    loop {
        let store = backends.store.ready().await;
        let stream = match &backends.stream {
            Some(s) => s.ready().await.map_err(|e| e.to_string()),
            None => Ok(()),
        };
        let jobs = match &backends.jobs {
            Some(j) => j.ready().await.map_err(|e| e.to_string()),
            None => Ok(()),
        };
        let store_ok = store.is_ok();
        let queue_ok = stream.is_ok() && jobs.is_ok();
        // The consumer's role reports how far it lags.
        if role.enriches()
            && queue_ok
            && let Some(s) = &backends.stream
        {
            match s.backlog().await {
                Ok(n) => engram_telemetry::metrics::set_backlog(n),
                Err(error) => tracing::debug!(%error, "cannot read the stream backlog"),
            }
        }
        if last != Some((store_ok, queue_ok)) {
            if !store_ok || !queue_ok {
                tracing::warn!(
                    store = ?store.err().map(|e| e.to_string()),
                    stream = ?stream.err(),
                    jobs = ?jobs.err(),
                    "dependencies not answering: reporting not serving"
                );
            } else {
                tracing::info!("dependencies answering: reporting serving");
            }
            last = Some((store_ok, queue_ok));
        }
        let status = |ok: bool| {
            if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        let all = store_ok && (queue_ok || role == Role::Recall);
        if *stop.borrow() {
            // Probes see NOT_SERVING while in-flight calls drain.
            for name in ["", INGEST, RECALL, JOBS].into_iter().chain(WORKSPACE) {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            return;
        }
        if all {
            // The first time everything answered, provisioning is over.
            provisioned.store(true, Ordering::Release);
        }
        health.set_service_status("", status(all)).await;
        if backends.jobs.is_some() {
            health
                .set_service_status(OVERDUE_JOBS, status(overdue.load(Ordering::Relaxed) == 0))
                .await;
        }
        if role.ingests() {
            health
                .set_service_status(INGEST, status(store_ok && queue_ok))
                .await;
            health.set_service_status(JOBS, status(queue_ok)).await;
            for name in WORKSPACE {
                health
                    .set_service_status(name, status(store_ok && queue_ok))
                    .await;
            }
        }
        if role.recalls() {
            health.set_service_status(RECALL, status(store_ok)).await;
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
}
