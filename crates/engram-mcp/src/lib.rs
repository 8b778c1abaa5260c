//! Engram as a Model Context Protocol server: the tools `remember`,
//! `recall`, `store_memory`, `memory_status` and `forget` over the same
//! service cores as gRPC and REST, for agents (desktop apps, IDEs, agent
//! frameworks) that use memory as tools.
//!
//! Two transports: stdio (`engram mcp`, launched by a desktop agent; the
//! caller is the token given at start) and streamable HTTP at `/mcp` on
//! the server's port (the caller is the bearer token of each request,
//! verified by the server's auth layer like any other call). A tool's
//! answer is the JSON the REST route of the same call returns; a refusal
//! is a tool error carrying the REST error body, so the model reads what
//! went wrong (the field, the reason, when to retry).

use engram_api::ApiError;
use engram_auth::Claims;
use engram_proto::v1 as pb;
use engram_rest::{Cores, dto};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The MCP server over Engram's cores.
#[derive(Clone)]
pub struct EngramMcp {
    cores: Cores,
    /// The caller over stdio (the token given at start); over HTTP each
    /// request's verified claims are used instead.
    identity: Option<Claims>,
    /// The server's limiter: write tools reserve the tenant's backlog
    /// (the HTTP layer in front cannot see which tool a JSON-RPC call names).
    limiter: Option<Arc<engram_limits::Limiter>>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for EngramMcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngramMcp")
            .field("identity", &self.identity.as_ref().map(|c| &c.org_id))
            .finish_non_exhaustive()
    }
}

/// One turn to remember.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnArg {
    /// Who spoke: "user", "assistant", "system" or "tool".
    pub role: String,
    /// What was said, verbatim.
    pub text: String,
    /// When it was said, RFC 3339 (e.g. "2026-05-08T14:00:00Z"); now when left out.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Facts you already extracted from this turn, in the third person ("User is allergic to shellfish.").
    #[serde(default)]
    pub observations: Vec<String>,
}

/// Arguments of `remember`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RememberArgs {
    /// The conversation turns to remember, oldest first (at least one).
    pub turns: Vec<TurnArg>,
    /// The conversation, channel or task they belong to; the token's session, else "default-session", when left out.
    #[serde(default)]
    pub session_id: Option<String>,
    /// The end user they belong to; the token's user when left out.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Free-form metadata stored with the turns and usable in recall filters, e.g. {"channel": "support"}.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// Arguments of `recall`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecallArgs {
    /// The question to find memories for, in natural language ("what is the user allergic to?").
    pub q: String,
    /// "active" (default: one fast fused search) or "deep" (slower, better for questions about time, several sessions or multi-step facts).
    #[serde(default)]
    pub mode: Option<String>,
    /// How many memories to return, 1 to 50 (default 15 active, 25 deep; at most 30 are returned).
    #[serde(default)]
    pub top_k: Option<i32>,
    /// Only memories whose metadata match, e.g. {"equals": {"key": "channel", "value": "support"}}; combine with {"all": [...]}, {"any": [...]}, {"negate": {...}}; also {"one_of": {"key", "values"}}, {"range": {"key", "gte", "lt"}}, {"date_range": {"key", "gte": "2026-01-01T00:00:00Z"}}, {"exists": {"key"}}.
    #[serde(default)]
    pub filter: Option<Value>,
    /// Prefer this conversation's turns; all of the user's memory is searched either way.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Whose memory; the token's user when left out.
    #[serde(default)]
    pub user_id: Option<String>,
    /// Also return a chronological summary of what was found.
    #[serde(default)]
    pub include_timeline: bool,
    /// Team collections to search besides the user's own memory.
    #[serde(default)]
    pub collection_ids: Vec<String>,
}

/// Arguments of `store_memory`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreArgs {
    /// The document or note to store, up to 100,000 characters.
    pub text: String,
    /// A display title.
    #[serde(default)]
    pub title: Option<String>,
    /// "user" (default: the caller's own), "knowledge" (workspace knowledge base) or "hive" (workspace-wide); the last two need an admin token.
    #[serde(default, rename = "type")]
    pub memory_type: Option<String>,
    /// A team collection to store it in; the caller's personal collection when left out.
    #[serde(default)]
    pub collection_id: Option<String>,
    /// Also extract facts from it (observations), as for conversation turns.
    #[serde(default)]
    pub extract: bool,
    /// Metadata usable in recall filters.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// Arguments of `memory_status`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// The memory_id store_memory returned.
    pub memory_id: String,
}

