//! `MemoryService`: StoreMemory, GetMemoryStatus and Forget.

use crate::validate::{self, ValidStore};
use crate::{Billed, Billing, Workspace};
use engram_api::{Action, ApiError, Violations};
use engram_auth::{Claims, WorkspaceRole};
use engram_core::{Job, JobState, KeptEvent, MemoryType, Movement, OutboundMessage, ids};
use engram_proto::events::v1::{Event, MemoryStored, event};
use engram_proto::time::from_ms as timestamp;
use engram_proto::v1::memory_service_server::MemoryService;
use engram_proto::v1::{
    self as pb, ForgetRequest, ForgetResponse, GetMemoryStatusRequest, GetMemoryStatusResponse,
    StoreMemoryRequest, StoreMemoryResponse,
};
use prost::Message;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Number of lock stripes serializing StoreMemory calls of the same memory.
const STRIPES: usize = 64;

/// The memory service.
pub struct MemoryServiceImpl {
    pub(crate) ws: Arc<Workspace>,
    // Two concurrent copies of one request must not both publish or both
    // reset a failed record; across processes the charge key and the
    // stream's message-id de-duplication keep them apart.
    stripes: Vec<tokio::sync::Mutex<()>>,
}

fn status_of(state: JobState) -> pb::MemoryStatus {
    match state {
        JobState::Pending => pb::MemoryStatus::Pending,
        JobState::Processing => pb::MemoryStatus::Processing,
        JobState::Ready => pb::MemoryStatus::Ready,
        JobState::Failed => pb::MemoryStatus::Failed,
    }
}

/// The user a call acts for: the request's, else the token's.
pub(crate) fn acting_user(
    claims: &Claims,
    role: WorkspaceRole,
    requested: &str,
) -> Result<String, ApiError> {
    let user = if requested.is_empty() {
        match claims.user() {
            Some(u) => u.to_owned(),
            None => {
                let mut v = Violations::new();
                v.add(
                    "user_id",
                    "required when the token has no user_id or sub claim",
                );
                return Err(v.into_result().expect_err("one violation"));
            }
        }
    } else {
        requested.to_owned()
    };
    engram_api::act_for(claims, role, &user)?;
    Ok(user)
}

