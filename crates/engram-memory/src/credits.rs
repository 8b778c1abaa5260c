//! `CreditService`: the workspace wallet and its ledger.

use crate::Workspace;
use engram_api::{Action, ApiError, Violations};
use engram_auth::Claims;
use engram_proto::time::from_ms as timestamp;
use engram_proto::v1::credit_service_server::CreditService;
use engram_proto::v1::{
    GetBalanceRequest, GetBalanceResponse, LedgerRow, ListLedgerRequest, ListLedgerResponse,
    TopUpRequest, TopUpResponse,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Largest top-up, micro-credits.
const MAX_TOP_UP: u64 = 1_000_000_000_000_000;
/// Longest idempotency key.
const MAX_KEY_CHARS: usize = 128;
/// Ledger rows returned at most, and by default.
const MAX_ROWS: u32 = 1_000;
const DEFAULT_ROWS: u32 = 100;

/// The credit service.
pub struct CreditServiceImpl {
    ws: Arc<Workspace>,
}

impl CreditServiceImpl {
    /// A service over the workspace's ports.
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self { ws }
    }
}

impl CreditServiceImpl {
    /// `GetBalance` for the caller of `claims`.
    pub async fn get_balance(
        &self,
        claims: &Claims,
        req: GetBalanceRequest,
    ) -> Result<GetBalanceResponse, ApiError> {
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        engram_api::authorize(claims, Action::ManageCredits)?;
        let balance = self
            .ws
            .credits
            .balance(&claims.org_id)
            .await
            .map_err(ApiError::from)?;
        Ok(GetBalanceResponse {
            balance,
            price_per_char: self.ws.config.price_per_char,
            enabled: self.ws.config.credits_enabled,
        })
    }

    /// `TopUp` for the caller of `claims`.
    pub async fn top_up(
        &self,
        claims: &Claims,
        req: TopUpRequest,
    ) -> Result<TopUpResponse, ApiError> {
        let mut v = Violations::new();
        v.require_org("org_id", &req.org_id);
        if req.amount == 0 || req.amount > MAX_TOP_UP {
            v.add("amount", format!("1 to {MAX_TOP_UP} micro-credits"));
        }
        let key = req.idempotency_key.trim();
        if key.is_empty() || key.chars().count() > MAX_KEY_CHARS {
            v.add(
                "idempotency_key",
                format!("1 to {MAX_KEY_CHARS} characters naming this top-up"),
            );
        }
        v.into_result()?;
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        engram_api::authorize(claims, Action::ManageCredits)?;
        let moved = self
            .ws
            .credits
            .top_up(&claims.org_id, &format!("top-up:{key}"), req.amount)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(org_id = %claims.org_id, tx_id = %moved.tx_id, added = moved.amount, balance = moved.balance, "credits topped up");
        Ok(TopUpResponse {
            balance: moved.balance,
            tx_id: moved.tx_id,
            added: moved.amount,
        })
    }

    /// `ListLedger` for the caller of `claims`.
    pub async fn list_ledger(
        &self,
        claims: &Claims,
        req: ListLedgerRequest,
    ) -> Result<ListLedgerResponse, ApiError> {
        let limit = req.limit.unwrap_or(DEFAULT_ROWS);
        let mut v = Violations::new();
        v.require_org("org_id", &req.org_id);
        if !(1..=MAX_ROWS).contains(&limit) {
            v.add("limit", format!("1 to {MAX_ROWS}"));
        }
        v.into_result()?;
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        engram_api::authorize(claims, Action::ManageCredits)?;
        let rows = self
            .ws
            .credits
            .ledger(&claims.org_id, limit as usize)
            .await
            .map_err(ApiError::from)?;
        Ok(ListLedgerResponse {
            rows: rows
                .into_iter()
                .map(|r| LedgerRow {
                    tx_id: r.tx_id,
                    kind: r.kind.as_str().to_owned(),
                    delta: r.delta,
                    balance_after: r.balance_after,
                    key: r.key,
                    at: Some(timestamp(r.at_ms)),
                    detail_json: serde_json::Value::Object(r.detail).to_string(),
                })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl CreditService for CreditServiceImpl {
    async fn get_balance(
        &self,
        request: Request<GetBalanceRequest>,
    ) -> Result<Response<GetBalanceResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            CreditServiceImpl::get_balance(self, &claims, request.into_inner()).await?,
        ))
    }

    async fn top_up(
        &self,
        request: Request<TopUpRequest>,
    ) -> Result<Response<TopUpResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            CreditServiceImpl::top_up(self, &claims, request.into_inner()).await?,
        ))
    }

    async fn list_ledger(
        &self,
        request: Request<ListLedgerRequest>,
    ) -> Result<Response<ListLedgerResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            CreditServiceImpl::list_ledger(self, &claims, request.into_inner()).await?,
        ))
    }
}
