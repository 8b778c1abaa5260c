//! Translation between Engram's model and Qdrant's gRPC types: collection
//! layout, payload indexes, points and the hybrid query (filters are the
//! `filter` module's).
//!
//! This mirrors `engram-store`'s `mapping` module field for field, so a
//! collection written by either backend has the same layout (DESIGN.md §4)
//! and a query ranks alike on both. Everything here is pure; the store
//! module only deals with the connection.

use engram_core::{HybridQuery, Point, PointPayload, RRF_K, StoreError};
use qdrant_client::Payload;
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::{
    Condition, CreateCollection, Disabled, Distance, FieldType, Filter, IntegerIndexParams,
    KeywordIndexParams, Modifier, NamedVectors, PointId, PointStruct, PrefetchQuery,
    QuantizationConfig, QuantizationConfigDiff, QuantizationSearchParams, QuantizationType, Query,
    QueryPoints, Rrf, ScalarQuantization, SearchParams, SparseVectorConfig, SparseVectorParams,
    UpdateCollection, Value, VectorInput, VectorParams, VectorParamsMap, VectorsConfig,
    VectorsOutput, VectorsSelector, WithPayloadSelector, WithVectorsSelector, payload_index_params,
    quantization_config, quantization_config_diff, vector_output, vectors_config,
    with_payload_selector, with_vectors_selector,
};
use std::collections::HashMap;

/// Name of the dense (embedding) vector.
pub(crate) const DENSE: &str = "dense";
/// Name of the sparse BM25 vector.
pub(crate) const BM25: &str = "bm25";

/// Keyword payload fields that get an index besides the tenant field
/// `org_id`: the same list as the embedded store's, every field the
/// scope's condition tree matches on. `source_ids` is an array; its index
/// holds every element.
pub(crate) const KEYWORD_FIELDS: &[&str] = &[
    "user_id",
    "session_id",
    "collection_id",
    "kind",
    "memory_type",
    "fragment_id",
    "memory_id",
    "source_ids",
];

/// The collection to create: named dense vector `dense` (cosine) of
/// `dense_dim` and sparse vector `bm25` without a modifier; the dense
/// vectors quantized and kept as `dense` says.
#[allow(deprecated)] // `on_disk`: see `int8_quantization`.
pub(crate) fn create_collection(
    name: &str,
    dense_dim: usize,
    layout: DenseLayout,
) -> CreateCollection {
    let dense = VectorParams {
        size: dense_dim as u64,
        distance: Distance::Cosine.into(),
        on_disk: layout.on_disk.then_some(true),
        ..VectorParams::default()
    };
    let sparse = SparseVectorParams {
        // Documents carry the BM25 term-frequency part and queries the IDF
        // of each term in the searching user's memory, so the dot product
        // is BM25. No IDF modifier: Qdrant's would count every tenant's
        // points.
        modifier: None,
        ..SparseVectorParams::default()
    };
    CreateCollection {
        collection_name: name.to_owned(),
        vectors_config: Some(VectorsConfig {
            config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                map: HashMap::from([(DENSE.to_owned(), dense)]),
            })),
        }),
        sparse_vectors_config: Some(SparseVectorConfig {
            map: HashMap::from([(BM25.to_owned(), sparse)]),
        }),
        quantization_config: layout.quantization.then(|| QuantizationConfig {
            quantization: Some(quantization_config::Quantization::Scalar(
                int8_quantization(),
            )),
        }),
        ..CreateCollection::default()
    }
}

/// How the dense vectors are kept (the same choices as the embedded
/// store's options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DenseLayout {
    /// Scalar int8 quantization with rescoring.
    pub quantization: bool,
    /// Original vectors in memory-mapped files.
    pub on_disk: bool,
}

/// Scalar int8 quantization kept in RAM, quantile 0.99: the embedded
/// store's settings.
// The deprecated `always_ram` / `on_disk` flags rather than their `memory`
// successors: servers before 1.20 know only the flags, newer ones still
// read them.
#[allow(deprecated)]
fn int8_quantization() -> ScalarQuantization {
    ScalarQuantization {
        r#type: QuantizationType::Int8.into(),
        quantile: Some(0.99),
        always_ram: Some(true),
        memory: None,
    }
}

/// Whether an existing collection quantizes its vectors.
pub(crate) fn has_quantization(config: &qdrant_client::qdrant::CollectionConfig) -> bool {
    config
        .quantization_config
        .as_ref()
        .is_some_and(|q| q.quantization.is_some())
}