/// Arguments of `forget`: exactly one target.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetArgs {
    /// One remembered turn (an id from remember's active_fragment_ids or a recall hit), with the facts derived from it.
    #[serde(default)]
    pub fragment_id: Option<String>,
    /// One stored memory (from store_memory), with its chunks and facts.
    #[serde(default)]
    pub memory_id: Option<String>,
    /// Every turn of one conversation.
    #[serde(default)]
    pub session_id: Option<String>,
    /// Everything of the user: set to true to erase all of their memory.
    #[serde(default)]
    pub all_user_data: Option<bool>,
    /// Whose memory; the token's user when left out.
    #[serde(default)]
    pub user_id: Option<String>,
}

/// A tool's answer: the REST reply as JSON text, or the REST error body
/// as a tool error.
fn answer<T: serde::Serialize>(result: Result<T, ApiError>) -> CallToolResult {
    match result {
        Ok(value) => match serde_json::to_string(&value) {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                "cannot encode the answer: {e}"
            ))]),
        },
        Err(e) => CallToolResult::error(vec![ContentBlock::text(e.to_json().to_string())]),
    }
}

fn core<T>(c: &Option<Arc<T>>, tool: &str) -> Result<Arc<T>, ApiError> {
    c.clone()
        .ok_or_else(|| ApiError::Internal(format!("{tool} is not served by this process's role")))
}

/// Parses a tool's JSON value as a REST body type (the same field names
/// and violations).
fn from_value<T: serde::de::DeserializeOwned>(field: &str, v: Value) -> Result<T, ApiError> {
    engram_rest::parse::<T>(v.to_string().as_bytes()).map_err(|e| match e {
        ApiError::InvalidArgument(mut violations) => {
            for f in &mut violations {
                f.field = if f.field == "body" {
                    field.to_owned()
                } else {
                    format!("{field}.{}", f.field)
                };
            }
            ApiError::InvalidArgument(violations)
        }
        other => other,
    })
}

#[tool_router]
impl EngramMcp {
    /// A server over `cores`; `identity` is the caller over stdio (None
    /// over HTTP, where each request carries its own token).
    pub fn new(cores: Cores, identity: Option<Claims>) -> Self {
        Self {
            cores,
            identity,
            limiter: None,
            tool_router: Self::tool_router(),
        }
    }

