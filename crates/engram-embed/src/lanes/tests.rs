//! The scheduler's behaviour: ordering, batching and containment with a
//! recording model (the schedule is what is tested, so the model must be
//! controllable), and each caller's vectors with the real model.

use super::*;
use proptest::prelude::*;
use std::hash::{Hash as _, Hasher as _};
use tokio::sync::Semaphore;

/// Records every run; each vector identifies its text, so a vector handed
/// to the wrong caller is seen. With a gate, each run first waits for a
/// permit, so a test can hold the model busy while it queues jobs.
#[derive(Default)]
struct Recorder {
    runs: Mutex<Vec<(&'static str, Vec<String>)>>,
    gate: Option<Semaphore>,
}

fn identify(text: &str) -> Vec<f32> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    let h = h.finish();
    vec![
        (h & 0xFFFF) as f32,
        (h >> 48) as f32,
        text.chars().count() as f32,
    ]
}

impl Recorder {
    fn gated() -> Self {
        Self {
            gate: Some(Semaphore::new(0)),
            ..Self::default()
        }
    }

    async fn run(&self, kind: &'static str, texts: &[String]) -> Vec<Vec<f32>> {
        if let Some(gate) = &self.gate {
            gate.acquire().await.expect("gate").forget();
        }
        self.runs.lock().push((kind, texts.to_vec()));
        if texts.iter().any(|t| t == "boom") {
            panic!("model failure on purpose");
        }
        texts.iter().map(|t| identify(t)).collect()
    }

    fn release(&self, runs: usize) {
        self.gate.as_ref().expect("gated").add_permits(runs);
    }

    fn runs(&self) -> Vec<(&'static str, Vec<String>)> {
        self.runs.lock().clone()
    }
}

#[async_trait::async_trait]
impl Embedder for Recorder {
    fn dim(&self) -> usize {
        3
    }