/// The update turning quantization on or off for an existing collection;
/// the server rebuilds the segments in the background.
pub(crate) fn quantization_update(name: &str, on: bool) -> UpdateCollection {
    let quantization = if on {
        quantization_config_diff::Quantization::Scalar(int8_quantization())
    } else {
        quantization_config_diff::Quantization::Disabled(Disabled {})
    };
    UpdateCollection {
        collection_name: name.to_owned(),
        quantization_config: Some(QuantizationConfigDiff {
            quantization: Some(quantization),
        }),
        ..UpdateCollection::default()
    }
}

/// Oversampling of quantized dense searches (the embedded store's).
pub(crate) const QUANTIZATION_OVERSAMPLING: f64 = 2.0;

/// Metadata keys of the model tag.
const TAG_MODEL: &str = "embedding_model";
const TAG_REEMBEDDING_TO: &str = "embedding_reembedding_to";

/// The collection metadata recording `tag`. Qdrant merges metadata into
/// what is stored, so "not re-embedding" is written as an empty string
/// rather than left out.
pub(crate) fn tag_metadata(
    tag: &engram_core::ModelTag,
) -> HashMap<String, qdrant_client::qdrant::Value> {
    HashMap::from([
        (TAG_MODEL.to_owned(), tag.model.clone().into()),
        (
            TAG_REEMBEDDING_TO.to_owned(),
            tag.reembedding_to.clone().unwrap_or_default().into(),
        ),
    ])
}

/// The model tag in collection metadata; untagged collections were filled
/// by [`engram_core::UNTAGGED_MODEL`].
pub(crate) fn tag_of_metadata(
    metadata: &HashMap<String, qdrant_client::qdrant::Value>,
) -> engram_core::ModelTag {
    use qdrant_client::qdrant::value::Kind;
    let text = |key: &str| match metadata.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    engram_core::ModelTag {
        model: text(TAG_MODEL).unwrap_or_else(|| engram_core::UNTAGGED_MODEL.to_owned()),
        reembedding_to: text(TAG_REEMBEDDING_TO),
    }
}

/// The UUID string of a point id (every Engram point id is a UUID).
pub(crate) fn point_id_string(id: PointId) -> Option<String> {
    use qdrant_client::qdrant::point_id::PointIdOptions;
    match id.point_id_options? {
        PointIdOptions::Uuid(u) => Some(u),
        PointIdOptions::Num(n) => Some(n.to_string()),
    }
}

/// Why an existing collection's vectors do not fit this store, if they do
/// not. Payload indexes are not compared: the store (re)creates them on
/// every connect.
pub(crate) fn layout_mismatch(
    name: &str,
    dense_dim: usize,
    vectors: Option<&VectorsConfig>,
    sparse: Option<&SparseVectorConfig>,
) -> Option<String> {
    let dense = match vectors.and_then(|v| v.config.as_ref()) {
        Some(vectors_config::Config::ParamsMap(map)) => map.map.get(DENSE),
        _ => None,
    };
    let Some(dense) = dense else {
        return Some(format!(
            "collection {name:?} has no named dense vector {DENSE:?}; \
             it was not created by Engram"
        ));
    };
    if dense.size != dense_dim as u64 {
        return Some(format!(
            "collection {name:?} has dense vector {DENSE:?} of dimension {}, \
             but dense_dim is configured as {dense_dim}",
            dense.size
        ));
    }
    if dense.distance != i32::from(Distance::Cosine) {
        let distance = Distance::try_from(dense.distance).map_or_else(
            |_| dense.distance.to_string(),
            |d| d.as_str_name().to_owned(),
        );
        return Some(format!(
            "collection {name:?} has dense vector {DENSE:?} with distance {distance}, \
             Engram needs Cosine"
        ));
    }
    // With or without Qdrant's IDF modifier: a collection written before
    // queries carried each user's IDF has it, and is moved (see
    // `has_store_idf`).
    if sparse.and_then(|s| s.map.get(BM25)).is_none() {
        return Some(format!(
            "collection {name:?} has no sparse vector {BM25:?}; it was not created by Engram"
        ));
    }
    None
}

/// Whether the collection's BM25 vector has Qdrant's IDF modifier, as
/// collections written before queries carried each user's own IDF do.
pub(crate) fn has_store_idf(sparse: Option<&SparseVectorConfig>) -> bool {
    sparse
        .and_then(|s| s.map.get(BM25))
        .is_some_and(|p| p.modifier == Some(Modifier::Idf.into()))
}