impl MemoryServiceImpl {
    /// A service over the workspace's ports.
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self {
            ws,
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// The collection a memory goes to, checked against the caller: its
    /// personal one by default; a team collection it may write to.
    async fn collection_for(
        &self,
        claims: &Claims,
        role: WorkspaceRole,
        user: &str,
        requested: &str,
        memory_type: MemoryType,
    ) -> Result<String, ApiError> {
        let personal = ids::personal_collection(user);
        if requested.is_empty() || requested == personal {
            return Ok(personal);
        }
        if requested.starts_with("personal:") {
            return Err(engram_api::permission_denied(
                "a personal collection is written only for its own user",
            ));
        }
        let collection = self
            .ws
            .collections
            .get(&claims.org_id, requested)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("no collection {requested:?}")))?;
        if memory_type == MemoryType::User
            && !role.is_admin()
            && !collection.members.iter().any(|m| m == user)
        {
            return Err(engram_api::permission_denied(
                "only members of a team collection may store memories in it",
            ));
        }
        Ok(collection.collection_id)
    }

    async fn store(
        &self,
        claims: Claims,
        req: StoreMemoryRequest,
        valid: ValidStore,
    ) -> Result<Billed<StoreMemoryResponse>, ApiError> {
        let ws = &self.ws;
        let action = if valid.memory_type.is_workspace_wide() {
            Action::WriteShared
        } else {
            Action::WriteOwn
        };
        let role = engram_api::authorize(&claims, action)?;
        let user = acting_user(&claims, role, &req.user_id)?;
        let collection_id = self
            .collection_for(&claims, role, &user, &req.collection_id, valid.memory_type)
            .await?;
        ws.ensure_provisioned()?;
        let org = &claims.org_id;
        let metadata_json = validate::canonical_json(&valid.metadata.clone().into());
        let memory_id = ids::memory_id(&[
            org,
            &user,
            &collection_id,
            valid.memory_type.as_str(),
            &req.title,
            &req.text,
            if req.extract { "extract" } else { "" },
            &metadata_json,
        ]);
        let stripe = usize::from_str_radix(&memory_id[..4], 16).unwrap_or(0) % STRIPES;
        let _guard = self.stripes[stripe].lock().await;

        ws.stream.ready().await.map_err(ApiError::from)?;
        let previous = ws.jobs.get(&memory_id).await.map_err(ApiError::from)?;
        if let Some(job) = previous.as_ref().filter(|j| j.state != JobState::Failed) {
            return self.resent(org, memory_id, collection_id, job.state).await;
        }

        let charge = if ws.config.credits_enabled {
            let amount = valid.chars as u64 * ws.config.price_per_char;
            Some(
                ws.credits
                    .charge(org, &memory_id, amount)
                    .await
                    .map_err(ApiError::from)?,
            )
        } else {
            None
        };
        let mut job = Job::pending(
            memory_id.clone(),
            org.clone(),
            0,
            chrono::Utc::now().timestamp_millis(),
        );
        if valid.memory_type == MemoryType::User {
            job.owner = Some(user.clone());
        }
        let event = MemoryStored {
            memory_id: memory_id.clone(),
            org_id: org.clone(),
            user_id: user.clone(),
            text: req.text,
            title: req.title,
            memory_type: valid.memory_type.as_str().to_owned(),
            collection_id: collection_id.clone(),
            extract: req.extract,
            metadata: req.metadata,
            stored_at: Some(timestamp(job.created_ms)),
            charge_key: if charge.is_some() {
                memory_id.clone()
            } else {
                String::new()
            },
        };
        // A retry of a failed memory must not be dropped as a duplicate
        // of the first attempt inside the stream's window.
        let attempt = previous.as_ref().map_or(0, |j| j.updated_ms);
        let msg_id = format!("{memory_id}.{attempt}");
        let payload = Event {
            kind: Some(event::Kind::Memory(event)),
        }
        .encode_to_vec();
        // Kept before the job is recorded and until the memory is
        // processed: a pending record never exists without an event the
        // sweeper can publish again (a crash before the publish, an event
        // the stream lost after acknowledging it).
        let outbox = KeptEvent {
            job_id: memory_id.clone(),
            org_id: org.clone(),
            msg_id,
            payload,
            kept_ms: job.created_ms,
            republished_ms: None,
        };
        if let Err(e) = ws.jobs.keep_event(&outbox).await {
            // Nothing of this memory exists yet, unless another replica has
            // recorded it meanwhile: that one's charge is the same standing
            // charge (keyed by the memory id) and must stay.
            if let Ok(Some(_)) = ws.jobs.get(&memory_id).await {
                return Err(ApiError::from(e));
            }
            self.refund(
                org,
                charge.as_ref(),
                &memory_id,
                "the event could not be kept",
            )
            .await;
            return Err(ApiError::from(e));
        }
        // Recorded before the publish, so the consumer never finds its
        // progress overwritten by a late "pending". A record that cannot be
        // written rolls forward with the kept event: the retry records it
        // (its charge is standing, so it pays nothing), or the sweeper
        // creates the record and publishes the event.
        // Created only if absent: another replica may have recorded the same
        // memory since it was read above, and its consumer may already have
        // moved it on (a "pending" written over "ready" would never move
        // again). Only a retry of a failed memory replaces the record.
        let recorded = if previous.is_some() {
            ws.jobs.put(&job).await.map(|()| true)
        } else {
            ws.jobs.create(&job).await
        };
        match recorded {
            Err(e) => {
                tracing::warn!(memory_id = %memory_id, error = %e, "cannot record the memory; a retry or the sweeper will");
                return Err(ApiError::from(e));
            }
            Ok(false) => {
                // The other writer's memory: answered as a re-send. The
                // charge is the standing one of the memory id; the event
                // kept here is dropped by the sweeper once the job is final.
                let state = ws
                    .jobs
                    .get(&memory_id)
                    .await
                    .map_err(ApiError::from)?
                    .map_or(JobState::Pending, |j| j.state);
                return self.resent(org, memory_id, collection_id, state).await;
            }
            Ok(true) => {}
        }
        let published = ws
            .stream
            .publish(OutboundMessage {
                msg_id: outbox.msg_id,
                job_id: memory_id.clone(),
                payload: outbox.payload,
                ..Default::default()
            })
            .await
            .map_err(ApiError::from);
        if let Err(status) = published {
            // Rolled forward, never back: the charge, the pending record
            // and the kept event stay, so a retry (on this replica or
            // another) finds the memory, bills nothing and publishes the
            // kept event again, and without a retry the sweeper does. A
            // roll-back here could fail a memory another replica has just
            // acknowledged, or refund one whose event did reach the stream.
            tracing::warn!(memory_id = %memory_id, error = %status, "cannot publish; the memory will be enqueued by a retry or the sweeper");
            return Err(status);
        }
        tracing::info!(
            org_id = %org,
            memory_id = %memory_id,
            memory_type = valid.memory_type.as_str(),
            collection_id = %collection_id,
            chars = valid.chars,
            charged = charge.as_ref().map_or(0, |c| c.amount),
            "memory stored"
        );
        Ok(Billed {
            value: StoreMemoryResponse {
                memory_id,
                status: pb::MemoryStatus::Pending.into(),
                collection_id,
                characters: valid.chars as u64,
            },
            billing: charge.as_ref().map(Billing::of),
        })
    }

    /// The answer to a request whose memory is already recorded: the same
    /// memory, nothing charged. A memory still pending may have a publish
    /// that failed (or whose acknowledgement was lost): its kept event is
    /// published again under its own message id, which the stream drops if
    /// it has it, so the retry completes the write instead of the sweeper.
    async fn resent(
        &self,
        org: &str,
        memory_id: String,
        collection_id: String,
        state: JobState,
    ) -> Result<Billed<StoreMemoryResponse>, ApiError> {
        if state == JobState::Pending {
            self.publish_kept(&memory_id).await?;
        }
        let billing = if self.ws.config.credits_enabled {
            Some(Billing {
                balance: self.ws.credits.balance(org).await?,
                charged: 0,
                tx: None,
            })
        } else {
            None
        };
        Ok(Billed {
            value: StoreMemoryResponse {
                memory_id,
                status: status_of(state).into(),
                collection_id,
                characters: 0,
            },
            billing,
        })
    }

    /// Publishes the kept event of `memory_id` again, if it has one.
    async fn publish_kept(&self, memory_id: &str) -> Result<(), ApiError> {
        let kept = self
            .ws
            .jobs
            .kept_event(memory_id)
            .await
            .map_err(ApiError::from)?;
        let Some(kept) = kept else {
            return Ok(());
        };
        self.ws
            .stream
            .publish(OutboundMessage {
                msg_id: kept.msg_id,
                job_id: kept.job_id,
                payload: kept.payload,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(ApiError::from)
    }

    /// Gives a charge back after the request failed. A refund that cannot
    /// be made now is logged: the charge stays standing under the memory id,
    /// so the caller's retry is not charged again.
    async fn refund(&self, org: &str, charge: Option<&Movement>, key: &str, reason: &str) {
        if charge.is_none() {
            return;
        }
        match self.ws.credits.refund(org, key, reason).await {
            Ok(_) => tracing::info!(memory_id = key, reason, "refunded a failed request"),
            Err(error) => {
                tracing::error!(memory_id = key, reason, %error, "cannot refund a failed request")
            }
        }
    }
}

impl MemoryServiceImpl {
    /// `StoreMemory`: validated, authorized, charged, then published for
    /// enrichment; the billing reports the wallet after the charge.
    pub async fn store_memory(
        &self,
        claims: &Claims,
        req: StoreMemoryRequest,
    ) -> Result<Billed<StoreMemoryResponse>, ApiError> {
        let valid = validate::store(&req, &self.ws.config)?;
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        self.store(claims.clone(), req, valid).await
    }

    /// `GetMemoryStatus`: where a stored memory's processing stands.
    pub async fn get_memory_status(
        &self,
        claims: &Claims,
        req: GetMemoryStatusRequest,
    ) -> Result<GetMemoryStatusResponse, ApiError> {
        let memory_id = req.memory_id;
        let mut v = Violations::new();
        if memory_id.len() != 32 || !memory_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            v.add("memory_id", "must be the 32 hex characters of a memory_id");
        }
        v.into_result()?;
        let role = engram_api::authorize(claims, Action::Read)?;
        let job = self
            .ws
            .jobs
            .get(&memory_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no memory {memory_id}")))?;
        if job.org_id != claims.org_id {
            return Err(engram_api::permission_denied(
                "the memory belongs to another tenant than the token's org_id",
            ));
        }
        if let Some(owner) = &job.owner {
            engram_api::act_for(claims, role, owner)?;
        }
        Ok(GetMemoryStatusResponse {
            memory_id: job.job_id,
            status: status_of(job.state).into(),
            error: job.error.unwrap_or_default(),
            chunks: job.turns,
            observations: job.observations,
            attempts: job.attempts,
            created_at: Some(timestamp(job.created_ms)),
            updated_at: Some(timestamp(job.updated_ms)),
        })
    }

    /// `Forget`: the target and everything derived from it.
    pub async fn forget(
        &self,
        claims: &Claims,
        req: ForgetRequest,
    ) -> Result<ForgetResponse, ApiError> {
        let target = crate::forget::validate(&req)?;
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        let role = engram_api::authorize(claims, Action::WriteOwn)?;
        let user = acting_user(claims, role, &req.user_id)?;
        crate::forget::run(&self.ws, &claims.org_id, &user, role, target).await
    }
}

#[tonic::async_trait]
impl MemoryService for MemoryServiceImpl {
    async fn store_memory(
        &self,
        request: Request<StoreMemoryRequest>,
    ) -> Result<Response<StoreMemoryResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        let billed = MemoryServiceImpl::store_memory(self, &claims, request.into_inner()).await?;
        Ok(billed.into_grpc())
    }

    async fn get_memory_status(
        &self,
        request: Request<GetMemoryStatusRequest>,
    ) -> Result<Response<GetMemoryStatusResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            MemoryServiceImpl::get_memory_status(self, &claims, request.into_inner()).await?,
        ))
    }

    async fn forget(
        &self,
        request: Request<ForgetRequest>,
    ) -> Result<Response<ForgetResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            MemoryServiceImpl::forget(self, &claims, request.into_inner()).await?,
        ))
    }
}
