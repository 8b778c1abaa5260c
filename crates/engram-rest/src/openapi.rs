//! The OpenAPI 3.1 document of the REST API, generated from the handlers'
//! `#[utoipa::path]` attributes and the bodies' `ToSchema` derives, served
//! at `/openapi.json` (without a token: tools fetch it before they have one).

use crate::dto::ErrorBody;
use axum::response::{IntoResponse, Response};
use http::header;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Engram",
        description = "Self-hosted memory for LLM agents: the REST surface, the same service as the gRPC contract (engram.v1) on the same port."
    ),
    paths(
        crate::remember,
        crate::recall,
        crate::get_job,
        crate::store_memory,
        crate::memory_status,
        crate::forget,
        crate::create_collection,
        crate::list_collections,
        crate::delete_collection,
        crate::balance,
        crate::top_up,
        crate::ledger,
    ),
    modifiers(&Bearer),
    tags(
        (name = "memory", description = "Conversation turns and stored memories"),
        (name = "recall", description = "The memories a model should read"),
        (name = "collections", description = "Team collections"),
        (name = "credits", description = "The workspace wallet")
    )
)]
pub struct ApiDoc;

/// The refusals a route taking a body may answer (documentation only:
/// the answers are `ApiError`s rendered by their HTTP mapping).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "a description of responses, never built")]
pub(crate) enum Refusals {
    /// Bad input: the fields are named in details.field_violations.
    #[response(status = 400)]
    BadInput(ErrorBody),
    /// No valid bearer token.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// POLICY_DENY: another tenant's data, or a role too low.
    #[response(status = 403)]
    PolicyDeny(ErrorBody),
    /// REQUEST_TOO_LARGE: the body is over limits.max_request_bytes.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A tenant limit (rate, calls in flight, backlog); Retry-After says when.
    #[response(status = 429)]
    Limited(ErrorBody),
    /// MEMORY_UNREACHABLE or MEMORY_INFRA_NOT_READY; Retry-After says when.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The refusals a route without a body may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, reason = "a description of responses, never built")]
pub(crate) enum ReadRefusals {
    /// Bad input: the fields are named in details.field_violations.
    #[response(status = 400)]
    BadInput(ErrorBody),
    /// No valid bearer token.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// POLICY_DENY: another tenant's data, or a role too low.
    #[response(status = 403)]
    PolicyDeny(ErrorBody),
    /// A tenant limit (rate, calls in flight); Retry-After says when.
    #[response(status = 429)]
    Limited(ErrorBody),
    /// MEMORY_UNREACHABLE or MEMORY_INFRA_NOT_READY; Retry-After says when.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The bearer JWT every route takes.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        // Added to the collected components (replacing them would drop
        // every schema).
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// The document as JSON, built once.
pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"cannot encode the document: {e}\"}}"))
    })
}

pub(crate) async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_3_1_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/ingestion/memory",
            "/recall",
            "/jobs/{job_id}",
            "/memory",
            "/memory/{memory_id}/status",
            "/memory/forget",
            "/memory/collections",
            "/memory/collections/{collection_id}",
            "/credits/balance",
            "/credits/top-up",
            "/credits/ledger",
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
        assert_eq!(
            doc["paths"]["/ingestion/memory"]["post"]["responses"]["202"]["content"]["application/json"]
                ["schema"]["$ref"],
            "#/components/schemas/RememberReply"
        );
        assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
        assert!(doc["components"]["schemas"]["Filter"].is_object());
        let refusals = &doc["paths"]["/memory"]["post"]["responses"];
        for status in ["400", "401", "402", "403", "404", "413", "429", "503"] {
            assert_eq!(
                refusals[status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{status}: {refusals}"
            );
        }
    }

    #[test]
    fn the_error_body_documented_is_the_one_sent() {
        let errors = [
            engram_api::ApiError::invalid("q", "must not be empty"),
            engram_api::ApiError::InsufficientCredits {
                required: 5,
                available: 1,
            },
            engram_api::ApiError::NotFound("no job".into()),
        ];
        for e in errors {
            let body: crate::dto::ErrorBody =
                serde_json::from_value(e.to_json()).expect("the documented shape");
            assert_eq!(body.message, e.to_string());
        }
    }
}
