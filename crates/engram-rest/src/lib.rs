//! The REST skin of Engram: the seeds' JSON endpoints (`POST
//! /ingestion/memory`, `POST /recall`, `POST /memory`, `GET
//! /memory/{id}/status`, ...) over the same service cores the gRPC
//! handlers call, served on the gRPC port.
//!
//! Authentication, limits and telemetry are the server's tower layers,
//! which run for every route of the port: a REST call is verified,
//! admitted and counted exactly like a gRPC one. Here a call's JSON body
//! is read (bounded, `application/json`, unknown fields refused), turned
//! into the service message, answered by the core, and the core's answer
//! or [`ApiError`] rendered as JSON (the error's one HTTP mapping).

pub mod dto;
mod openapi;

pub use openapi::{ApiDoc, openapi_json};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engram_api::ApiError;
use engram_auth::Claims;
use engram_ingest::{IngestServiceImpl, JobServiceImpl};
use engram_memory::{Billing, CollectionServiceImpl, CreditServiceImpl, MemoryServiceImpl};
use engram_proto::v1 as pb;
use engram_recall::RecallServiceImpl;
use http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The service cores the REST routes call; a role serves the routes of
/// the cores it has (an `engram recall` process answers `POST /recall`
/// only).
#[derive(Clone, Default)]
pub struct Cores {
    /// `POST /ingestion/memory`.
    pub ingest: Option<Arc<IngestServiceImpl>>,
    /// `GET /jobs/{id}`.
    pub jobs: Option<Arc<JobServiceImpl>>,
    /// `POST /memory`, `GET /memory/{id}/status`, `POST /memory/forget`.
    pub memory: Option<Arc<MemoryServiceImpl>>,
    /// `/memory/collections`.
    pub collections: Option<Arc<CollectionServiceImpl>>,
    /// `/credits/...`.
    pub credits: Option<Arc<CreditServiceImpl>>,
    /// `POST /recall`.
    pub recall: Option<Arc<RecallServiceImpl>>,
}

#[derive(Clone)]
struct Api {
    cores: Cores,
    max_body_bytes: usize,
}

/// The REST routes of `cores`, reading bodies of at most `max_body_bytes`
/// (the same `limits.max_request_bytes` that caps a gRPC message).
pub fn router(cores: Cores, max_body_bytes: usize) -> axum::Router {
    let mut r = axum::Router::new();
    if cores.ingest.is_some() {
        r = r.route("/ingestion/memory", post(remember));
    }
    if cores.jobs.is_some() {
        r = r.route("/jobs/{job_id}", get(get_job));
    }
    if cores.memory.is_some() {
        r = r
            .route("/memory", post(store_memory))
            .route("/memory/{memory_id}/status", get(memory_status))
            .route("/memory/forget", post(forget));
    }
    if cores.collections.is_some() {
        r = r
            .route(
                "/memory/collections",
                post(create_collection).get(list_collections),
            )
            .route(
                "/memory/collections/{collection_id}",
                axum::routing::delete(delete_collection),
            );
    }
    if cores.credits.is_some() {
        r = r
            .route("/credits/balance", get(balance))
            .route("/credits/top-up", post(top_up))
            .route("/credits/ledger", get(ledger));
    }
    if cores.recall.is_some() {
        r = r.route("/recall", post(recall));
    }
    r.route("/openapi.json", get(openapi::serve))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Api {
            cores,
            max_body_bytes,
        })
}