    /// Admits write tools against the tenant's backlog in `limiter`.
    pub fn with_limiter(mut self, limiter: Arc<engram_limits::Limiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    fn claims(&self, ctx: &RequestContext<RoleServer>) -> Result<Claims, ApiError> {
        if let Some(c) = &self.identity {
            return Ok(c.clone());
        }
        match ctx.extensions.get::<http::request::Parts>() {
            Some(parts) => engram_api::claims_of(&parts.extensions),
            None => Err(engram_auth::AuthError::Missing.into()),
        }
    }

    /// Reserves a backlog slot of `org` for a write, held by the permit.
    async fn admit(&self, org: &str) -> Result<Option<engram_limits::Permit>, ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(None);
        };
        match limiter.admit_backlog(org).await {
            Ok(permit) => Ok(Some(permit)),
            Err(e) => {
                metrics::counter!(engram_telemetry::metrics::LIMITED, "reason" => e.reason())
                    .increment(1);
                tracing::debug!(
                    org_id = org,
                    reason = e.reason(),
                    "refused an mcp write over a limit"
                );
                Err(ApiError::from(&e))
            }
        }
    }

    #[tool(
        description = "Remember conversation turns for the user: they are recallable at once, and facts and entities are extracted from them in the background. Re-sending the same turns is safe (nothing is stored or billed twice). Returns job_id, active_fragment_ids and passive_job_id."
    )]
    async fn remember(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<RememberArgs>,
    ) -> CallToolResult {
        answer(self.do_remember(&ctx, args).await)
    }

    async fn do_remember(
        &self,
        ctx: &RequestContext<RoleServer>,
        args: RememberArgs,
    ) -> Result<dto::RememberReply, ApiError> {
        let claims = self.claims(ctx)?;
        let ingest = core(&self.cores.ingest, "remember")?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let req = pb::RememberRequest {
            scope: Some(pb::Scope {
                org_id: claims.org_id.clone(),
                user_id: args.user_id.unwrap_or_default(),
                session_id: args.session_id.unwrap_or_default(),
            }),
            turns: args
                .turns
                .into_iter()
                .map(|t| pb::Turn {
                    role: t.role,
                    text: t.text,
                    timestamp: t.timestamp.unwrap_or_else(|| now.clone()),
                    observations: t.observations,
                })
                .collect(),
            options: None,
            metadata: args
                .metadata
                .as_ref()
                .map(engram_proto::json::json_to_struct),
        };
        let _admitted = self.admit(&claims.org_id).await?;
        Ok(ingest.remember(&claims, req).await?.into())
    }

    #[tool(
        description = "Recall the user's memories relevant to a question, before answering it: ranked conversation turns, extracted facts (observations) and entities, with a calibrated confidence in [0, 1] that they answer it. Use mode \"deep\" for questions about when things happened, across many conversations, or needing several facts."
    )]
    async fn recall(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<RecallArgs>,
    ) -> CallToolResult {
        answer(self.do_recall(&ctx, args).await)
    }

    async fn do_recall(
        &self,
        ctx: &RequestContext<RoleServer>,
        args: RecallArgs,
    ) -> Result<dto::RecallReply, ApiError> {
        let claims = self.claims(ctx)?;
        let recall = core(&self.cores.recall, "recall")?;
        let mode = match args.mode.as_deref() {
            None | Some("active") => dto::Mode::Active,
            Some("deep") => dto::Mode::Deep,
            Some(other) => {
                return Err(ApiError::invalid(
                    "mode",
                    format!("{other:?} is not a mode: use \"active\" or \"deep\""),
                ));
            }
        };
        let filter = args
            .filter
            .map(|f| from_value::<dto::Filter>("filter", f))
            .transpose()?;
        let body = dto::RecallBody {
            scope: Some(dto::Scope {
                org_id: claims.org_id.clone(),
                user_id: args.user_id.unwrap_or_default(),
                session_id: args.session_id.unwrap_or_default(),
            }),
            q: args.q,
            mode,
            top_k: args.top_k,
            include_timeline: args.include_timeline,
            filter,
            collection_ids: args.collection_ids,
        };
        Ok(recall.recall(&claims, body.into()).await?.response.into())
    }

    #[tool(
        description = "Store a document or note (up to 100,000 characters) as memory, processed in the background; poll memory_status with the returned memory_id until its status is \"ready\". May be billed per character when the workspace charges credits."
    )]
    async fn store_memory(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<StoreArgs>,
    ) -> CallToolResult {
        answer(self.do_store(&ctx, args).await)
    }

    async fn do_store(
        &self,
        ctx: &RequestContext<RoleServer>,
        args: StoreArgs,
    ) -> Result<Value, ApiError> {
        let claims = self.claims(ctx)?;
        let memory = core(&self.cores.memory, "store_memory")?;
        let memory_type = match args.memory_type.as_deref() {
            None => Value::Null,
            Some(t) => Value::String(t.to_owned()),
        };
        let mut body = serde_json::json!({
            "text": args.text,
            "title": args.title.unwrap_or_default(),
            "collection_id": args.collection_id.unwrap_or_default(),
            "extract": args.extract,
            "metadata": args.metadata,
        });
        if !memory_type.is_null() {
            body["type"] = memory_type;
        }
        let body: dto::StoreBody = from_value("arguments", body)?;
        let _admitted = self.admit(&claims.org_id).await?;
        let billed = memory
            .store_memory(&claims, body.into_request(&claims.org_id))
            .await?;
        let mut reply = serde_json::to_value(dto::StoreReply::from(billed.value))
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        if let Some(b) = billed.billing {
            reply["billing"] = serde_json::json!({
                "balance": b.balance,
                "charged": b.charged,
                "tx": b.tx,
            });
        }
        Ok(reply)
    }

    #[tool(
        description = "Where a stored memory's processing stands: status \"pending\", \"processing\", \"ready\" or \"failed\" (with the error), and the chunks and facts written."
    )]
    async fn memory_status(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<StatusArgs>,
    ) -> CallToolResult {
        answer(self.do_status(&ctx, args).await)
    }

    async fn do_status(
        &self,
        ctx: &RequestContext<RoleServer>,
        args: StatusArgs,
    ) -> Result<dto::MemoryStatusReply, ApiError> {
        let claims = self.claims(ctx)?;
        let memory = core(&self.cores.memory, "memory_status")?;
        let req = pb::GetMemoryStatusRequest {
            memory_id: args.memory_id,
        };
        Ok(memory.get_memory_status(&claims, req).await?.into())
    }

    #[tool(
        description = "Forget memory for good: one turn (fragment_id), one stored memory (memory_id), one conversation (session_id) or everything of the user (all_user_data: true), with every fact and entity mention derived from it. Give exactly one target. Cannot be undone."
    )]
    async fn forget(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<ForgetArgs>,
    ) -> CallToolResult {
        answer(self.do_forget(&ctx, args).await)
    }

    async fn do_forget(
        &self,
        ctx: &RequestContext<RoleServer>,
        args: ForgetArgs,
    ) -> Result<dto::ForgetReply, ApiError> {
        let claims = self.claims(ctx)?;
        let memory = core(&self.cores.memory, "forget")?;
        let body = dto::ForgetBody {
            org_id: claims.org_id.clone(),
            user_id: args.user_id.unwrap_or_default(),
            fragment_id: args.fragment_id,
            memory_id: args.memory_id,
            session_id: args.session_id,
            all_user_data: args.all_user_data,
        };
        let req = body.into_request(&claims.org_id)?;
        Ok(memory.forget(&claims, req).await?.into())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for EngramMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("engram", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Engram is the user's long-term memory. Call recall with the user's question \
                 before answering anything that may depend on what they said before; call \
                 remember with each exchange worth keeping (the user's turn and your reply); \
                 call store_memory for documents and notes; forget erases memory for good.",
            )
    }
}

