//! [`NatsCollections`]: team collections in a JetStream key-value bucket.

use std::sync::Arc;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_trait::async_trait;
use bytes::Bytes;
use engram_core::{AccountsError, Collection, Collections};

use super::accounts::{Bucket, header, run, scan, token};
use super::connection::{Failure, Shared};
use crate::accounts::{check_id, sort_by_name};

/// Attempts of a create or delete that races another writer of the key.
const MAX_ATTEMPTS: usize = 8;

/// The header async-nats marks deletions and purges with.
const KV_OPERATION: &str = "KV-Operation";

/// Team collections as JSON values in the bucket
/// [`super::NatsOptions::collections_bucket`], keyed `<org>.<collection id>`
/// (both escaped into single tokens, so a tenant's keys are exactly those
/// under `<org>.` and no id can reach into another tenant), one revision
/// kept, never expired.
///
/// Obtained from [`super::NatsStream::collections`], sharing the stream's
/// connection. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct NatsCollections {
    shared: Arc<Shared>,
    bucket: Arc<Bucket>,
}

fn decode(bytes: &[u8]) -> Result<Collection, AccountsError> {
    serde_json::from_slice(bytes)
        .map_err(|err| AccountsError::Internal(format!("collection is not valid json: {err}")))
}

fn key(org_id: &str, collection_id: &str) -> String {
    format!("{}.{}", token(org_id), token(collection_id))
}

/// Whether both ids could name a stored collection.
fn valid(org_id: &str, collection_id: &str) -> bool {
    check_id("org_id", org_id).is_ok() && check_id("collection_id", collection_id).is_ok()
}

impl NatsCollections {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let bucket = Bucket::new(
            &shared.options.collections_bucket,
            "Engram team collections",
        );
        NatsCollections {
            shared,
            bucket: Arc::new(bucket),
        }
    }

    /// Runs `op` on the bucket, bounded; forgets the handle after a
    /// transport failure.
    async fn with_bucket<T, F, Fut>(&self, what: &str, op: F) -> Result<T, AccountsError>
    where
        F: FnOnce(kv::Store) -> Fut,
        Fut: Future<Output = Result<T, AccountsError>>,
    {
        let result = run(&self.shared, what, 3, async {
            let store = self.bucket.get(&self.shared).await?;
            op(store).await
        })
        .await;
        if let Err(error) = &result {
            if matches!(error, AccountsError::Unavailable(_)) {
                self.bucket.forget().await;
            }
            tracing::warn!(bucket = %self.bucket.name(), %error, "{what} failed");
        }
        result
    }
}

/// The live value of `key`, with its revision.
async fn entry(store: &kv::Store, key: &str) -> Result<Option<(u64, Bytes)>, Failure> {
    let entry = store
        .entry(key)
        .await
        .map_err(|err| Failure::classify("reading a collection", &err))?;
    Ok(entry
        .filter(|entry| entry.operation == Operation::Put)
        .map(|entry| (entry.revision, entry.value)))
}

#[async_trait]
impl Collections for NatsCollections {
    async fn create(&self, collection: &Collection) -> Result<Collection, AccountsError> {
        check_id("org_id", &collection.org_id)?;
        check_id("collection_id", &collection.collection_id)?;
        let key = key(&collection.org_id, &collection.collection_id);
        let value: Bytes = serde_json::to_vec(collection)
            .map_err(|err| AccountsError::Internal(format!("encoding a collection: {err}")))?
            .into();
        self.with_bucket("creating a collection", |store| async move {
            for _ in 0..MAX_ATTEMPTS {
                match store.create(&key, value.clone()).await {
                    Ok(_) => {
                        tracing::info!(org_id = %collection.org_id, collection_id = %collection.collection_id, "collection created");
                        return Ok(collection.clone());
                    }
                    Err(err) if err.kind() == CreateErrorKind::AlreadyExists => {
                        // Deleted between the two calls: create again.
                        if let Some((_, existing)) = entry(&store, &key).await? {
                            return decode(&existing);
                        }
                    }
                    Err(err) => return Err(Failure::classify("creating a collection", &err).into()),
                }
            }
            Err(AccountsError::Unavailable(format!(
                "collection {key} kept changing through {MAX_ATTEMPTS} attempts"
            )))
        })
        .await
    }

    async fn get(
        &self,
        org_id: &str,
        collection_id: &str,
    ) -> Result<Option<Collection>, AccountsError> {
        if !valid(org_id, collection_id) {
            return Ok(None);
        }
        let key = key(org_id, collection_id);
        self.with_bucket("reading a collection", |store| async move {
            entry(&store, &key)
                .await?
                .map(|(_, value)| decode(&value))
                .transpose()
        })
        .await
    }

    async fn list(&self, org_id: &str) -> Result<Vec<Collection>, AccountsError> {
        check_id("org_id", org_id)?;
        let filter = self.bucket.subject(&format!("{}.*", token(org_id)));
        let stream = self.bucket.stream_name();
        let messages = self
            .with_bucket("listing collections", |_| async {
                // Only the newest value of each key: one revision is kept
                // anyway, but a delete marker may be that value.
                Ok(scan(&self.shared, &stream, filter, DeliverPolicy::LastPerSubject).await?)
            })
            .await?;
        let mut collections = Vec::with_capacity(messages.len());
        for message in messages {
            let message = &message.message;
            if header(message, KV_OPERATION).is_some_and(|op| op == "DEL" || op == "PURGE") {
                continue;
            }
            collections.push(decode(&message.payload)?);
        }
        sort_by_name(&mut collections);
        Ok(collections)
    }

    async fn delete(&self, org_id: &str, collection_id: &str) -> Result<bool, AccountsError> {
        if !valid(org_id, collection_id) {
            return Ok(false);
        }
        let key = key(org_id, collection_id);
        self.with_bucket("deleting a collection", |store| async move {
            for _ in 0..MAX_ATTEMPTS {
                let Some((revision, _)) = entry(&store, &key).await? else {
                    return Ok(false);
                };
                // Expecting the revision read makes exactly one of two
                // concurrent deletes report that the collection existed.
                match store.delete_expect_revision(&key, Some(revision)).await {
                    Ok(()) => {
                        tracing::info!(org_id, collection_id, "collection deleted");
                        return Ok(true);
                    }
                    Err(err) if err.kind() == UpdateErrorKind::WrongLastRevision => continue,
                    Err(err) => return Err(Failure::classify("deleting a collection", &err).into()),
                }
            }
            Err(AccountsError::Unavailable(format!(
                "collection {key} kept changing through {MAX_ATTEMPTS} attempts"
            )))
        })
        .await
    }

    async fn ready(&self) -> Result<(), AccountsError> {
        self.with_bucket("checking the collections bucket", |store| async move {
            store
                .status()
                .await
                .map(|_| ())
                .map_err(|err| Failure::classify("reading the collections bucket", &err).into())
        })
        .await
    }
}
