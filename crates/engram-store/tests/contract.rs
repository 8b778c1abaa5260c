//! The store contract (`engram-store-contract`) on the embedded store: each
//! check gets a fresh [`EdgeStore`] in a temporary directory.

use async_trait::async_trait;
use engram_core::VectorStore;
use engram_store::{EdgeStore, EdgeStoreOptions};
use engram_store_contract::{DIM, StoreFactory};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

/// Fresh Edge stores of dimension [`DIM`]; the background optimizer never
/// runs on its own, so every check sees the plain write path.
struct EdgeFactory;

#[async_trait]
impl StoreFactory for EdgeFactory {
    type Resources = TempDir;

    async fn create(&self) -> (Arc<dyn VectorStore>, TempDir) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = EdgeStoreOptions {
            dense_dim: DIM,
            optimize_when_idle: Duration::from_secs(3600),
            optimize_after_points: u64::MAX,
            ..EdgeStoreOptions::default()
        };
        let store = EdgeStore::open(dir.path(), options).expect("store opens");
        (Arc::new(store), dir)
    }

    async fn dispose(&self, store: Arc<dyn VectorStore>, dir: TempDir) {
        // Closed before the directory goes, as a server does: a maintenance
        // pass still running when the directory is removed would flush into
        // a deleted directory.
        store.close().await.expect("store closes");
        drop(dir);
    }
}

engram_store_contract::contract_tests!(EdgeFactory);
