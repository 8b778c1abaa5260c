//! Translation between Engram's model and Qdrant Edge's types: shard
//! configuration, payload indexes, points and the hybrid query (filters
//! are the `filter` module's).
//!
//! Everything here is pure, so the store module only deals with locking and
//! I/O, and the Qdrant-specific choices (names, RRF constant, index schema)
//! sit in one place that the distributed backend can mirror.

use crate::options::EdgeStoreOptions;
use engram_core::{HybridQuery, Point, PointPayload, StoreError};
use qdrant_edge::{
    CreateIndex, Distance, EdgeConfig, EdgeOptimizersConfig, EdgeSparseVectorParams,
    EdgeVectorParams, FieldIndexOperations, Fusion, HnswIndexConfig, IntegerIndexParams, JsonPath,
    KeywordIndexParams, NamedQuery, Payload, PayloadFieldSchema, PayloadSchemaParams, PointId,
    PointInsertOperations, PointOperations, PointStruct, Prefetch, QuantizationConfig,
    QuantizationSearchParams, QueryEnum, QueryRequest, ScalarQuantizationConfig, ScalarType,
    ScoringQuery, SearchParams, UpdateOperation, Vector, VectorInternal, VectorStructInternal,
    WithPayloadInterface, WithVector,
};

/// Name of the dense (embedding) vector.
pub(crate) const DENSE: &str = "dense";
/// Name of the sparse BM25 vector.
pub(crate) const BM25: &str = "bm25";
/// RRF constant shared by both backends (Qdrant's default), so they fuse
/// alike and recall can normalize scores.
pub(crate) use engram_core::RRF_K;

/// Keyword payload fields that get an index (besides the tenant field
/// `org_id`): every field the scope's condition tree matches on, so no
/// filter falls back to reading payloads. `source_ids` is an array; its
/// index holds every element.
const KEYWORD_FIELDS: &[&str] = &[
    "user_id",
    "session_id",
    "collection_id",
    "kind",
    "memory_type",
    "fragment_id",
    "memory_id",
    "source_ids",
];

/// Shard configuration derived from the options.
pub(crate) fn edge_config(options: &EdgeStoreOptions) -> EdgeConfig {
    let hnsw = HnswIndexConfig {
        max_indexing_threads: options.indexing_threads,
        ..HnswIndexConfig::default()
    };
    let optimizers = EdgeOptimizersConfig {
        indexing_threshold: options.indexing_threshold_kb,
        default_segment_number: Some(options.segment_number),
        ..EdgeOptimizersConfig::default()
    };
    let mut dense = EdgeVectorParams::builder(options.dense_dim, Distance::Cosine)
        .on_disk(options.dense_on_disk);
    if options.quantization {
        dense = dense.quantization_config(int8_quantization());
    }
    EdgeConfig::builder()
        .vector(DENSE, dense.build())
        .sparse_vector(
            BM25,
            // Documents carry the BM25 term-frequency part and queries the
            // IDF of each term in the searching user's memory, so the dot
            // product is BM25. No IDF modifier: Qdrant's would count every
            // tenant's points.
            EdgeSparseVectorParams::builder().build(),
        )
        .hnsw_config(hnsw)
        .optimizers(optimizers)
        .build()
}

/// Scalar int8 quantization, kept in RAM. The 0.99 quantile drops the
/// extreme 1% of component values from the scale, which keeps the other
/// 99% finely resolved (Qdrant's recommendation for sentence embeddings).
fn int8_quantization() -> QuantizationConfig {
    let scalar = ScalarQuantizationConfig {
        r#type: ScalarType::Int8,
        quantile: Some(0.99),
        always_ram: Some(true),
    };
    // Edge does not export the `ScalarQuantization` wrapper; its serde form
    // (`{"scalar": {...}}`, Qdrant's REST spelling) builds the variant.
    serde_json::from_value(serde_json::json!({ "scalar": scalar }))
        .expect("the scalar quantization config round-trips through serde")
}

/// Oversampling of quantized dense searches: twice the asked candidates
/// are scored on int8 vectors, then rescored on the originals.
pub(crate) const QUANTIZATION_OVERSAMPLING: f64 = 2.0;

/// Search parameters of the dense prefetch: rescoring with the original
/// vectors whenever a segment searches its quantized copy.
fn dense_search_params() -> SearchParams {
    SearchParams {
        quantization: Some(QuantizationSearchParams {
            ignore: false,
            rescore: Some(true),
            oversampling: Some(QUANTIZATION_OVERSAMPLING),
        }),
        ..SearchParams::default()
    }
}