/// The collection update that drops the IDF modifier from the BM25 vector
/// (its stored vectors stay as they are: term-frequency parts).
pub(crate) fn drop_store_idf(name: &str) -> UpdateCollection {
    UpdateCollection {
        collection_name: name.to_owned(),
        sparse_vectors_config: Some(SparseVectorConfig {
            map: HashMap::from([(
                BM25.to_owned(),
                SparseVectorParams {
                    modifier: Some(Modifier::None.into()),
                    ..SparseVectorParams::default()
                },
            )]),
        }),
        ..UpdateCollection::default()
    }
}

/// One payload index the store makes sure of on connect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IndexSpec {
    /// Payload field.
    pub(crate) field: &'static str,
    /// Index type.
    pub(crate) field_type: FieldType,
    /// Index parameters.
    pub(crate) params: payload_index_params::IndexParams,
}

/// The payload indexes of the collection: `org_id` as the tenant keyword,
/// the other keyword fields, and `ts_ms` as an integer range index.
pub(crate) fn index_specs() -> Vec<IndexSpec> {
    let tenant = KeywordIndexParams {
        // Co-locates each tenant's points on disk and lets the planner
        // treat org_id as the partition key of every query.
        is_tenant: Some(true),
        ..KeywordIndexParams::default()
    };
    let integer = IntegerIndexParams {
        // Only range conditions are ever issued on timestamps.
        lookup: Some(false),
        range: Some(true),
        ..IntegerIndexParams::default()
    };
    std::iter::once(IndexSpec {
        field: "org_id",
        field_type: FieldType::Keyword,
        params: payload_index_params::IndexParams::KeywordIndexParams(tenant),
    })
    .chain(
        KEYWORD_FIELDS.iter().map(|field| IndexSpec {
            field,
            field_type: FieldType::Keyword,
            params: payload_index_params::IndexParams::KeywordIndexParams(
                KeywordIndexParams::default(),
            ),
        }),
    )
    .chain(std::iter::once(IndexSpec {
        field: "ts_ms",
        field_type: FieldType::Integer,
        params: payload_index_params::IndexParams::IntegerIndexParams(integer),
    }))
    .collect()
}

/// The index type of an existing payload index (a `PayloadSchemaType`
/// number), as the metadata index registry counts it. Types it never
/// creates count as keyword: the key is then known, and left alone.
pub(crate) fn metadata_index_kind(data_type: i32) -> engram_core::MetadataIndexKind {
    use engram_core::MetadataIndexKind as K;
    use qdrant_client::qdrant::PayloadSchemaType as T;
    match T::try_from(data_type) {
        Ok(T::Bool) => K::Bool,
        Ok(T::Float) => K::Float,
        Ok(T::Datetime) => K::Datetime,
        _ => K::Keyword,
    }
}

/// The field type of a metadata key's payload index.
pub(crate) fn metadata_field_type(kind: engram_core::MetadataIndexKind) -> FieldType {
    use engram_core::MetadataIndexKind as K;
    match kind {
        K::Keyword => FieldType::Keyword,
        K::Bool => FieldType::Bool,
        K::Float => FieldType::Float,
        K::Datetime => FieldType::Datetime,
    }
}

/// The Qdrant point id of a fragment: the UUID of its first 16 bytes.
pub(crate) fn point_id(fragment_id: &str) -> Result<PointId, StoreError> {
    engram_core::ids::point_uuid(fragment_id)
        .map(|u| PointId::from(u.to_string()))
        .ok_or_else(|| StoreError::Internal(format!("invalid fragment id {fragment_id:?}")))
}

/// The Qdrant point of a (validated) point.
pub(crate) fn point_struct(point: &Point) -> Result<PointStruct, StoreError> {
    let id = point_id(&point.fragment_id)?;
    let payload = Payload::try_from(serde_json::to_value(&point.payload).map_err(internal)?)
        .map_err(internal)?;
    let mut vectors = NamedVectors::default().add_vector(
        DENSE,
        qdrant_client::qdrant::Vector::new_dense(point.dense.clone()),
    );
    // A text made only of stop words has no terms: store no sparse vector
    // rather than an empty one, the point simply never matches lexically.
    if !point.sparse.indices.is_empty() {
        vectors = vectors.add_vector(
            BM25,
            qdrant_client::qdrant::Vector::new_sparse(
                point.sparse.indices.clone(),
                point.sparse.values.clone(),
            ),
        );
    }
    Ok(PointStruct::new(id, vectors, payload))
}

