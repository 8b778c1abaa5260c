//! The store contract (`engram-store-contract`) and the connection
//! behaviour of [`QdrantStore`], against a real Qdrant server.
//!
//! Set `QDRANT_URL` to the server's gRPC endpoint (for example
//! `QDRANT_URL=http://127.0.0.1:6334`; `QDRANT_API_KEY` when it needs one)
//! to run them; without it each test prints why it skipped and passes.
//! Every test works in collections of its own with unique names and drops
//! them at the end, so a shared server is left as it was.

use async_trait::async_trait;
use engram_core::{Kind, ScopeFilter, StoreError, VectorStore};
use engram_qdrant::{DenseLayout, QdrantOptions, QdrantStore};
use engram_store_contract::fixtures::{point, query, scope};
use engram_store_contract::{DIM, StoreFactory};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// Why these tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    server_url().is_none().then(|| {
        "QDRANT_URL is not set; set it to a Qdrant server's gRPC endpoint \
         (e.g. QDRANT_URL=http://127.0.0.1:6334) to run the Qdrant tests"
            .to_owned()
    })
}

/// The server under test, from `QDRANT_URL`.
fn server_url() -> Option<String> {
    std::env::var("QDRANT_URL").ok().filter(|u| !u.is_empty())
}

/// Prints the skip reason and returns `None`, or returns the server url.
fn server_or_skip(test: &str) -> Option<String> {
    if let Some(reason) = skip_reason() {
        println!("{test}: skipped: {reason}");
        return None;
    }
    server_url()
}

