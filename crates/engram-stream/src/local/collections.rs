//! Team collections in the local database.

use super::credits::{blocking, internal};
use super::queue::Shared;
use crate::accounts::{check_id, sort_by_name};
use async_trait::async_trait;
use engram_core::{AccountsError, Collection, Collections};
use redb::{ReadableTable, TableDefinition};
use std::sync::Arc;

/// Collections: (org, collection id) → JSON of `Collection`. Keyed by the
/// tenant first, so a tenant's collections are one range and no lookup can
/// reach another tenant's.
pub(super) const COLLECTIONS: TableDefinition<(&str, &str), &str> =
    TableDefinition::new("collections");

/// [`Collections`] on the local queue's database; obtained from
/// [`super::LocalQueue::collections`]. Every change is a durable
/// transaction. Cloning is cheap.
#[derive(Clone)]
pub struct LocalCollections {
    pub(super) shared: Arc<Shared>,
}

impl std::fmt::Debug for LocalCollections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCollections").finish_non_exhaustive()
    }
}

fn decode(json: &str) -> Result<Collection, AccountsError> {
    serde_json::from_str(json).map_err(|e| internal(format!("collection is not valid json: {e}")))
}

#[async_trait]
impl Collections for LocalCollections {
    async fn create(&self, collection: &Collection) -> Result<Collection, AccountsError> {
        check_id("org_id", &collection.org_id)?;
        check_id("collection_id", &collection.collection_id)?;
        let collection = collection.clone();
        let json = serde_json::to_string(&collection).map_err(internal)?;
        blocking(&self.shared, move |db| {
            let tx = db.begin_write().map_err(internal)?;
            let existing = {
                let mut table = tx.open_table(COLLECTIONS).map_err(internal)?;
                let key = (
                    collection.org_id.as_str(),
                    collection.collection_id.as_str(),
                );
                let existing = table
                    .get(key)
                    .map_err(internal)?
                    .map(|v| decode(v.value()))
                    .transpose()?;
                if existing.is_none() {
                    table.insert(key, json.as_str()).map_err(internal)?;
                }
                existing
            };
            match existing {
                Some(existing) => {
                    tx.abort().map_err(internal)?;
                    Ok(existing)
                }
                None => {
                    tx.commit().map_err(internal)?;
                    tracing::info!(org_id = %collection.org_id, collection_id = %collection.collection_id, "collection created");
                    Ok(collection)
                }
            }
        })
        .await
    }

    async fn get(
        &self,
        org_id: &str,
        collection_id: &str,
    ) -> Result<Option<Collection>, AccountsError> {
        // An id no collection can have is simply not there.
        if check_id("org_id", org_id).is_err() || check_id("collection_id", collection_id).is_err()
        {
            return Ok(None);
        }
        let (org, id) = (org_id.to_owned(), collection_id.to_owned());
        blocking(&self.shared, move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(COLLECTIONS).map_err(internal)?;
            table
                .get((org.as_str(), id.as_str()))
                .map_err(internal)?
                .map(|v| decode(v.value()))
                .transpose()
        })
        .await
    }

    async fn list(&self, org_id: &str) -> Result<Vec<Collection>, AccountsError> {
        check_id("org_id", org_id)?;
        let org = org_id.to_owned();
        let mut all = blocking(&self.shared, move |db| {
            let tx = db.begin_read().map_err(internal)?;
            let table = tx.open_table(COLLECTIONS).map_err(internal)?;
            let mut out = Vec::new();
            // Every id is non-empty, so ("org", "") starts the tenant's range
            // and nothing of the next tenant sorts inside it.
            for item in table.range((org.as_str(), "")..).map_err(internal)? {
                let (key, json) = item.map_err(internal)?;
                if key.value().0 != org {
                    break;
                }
                out.push(decode(json.value())?);
            }
            Ok(out)
        })
        .await?;
        sort_by_name(&mut all);
        Ok(all)
    }

    async fn delete(&self, org_id: &str, collection_id: &str) -> Result<bool, AccountsError> {
        if check_id("org_id", org_id).is_err() || check_id("collection_id", collection_id).is_err()
        {
            return Ok(false);
        }
        let (org, id) = (org_id.to_owned(), collection_id.to_owned());
        blocking(&self.shared, move |db| {
            let tx = db.begin_write().map_err(internal)?;
            let existed = tx
                .open_table(COLLECTIONS)
                .map_err(internal)?
                .remove((org.as_str(), id.as_str()))
                .map_err(internal)?
                .is_some();
            if existed {
                tx.commit().map_err(internal)?;
                tracing::info!(org_id = %org, collection_id = %id, "collection deleted");
            } else {
                tx.abort().map_err(internal)?;
            }
            Ok(existed)
        })
        .await
    }

    async fn ready(&self) -> Result<(), AccountsError> {
        blocking(&self.shared, |_| Ok(())).await
    }
}