/// The payload index operations the store issues on every open. Creating an
/// index that exists is a no-op, and re-issuing them makes sure a segment
/// created without the schema (Edge only copies indexes from existing
/// segments) gets them too.
pub(crate) fn index_operations() -> Vec<UpdateOperation> {
    let tenant = PayloadSchemaParams::Keyword(KeywordIndexParams {
        // Co-locates each tenant's points on disk and lets the planner treat
        // org_id as the partition key of every query.
        is_tenant: Some(true),
        ..KeywordIndexParams::default()
    });
    let keyword = PayloadSchemaParams::Keyword(KeywordIndexParams::default());
    let integer = PayloadSchemaParams::Integer(IntegerIndexParams {
        lookup: Some(false),
        range: Some(true),
        ..IntegerIndexParams::default()
    });

    std::iter::once(("org_id", tenant))
        .chain(KEYWORD_FIELDS.iter().map(|f| (*f, keyword.clone())))
        .chain(std::iter::once(("ts_ms", integer)))
        .map(|(field, params)| {
            UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(CreateIndex {
                field_name: field_path(field),
                field_schema: Some(PayloadFieldSchema::FieldParams(params)),
            }))
        })
        .collect()
}

/// The index type of an existing payload index, as the metadata index
/// registry counts it. Types it never creates count as keyword: the key is
/// then known, and left alone.
pub(crate) fn metadata_index_kind(
    t: qdrant_edge::PayloadSchemaType,
) -> engram_core::MetadataIndexKind {
    use engram_core::MetadataIndexKind as K;
    use qdrant_edge::PayloadSchemaType as T;
    match t {
        T::Bool => K::Bool,
        T::Float => K::Float,
        T::Datetime => K::Datetime,
        _ => K::Keyword,
    }
}

/// The operation creating the payload index of a caller metadata key. The
/// key comes from a caller, so a path that does not parse is an error.
pub(crate) fn metadata_index_operation(
    field: &str,
    kind: engram_core::MetadataIndexKind,
) -> Result<UpdateOperation, StoreError> {
    use engram_core::MetadataIndexKind as K;
    use qdrant_edge::PayloadSchemaType as T;
    let field_name: JsonPath = field
        .parse()
        .map_err(|()| internal(format!("invalid payload field path {field:?}")))?;
    let schema = match kind {
        K::Keyword => T::Keyword,
        K::Bool => T::Bool,
        K::Float => T::Float,
        K::Datetime => T::Datetime,
    };
    Ok(UpdateOperation::FieldIndexOperation(
        FieldIndexOperations::CreateIndex(CreateIndex {
            field_name,
            field_schema: Some(PayloadFieldSchema::FieldType(schema)),
        }),
    ))
}

/// The Qdrant point id of a fragment.
pub(crate) fn point_id(fragment_id: &str) -> Result<PointId, StoreError> {
    engram_core::ids::point_uuid(fragment_id)
        .map(PointId::Uuid)
        .ok_or_else(|| StoreError::Internal(format!("invalid fragment id {fragment_id:?}")))
}

/// One upsert operation for a batch of (validated) points.
pub(crate) fn upsert_operation(points: &[Point]) -> Result<UpdateOperation, StoreError> {
    let structs = points
        .iter()
        .map(|p| point_struct(p).map(Into::into))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UpdateOperation::PointOperation(
        PointOperations::UpsertPoints(PointInsertOperations::PointsList(structs)),
    ))
}

/// The operation deleting these points.
pub(crate) fn delete_operation(ids: Vec<PointId>) -> UpdateOperation {
    UpdateOperation::PointOperation(PointOperations::DeletePoints { ids })
}

fn point_struct(point: &Point) -> Result<PointStruct, StoreError> {
    let id = point_id(&point.fragment_id)?;
    let payload = serde_json::to_value(&point.payload).map_err(internal)?;
    let mut vectors = vec![(DENSE, Vector::new_dense(point.dense.clone()))];
    // A text made only of stop words has no terms: store no sparse vector
    // rather than an empty one, the point simply never matches lexically.
    if !point.sparse.indices.is_empty() {
        let sparse = Vector::new_sparse(point.sparse.indices.clone(), point.sparse.values.clone())
            .map_err(internal)?;
        vectors.push((BM25, sparse));
    }
    Ok(PointStruct::new(id, vectors, payload))
}

/// The hybrid query: a dense and (when the query has terms) a BM25
/// prefetch, fused by RRF, filtered by the scope. The root filter is
/// propagated into both prefetches by Qdrant's planner, so each prefetch
/// searches inside the filter and `limit` results are exact.
pub(crate) fn hybrid_request(query: &HybridQuery) -> Result<QueryRequest, StoreError> {
    let mut dense = prefetch(
        DENSE,
        VectorInternal::Dense(query.dense.clone()),
        query.prefetch,
    );
    // Harmless where a segment has no quantized copy (small, unindexed
    // segments are searched on the originals anyway).
    dense.params = Some(dense_search_params());
    let mut prefetches = vec![dense];
    if !query.sparse.indices.is_empty() {
        let sparse = Vector::new_sparse(query.sparse.indices.clone(), query.sparse.values.clone())
            .map_err(internal)?;
        prefetches.push(prefetch(BM25, sparse.0, query.prefetch));
    }
    Ok(QueryRequest {
        prefetches,
        query: Some(ScoringQuery::Fusion(Fusion::Rrf {
            k: RRF_K,
            weights: None,
        })),
        filter: Some(crate::filter::scope_filter(&query.filter)?),
        score_threshold: None,
        limit: query.limit,
        offset: 0,
        params: None,
        // The dense vector comes back with each hit so the store can report
        // its cosine to the query without a second lookup.
        with_vector: WithVector::Selector(vec![DENSE.to_owned()]),
        with_payload: WithPayloadInterface::Bool(true),
    })
}

