//! `CollectionService`: team collections.

use crate::Workspace;
use crate::validate::check_id;
use engram_api::{Action, ApiError, Violations};
use engram_auth::Claims;
use engram_core::{Collection, Kind, ScopeFilter, ids};
use engram_proto::time::from_ms as timestamp;
use engram_proto::v1::collection_service_server::CollectionService;
use engram_proto::v1::{
    self as pb, CreateCollectionRequest, CreateCollectionResponse, DeleteCollectionRequest,
    DeleteCollectionResponse, ListCollectionsRequest, ListCollectionsResponse,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Longest collection name, in characters.
const MAX_NAME_CHARS: usize = 100;
/// Most members of a collection.
const MAX_MEMBERS: usize = 1_000;
/// Points deleted per round when a collection goes.
const PAGE: usize = 1_000;

/// The collection service.
pub struct CollectionServiceImpl {
    ws: Arc<Workspace>,
}

impl CollectionServiceImpl {
    /// A service over the workspace's ports.
    pub fn new(ws: Arc<Workspace>) -> Self {
        Self { ws }
    }
}

fn to_proto(c: Collection) -> pb::Collection {
    pb::Collection {
        collection_id: c.collection_id,
        name: c.name,
        personal: false,
        members: c.members,
        created_by: c.created_by,
        created_at: Some(timestamp(c.created_ms)),
    }
}

impl CollectionServiceImpl {
    /// `CreateCollection` for the caller of `claims`.
    pub async fn create_collection(
        &self,
        claims: &Claims,
        req: CreateCollectionRequest,
    ) -> Result<CreateCollectionResponse, ApiError> {
        let mut v = Violations::new();
        v.require_org("org_id", &req.org_id);
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            v.add("name", format!("1 to {MAX_NAME_CHARS} characters"));
        }
        if req.members.is_empty() || req.members.len() > MAX_MEMBERS {
            v.add("members", format!("1 to {MAX_MEMBERS} user ids"));
        }
        for (i, m) in req.members.iter().enumerate() {
            if m.is_empty() {
                v.add(format!("members[{i}]"), "must not be empty");
            }
            check_id(&mut v, &format!("members[{i}]"), m);
        }
        v.into_result()?;
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        engram_api::authorize(claims, Action::ManageCollections)?;
        let mut members = req.members.clone();
        members.sort();
        members.dedup();
        let wanted = Collection {
            collection_id: ids::collection_id(&claims.org_id, name),
            org_id: claims.org_id.clone(),
            name: name.to_owned(),
            members,
            created_by: claims.user().unwrap_or_default().to_owned(),
            created_ms: chrono::Utc::now().timestamp_millis(),
        };
        let stored = self
            .ws
            .collections
            .create(&wanted)
            .await
            .map_err(ApiError::from)?;
        if stored.members != wanted.members {
            return Err(ApiError::AlreadyExists(format!(
                "a collection named {name:?} exists with other members ({})",
                stored.collection_id
            )));
        }
        tracing::info!(org_id = %claims.org_id, collection_id = %stored.collection_id, members = stored.members.len(), "collection created");
        Ok(CreateCollectionResponse {
            collection: Some(to_proto(stored)),
        })
    }

    /// `ListCollections` for the caller of `claims`.
    pub async fn list_collections(
        &self,
        claims: &Claims,
        req: ListCollectionsRequest,
    ) -> Result<ListCollectionsResponse, ApiError> {
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        let role = engram_api::authorize(claims, Action::Read)?;
        let user = claims.user().map(str::to_owned);
        let mut out = Vec::new();
        if let Some(u) = &user {
            out.push(pb::Collection {
                collection_id: ids::personal_collection(u),
                name: "personal".into(),
                personal: true,
                members: vec![u.clone()],
                created_by: u.clone(),
                created_at: None,
            });
        }
        let mut teams = self
            .ws
            .collections
            .list(&claims.org_id)
            .await
            .map_err(ApiError::from)?;
        teams.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(
            teams
                .into_iter()
                .filter(|c| {
                    role.is_admin()
                        || user.is_none()
                        || user.as_ref().is_some_and(|u| c.members.contains(u))
                })
                .map(to_proto),
        );
        Ok(ListCollectionsResponse { collections: out })
    }

    /// `DeleteCollection` for the caller of `claims`.
    pub async fn delete_collection(
        &self,
        claims: &Claims,
        req: DeleteCollectionRequest,
    ) -> Result<DeleteCollectionResponse, ApiError> {
        let mut v = Violations::new();
        v.require_org("org_id", &req.org_id);
        if req.collection_id.is_empty() {
            v.add("collection_id", "required");
        } else if req.collection_id.starts_with("personal:") {
            v.add(
                "collection_id",
                "a personal collection cannot be deleted; use Forget",
            );
        }
        check_id(&mut v, "collection_id", &req.collection_id);
        v.into_result()?;
        engram_api::tenant(claims, "org_id", &req.org_id)?;
        engram_api::authorize(claims, Action::ManageCollections)?;
        let org = &claims.org_id;
        if self
            .ws
            .collections
            .get(org, &req.collection_id)
            .await
            .map_err(ApiError::from)?
            .is_none()
        {
            return Err(ApiError::NotFound(format!(
                "no collection {:?}",
                req.collection_id
            )));
        }
        // The memories go before the record: a failure half-way leaves the
        // collection in place, and the caller's retry finishes the job.
        let mut filter = ScopeFilter::tenant(org);
        filter.collection_ids = vec![req.collection_id.clone()];
        let (mut chunks, mut observations) = (0u32, 0u32);
        loop {
            let page = self
                .ws
                .store
                .scroll(&filter, PAGE)
                .await
                .map_err(ApiError::from)?;
            if page.is_empty() {
                break;
            }
            let ids: Vec<String> = page.iter().map(|p| p.fragment_id.clone()).collect();
            self.ws
                .store
                .delete(org, &ids)
                .await
                .map_err(ApiError::from)?;
            chunks += page.iter().filter(|p| p.kind == Kind::Memory).count() as u32;
            observations += page.iter().filter(|p| p.kind == Kind::Observation).count() as u32;
        }
        self.ws
            .collections
            .delete(org, &req.collection_id)
            .await
            .map_err(ApiError::from)?;
        tracing::info!(org_id = %org, collection_id = %req.collection_id, chunks, observations, "collection deleted");
        Ok(DeleteCollectionResponse {
            memory_chunks: chunks,
            observations,
        })
    }
}

#[tonic::async_trait]
impl CollectionService for CollectionServiceImpl {
    async fn create_collection(
        &self,
        request: Request<CreateCollectionRequest>,
    ) -> Result<Response<CreateCollectionResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            CollectionServiceImpl::create_collection(self, &claims, request.into_inner()).await?,
        ))
    }

    async fn list_collections(
        &self,
        request: Request<ListCollectionsRequest>,
    ) -> Result<Response<ListCollectionsResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            CollectionServiceImpl::list_collections(self, &claims, request.into_inner()).await?,
        ))
    }

    async fn delete_collection(
        &self,
        request: Request<DeleteCollectionRequest>,
    ) -> Result<Response<DeleteCollectionResponse>, Status> {
        let claims = engram_api::claims(&request)?;
        Ok(Response::new(
            CollectionServiceImpl::delete_collection(self, &claims, request.into_inner()).await?,
        ))
    }
}
