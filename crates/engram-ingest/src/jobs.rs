//! `JobService.GetJob`.

use engram_api::ApiError;
use engram_auth::Claims;
use engram_core::{Job, JobState, JobStore};
use engram_proto::v1::job_service_server::JobService;
use engram_proto::v1::{self as pb, GetJobRequest, GetJobResponse};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves job records to the tenant that owns them.
pub struct JobServiceImpl {
    jobs: Arc<dyn JobStore>,
}

impl JobServiceImpl {
    /// A service reading `jobs`.
    pub fn new(jobs: Arc<dyn JobStore>) -> Self {
        Self { jobs }
    }
}

fn to_proto(job: Job) -> pb::Job {
    let state = match job.state {
        JobState::Pending => pb::JobState::Pending,
        JobState::Processing => pb::JobState::Processing,
        JobState::Ready => pb::JobState::Ready,
        JobState::Failed => pb::JobState::Failed,
    };
    pb::Job {
        job_id: job.job_id,
        state: state.into(),
        created_at: Some(engram_proto::time::from_ms(job.created_ms)),
        updated_at: Some(engram_proto::time::from_ms(job.updated_ms)),
        attempts: job.attempts,
        error: job.error.unwrap_or_default(),
        turns: job.turns,
        observations: job.observations,
        entities: job.entities,
        usage: Some(pb::Usage {
            tokens_in: job.tokens_in,
            tokens_out: job.tokens_out,
        }),
        extractor_fallback: job.fallback.unwrap_or_default(),
    }
}

impl JobServiceImpl {
    /// `GetJob`: the job record, to the tenant that owns it.
    pub async fn get_job(
        &self,
        claims: &Claims,
        req: GetJobRequest,
    ) -> Result<GetJobResponse, ApiError> {
        let job_id = req.job_id;
        let mut v = engram_api::Violations::new();
        if job_id.len() != 32 || !job_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            v.add(
                "job_id",
                "must be the 32 hex characters of a passive_job_id",
            );
        }
        v.into_result()?;
        engram_api::authorize(claims, engram_api::Action::Read)?;
        let job = self
            .jobs
            .get(&job_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no job {job_id}")))?;
        if job.org_id != claims.org_id {
            return Err(engram_api::permission_denied(
                "the job belongs to another tenant than the token's org_id",
            ));
        }
        Ok(GetJobResponse {
            job: Some(to_proto(job)),
        })
    }
}

#[tonic::async_trait]
impl JobService for JobServiceImpl {
    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            JobServiceImpl::get_job(self, &claims, request.into_inner()).await?,
        ))
    }
}