fn prefetch(using: &str, vector: VectorInternal, limit: usize) -> Prefetch {
    Prefetch {
        prefetches: Vec::new(),
        query: Some(ScoringQuery::Vector(QueryEnum::Nearest(NamedQuery {
            query: vector,
            using: Some(using.to_owned()),
        }))),
        limit,
        params: None,
        filter: None,
        score_threshold: None,
    }
}

/// Decodes a stored payload.
pub(crate) fn decode_payload(payload: Option<Payload>) -> Result<PointPayload, StoreError> {
    let map = payload
        .ok_or_else(|| StoreError::Internal("stored point has no payload".into()))?
        .0;
    serde_json::from_value(serde_json::Value::Object(map)).map_err(internal)
}

/// The dense vector in a returned vector struct.
pub(crate) fn dense_vector(vectors: Option<&VectorStructInternal>) -> Option<&[f32]> {
    match vectors? {
        VectorStructInternal::Single(v) => Some(v),
        VectorStructInternal::Named(map) => match map.get(DENSE)? {
            VectorInternal::Dense(v) => Some(v),
            VectorInternal::Sparse(_) | VectorInternal::MultiDense(_) => None,
        },
        VectorStructInternal::MultiDense(_) => None,
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

/// The JSON path of a top-level payload field.
pub(crate) fn field_path(field: &str) -> JsonPath {
    // Only called with the plain identifiers of this crate, which always parse.
    field
        .parse()
        .unwrap_or_else(|_| panic!("payload field {field:?} is not a valid JSON path"))
}

/// Wraps an engine or codec error whose retry would not help.
pub(crate) fn internal(err: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_id_is_the_uuid_of_the_first_16_bytes() {
        let fid = "00112233445566778899aabbccddeeff".repeat(2);
        let PointId::Uuid(u) = point_id(&fid).unwrap() else {
            panic!("expected a uuid point id");
        };
        assert_eq!(u.to_string(), "00112233-4455-6677-8899-aabbccddeeff");
        assert!(point_id("xyz").is_err());
    }

    #[test]
    fn index_operations_cover_every_indexed_field() {
        let fields: Vec<String> = index_operations()
            .into_iter()
            .filter_map(|op| match op {
                UpdateOperation::FieldIndexOperation(FieldIndexOperations::CreateIndex(c)) => {
                    Some(c.field_name.to_string())
                }
                _ => None,
            })
            .collect();
        assert_eq!(fields.len(), KEYWORD_FIELDS.len() + 2);
        for field in [
            "org_id",
            "ts_ms",
            "memory_id",
            "source_ids",
            "collection_id",
        ] {
            assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
        }
    }

    #[test]
    fn dense_vectors_are_quantized_and_rescored_when_asked() {
        let on = edge_config(&EdgeStoreOptions::default());
        let json = serde_json::to_value(&on).unwrap();
        let dense = &json["vectors"][DENSE];
        assert_eq!(dense["quantization_config"]["scalar"]["type"], "int8");
        assert_eq!(dense["quantization_config"]["scalar"]["always_ram"], true);
        let off = edge_config(&EdgeStoreOptions {
            quantization: false,
            dense_on_disk: true,
            ..EdgeStoreOptions::default()
        });
        let json = serde_json::to_value(&off).unwrap();
        assert!(json["vectors"][DENSE]["quantization_config"].is_null());
        assert_eq!(json["vectors"][DENSE]["on_disk"], true);

        let query = HybridQuery {
            filter: engram_core::ScopeFilter::tenant("org"),
            dense: vec![1.0, 0.0],
            sparse: engram_core::SparseVector::default(),
            prefetch: 5,
            limit: 5,
        };
        let request = hybrid_request(&query).unwrap();
        let q = request.prefetches[0]
            .params
            .and_then(|p| p.quantization)
            .unwrap();
        assert_eq!(
            (q.ignore, q.rescore, q.oversampling),
            (false, Some(true), Some(2.0))
        );
    }

    #[test]
    fn hybrid_request_filters_by_the_whole_scope() {
        let mut filter = engram_core::ScopeFilter::tenant("org");
        filter.memory_ids = vec!["m".into()];
        let query = HybridQuery {
            filter,
            dense: vec![1.0, 0.0],
            sparse: engram_core::SparseVector::default(),
            prefetch: 5,
            limit: 5,
        };
        let request = hybrid_request(&query).unwrap();
        let must = request.filter.and_then(|f| f.must).unwrap_or_default();
        assert_eq!(must.len(), 2);
        // Without query terms there is only the dense prefetch.
        assert_eq!(request.prefetches.len(), 1);
    }

    #[test]
    fn dot_of_normalized_vectors_is_cosine() {
        let a = normalized(&[3.0, 4.0]);
        assert!((dot(&a, &[0.6, 0.8]) - 1.0).abs() < 1e-6);
        assert_eq!(normalized(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
