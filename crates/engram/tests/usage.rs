//! A Recall bills `usage.tokens_out` as the model's tokens of the texts it
//! returns, through a real `engram serve`: counts its payloads kept since
//! they were written, and counted at Recall for a point written before
//! payloads kept them.

use engram_core::{Kind, Point, PointPayload, Role, VectorStore, bm25, ids};
use engram_embed::{OrtEmbedder, OrtEmbedderOptions};
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::*;

mod common;

use common::{Process, authed, channel, embedded_env, models_dir, token};

const ORG: &str = "org_usage";
const USER: &str = "alice";

/// Writes one turn straight into the store of `data_dir`, as stores held
/// turns before payloads carried token counts (no server runs meanwhile).
async fn write_uncounted_turn(
    data_dir: &std::path::Path,
    model: &OrtEmbedder,
    text: &str,
) -> String {
    let scope = engram_core::Scope {
        org_id: ORG.into(),
        user_id: USER.into(),
        session_id: "s0".into(),
    };
    let ts_ms = 1_778_248_800_000;
    let fragment_id = ids::fragment_id(&scope, Role::User, text, ts_ms);
    // Written as before payloads kept their count: `tokens` stays `None`.
    let payload = PointPayload {
        role: Some(Role::User),
        ..PointPayload::new(
            fragment_id.clone(),
            scope,
            Kind::Turn,
            text.into(),
            ts_ms,
            "0".repeat(32),
        )
    };
    let dense = model.embed_blocking(&[text.to_owned()]).unwrap().remove(0);
    let store = engram_store::EdgeStore::open(
        &data_dir.join("qdrant"),
        engram_store::EdgeStoreOptions {
            dense_dim: dense.len(),
            ..Default::default()
        },
    )
    .unwrap();
    store
        .upsert(vec![Point {
            fragment_id: fragment_id.clone(),
            payload,
            dense,
            sparse: bm25::document_vector(text),
        }])
        .await
        .unwrap();
    store.close().await.unwrap();
    fragment_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_bills_the_model_tokens_of_the_texts_it_returns() {
    let data = tempfile::tempdir().unwrap();
    let model = OrtEmbedder::load(OrtEmbedderOptions::from_models_dir(&models_dir())).unwrap();
    let old = write_uncounted_turn(
        data.path(),
        &model,
        "Ana moved to Lisbon in March ✈️ — مرحبا بكم, she said.",
    )
    .await;

    let env = embedded_env(data.path());
    let mut server = Process::spawn("serve", &env);
    server.wait_serving().await;
    let channel = channel(&server.addr).await;
    let t = token(&env, ORG, USER);
    let remembered = IngestServiceClient::new(channel.clone())
        .remember(authed(
            RememberRequest {
                scope: Some(Scope {
                    org_id: ORG.into(),
                    session_id: "s1".into(),
                    ..Default::default()
                }),
                turns: vec![Turn {
                    role: "user".into(),
                    text: "Ana's sister Marta lives in Porto 🇵🇹 and visits Lisbon often.".into(),
                    timestamp: "2026-05-09T10:30:00.250Z".into(),
                    observations: vec![],
                }],
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    let new = remembered.active_fragment_ids[0].clone();

    let response = RecallServiceClient::new(channel)
        .recall(authed(
            RecallRequest {
                scope: Some(Scope {
                    org_id: ORG.into(),
                    ..Default::default()
                }),
                q: "Where do Ana and Marta live?".into(),
                top_k: Some(10),
                ..Default::default()
            },
            &t,
        ))
        .await
        .unwrap()
        .into_inner();
    let hits = response.hits.unwrap();
    let returned: Vec<&Hit> = hits.turns.iter().chain(&hits.observations).collect();
    let ids: Vec<&str> = returned.iter().map(|h| h.id.as_str()).collect();
    assert!(
        ids.contains(&old.as_str()) && ids.contains(&new.as_str()),
        "{ids:?}"
    );
    let expected: usize = returned
        .iter()
        .map(|h| engram_core::Embedder::count_tokens(&model, &h.text))
        .sum();
    // Each turn is billed as returned, with its date and speaker.
    assert!(
        returned
            .iter()
            .all(|h| h.kind != HitKind::Turn as i32 || h.text.starts_with("[Date: "))
    );
    assert_eq!(response.usage.unwrap().tokens_out, expected as u64);
    server.terminate(std::time::Duration::from_secs(10));
}