/// The filter selecting the points of tenant `org_id` among `fragment_ids`
/// (all well-formed): point id, tenant and the full fragment id must all
/// match, since the point id covers only half of the fragment id.
pub(crate) fn own_points_filter(org_id: &str, fragment_ids: &[String]) -> Filter {
    let point_ids: Vec<PointId> = fragment_ids
        .iter()
        .filter_map(|id| point_id(id).ok())
        .collect();
    Filter::must([
        Condition::has_id(point_ids),
        // Explicitly a keyword: the client's `From<String>` would make a
        // value with whitespace a full-text match.
        Condition::matches("org_id", MatchValue::Keyword(org_id.to_owned())),
        Condition::matches("fragment_id", fragment_ids.to_vec()),
    ])
}

/// The hybrid query: a dense and (when the query has terms) a BM25
/// prefetch, fused by RRF with k = [`RRF_K`], filtered by the scope.
///
/// The caller has raised `prefetch` to at least `limit`. The filter is set
/// on the prefetches as well as on the fusion so that every candidate is
/// inside the scope whatever the server's planner does with a root filter.
pub(crate) fn hybrid_query(collection: &str, query: &HybridQuery) -> QueryPoints {
    let filter = crate::filter::scope_filter(&query.filter);
    let prefetch = |using: &str, input: VectorInput| PrefetchQuery {
        query: Some(Query::new_nearest(input)),
        using: Some(using.to_owned()),
        filter: Some(filter.clone()),
        limit: Some(query.prefetch as u64),
        ..PrefetchQuery::default()
    };
    let mut dense = prefetch(DENSE, VectorInput::new_dense(query.dense.clone()));
    // Rescoring with the original vectors wherever a segment searches its
    // quantized copy; harmless where it has none.
    dense.params = Some(SearchParams {
        quantization: Some(QuantizationSearchParams {
            ignore: Some(false),
            rescore: Some(true),
            oversampling: Some(QUANTIZATION_OVERSAMPLING),
        }),
        ..SearchParams::default()
    });
    let mut prefetches = vec![dense];
    if !query.sparse.indices.is_empty() {
        prefetches.push(prefetch(
            BM25,
            VectorInput::new_sparse(query.sparse.indices.clone(), query.sparse.values.clone()),
        ));
    }
    QueryPoints {
        collection_name: collection.to_owned(),
        prefetch: prefetches,
        // k explicitly, not the server's default: recall normalizes scores
        // by 2 / RRF_K, so the two must never drift apart.
        query: Some(Query::new_rrf(Rrf {
            k: Some(RRF_K as u32),
            weights: Vec::new(),
        })),
        filter: Some(filter),
        limit: Some(query.limit as u64),
        // The dense vector comes back with each hit so the store can report
        // its cosine to the query without a second lookup.
        with_vectors: Some(WithVectorsSelector {
            selector_options: Some(with_vectors_selector::SelectorOptions::Include(
                VectorsSelector {
                    names: vec![DENSE.to_owned()],
                },
            )),
        }),
        with_payload: Some(with_payload(true)),
        ..QueryPoints::default()
    }
}

/// Whether to return payloads.
pub(crate) fn with_payload(enable: bool) -> WithPayloadSelector {
    WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Enable(enable)),
    }
}

/// Decodes a stored payload.
pub(crate) fn decode_payload(payload: HashMap<String, Value>) -> Result<PointPayload, StoreError> {
    if payload.is_empty() {
        return Err(StoreError::Internal("stored point has no payload".into()));
    }
    serde_json::from_value(serde_json::Value::from(Payload::from(payload))).map_err(internal)
}

/// The dense vector among returned vectors.
pub(crate) fn dense_vector(vectors: Option<&VectorsOutput>) -> Option<Vec<f32>> {
    match vectors?.get_vector_by_name(DENSE)? {
        vector_output::Vector::Dense(v) => Some(v.data),
        vector_output::Vector::Sparse(_) | vector_output::Vector::MultiDense(_) => None,
    }
}