/// The answer to a path no route serves: gRPC's UNIMPLEMENTED for a gRPC
/// caller (an unknown method), a JSON 404 for everyone else.
pub async fn not_found(request: Request) -> Response {
    let grpc = engram_api::is_grpc(request.headers());
    if grpc {
        return tonic::Status::unimplemented(format!("no method {}", request.uri().path()))
            .into_http::<axum::body::Body>()
            .into_response();
    }
    Rest(ApiError::NotFound(format!(
        "no route {} {}",
        request.method(),
        request.uri().path()
    )))
    .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    let mut r = Rest(ApiError::invalid(
        "method",
        format!(
            "{} is not served at {}",
            request.method(),
            request.uri().path()
        ),
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

/// An [`ApiError`] as the HTTP response of its one mapping.
#[derive(Debug)]
pub struct Rest(pub ApiError);

impl From<ApiError> for Rest {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for Rest {
    fn into_response(self) -> Response {
        self.0.to_http().map(axum::body::Body::from)
    }
}

/// A JSON response with `status`.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            axum::body::Body::from(body),
        )
            .into_response(),
        Err(e) => Rest(ApiError::Internal(format!(
            "cannot encode the response: {e}"
        )))
        .into_response(),
    }
}

/// The claims the auth layer verified (401 if it did not run).
fn claims(request: &Request) -> Result<Claims, Rest> {
    Ok(engram_api::claims_of(request.extensions())?)
}

/// The request's claims and its JSON body as `T`: `application/json`
/// (else 400 naming `content-type`), at most the body limit (else 413),
/// valid JSON of the right shape with no unknown field (else 400 naming
/// the field where parsing stopped).
async fn body<T: DeserializeOwned>(api: &Api, request: Request) -> Result<(Claims, T), Rest> {
    let claims = claims(&request)?;
    let (parts, body) = request.into_parts();
    check_content_type(&parts.headers)?;
    let bytes = read_limited(body, api.max_body_bytes).await?;
    Ok((claims, parse(&bytes)?))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::invalid(
        "content-type",
        if ct.is_empty() {
            "required: application/json".to_owned()
        } else {
            format!("{ct:?} is not accepted: send application/json")
        },
    ))
}

async fn read_limited(body: axum::body::Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    use http_body_util::BodyExt;
    let too_large =
        |size: usize| ApiError::from(&engram_limits::LimitError::RequestTooLarge { size, limit });
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit + 1)),
        Err(e) => Err(ApiError::invalid(
            "body",
            format!("the request body could not be read: {e}"),
        )),
    }
}

/// Parses a JSON body; the violation names the field where it failed
/// (`turns[0].text`), or `body` when the JSON itself is malformed.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(de) {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = if inner.is_syntax() || inner.is_eof() || path == "." {
                "body".to_owned()
            } else {
                path
            };
            Err(ApiError::invalid(field, inner.to_string()))
        }
    }
}

fn with_billing(mut response: Response, billing: Option<&Billing>) -> Response {
    if let Some(b) = billing {
        for (name, value) in b.headers() {
            if let Ok(v) = http::HeaderValue::try_from(value) {
                response.headers_mut().insert(name, v);
            }
        }
    }
    response
}

/// A path segment, or a 400 naming it (a segment that is not UTF-8 once
/// percent-decoded, say) instead of axum's plain-text rejection.
fn segment(field: &str, p: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|Path(v)| v)
        .map_err(|e| ApiError::invalid(field, e.body_text()))
}

/// The core a route needs; the router adds a route only with its core.
fn core<T>(c: &Option<Arc<T>>) -> Result<&T, Rest> {
    c.as_deref().ok_or_else(|| {
        Rest(ApiError::Internal(
            "route served without its service".into(),
        ))
    })
}

#[utoipa::path(
    post,
    path = "/ingestion/memory",
    tag = "memory",
    summary = "Ingest conversation memory",
    request_body = dto::RememberBody,
    responses(
                (status = 202, description = "Accepted: the turns are recallable now, enrichment continues in the background", body = dto::RememberReply),
        openapi::Refusals,
    ),
    security(("bearer" = []))
)]
async fn remember(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let (claims, b) = body::<dto::RememberBody>(&api, request).await?;
    let reply = core(&api.cores.ingest)?.remember(&claims, b.into()).await?;
    Ok(json(StatusCode::ACCEPTED, &dto::RememberReply::from(reply)))
}

#[utoipa::path(
    post,
    path = "/recall",
    tag = "recall",
    summary = "Recall memory",
    request_body = dto::RecallBody,
    responses(
        (status = 200, description = "The hits, ranked, with a calibrated confidence", body = dto::RecallReply),
        openapi::Refusals,
    ),
    security(("bearer" = []))
)]
async fn recall(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let (claims, b) = body::<dto::RecallBody>(&api, request).await?;
    let recalled = core(&api.cores.recall)?.recall(&claims, b.into()).await?;
    Ok(json(
        StatusCode::OK,
        &dto::RecallReply::from(recalled.response),
    ))
}