/// The streamable HTTP service of `server`, to mount at `/mcp`: stateless
/// (every POST stands alone, so any replica answers it) with plain JSON
/// replies, bodies capped at `max_body_bytes`. The server's auth layer
/// verifies the token of each request before it gets here, so the
/// Host-header allowlist (a guard for unauthenticated local servers
/// against DNS rebinding) is off: behind Kubernetes services and proxies
/// the Host is whatever they name.
pub fn http_service(
    server: EngramMcp,
    max_body_bytes: usize,
) -> rmcp::transport::streamable_http_server::StreamableHttpService<
    EngramMcp,
    rmcp::transport::streamable_http_server::session::never::NeverSessionManager,
> {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
    };
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_max_request_body_bytes(max_body_bytes)
        .disable_allowed_hosts();
    StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_have_schemas_and_descriptions() {
        let server = EngramMcp::new(Cores::default(), None);
        let tools = server.tool_router.list_all();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        for want in [
            "remember",
            "recall",
            "store_memory",
            "memory_status",
            "forget",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        for t in &tools {
            assert!(
                t.description.as_ref().is_some_and(|d| d.len() > 60),
                "{} has no useful description",
                t.name
            );
            let schema = serde_json::to_value(&*t.input_schema).unwrap();
            assert_eq!(schema["type"], "object", "{}", t.name);
        }
        let recall = tools.iter().find(|t| t.name == "recall").unwrap();
        let schema = serde_json::to_value(&*recall.input_schema).unwrap();
        assert_eq!(schema["required"], serde_json::json!(["q"]));
    }

    #[test]
    fn a_filter_error_names_the_filter_field() {
        let e = from_value::<dto::Filter>("filter", serde_json::json!({"equals": {"key": 1}}))
            .unwrap_err();
        assert_eq!(e.violated_fields(), ["filter.equals.key"]);
        let e = from_value::<dto::Filter>("filter", serde_json::json!("x")).unwrap_err();
        assert_eq!(e.violated_fields().len(), 1);
    }

    #[test]
    fn refusals_are_tool_errors_with_the_rest_error_body() {
        let r = answer::<()>(Err(ApiError::invalid("q", "must not be empty")));
        assert_eq!(r.is_error, Some(true));
        let text = serde_json::to_value(&r).unwrap().to_string();
        assert!(text.contains("INVALID_ARGUMENT"), "{text}");
    }
}