/// A string field of a payload.
pub(crate) fn payload_str<'a>(payload: &'a HashMap<String, Value>, field: &str) -> Option<&'a str> {
    match payload.get(field)?.kind.as_ref()? {
        qdrant_client::qdrant::value::Kind::StringValue(s) => Some(s.as_str()),
        _ => None,
    }
}

/// `v` scaled to unit length (unchanged when it is zero).
pub(crate) fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// Dot product; the cosine when both sides are unit vectors (Qdrant stores
/// cosine vectors normalized).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Wraps a codec error whose retry would not help.
pub(crate) fn internal(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_core::{Kind, MemoryRef, MemoryType, ScopeFilter, SparseVector};
    use qdrant_client::qdrant::point_id::PointIdOptions;

    #[test]
    fn point_id_is_the_uuid_of_the_first_16_bytes() {
        let fid = "00112233445566778899aabbccddeeff".repeat(2);
        let id = point_id(&fid).unwrap();
        assert_eq!(
            id.point_id_options,
            Some(PointIdOptions::Uuid(
                "00112233-4455-6677-8899-aabbccddeeff".into()
            ))
        );
        assert!(point_id("xyz").is_err());
    }

    #[test]
    fn indexes_mirror_the_embedded_store() {
        let specs = index_specs();
        assert_eq!(specs.len(), KEYWORD_FIELDS.len() + 2);
        for field in ["memory_id", "source_ids", "collection_id"] {
            let spec = specs.iter().find(|s| s.field == field).unwrap();
            assert_eq!(spec.field_type, FieldType::Keyword, "{field}");
        }
        assert_eq!(specs[0].field, "org_id");
        assert_eq!(
            specs[0].params,
            payload_index_params::IndexParams::KeywordIndexParams(KeywordIndexParams {
                is_tenant: Some(true),
                ..KeywordIndexParams::default()
            })
        );
        let ts = specs.last().unwrap();
        assert_eq!((ts.field, ts.field_type), ("ts_ms", FieldType::Integer));
    }

    #[test]
    #[allow(deprecated)] // reads back the flags `create_collection` sets
    fn quantization_and_on_disk_follow_the_layout() {
        let plain = create_collection("mem", 4, DenseLayout::default());
        assert!(plain.quantization_config.is_none());
        let c = create_collection(
            "mem",
            4,
            DenseLayout {
                quantization: true,
                on_disk: true,
            },
        );
        let Some(quantization_config::Quantization::Scalar(q)) =
            c.quantization_config.and_then(|q| q.quantization)
        else {
            panic!("scalar quantization expected");
        };
        assert_eq!(q.r#type, i32::from(QuantizationType::Int8));
        assert_eq!((q.quantile, q.always_ram), (Some(0.99), Some(true)));
        let Some(vectors_config::Config::ParamsMap(m)) = c.vectors_config.and_then(|v| v.config)
        else {
            panic!("named vectors expected");
        };
        assert_eq!(m.map[DENSE].on_disk, Some(true));
        let off = quantization_update("mem", false);
        assert!(matches!(
            off.quantization_config.and_then(|q| q.quantization),
            Some(quantization_config_diff::Quantization::Disabled(_))
        ));

        let query = HybridQuery {
            filter: engram_core::ScopeFilter::tenant("org"),
            dense: vec![1.0, 0.0, 0.0, 0.0],
            sparse: engram_core::SparseVector::default(),
            prefetch: 5,
            limit: 5,
        };
        let request = hybrid_query("mem", &query);
        let params = request.prefetch[0]
            .params
            .as_ref()
            .and_then(|p| p.quantization)
            .unwrap();
        assert_eq!(
            (params.ignore, params.rescore, params.oversampling),
            (Some(false), Some(true), Some(QUANTIZATION_OVERSAMPLING))
        );
    }

    #[test]
    fn a_new_collection_fits_and_mismatches_are_named() {
        let c = create_collection("mem", 4, DenseLayout::default());
        let (v, s) = (c.vectors_config.as_ref(), c.sparse_vectors_config.as_ref());
        assert_eq!(layout_mismatch("mem", 4, v, s), None);

        let err = layout_mismatch("mem", 8, v, s).unwrap();
        assert!(
            err.contains("dimension 4") && err.contains("dense_dim"),
            "{err}"
        );

        let mut euclid = c.clone();
        if let Some(vectors_config::Config::ParamsMap(m)) = euclid
            .vectors_config
            .as_mut()
            .and_then(|v| v.config.as_mut())
        {
            m.map.get_mut(DENSE).unwrap().distance = Distance::Euclid.into();
        }
        let err = layout_mismatch(
            "mem",
            4,
            euclid.vectors_config.as_ref(),
            euclid.sparse_vectors_config.as_ref(),
        )
        .unwrap();
        assert!(err.contains("Euclid"), "{err}");

        let err = layout_mismatch("mem", 4, v, None).unwrap();
        assert!(err.contains("bm25"), "{err}");
        // The old layout (Qdrant's IDF) fits: the store moves it.
        let store_idf = SparseVectorConfig {
            map: HashMap::from([(
                BM25.to_owned(),
                SparseVectorParams {
                    modifier: Some(Modifier::Idf.into()),
                    ..SparseVectorParams::default()
                },
            )]),
        };
        assert_eq!(layout_mismatch("mem", 4, v, Some(&store_idf)), None);
        assert!(has_store_idf(Some(&store_idf)));
        assert!(!has_store_idf(s));
        let update = drop_store_idf("mem");
        assert_eq!(update.collection_name, "mem");
        let bm25 = &update.sparse_vectors_config.unwrap().map[BM25];
        assert_eq!(bm25.modifier, Some(Modifier::None.into()));
        let err = layout_mismatch("mem", 4, None, s).unwrap();
        assert!(err.contains("dense"), "{err}");
    }

    #[test]
    fn payload_round_trips_through_qdrant_values() {
        let mut metadata = serde_json::Map::new();
        metadata.insert("n".into(), serde_json::json!(3));
        metadata.insert("x".into(), serde_json::json!(1.5));
        metadata.insert("tags".into(), serde_json::json!(["a", {"b": null}]));
        let fragment_id = "ab".repeat(32);
        let point = Point {
            fragment_id: fragment_id.clone(),
            payload: PointPayload {
                fragment_id,
                org_id: "org".into(),
                user_id: "u".into(),
                session_id: "s".into(),
                kind: Kind::Observation,
                role: None,
                text: "text".into(),
                ts_ms: 1_780_000_000_123,
                job_id: "job".into(),
                source_ids: vec!["cd".repeat(32)],
                entity_kind: None,
                mentions: None,
                subject: None,
                event_ms: None,
                metadata,
                memory: None,
                tokens: None,
            },
            dense: vec![1.0, 0.0],
            sparse: SparseVector::default(),
        };
        let s = point_struct(&point).unwrap();
        assert_eq!(payload_str(&s.payload, "org_id"), Some("org"));
        assert!(!s.payload.contains_key("memory_id"));
        assert_eq!(decode_payload(s.payload).unwrap(), point.payload);
        assert!(decode_payload(HashMap::new()).is_err());

        // A memory chunk: the flattened reference is top-level, its chunk
        // number an integer value, and it decodes back to `Some`.
        let mut chunk = point.clone();
        chunk.payload.kind = Kind::Memory;
        chunk.payload.memory = Some(MemoryRef {
            memory_id: "0f".repeat(16),
            collection_id: "col_1".into(),
            memory_type: MemoryType::Knowledge,
            title: "Handbook".into(),
            chunk: 7,
        });
        let s = point_struct(&chunk).unwrap();
        assert_eq!(payload_str(&s.payload, "memory_type"), Some("knowledge"));
        assert_eq!(
            s.payload["chunk"].kind,
            Some(qdrant_client::qdrant::value::Kind::IntegerValue(7))
        );
        assert_eq!(decode_payload(s.payload).unwrap(), chunk.payload);
    }

    #[test]
    fn hybrid_query_has_a_bm25_prefetch_only_with_terms() {
        let mut q = HybridQuery {
            filter: ScopeFilter::tenant("org"),
            dense: vec![1.0, 0.0],
            sparse: SparseVector {
                indices: vec![3],
                values: vec![1.0],
            },
            prefetch: 20,
            limit: 5,
        };
        let r = hybrid_query("c", &q);
        assert_eq!(r.prefetch.len(), 2);
        assert_eq!(r.limit, Some(5));
        assert!(r.prefetch.iter().all(|p| p.filter == r.filter));
        q.sparse = SparseVector::default();
        assert_eq!(hybrid_query("c", &q).prefetch.len(), 1);
    }

    #[test]
    fn dot_of_normalized_vectors_is_cosine() {
        let a = normalized(&[3.0, 4.0]);
        assert!((dot(&a, &[0.6, 0.8]) - 1.0).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