#[utoipa::path(
    get,
    path = "/jobs/{job_id}",
    tag = "memory",
    summary = "An enrichment job",
    params(("job_id" = String, Path, description = "A passive_job_id")),
    responses(
        (status = 200, description = "The job", body = dto::Job),
        (status = 404, description = "No such job", body = dto::ErrorBody),
        openapi::ReadRefusals,
    ),
    security(("bearer" = []))
)]
async fn get_job(
    State(api): State<Api>,
    job_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Rest> {
    let claims = claims(&request)?;
    let job_id = segment("job_id", job_id)?;
    let r = core(&api.cores.jobs)?
        .get_job(&claims, pb::GetJobRequest { job_id })
        .await?;
    Ok(json(StatusCode::OK, &r.job.map(dto::Job::from)))
}

#[utoipa::path(
    post,
    path = "/memory",
    tag = "memory",
    summary = "Store a memory (user, knowledge, or hive) in a collection",
    request_body = dto::StoreBody,
    responses(
        (status = 202, description = "Accepted; poll GET /memory/{memory_id}/status. Headers x-credit-balance, x-credit-charged, x-billing-tx when credits are on", body = dto::StoreReply),
        (status = 402, description = "INSUFFICIENT_CREDITS: details.required, details.available, details.shortfall", body = dto::ErrorBody),
        (status = 404, description = "No such collection", body = dto::ErrorBody),
        openapi::Refusals,
    ),
    security(("bearer" = []))
)]
async fn store_memory(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let (claims, b) = body::<dto::StoreBody>(&api, request).await?;
    let req = b.into_request(&claims.org_id);
    let billed = core(&api.cores.memory)?.store_memory(&claims, req).await?;
    let response = json(StatusCode::ACCEPTED, &dto::StoreReply::from(billed.value));
    Ok(with_billing(response, billed.billing.as_ref()))
}

#[utoipa::path(
    get,
    path = "/memory/{memory_id}/status",
    tag = "memory",
    summary = "Where a stored memory's processing stands",
    params(("memory_id" = String, Path, description = "A memory_id from POST /memory")),
    responses(
        (status = 200, description = "pending, processing, ready or failed", body = dto::MemoryStatusReply),
        (status = 404, description = "No such memory", body = dto::ErrorBody),
        openapi::ReadRefusals,
    ),
    security(("bearer" = []))
)]
async fn memory_status(
    State(api): State<Api>,
    memory_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Rest> {
    let claims = claims(&request)?;
    let memory_id = segment("memory_id", memory_id)?;
    let r = core(&api.cores.memory)?
        .get_memory_status(&claims, pb::GetMemoryStatusRequest { memory_id })
        .await?;
    Ok(json(StatusCode::OK, &dto::MemoryStatusReply::from(r)))
}

#[utoipa::path(
    post,
    path = "/memory/forget",
    tag = "memory",
    summary = "Forget a turn, a memory, a session or all of a user's data",
    request_body = dto::ForgetBody,
    responses(
        (status = 200, description = "What was removed", body = dto::ForgetReply),
        (status = 404, description = "No such target", body = dto::ErrorBody),
        openapi::Refusals,
    ),
    security(("bearer" = []))
)]
async fn forget(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let (claims, b) = body::<dto::ForgetBody>(&api, request).await?;
    let req = b.into_request(&claims.org_id)?;
    let r = core(&api.cores.memory)?.forget(&claims, req).await?;
    Ok(json(StatusCode::OK, &dto::ForgetReply::from(r)))
}