    fn model(&self) -> &str {
        "recorder"
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.run("passage", texts).await)
    }

    async fn embed_queries(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.run("query", texts).await)
    }

    fn count_tokens(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

fn strings(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

fn no_cache() -> LaneOptions {
    LaneOptions {
        query_cache: 0,
        ..LaneOptions::default()
    }
}

/// Waits until the recorder has seen `n` runs start (the gate holds them).
async fn until_queued(lanes: &Lanes, interactive: usize, background: usize) {
    for _ in 0..2_000 {
        {
            let q = lanes.owner.shared.queues.lock();
            if q.interactive.len() >= interactive && q.background.len() >= background {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("jobs never queued");
}

#[tokio::test]
async fn interactive_jobs_overtake_a_background_backlog() {
    let model = Arc::new(Recorder::gated());
    let lanes = Lanes::start(model.clone(), no_cache());
    let (bg, fg) = (lanes.background(), lanes.interactive());
    // 20 background texts: pieces of 8, 8 and 4. The first piece holds the
    // model (gated) while the interactive calls arrive.
    let backlog = tokio::spawn({
        let bg = bg.clone();
        async move { bg.embed(&strings("bg", 20)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let q1 = tokio::spawn({
        let fg = fg.clone();
        async move { fg.embed_queries(&strings("q", 1)).await }
    });
    let r1 = tokio::spawn({
        let fg = fg.clone();
        async move { fg.embed(&strings("turn", 3)).await }
    });
    until_queued(&lanes, 2, 0).await;
    model.release(100);
    let backlog = backlog.await.unwrap().unwrap();
    let q1 = q1.await.unwrap().unwrap();
    let r1 = r1.await.unwrap().unwrap();
    assert_eq!(
        backlog,
        strings("bg", 20)
            .iter()
            .map(|t| identify(t))
            .collect::<Vec<_>>()
    );
    assert_eq!(q1, vec![identify("q0")]);
    assert_eq!(
        r1,
        strings("turn", 3)
            .iter()
            .map(|t| identify(t))
            .collect::<Vec<_>>()
    );
    let runs = model.runs();
    let kinds: Vec<(&str, usize)> = runs.iter().map(|(k, t)| (*k, t.len())).collect();
    // The first background piece was already running; both interactive
    // jobs (one per kind, never mixed) go before the second piece.
    assert_eq!(
        kinds,
        vec![
            ("passage", 8),
            ("query", 1),
            ("passage", 3),
            ("passage", 8),
            ("passage", 4)
        ]
    );
    assert_eq!(runs[0].1, strings("bg", 8));
    assert_eq!(lanes.stats().background_runs.load(Ordering::Relaxed), 3);
}

#[tokio::test]
async fn waiting_callers_share_one_run_and_get_their_own_vectors() {
    let model = Arc::new(Recorder::gated());
    let lanes = Lanes::start(model.clone(), no_cache());
    let fg = lanes.interactive();
    // One call holds the model; 12 more wait and must run together.
    let first = tokio::spawn({
        let fg = fg.clone();
        async move { fg.embed_queries(&["first".to_owned()]).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let fg = fg.clone();
            tokio::spawn(async move {
                let texts = vec![format!("question {i}")];
                (texts.clone(), fg.embed_queries(&texts).await)
            })
        })
        .collect();
    until_queued(&lanes, 12, 0).await;
    model.release(100);
    assert_eq!(first.await.unwrap().unwrap(), vec![identify("first")]);
    for call in calls {
        let (texts, got) = call.await.unwrap();
        assert_eq!(got.unwrap(), vec![identify(&texts[0])]);
    }
    let runs = model.runs();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].1.len(), 12);
    assert_eq!(lanes.stats().interactive_jobs.load(Ordering::Relaxed), 13);
    assert_eq!(lanes.stats().interactive_runs.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_run_never_exceeds_max_batch() {
    let model = Arc::new(Recorder::gated());
    let options = LaneOptions {
        max_batch: 5,
        ..no_cache()
    };
    let lanes = Lanes::start(model.clone(), options);
    let fg = lanes.interactive();
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let fg = fg.clone();
            tokio::spawn(async move { fg.embed(&strings(&format!("c{i}-"), 2)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    model.release(100);
    for (i, call) in calls.into_iter().enumerate() {
        let want: Vec<_> = strings(&format!("c{i}-"), 2)
            .iter()
            .map(|t| identify(t))
            .collect();
        assert_eq!(call.await.unwrap().unwrap(), want);
    }
    let runs = model.runs();
    assert!(runs.iter().all(|(_, t)| t.len() <= 5), "{runs:?}");
    assert_eq!(runs.iter().map(|(_, t)| t.len()).sum::<usize>(), 12);
}

#[tokio::test]
async fn a_panicking_model_fails_that_run_only() {
    let model = Arc::new(Recorder::default());
    let lanes = Lanes::start(model.clone(), no_cache());
    let fg = lanes.interactive();
    let err = fg.embed(&["boom".to_owned()]).await.unwrap_err();
    assert!(
        matches!(err, EmbedError::Internal(ref m) if m.contains("panicked")),
        "{err}"
    );
    assert_eq!(lanes.stats().panics.load(Ordering::Relaxed), 1);
    // The scheduler survived and serves both lanes.
    let ok = fg.embed(&["fine".to_owned()]).await.unwrap();
    assert_eq!(ok, vec![identify("fine")]);
    let ok = lanes
        .background()
        .embed(&["later".to_owned()])
        .await
        .unwrap();
    assert_eq!(ok, vec![identify("later")]);
}

#[tokio::test]
async fn repeated_queries_come_from_the_cache() {
    let model = Arc::new(Recorder::default());
    let lanes = Lanes::start(model.clone(), LaneOptions::default());
    let fg = lanes.interactive();
    let a = fg
        .embed_queries(&["where do I live?".to_owned()])
        .await
        .unwrap();
    let texts = vec!["where do I live?".to_owned(), "new one".to_owned()];
    let b = fg.embed_queries(&texts).await.unwrap();
    assert_eq!(b[0], a[0]);
    assert_eq!(b[1], identify("new one"));
    assert_eq!(lanes.stats().cache_hits.load(Ordering::Relaxed), 1);
    // Only the miss reached the model; stored texts are never cached.
    let runs = model.runs();
    assert_eq!(runs[1], ("query", vec!["new one".to_owned()]));
    fg.embed(&["where do I live?".to_owned()]).await.unwrap();
    assert_eq!(model.runs().len(), 3);
}

#[tokio::test]
async fn empty_calls_and_dropped_lanes() {
    let model = Arc::new(Recorder::default());
    let lanes = Lanes::start(model.clone(), no_cache());
    let fg = lanes.interactive();
    assert!(fg.embed(&[]).await.unwrap().is_empty());
    assert!(model.runs().is_empty());
    assert_eq!(fg.dim(), 3);
    assert_eq!(fg.model(), "recorder");
    assert_eq!(fg.count_tokens("a b c"), 3);
    drop(lanes);
    // A handle keeps the scheduler alive.
    assert_eq!(
        fg.embed(&["x".to_owned()]).await.unwrap(),
        vec![identify("x")]
    );
}

/// The real model: vectors computed in a shared run equal those computed
/// alone, for every caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_runs_of_the_real_model_match_single_calls() {
    let dir = std::env::var_os("ENGRAM_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let model = crate::OrtEmbedder::load(crate::OrtEmbedderOptions::from_models_dir(&dir))
        .expect("model files missing: run scripts/setup.sh");
    let lanes = Lanes::start(Arc::new(model.clone()), no_cache());
    let texts: Vec<String> = [
        "I'm allergic to shellfish.",
        "Wo wohnst du jetzt? 🏠",
        "أين تعمل الآن؟",
        "we adopted a cat named Miso last spring",
        "ok",
        "what did Caroline research for her adoption plans?",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let calls: Vec<_> = texts
        .iter()
        .cycle()
        .take(24)
        .enumerate()
        .map(|(i, t)| {
            let lane = if i % 5 == 0 {
                lanes.background()
            } else {
                lanes.interactive()
            };
            let t = t.clone();
            tokio::spawn(async move {
                let v = if i % 2 == 0 {
                    lane.embed_queries(std::slice::from_ref(&t)).await
                } else {
                    lane.embed(std::slice::from_ref(&t)).await
                };
                (t, v)
            })
        })
        .collect();
    for call in calls {
        let (t, v) = call.await.unwrap();
        let alone = model.embed_blocking(std::slice::from_ref(&t)).unwrap();
        let cos: f32 = alone[0]
            .iter()
            .zip(&v.unwrap()[0])
            .map(|(a, b)| a * b)
            .sum();
        assert!(cos > 0.9999, "{t}: {cos}");
    }
    let stats = lanes.stats();
    assert!(stats.interactive_jobs.load(Ordering::Relaxed) > 0);
}

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\u{0}-\\u{2FF}\\u{300}-\\u{36F}\\u{200B}-\\u{200F}\\u{202A}-\\u{202E}\\u{590}-\\u{6FF}\\u{1F300}-\\u{1FAFF}\\u{FE0F}]{0,40}",
        Just("👩‍👩‍👧‍👦🏳️‍🌈\u{200D}\u{0}".to_owned()),
        Just("a\u{301}\u{302}".repeat(500)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever the text, concurrent callers of both lanes get back exactly
    /// the vectors of their own texts, in order.
    #[test]
    fn callers_get_their_own_vectors_for_any_text(
        calls in prop::collection::vec(prop::collection::vec(hostile_text(), 0..5), 1..10)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let lanes = Lanes::start(Arc::new(Recorder::default()), LaneOptions::default());
            let tasks: Vec<_> = calls
                .iter()
                .enumerate()
                .map(|(i, texts)| {
                    let lane = if i % 3 == 0 { lanes.background() } else { lanes.interactive() };
                    let texts = texts.clone();
                    tokio::spawn(async move {
                        let got = if i % 2 == 0 {
                            lane.embed_queries(&texts).await
                        } else {
                            lane.embed(&texts).await
                        };
                        (texts, got)
                    })
                })
                .collect();
            for task in tasks {
                let (texts, got) = task.await.unwrap();
                let want: Vec<_> = texts.iter().map(|t| identify(t)).collect();
                prop_assert_eq!(got.unwrap(), want);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn the_lanes_are_busy_while_interactive_calls_are_served() {
    use engram_core::Pressure as _;
    let model = Arc::new(Recorder::gated());
    let lanes = Lanes::start(model.clone(), no_cache());
    assert!(!lanes.interactive_busy(), "idle at start");
    // Background work alone is no interactive load.
    model.release(1);
    lanes.background().embed(&["bg".to_owned()]).await.unwrap();
    assert!(!lanes.interactive_busy());
    // A waiting interactive call is.
    let call = tokio::spawn({
        let fg = lanes.interactive();
        async move { fg.embed_queries(&["q".to_owned()]).await }
    });
    until_queued(&lanes, 0, 0).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(lanes.interactive_busy(), "a call is being served");
    model.release(1);
    call.await.unwrap().unwrap();
    // And for a moment after it was served, then no more.
    assert!(lanes.interactive_busy());
    tokio::time::sleep(BUSY_AFTER + Duration::from_millis(50)).await;
    assert!(!lanes.interactive_busy());
}

/// Under an unbroken stream of interactive calls, background pieces are
/// held back but not starved: each gets its turn within its share period,
/// so a backlog drains while the traffic goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_work_is_not_starved_by_continuous_traffic() {
    let lanes = Lanes::start(Arc::new(Recorder::default()), no_cache());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = tokio::spawn({
        let (fg, stop) = (lanes.interactive(), stop.clone());
        async move {
            let mut calls = 0u32;
            // Ends by itself after 5 s, so a starved backlog fails the test
            // below instead of hanging it.
            let until = Instant::now() + Duration::from_secs(5);
            while !stop.load(Ordering::SeqCst) && Instant::now() < until {
                fg.embed_queries(&[format!("q{calls}")]).await.unwrap();
                calls += 1;
            }
            calls
        }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Three pieces of 8: each waits for its share while the traffic runs.
    let texts = strings("bg", 24);
    let got = lanes.background().embed(&texts).await.unwrap();
    let traffic_still_running = !traffic.is_finished();
    stop.store(true, Ordering::SeqCst);
    let calls = traffic.await.unwrap();
    assert_eq!(got, texts.iter().map(|t| identify(t)).collect::<Vec<_>>());
    assert!(
        traffic_still_running,
        "the backlog waited for the traffic to end"
    );
    assert!(calls > 3, "{calls} interactive calls");
}