/// A collection name no other test (of this or an earlier run) uses.
fn unique_collection(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Options for a test collection on the server at `url`.
fn options(url: &str, collection: &str) -> QdrantOptions {
    QdrantOptions {
        url: url.to_owned(),
        api_key: std::env::var("QDRANT_API_KEY")
            .ok()
            .filter(|k| !k.is_empty()),
        collection: collection.to_owned(),
        dense_dim: DIM,
        // Generous: a loaded CI machine may take a while for 500-point
        // batches, and these tests check behaviour, not speed.
        timeout: Duration::from_secs(30),
        embedding_model: None,
        // The server's default: every contract check runs quantized.
        dense: DenseLayout {
            quantization: true,
            on_disk: false,
        },
    }
}

/// The collection's info, through a client of its own.
async fn collection_info(url: &str, collection: &str) -> qdrant_client::qdrant::CollectionInfo {
    let mut config = qdrant_client::Qdrant::from_url(url).skip_compatibility_check();
    config.api_key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    config
        .build()
        .unwrap()
        .collection_info(collection)
        .await
        .unwrap()
        .result
        .unwrap()
}

/// Drops a test collection through a client of its own (the store under
/// test may be closed). A failure only leaves a stray collection behind,
/// so it is reported, not fatal.
async fn drop_collection(url: &str, collection: &str) {
    let mut config = qdrant_client::Qdrant::from_url(url).skip_compatibility_check();
    config.api_key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let result = match config.build() {
        Ok(client) => client.delete_collection(collection).await.map(drop),
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        eprintln!("could not drop test collection {collection}: {err}");
    }
}

/// Each check on a fresh collection of its own, dropped afterwards.
struct QdrantFactory;

#[async_trait]
impl StoreFactory for QdrantFactory {
    /// The collection to drop.
    type Resources = String;

    fn skip_reason(&self) -> Option<String> {
        skip_reason()
    }

    async fn create(&self) -> (Arc<dyn VectorStore>, String) {
        let url = server_url().expect("QDRANT_URL is set");
        let collection = unique_collection("engram_contract");
        let store = QdrantStore::connect(options(&url, &collection))
            .await
            .unwrap_or_else(|e| panic!("cannot connect to Qdrant at {url}: {e}"));
        (Arc::new(store), collection)
    }

    async fn dispose(&self, store: Arc<dyn VectorStore>, collection: String) {
        store.close().await.expect("store closes");
        let url = server_url().expect("QDRANT_URL is set");
        drop_collection(&url, &collection).await;
    }
}

engram_store_contract::contract_tests!(QdrantFactory);

#[tokio::test]
async fn connecting_twice_to_the_same_collection_is_idempotent() {
    let Some(url) = server_or_skip("connecting_twice_to_the_same_collection_is_idempotent") else {
        return;
    };
    let collection = unique_collection("engram_twice");
    let first = QdrantStore::connect(options(&url, &collection))
        .await
        .unwrap();
    let p = point(
        &scope("org", "u", "s"),
        Kind::Turn,
        "still here",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    first.upsert(vec![p.clone()]).await.unwrap();

    // A second start (or a second process) finds the collection, checks it
    // and re-issues the indexes without touching the data.
    let second = QdrantStore::connect(options(&url, &collection)).await;
    let third = QdrantStore::connect(options(&url, &collection)).await;
    let outcome = async move {
        let second = second.expect("second connect succeeds");
        third.expect("third connect succeeds");
        second.ready().await.unwrap();
        assert_eq!(second.count(&ScopeFilter::tenant("org")).await.unwrap(), 1);
        let hits = second
            .hybrid_search(&query(
                ScopeFilter::tenant("org"),
                [1.0, 0.0, 0.0, 0.0],
                "still",
            ))
            .await
            .unwrap();
        assert_eq!(hits[0].payload, p.payload);
    };
    let result = tokio::spawn(outcome).await;
    drop_collection(&url, &collection).await;
    if let Err(err) = result {
        std::panic::resume_unwind(err.into_panic());
    }
}

#[tokio::test]
async fn connecting_with_another_dense_dim_fails_naming_the_mismatch() {
    let Some(url) = server_or_skip("connecting_with_another_dense_dim_fails_naming_the_mismatch")
    else {
        return;
    };
    let collection = unique_collection("engram_dim");
    QdrantStore::connect(options(&url, &collection))
        .await
        .unwrap();
    let wrong = QdrantOptions {
        dense_dim: 8,
        ..options(&url, &collection)
    };
    let result = QdrantStore::connect(wrong).await;
    drop_collection(&url, &collection).await;

    let err = result.expect_err("a dimension mismatch must fail");
    assert!(matches!(err, StoreError::Internal(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&collection)
            && message.contains("dimension 4")
            && message.contains("dense_dim is configured as 8"),
        "{message}"
    );
}

#[tokio::test]
async fn the_model_tag_guards_the_collection() {
    let Some(url) = server_or_skip("the_model_tag_guards_the_collection") else {
        return;
    };
    let with = |collection: &str, model: Option<&str>| QdrantOptions {
        embedding_model: model.map(str::to_owned),
        ..options(&url, collection)
    };
    // A new collection is tagged; another model is refused, naming both
    // and the way out; the same model and "any" are accepted.
    let collection = unique_collection("engram_tag");
    let store = QdrantStore::connect(with(&collection, Some("model-a")))
        .await
        .unwrap();
    assert_eq!(
        store.model_tag().await.unwrap(),
        engram_core::ModelTag::of("model-a")
    );
    let err = QdrantStore::connect(with(&collection, Some("model-b")))
        .await
        .expect_err("a collection of model-a must refuse model-b")
        .to_string();
    assert!(
        err.contains("model-a") && err.contains("model-b") && err.contains("engram reembed"),
        "{err}"
    );
    QdrantStore::connect(with(&collection, Some("model-a")))
        .await
        .unwrap();
    store
        .set_model_tag(&engram_core::ModelTag {
            model: "model-a".into(),
            reembedding_to: Some("model-b".into()),
        })
        .await
        .unwrap();
    for model in ["model-a", "model-b"] {
        let err = QdrantStore::connect(with(&collection, Some(model)))
            .await
            .expect_err("a half re-embedded collection must refuse every model")
            .to_string();
        assert!(err.contains("again"), "{err}");
    }
    QdrantStore::connect(with(&collection, None)).await.unwrap();
    drop_collection(&url, &collection).await;

    // A collection from before tags holds all-MiniLM-L6-v2 vectors.
    let old = unique_collection("engram_untagged");
    QdrantStore::connect(with(&old, None)).await.unwrap();
    assert!(
        QdrantStore::connect(with(&old, Some("multilingual-e5-small")))
            .await
            .is_err()
    );
    QdrantStore::connect(with(&old, Some(engram_core::UNTAGGED_MODEL)))
        .await
        .unwrap();
    drop_collection(&url, &old).await;
}

/// A collection written when the store applied Qdrant's IDF modifier (as
/// Engram's collections were before queries carried each user's IDF) is
/// moved on connect: the modifier goes, the points stay, and BM25 follows
/// the query's weights.
#[tokio::test]
async fn a_collection_with_qdrants_idf_is_moved_on_connect() {
    use qdrant_client::qdrant::{
        Modifier, SparseVectorConfig, SparseVectorParams, UpdateCollection,
    };
    let Some(url) = server_or_skip("a_collection_with_qdrants_idf_is_moved_on_connect") else {
        return;
    };
    let collection = unique_collection("engram_store_idf");
    let store = QdrantStore::connect(options(&url, &collection))
        .await
        .unwrap();
    let points = (0..5)
        .map(|i| {
            let text = format!("note {i}");
            point(
                &scope("org", "u", "s"),
                Kind::Turn,
                &text,
                i,
                [1.0, 0.0, 0.0, 0.0],
            )
        })
        .collect();
    store.upsert(points).await.unwrap();
    store.close().await.unwrap();

    // Back to the old layout, as an earlier Engram created it.
    let mut config = qdrant_client::Qdrant::from_url(&url).skip_compatibility_check();
    config.api_key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let client = config.build().unwrap();
    let old = UpdateCollection {
        collection_name: collection.clone(),
        sparse_vectors_config: Some(SparseVectorConfig {
            map: std::collections::HashMap::from([(
                "bm25".to_owned(),
                SparseVectorParams {
                    modifier: Some(Modifier::Idf.into()),
                    ..SparseVectorParams::default()
                },
            )]),
        }),
        ..UpdateCollection::default()
    };
    client.update_collection(old).await.unwrap();
    // A store that connects moves the collection.
    let store = QdrantStore::connect(options(&url, &collection))
        .await
        .unwrap();
    assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 5);
    let store: Arc<dyn VectorStore> = Arc::new(store);
    engram_store_contract::checks::bm25_weights_are_the_querys_own(Arc::clone(&store)).await;
    store.close().await.unwrap();
    let info = client
        .collection_info(collection.as_str())
        .await
        .unwrap()
        .result
        .unwrap();
    let params = info.config.unwrap().params.unwrap();
    let bm25 = &params.sparse_vectors_config.unwrap().map["bm25"];
    assert_eq!(bm25.modifier.unwrap_or(0), i32::from(Modifier::None));
    drop_collection(&url, &collection).await;
}

#[tokio::test]
async fn the_collection_has_the_layout_of_the_embedded_store() {
    use qdrant_client::qdrant::{
        Distance, Modifier, PayloadSchemaType, payload_index_params::IndexParams,
        vectors_config::Config,
    };
    let Some(url) = server_or_skip("the_collection_has_the_layout_of_the_embedded_store") else {
        return;
    };
    let collection = unique_collection("engram_layout");
    let store = QdrantStore::connect(options(&url, &collection))
        .await
        .unwrap();
    store.close().await.unwrap();
    let mut config = qdrant_client::Qdrant::from_url(&url).skip_compatibility_check();
    config.api_key = std::env::var("QDRANT_API_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let info = config
        .build()
        .unwrap()
        .collection_info(collection.as_str())
        .await;
    drop_collection(&url, &collection).await;
    let info = info.unwrap().result.unwrap();

    let params = info.config.unwrap().params.unwrap();
    let Some(Config::ParamsMap(vectors)) = params.vectors_config.unwrap().config else {
        panic!("named vectors expected");
    };
    let dense = &vectors.map["dense"];
    assert_eq!(dense.size, DIM as u64);
    assert_eq!(dense.distance, i32::from(Distance::Cosine));
    // No IDF modifier: queries carry each user's own IDF.
    let bm25 = &params.sparse_vectors_config.unwrap().map["bm25"];
    assert_eq!(bm25.modifier.unwrap_or(0), i32::from(Modifier::None));

    let schema = &info.payload_schema;
    let keyword = i32::from(PayloadSchemaType::Keyword);
    for field in [
        "org_id",
        "user_id",
        "session_id",
        "collection_id",
        "kind",
        "memory_type",
        "fragment_id",
        "memory_id",
        "source_ids",
    ] {
        assert_eq!(schema[field].data_type, keyword, "{field}");
    }
    let Some(IndexParams::KeywordIndexParams(tenant)) = schema["org_id"]
        .params
        .as_ref()
        .and_then(|p| p.index_params.clone())
    else {
        panic!("org_id has no keyword index params: {:?}", schema["org_id"]);
    };
    assert_eq!(tenant.is_tenant, Some(true));
    assert_eq!(
        schema["ts_ms"].data_type,
        i32::from(PayloadSchemaType::Integer)
    );
    assert_eq!(schema.len(), 10, "{:?}", schema.keys());
}

/// Quantization follows the config on create and on connect (turned off
/// and on again for an existing collection); a metadata key filtered on
/// gets its payload index on first use, of the condition's type, and keeps
/// it across processes.
#[tokio::test]
async fn quantization_follows_the_config_and_metadata_keys_get_indexes() {
    use engram_core::{Cond, HybridQuery, SparseVector};
    use engram_store_contract::fixtures::{vector, with_metadata};
    use qdrant_client::qdrant::PayloadSchemaType;
    let Some(url) = server_or_skip("quantization_follows_the_config_and_metadata_keys_get_indexes")
    else {
        return;
    };
    let collection = unique_collection("engram_quant");
    let quantized = |on: bool| QdrantOptions {
        dense: DenseLayout {
            quantization: on,
            on_disk: false,
        },
        ..options(&url, &collection)
    };
    let has_quantization = |info: &qdrant_client::qdrant::CollectionInfo| {
        info.config
            .as_ref()
            .and_then(|c| c.quantization_config.as_ref())
            .is_some_and(|q| {
                matches!(
                    q.quantization,
                    Some(qdrant_client::qdrant::quantization_config::Quantization::Scalar(_))
                )
            })
    };
    let store = QdrantStore::connect(quantized(true)).await.unwrap();
    assert!(has_quantization(&collection_info(&url, &collection).await));
    let s = scope("org", "u", "s");
    let points: Vec<_> = (0..40)
        .map(|i| {
            let p = point(&s, Kind::Turn, &format!("note {i}"), i, vector(i as u64));
            with_metadata(
                p,
                serde_json::json!({"tier": format!("t{}", i % 4), "score": i as f64 / 2.0}),
            )
        })
        .collect();
    store.upsert(points.clone()).await.unwrap();
    let mut filter = ScopeFilter::tenant("org");
    filter.metadata = Some(Cond::All(vec![
        Cond::eq("metadata.tier", "t1"),
        Cond::Range {
            field: "metadata.score".into(),
            bounds: engram_core::Bounds {
                gte: Some(5.0),
                ..Default::default()
            },
        },
    ]));
    let hits = store
        .hybrid_search(&HybridQuery {
            filter: filter.clone(),
            dense: vector(3).to_vec(),
            sparse: SparseVector::default(),
            prefetch: 40,
            limit: 40,
        })
        .await
        .unwrap();
    // i % 4 == 1 and i / 2 >= 5: 13, 17, ..., 37.
    let mut got: Vec<String> = hits.iter().map(|h| h.payload.text.clone()).collect();
    got.sort();
    let mut want: Vec<String> = (0..40)
        .filter(|i| i % 4 == 1 && *i >= 10)
        .map(|i| format!("note {i}"))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let mut indexed = store.metadata_indexes();
    indexed.sort();
    assert_eq!(
        indexed,
        vec![
            (
                "metadata.score".to_owned(),
                engram_core::MetadataIndexKind::Float
            ),
            (
                "metadata.tier".to_owned(),
                engram_core::MetadataIndexKind::Keyword
            ),
        ]
    );
    store.close().await.unwrap();
    let info = collection_info(&url, &collection).await;
    assert_eq!(
        info.payload_schema["metadata.tier"].data_type,
        i32::from(PayloadSchemaType::Keyword)
    );
    assert_eq!(
        info.payload_schema["metadata.score"].data_type,
        i32::from(PayloadSchemaType::Float)
    );

    // Another process without quantization turns it off, and one with
    // turns it on again; both read the existing metadata indexes.
    let store = QdrantStore::connect(quantized(false)).await.unwrap();
    assert!(!has_quantization(&collection_info(&url, &collection).await));
    assert_eq!(store.metadata_indexes().len(), 2);
    store.close().await.unwrap();
    let store = QdrantStore::connect(quantized(true)).await.unwrap();
    let info = collection_info(&url, &collection).await;
    store.close().await.unwrap();
    drop_collection(&url, &collection).await;
    assert!(has_quantization(&info));
}

/// A TCP forwarder in front of the server, so a test can make the server
/// "go away" (close the port, cut open connections) under a connected store.
struct Proxy {
    port: u16,
    accept: JoinHandle<()>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        Self::start_on(0, upstream).await
    }

    /// Listens on `port` of 127.0.0.1 (0: any free port).
    async fn start_on(port: u16, upstream: String) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let tracked = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let forward = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tracked.lock().unwrap().push(forward.abort_handle());
            }
        });
        Self {
            port,
            accept,
            connections,
        }
    }

    /// Closes the port and cuts every forwarded connection.
    async fn stop(self) {
        self.accept.abort();
        let _ = self.accept.await;
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
        // Let the aborted tasks drop their sockets.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Asserts `err` is `Unavailable` and came within `timeout` (plus
/// scheduling slack).
fn assert_unavailable_in_time(what: &str, err: StoreError, took: Duration, timeout: Duration) {
    assert!(matches!(err, StoreError::Unavailable(_)), "{what}: {err}");
    assert!(
        took <= timeout + Duration::from_millis(500),
        "{what} took {took:?}, timeout {timeout:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_server_went_away_answers_unavailable_within_the_timeout() {
    let test = "a_store_whose_server_went_away_answers_unavailable_within_the_timeout";
    let Some(url) = server_or_skip(test) else {
        return;
    };
    let Some(upstream) = url.strip_prefix("http://") else {
        println!("{test}: skipped: the TCP proxy needs a plain http:// QDRANT_URL, got {url}");
        return;
    };
    let proxy = Proxy::start(upstream.trim_end_matches('/').to_owned()).await;
    let collection = unique_collection("engram_gone");
    let timeout = Duration::from_secs(2);
    let via_proxy = QdrantOptions {
        timeout,
        ..options(&format!("http://127.0.0.1:{}", proxy.port), &collection)
    };
    let store = QdrantStore::connect(via_proxy).await.unwrap();
    let p = point(
        &scope("org", "u", "s"),
        Kind::Turn,
        "before the outage",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    store.upsert(vec![p.clone()]).await.unwrap();
    store.ready().await.unwrap();

    proxy.stop().await;
    let q = query(ScopeFilter::tenant("org"), [1.0, 0.0, 0.0, 0.0], "outage");
    // Twice each: the first call finds the old connection cut, the second
    // has to connect anew and is refused.
    for _ in 0..2 {
        let started = Instant::now();
        let err = store.upsert(vec![p.clone()]).await.unwrap_err();
        assert_unavailable_in_time("upsert", err, started.elapsed(), timeout);
        let started = Instant::now();
        let err = store.hybrid_search(&q).await.unwrap_err();
        assert_unavailable_in_time("hybrid_search", err, started.elapsed(), timeout);
        let started = Instant::now();
        let err = store.ready().await.unwrap_err();
        assert_unavailable_in_time("ready", err, started.elapsed(), timeout);
        let started = Instant::now();
        let err = store.count(&ScopeFilter::tenant("org")).await.unwrap_err();
        assert_unavailable_in_time("count", err, started.elapsed(), timeout);
    }
    drop_collection(&url, &collection).await;
}

/// A port on this machine that nothing listens on: bound, then released.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_unavailable_within_the_timeout() {
    // Needs no server, so it runs everywhere.
    let timeout = Duration::from_secs(2);
    let options = QdrantOptions {
        url: format!("http://127.0.0.1:{}", closed_port().await),
        collection: unique_collection("engram_closed"),
        dense_dim: DIM,
        timeout,
        api_key: None,
        embedding_model: None,
        dense: DenseLayout::default(),
    };
    let started = Instant::now();
    let err = QdrantStore::connect(options).await.unwrap_err();
    assert_unavailable_in_time("connect", err, started.elapsed(), timeout);
}

#[tokio::test]
async fn invalid_options_are_refused_before_any_connection() {
    for (options, needle) in [
        (
            QdrantOptions {
                dense_dim: 0,
                ..QdrantOptions::default()
            },
            "dense_dim",
        ),
        (
            QdrantOptions {
                collection: String::new(),
                ..QdrantOptions::default()
            },
            "collection",
        ),
        (
            QdrantOptions {
                timeout: Duration::ZERO,
                ..QdrantOptions::default()
            },
            "timeout_ms",
        ),
        (
            QdrantOptions {
                url: "not a url".into(),
                ..QdrantOptions::default()
            },
            "url",
        ),
    ] {
        let err = QdrantStore::connect(options).await.unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[tokio::test]
async fn opening_needs_no_server_and_every_call_fails_unavailable_within_the_timeout() {
    // Needs no server, so it runs everywhere.
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let store = QdrantStore::open(QdrantOptions {
        url: format!("http://127.0.0.1:{}", closed_port().await),
        collection: unique_collection("engram_lazy"),
        dense_dim: DIM,
        timeout,
        api_key: None,
        embedding_model: None,
        dense: DenseLayout::default(),
    })
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "open waited"
    );
    let p = point(
        &scope("org", "u", "s"),
        Kind::Turn,
        "nobody home",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    // Twice each: every call tries to provision again, and fails again.
    for _ in 0..2 {
        let started = Instant::now();
        let err = store.provision().await.unwrap_err();
        assert_unavailable_in_time("provision", err, started.elapsed(), timeout);
        let started = Instant::now();
        let err = store.ready().await.unwrap_err();
        assert_unavailable_in_time("ready", err, started.elapsed(), timeout);
        let started = Instant::now();
        let err = store.upsert(vec![p.clone()]).await.unwrap_err();
        assert_unavailable_in_time("upsert", err, started.elapsed(), timeout);
        let started = Instant::now();
        let err = store.count(&ScopeFilter::tenant("org")).await.unwrap_err();
        assert_unavailable_in_time("count", err, started.elapsed(), timeout);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_appears_later_gets_the_collection_on_first_use() {
    let test = "a_server_that_appears_later_gets_the_collection_on_first_use";
    let Some(url) = server_or_skip(test) else {
        return;
    };
    let Some(upstream) = url.strip_prefix("http://") else {
        println!("{test}: skipped: the TCP proxy needs a plain http:// QDRANT_URL, got {url}");
        return;
    };
    let port = closed_port().await;
    let collection = unique_collection("engram_late");
    let timeout = Duration::from_secs(2);
    let store = QdrantStore::open(QdrantOptions {
        timeout,
        ..options(&format!("http://127.0.0.1:{port}"), &collection)
    })
    .unwrap();
    let p = point(
        &scope("org", "u", "s"),
        Kind::Turn,
        "written once the server is up",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    let started = Instant::now();
    let err = store.upsert(vec![p.clone()]).await.unwrap_err();
    assert_unavailable_in_time("upsert", err, started.elapsed(), timeout);

    let proxy = Proxy::start_on(port, upstream.trim_end_matches('/').to_owned()).await;
    let outcome = async {
        store.upsert(vec![p.clone()]).await.unwrap();
        store.ready().await.unwrap();
        assert_eq!(store.count(&ScopeFilter::tenant("org")).await.unwrap(), 1);
    };
    let result = tokio::time::timeout(Duration::from_secs(30), outcome).await;
    proxy.stop().await;
    drop_collection(&url, &collection).await;
    result.expect("the store never reached the server");
}