#[utoipa::path(
    post,
    path = "/memory/collections",
    tag = "collections",
    summary = "Create a team collection",
    request_body = dto::CreateCollectionBody,
    responses(
        (status = 201, description = "The collection", body = dto::Collection),
        (status = 409, description = "A collection of that name exists with other members", body = dto::ErrorBody),
        openapi::Refusals,
    ),
    security(("bearer" = []))
)]
async fn create_collection(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let (claims, b) = body::<dto::CreateCollectionBody>(&api, request).await?;
    let req = pb::CreateCollectionRequest {
        org_id: dto::or(b.org_id, &claims.org_id),
        name: b.name,
        members: b.members,
    };
    let r = core(&api.cores.collections)?
        .create_collection(&claims, req)
        .await?;
    Ok(json(
        StatusCode::CREATED,
        &r.collection.map(dto::Collection::from),
    ))
}

#[utoipa::path(
    get,
    path = "/memory/collections",
    tag = "collections",
    summary = "The collections the caller can read",
    responses(
        (status = 200, description = "Personal first, then team collections by name", body = dto::Collections),
        openapi::ReadRefusals,
    ),
    security(("bearer" = []))
)]
async fn list_collections(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let claims = claims(&request)?;
    let req = pb::ListCollectionsRequest {
        org_id: claims.org_id.clone(),
    };
    let r = core(&api.cores.collections)?
        .list_collections(&claims, req)
        .await?;
    let collections = r.collections.into_iter().map(Into::into).collect();
    Ok(json(StatusCode::OK, &dto::Collections { collections }))
}

#[utoipa::path(
    delete,
    path = "/memory/collections/{collection_id}",
    tag = "collections",
    summary = "Delete a team collection and its memories",
    params(("collection_id" = String, Path, description = "A team collection id")),
    responses(
        (status = 200, description = "What was removed", body = dto::DeletedCollection),
        (status = 404, description = "No such collection", body = dto::ErrorBody),
        openapi::ReadRefusals,
    ),
    security(("bearer" = []))
)]
async fn delete_collection(
    State(api): State<Api>,
    collection_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, Rest> {
    let claims = claims(&request)?;
    let collection_id = segment("collection_id", collection_id)?;
    let req = pb::DeleteCollectionRequest {
        org_id: claims.org_id.clone(),
        collection_id,
    };
    let r = core(&api.cores.collections)?
        .delete_collection(&claims, req)
        .await?;
    Ok(json(
        StatusCode::OK,
        &dto::DeletedCollection {
            memory_chunks: r.memory_chunks,
            observations: r.observations,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/credits/balance",
    tag = "credits",
    summary = "The workspace wallet",
    responses(
        (status = 200, description = "Balance and price", body = dto::Balance),
        openapi::ReadRefusals,
    ),
    security(("bearer" = []))
)]
async fn balance(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let claims = claims(&request)?;
    let req = pb::GetBalanceRequest {
        org_id: claims.org_id.clone(),
    };
    let r = core(&api.cores.credits)?.get_balance(&claims, req).await?;
    Ok(json(
        StatusCode::OK,
        &dto::Balance {
            balance: r.balance,
            price_per_char: r.price_per_char,
            enabled: r.enabled,
        },
    ))
}

#[utoipa::path(
    post,
    path = "/credits/top-up",
    tag = "credits",
    summary = "Add credits to the wallet (once per idempotency key)",
    request_body = dto::TopUpBody,
    responses(
        (status = 200, description = "The balance after it", body = dto::TopUpReply),
        (status = 409, description = "The key was used with another amount", body = dto::ErrorBody),
        openapi::Refusals,
    ),
    security(("bearer" = []))
)]
async fn top_up(State(api): State<Api>, request: Request) -> Result<Response, Rest> {
    let (claims, b) = body::<dto::TopUpBody>(&api, request).await?;
    let req = pb::TopUpRequest {
        org_id: dto::or(b.org_id, &claims.org_id),
        amount: b.amount,
        idempotency_key: b.idempotency_key,
    };
    let r = core(&api.cores.credits)?.top_up(&claims, req).await?;
    Ok(json(
        StatusCode::OK,
        &dto::TopUpReply {
            balance: r.balance,
            tx_id: r.tx_id,
            added: r.added,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/credits/ledger",
    tag = "credits",
    summary = "The wallet's ledger, oldest first",
    params(dto::LedgerQuery),
    responses(
        (status = 200, description = "Rows", body = dto::Ledger),
        openapi::ReadRefusals,
    ),
    security(("bearer" = []))
)]
async fn ledger(
    State(api): State<Api>,
    query: Result<Query<dto::LedgerQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Result<Response, Rest> {
    let claims = claims(&request)?;
    let Query(q) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let req = pb::ListLedgerRequest {
        org_id: claims.org_id.clone(),
        limit: q.limit,
    };
    let r = core(&api.cores.credits)?.list_ledger(&claims, req).await?;
    Ok(json(StatusCode::OK, &dto::Ledger::from(r)))
}

/// The route template of a REST request (`/memory/{memory_id}/status`),
/// for metrics and spans: ids in paths would give every call its own
/// series. `None` for a path no route serves.
pub fn route_of(path: &str) -> Option<&'static str> {
    const ROUTES: [&str; 10] = [
        "/ingestion/memory",
        "/recall",
        "/memory",
        "/memory/forget",
        "/memory/collections",
        "/credits/balance",
        "/credits/top-up",
        "/credits/ledger",
        "/openapi.json",
        "/mcp",
    ];
    if let Some(r) = ROUTES.iter().find(|r| **r == path) {
        return Some(r);
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["jobs", _] => Some("/jobs/{job_id}"),
        ["memory", _, "status"] => Some("/memory/{memory_id}/status"),
        ["memory", "collections", _] => Some("/memory/collections/{collection_id}"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_parse_failure_names_the_field() {
        let e = parse::<dto::RememberBody>(br#"{"turns": [{"text": 7}]}"#).unwrap_err();
        assert_eq!(e.violated_fields(), ["turns[0].text"]);
        let e = parse::<dto::RememberBody>(br#"{"turnz": []}"#).unwrap_err();
        assert_eq!(e.violated_fields(), ["turnz"], "{e}");
        let e = parse::<dto::RecallBody>(br#"{"q": "x", "mode": "fast"}"#).unwrap_err();
        assert_eq!(e.violated_fields(), ["mode"]);
        let e = parse::<dto::RecallBody>(b"{not json").unwrap_err();
        assert_eq!(e.violated_fields(), ["body"]);
        let e = parse::<dto::RecallBody>(b"").unwrap_err();
        assert_eq!(e.violated_fields(), ["body"]);
    }

    #[test]
    fn only_json_is_accepted() {
        let mut h = HeaderMap::new();
        assert_eq!(
            check_content_type(&h).unwrap_err().violated_fields(),
            ["content-type"]
        );
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(check_content_type(&h).is_err());
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(check_content_type(&h).is_ok());
    }

    #[test]
    fn routes_are_templates() {
        assert_eq!(
            route_of("/memory/0123/status"),
            Some("/memory/{memory_id}/status")
        );
        assert_eq!(route_of("/jobs/abc"), Some("/jobs/{job_id}"));
        assert_eq!(route_of("/recall"), Some("/recall"));
        assert_eq!(route_of("/nope/x/y/z"), None);
    }

    proptest! {
        /// Whatever bytes a body holds, parsing answers Ok or a 400 naming
        /// a field, never a panic; text in any script survives the trip.
        #[test]
        fn any_body_parses_or_names_a_field(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = parse::<dto::RecallBody>(&bytes) {
                prop_assert_eq!(e.http_status(), StatusCode::BAD_REQUEST);
                prop_assert_eq!(e.violated_fields().len(), 1);
            }
        }

        #[test]
        fn hostile_text_round_trips_into_the_request(text in engram_testkit::text::hostile_text()) {
            let body = serde_json::json!({"q": text, "scope": {"org_id": "o"}}).to_string();
            let b = parse::<dto::RecallBody>(body.as_bytes()).unwrap();
            let req = pb::RecallRequest::from(b);
            prop_assert_eq!(req.q, text);
        }

        #[test]
        fn any_path_has_a_template_or_none(path in "\\PC{0,64}") {
            if let Some(r) = route_of(&path) {
                prop_assert!(r.starts_with('/'));
            }
        }
    }
}
