//! BM25 inverse document frequencies from each user's own stored memory.
//!
//! A store-side IDF (Qdrant's modifier) counts every point of the
//! collection: every tenant and user, so one user's vocabulary would decide
//! how rare a word is in another's memory. Recall instead weighs each query
//! term by its IDF among the searching user's own points of the kinds the
//! search covers, and the store takes the weights as they are.
//!
//! Document frequencies come from the store: the terms of up to [`SAMPLE`]
//! of the user's points (a scroll, tokenized here exactly as documents
//! are) and, when there are more, the number of points (a count). Above [`SAMPLE`] points the
//! frequencies are scaled from the sample; a term the sample lacks counts
//! as the rarest. The first search of a user waits for its statistics;
//! after that they are re-checked in the background (a count) and re-read
//! when the user's point count moved by more than [`RESAMPLE_CHANGE`], so
//! a search never waits for a refresh. A store that sees every write (the
//! embedded one) reports a write generation, and a check that finds it
//! where the last read or count left it is done without counting: a quiet
//! store costs no count at all. A user's checks start
//! [`CHECK_EVERY`] apart; each check that finds the count unchanged doubles
//! the wait, up to [`CHECK_AT_MOST_EVERY`], and one that finds it moved
//! starts again from [`CHECK_EVERY`]: a user who is writing is followed
//! within seconds, one who only reads costs a count a minute, not one per
//! Recall (at 100,000 points a count took a millisecond of the core the
//! next call's embedding needed). Small memories, where one write changes
//! the weights, are checked every [`CHECK_EVERY`].

use engram_core::{Kind, ScopeFilter, SparseVector, StoreError, VectorStore, bm25};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Points whose terms are read per user and corpus.
pub(crate) const SAMPLE: usize = 2_000;

/// Shortest time between two checks of a user's statistics.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Longest time between two checks of a user's statistics.
const CHECK_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Corpora smaller than this are checked every [`CHECK_EVERY`].
const SMALL_CORPUS: u64 = 20;

/// The wait before the next check, after one that waited `interval` and
/// found the corpus at `docs` points where the statistics say `had`.
fn next_interval(interval: Duration, had: u64, docs: u64) -> Duration {
    if docs != had || docs < SMALL_CORPUS {
        CHECK_EVERY
    } else {
        (interval * 2).min(CHECK_AT_MOST_EVERY)
    }
}

/// The relative change of a user's point count that makes its statistics
/// be read again (plus one point, so a small memory follows every write).
const RESAMPLE_CHANGE: f64 = 0.05;

/// Term counts kept across all users and corpora (8 bytes each, so 64 MiB):
/// a chat user's corpus holds a few thousand distinct terms, so several
/// thousand users stay cached; past the budget the least recently searched
/// go first (and are read again on their next search).
const TERM_BUDGET: usize = 8 << 20;

/// The sets of kinds recall searches, each its own corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Corpus {
    /// Turns and memory chunks.
    Text,
    /// Observations.
    Observations,
    /// Entities.
    Entities,
    /// Turns, memory chunks and observations together (`active`'s search).
    Mixed,
}

impl Corpus {
    /// The corpus a search over `kinds` ranks within.
    pub(crate) fn of(kinds: &[Kind]) -> Self {
        let has = |k: Kind| kinds.contains(&k);
        let text = has(Kind::Turn) || has(Kind::Memory);
        match (text, has(Kind::Observation)) {
            (true, true) => Corpus::Mixed,
            (false, true) => Corpus::Observations,
            (true, false) => Corpus::Text,
            (false, false) if has(Kind::Entity) => Corpus::Entities,
            // No kinds named: everything; the mixed corpus is the closest.
            (false, false) => Corpus::Mixed,
        }
    }

    fn kinds(self) -> Vec<Kind> {
        match self {
            Corpus::Text => vec![Kind::Turn, Kind::Memory],
            Corpus::Observations => vec![Kind::Observation],
            Corpus::Entities => vec![Kind::Entity],
            Corpus::Mixed => vec![Kind::Turn, Kind::Memory, Kind::Observation],
        }
    }
}

/// Document frequencies of one user's corpus.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Frequencies {
    /// Points in the corpus.
    docs: u64,
    /// Points whose terms were counted.
    sampled: u64,
    /// (term id, points of the sample containing it), by term id.
    df: Vec<(u32, u32)>,
}

impl Frequencies {
    /// Counts the terms of `texts`, a sample of a corpus of `docs` points.
    pub(crate) fn from_sample<'t>(docs: u64, texts: impl IntoIterator<Item = &'t str>) -> Self {
        let mut df: HashMap<u32, u32> = HashMap::new();
        let mut sampled = 0u64;
        for text in texts {
            sampled += 1;
            for term in bm25::terms(text) {
                *df.entry(term).or_default() += 1;
            }
        }
        let mut df: Vec<(u32, u32)> = df.into_iter().collect();
        df.sort_unstable();
        Self {
            // A count taken before a write the scroll saw is still a floor.
            docs: docs.max(sampled),
            sampled,
            df,
        }
    }

    /// The IDF of `term` in the corpus.
    pub(crate) fn idf(&self, term: u32) -> f32 {
        let in_sample = self
            .df
            .binary_search_by_key(&term, |(t, _)| *t)
            .map_or(0, |i| self.df[i].1);
        let df = if self.sampled == 0 {
            0.0
        } else {
            f64::from(in_sample) * self.docs as f64 / self.sampled as f64
        };
        bm25::idf(self.docs as f64, df)
    }

    /// The query vector of `terms` (distinct, increasing) weighted by IDF.
    pub(crate) fn weigh(&self, terms: &[u32]) -> SparseVector {
        SparseVector {
            indices: terms.to_vec(),
            values: terms.iter().map(|t| self.idf(*t)).collect(),
        }
    }

    /// Whether a corpus now holding `docs` points differs enough from the
    /// one these frequencies were read from to read them again.
    fn stale_at(&self, docs: u64) -> bool {
        let drift = (docs as f64 - self.docs as f64).abs();
        drift > 1.0 + RESAMPLE_CHANGE * self.docs as f64
            || (docs != self.docs && docs < SMALL_CORPUS)
    }
}

type Key = (String, String, Corpus);

#[derive(Debug)]
struct Entry {
    freq: Arc<Frequencies>,
    /// The store's write generation before `freq` was last read or
    /// confirmed by a count; `None` when the store cannot tell.
    generation: Option<u64>,
    checked: Instant,
    /// Wait from `checked` to the next check.
    interval: Duration,
    refreshing: bool,
    used: u64,
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<Key, Entry>,
    clock: u64,
    /// Term counts held by all entries.
    terms: usize,
}

/// Per-user document frequencies, shared by every search of a process.
#[derive(Debug, Clone)]
pub(crate) struct TermStats {
    table: Arc<Mutex<Table>>,
    /// Term counts kept before the least recently searched entries go.
    budget: usize,
}

impl TermStats {
    /// An empty table holding up to [`TERM_BUDGET`] term counts.
    pub(crate) fn new() -> Self {
        Self::with_budget(TERM_BUDGET)
    }

    fn with_budget(budget: usize) -> Self {
        Self {
            table: Arc::default(),
            budget,
        }
    }

    /// The document frequencies of `user`'s corpus: cached, read from the
    /// store on the first call, re-checked in the background afterwards.
    pub(crate) async fn frequencies(
        &self,
        store: &Arc<dyn VectorStore>,
        org_id: &str,
        user_id: &str,
        corpus: Corpus,
    ) -> Result<Arc<Frequencies>, StoreError> {
        let key: Key = (org_id.to_owned(), user_id.to_owned(), corpus);
        let cached = {
            let mut table = self.table.lock();
            table.clock += 1;
            let clock = table.clock;
            table.entries.get_mut(&key).map(|e| {
                e.used = clock;
                let mut check = !e.refreshing && e.checked.elapsed() >= e.interval;
                let generation = check.then(|| store.write_generation()).flatten();
                if generation.is_some() && generation == e.generation {
                    // Nothing was written anywhere in the store since the
                    // last read or count: the count would be the same. A
                    // quiet store costs no count at all.
                    e.checked = Instant::now();
                    check = false;
                }
                if check {
                    e.refreshing = true;
                }
                (Arc::clone(&e.freq), check.then_some(generation))
            })
        };
        match cached {
            Some((freq, check)) => {
                if let Some(generation) = check {
                    self.spawn_check(Arc::clone(store), key, Arc::clone(&freq), generation);
                }
                Ok(freq)
            }
            None => {
                let generation = store.write_generation();
                let freq = Arc::new(read(store.as_ref(), &key).await?);
                self.put(key, Arc::clone(&freq), generation);
                Ok(freq)
            }
        }
    }

    /// Counts the corpus in the background, and reads it again when it
    /// moved; `generation` is the store's, taken before the count.
    fn spawn_check(
        &self,
        store: Arc<dyn VectorStore>,
        key: Key,
        freq: Arc<Frequencies>,
        generation: Option<u64>,
    ) {
        let stats = self.clone();
        tokio::spawn(async move {
            let result = async {
                let docs = store.count(&filter_of(&key)).await?;
                if freq.stale_at(docs) {
                    Ok((docs, Some(read(store.as_ref(), &key).await?)))
                } else {
                    Ok::<_, StoreError>((docs, None))
                }
            }
            .await;
            let mut table = stats.table.lock();
            let Some(entry) = table.entries.get_mut(&key) else {
                return;
            };
            entry.refreshing = false;
            entry.checked = Instant::now();
            match result {
                Ok((docs, fresh)) => {
                    entry.generation = generation;
                    entry.interval = next_interval(entry.interval, freq.docs, docs);
                    if let Some(fresh) = fresh {
                        let (old, new) = (entry.freq.df.len(), fresh.df.len());
                        entry.freq = Arc::new(fresh);
                        table.terms = table.terms + new - old;
                    }
                }
                // The old figures stay; the next check tries again.
                Err(err) => tracing::warn!(error = %err, "term statistics refresh failed"),
            }
        });
    }

    /// Caches `freq`, read after the store was at `generation`.
    fn put(&self, key: Key, freq: Arc<Frequencies>, generation: Option<u64>) {
        let mut table = self.table.lock();
        table.clock += 1;
        let used = table.clock;
        table.terms += freq.df.len();
        // A concurrent first search may have put one meanwhile; the later
        // read is as good.
        let replaced = table.entries.insert(
            key.clone(),
            Entry {
                freq,
                generation,
                checked: Instant::now(),
                interval: CHECK_EVERY,
                refreshing: false,
                used,
            },
        );
        if let Some(old) = replaced {
            table.terms -= old.freq.df.len();
        }
        while table.terms > self.budget && table.entries.len() > 1 {
            let oldest = table
                .entries
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone());
            let Some(oldest) = oldest else { break };
            if let Some(gone) = table.entries.remove(&oldest) {
                table.terms -= gone.freq.df.len();
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().entries.len()
    }
}

/// A query's BM25 vectors, one per corpus its searches rank within.
#[derive(Debug, Clone, Default)]
pub(crate) struct QueryTerms {
    terms: Vec<u32>,
    by_corpus: Vec<(Corpus, SparseVector)>,
}

impl QueryTerms {
    /// The terms of `text` weighed in each of `corpora` of the user's memory.
    pub(crate) async fn weigh(
        stats: &TermStats,
        store: &Arc<dyn VectorStore>,
        org_id: &str,
        user_id: &str,
        text: &str,
        corpora: &[Corpus],
    ) -> Result<Self, StoreError> {
        let terms = bm25::terms(text);
        if terms.is_empty() {
            // Nothing to weigh: the searches run without a BM25 prefetch.
            return Ok(Self::default());
        }
        let freqs = futures::future::try_join_all(
            corpora
                .iter()
                .map(|c| stats.frequencies(store, org_id, user_id, *c)),
        )
        .await?;
        let by_corpus = corpora
            .iter()
            .zip(freqs)
            .map(|(c, f)| (*c, f.weigh(&terms)))
            .collect();
        Ok(Self { terms, by_corpus })
    }

    /// The BM25 query vector for a search over `kinds`. A corpus that was
    /// not weighed gets weight 1 per term (term frequencies alone).
    pub(crate) fn for_kinds(&self, kinds: &[Kind]) -> SparseVector {
        let corpus = Corpus::of(kinds);
        self.by_corpus
            .iter()
            .find(|(c, _)| *c == corpus)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                debug_assert!(self.terms.is_empty(), "corpus {corpus:?} was not weighed");
                SparseVector {
                    indices: self.terms.clone(),
                    values: vec![1.0; self.terms.len()],
                }
            })
    }
}

fn filter_of((org, user, corpus): &Key) -> ScopeFilter {
    ScopeFilter {
        user_id: Some(user.clone()),
        kinds: corpus.kinds(),
        ..ScopeFilter::tenant(org.clone())
    }
}

/// Reads a corpus's frequencies: the scroll alone when it holds the whole
/// corpus (most users' corpora are far below [`SAMPLE`] points), and a
/// count besides only when the sample came back full. A first search waits
/// for this, so one store call instead of two matters.
async fn read(store: &dyn VectorStore, key: &Key) -> Result<Frequencies, StoreError> {
    let filter = filter_of(key);
    let sample = store.scroll(&filter, SAMPLE).await?;
    let docs = if sample.len() < SAMPLE {
        sample.len() as u64
    } else {
        store.count(&filter).await?
    };
    Ok(Frequencies::from_sample(
        docs,
        sample.iter().map(|p| p.text.as_str()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_of_kinds() {
        assert_eq!(Corpus::of(&[Kind::Turn, Kind::Memory]), Corpus::Text);
        assert_eq!(Corpus::of(&[Kind::Turn]), Corpus::Text);
        assert_eq!(Corpus::of(&[Kind::Observation]), Corpus::Observations);
        assert_eq!(Corpus::of(&[Kind::Entity]), Corpus::Entities);
        assert_eq!(
            Corpus::of(&[Kind::Turn, Kind::Observation, Kind::Memory]),
            Corpus::Mixed
        );
        assert_eq!(Corpus::of(&[]), Corpus::Mixed);
    }

    #[test]
    fn rare_terms_weigh_more_and_unseen_terms_most() {
        let texts = ["lyon paris", "paris rome", "paris berlin", "rome"];
        let f = Frequencies::from_sample(4, texts);
        // Through the tokenizer: "paris" is stemmed to "pari".
        let [paris, rome, lyon, tokyo] =
            ["paris", "rome", "lyon", "tokyo"].map(|w| bm25::terms(w)[0]);
        assert!(f.idf(lyon) > f.idf(rome) && f.idf(rome) > f.idf(paris));
        assert!(f.idf(tokyo) > f.idf(lyon));
        assert!((f.idf(paris) - bm25::idf(4.0, 3.0)).abs() < 1e-6);
        let mut q = vec![paris, lyon];
        q.sort_unstable();
        let v = f.weigh(&q);
        assert_eq!(v.indices, q);
        assert!(v.values.iter().all(|w| *w > 0.0));
    }

    #[test]
    fn a_sample_is_scaled_to_the_corpus() {
        // 10 of 100 sampled points hold "lyon": about 100 of 1000 do.
        let texts: Vec<String> = (0..100)
            .map(|i| {
                if i % 10 == 0 {
                    "lyon".into()
                } else {
                    format!("w{i}")
                }
            })
            .collect();
        let f = Frequencies::from_sample(1_000, texts.iter().map(String::as_str));
        let lyon = bm25::term_id("lyon");
        assert!((f.idf(lyon) - bm25::idf(1_000.0, 100.0)).abs() < 1e-5);
        // A count older than the sample never undercuts it.
        let g = Frequencies::from_sample(3, texts.iter().map(String::as_str));
        assert_eq!(g.docs, 100);
    }

    #[test]
    fn staleness_follows_relative_change() {
        let big = Frequencies {
            docs: 1_000,
            sampled: 1_000,
            df: Vec::new(),
        };
        assert!(!big.stale_at(1_040));
        assert!(big.stale_at(1_060));
        assert!(big.stale_at(900));
        let small = Frequencies {
            docs: 4,
            sampled: 4,
            df: Vec::new(),
        };
        assert!(small.stale_at(5));
        assert!(!small.stale_at(4));
        assert!(Frequencies::default().stale_at(1));
    }

    #[test]
    fn each_search_gets_the_weights_of_its_corpus() {
        let text = Frequencies::from_sample(2, ["lyon", "rome"]);
        let obs = Frequencies::from_sample(2, ["lyon", "lyon paris"]);
        let terms = bm25::terms("lyon");
        let q = QueryTerms {
            terms: terms.clone(),
            by_corpus: vec![
                (Corpus::Text, text.weigh(&terms)),
                (Corpus::Observations, obs.weigh(&terms)),
            ],
        };
        let turns = q.for_kinds(&[Kind::Turn]);
        let facts = q.for_kinds(&[Kind::Observation]);
        assert_eq!(turns.indices, terms);
        assert!(turns.values[0] > facts.values[0]);
        // Nothing to weigh: no terms at all.
        assert!(
            QueryTerms::default()
                .for_kinds(&[Kind::Entity])
                .indices
                .is_empty()
        );
    }

    #[test]
    fn the_least_recently_searched_go_past_the_budget() {
        let stats = TermStats::with_budget(5);
        let key = |u: &str| ("org".to_owned(), u.to_owned(), Corpus::Text);
        let two = || Arc::new(Frequencies::from_sample(1, ["lyon rome"]));
        stats.put(key("a"), two(), None);
        stats.put(key("b"), two(), None);
        assert_eq!(stats.len(), 2);
        // Replacing an entry does not count it twice.
        stats.put(key("b"), two(), None);
        assert_eq!(stats.table.lock().terms, 4);
        stats.put(key("c"), two(), None);
        let table = stats.table.lock();
        assert_eq!(table.terms, 4);
        assert!(!table.entries.contains_key(&key("a")));
        assert!(table.entries.contains_key(&key("c")));
        drop(table);
        // One entry over the budget alone is still kept.
        let big = Arc::new(Frequencies::from_sample(1, ["a1 b1 c1 d1 e1 f1 g1"]));
        stats.put(key("d"), big, None);
        assert_eq!(stats.len(), 1);
    }

    #[test]
    fn empty_corpus_gives_finite_weights() {
        let f = Frequencies::from_sample(0, std::iter::empty());
        let v = f.weigh(&[1, 2, 3]);
        assert!(v.values.iter().all(|w| w.is_finite() && *w > 0.0));
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::{hostile_text, long_text};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn weights_of_hostile_text_are_finite_and_positive(
                docs in proptest::collection::vec(
                    prop_oneof![8 => hostile_text(), 1 => long_text(20_000)], 0..8),
                query in hostile_text(),
                extra in 0u64..10_000,
            ) {
                let f = Frequencies::from_sample(
                    docs.len() as u64 + extra,
                    docs.iter().map(String::as_str),
                );
                let terms = bm25::terms(&query);
                let v = f.weigh(&terms);
                prop_assert_eq!(&v.indices, &terms);
                prop_assert!(v.values.iter().all(|w| w.is_finite() && *w > 0.0));
            }
        }
    }

    #[test]
    fn checks_back_off_while_nothing_changes_and_follow_a_writer() {
        let mut interval = CHECK_EVERY;
        let mut waits = Vec::new();
        for _ in 0..8 {
            interval = next_interval(interval, 500, 500);
            waits.push(interval.as_secs());
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        // One more point: the user is writing, check again soon.
        assert_eq!(next_interval(interval, 500, 501), CHECK_EVERY);
        assert_eq!(next_interval(interval, 501, 500), CHECK_EVERY);
        // A small memory is followed write by write.
        assert_eq!(next_interval(CHECK_EVERY, 5, 5), CHECK_EVERY);
    }

    /// An embedded store of the contract fixtures' dimension in `dir`.
    fn open_edge(dir: &std::path::Path) -> Arc<engram_store::EdgeStore> {
        Arc::new(
            engram_store::EdgeStore::open(
                dir,
                engram_store::EdgeStoreOptions {
                    dense_dim: engram_store_contract::DIM,
                    ..engram_store::EdgeStoreOptions::default()
                },
            )
            .unwrap(),
        )
    }

    /// The table itself: the first read waits, later reads are cached, a
    /// grown corpus is read again in the background.
    #[tokio::test]
    async fn statistics_follow_the_store() {
        use engram_store_contract::fixtures::{point, scope};
        let dir = tempfile::tempdir().unwrap();
        let edge = open_edge(dir.path());
        let store: Arc<dyn VectorStore> = edge.clone();
        let write = |user: &str, ts: std::ops::Range<i64>, text: &str| {
            let points = ts
                .map(|t| {
                    point(
                        &scope("org", user, "s"),
                        Kind::Turn,
                        text,
                        t,
                        [1.0, 0.0, 0.0, 0.0],
                    )
                })
                .collect();
            let store = Arc::clone(&store);
            async move { store.upsert(points).await.unwrap() }
        };
        write("u", 0..3, "lyon paris").await;
        write("u", 3..4, "rome").await;
        write("v", 0..50, "rome rome").await;
        let stats = TermStats::new();
        let (lyon, rome) = (bm25::term_id("lyon"), bm25::term_id("rome"));
        let f = stats
            .frequencies(&store, "org", "u", Corpus::Text)
            .await
            .unwrap();
        // Only u's own points count: rome is rare for u whatever v wrote.
        assert_eq!(f.docs, 4);
        assert!(f.idf(rome) > f.idf(lyon));
        assert_eq!(stats.len(), 1);
        let none = stats
            .frequencies(&store, "org", "u", Corpus::Observations)
            .await
            .unwrap();
        assert_eq!(none.docs, 0);
        assert_eq!(stats.len(), 2);

        write("u", 4..40, "rome").await;
        tokio::time::sleep(CHECK_EVERY).await;
        // This call starts the check and still answers with what it had.
        let before = stats
            .frequencies(&store, "org", "u", Corpus::Text)
            .await
            .unwrap();
        assert_eq!(before.docs, 4);
        let mut fresh = before;
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            fresh = stats
                .frequencies(&store, "org", "u", Corpus::Text)
                .await
                .unwrap();
            if fresh.docs != 4 {
                break;
            }
        }
        assert_eq!(fresh.docs, 40);
        assert!(fresh.idf(rome) < fresh.idf(lyon));

        // A corpus larger than the sample: the terms of SAMPLE points, the
        // size from a count.
        let big = SAMPLE as i64 + 50;
        write("w", 0..big, "rome").await;
        let f = stats
            .frequencies(&store, "org", "w", Corpus::Text)
            .await
            .unwrap();
        assert_eq!((f.docs, f.sampled), (big as u64, SAMPLE as u64));
        edge.close().await.unwrap();
    }

    /// A check that is due costs no count while nothing was written to the
    /// store since the last one; any write (of any user) brings the count
    /// back, and its result is what the next checks compare with.
    #[tokio::test]
    async fn a_quiet_store_is_not_counted_again() {
        use engram_store_contract::fixtures::{point, scope};
        let dir = tempfile::tempdir().unwrap();
        let edge = open_edge(dir.path());
        let store: Arc<dyn VectorStore> = edge.clone();
        let write = |user: &str, t: i64| {
            let p = point(
                &scope("org", user, "s"),
                Kind::Turn,
                "lyon paris",
                t,
                [1.0, 0.0, 0.0, 0.0],
            );
            let store = Arc::clone(&store);
            async move { store.upsert(vec![p]).await.unwrap() }
        };
        write("u", 0).await;
        let stats = TermStats::new();
        let key: Key = ("org".into(), "u".into(), Corpus::Text);
        let search = || stats.frequencies(&store, "org", "u", Corpus::Text);
        // (refreshing, generation, checked long ago) of u's entry.
        let state = || {
            let table = stats.table.lock();
            let e = &table.entries[&key];
            (
                e.refreshing,
                e.generation,
                e.checked.elapsed() >= CHECK_EVERY,
            )
        };
        search().await.unwrap();
        let first = store.write_generation();
        assert!(first.is_some());
        assert_eq!(state(), (false, first, false));

        // Due, but nothing was written: no count is started (this runtime
        // has one thread, so a started one would still be pending here),
        // and the check counts as done.
        tokio::time::sleep(CHECK_EVERY).await;
        assert!(state().2);
        search().await.unwrap();
        assert_eq!(state(), (false, first, false));

        // Another user writes: the next due check counts again.
        write("v", 1).await;
        let second = store.write_generation();
        assert_ne!(second, first);
        tokio::time::sleep(CHECK_EVERY).await;
        search().await.unwrap();
        assert!(state().0, "a check should be running");
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if !state().0 {
                break;
            }
        }
        assert_eq!(state(), (false, second, false));
        // u's own count did not move, so the weights stayed.
        assert_eq!(search().await.unwrap().docs, 1);

        // And a write of u's own is seen by the check after it.
        write("u", 2).await;
        tokio::time::sleep(CHECK_EVERY * 2).await;
        search().await.unwrap();
        let mut docs = 1;
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            docs = search().await.unwrap().docs;
            if docs == 2 {
                break;
            }
        }
        assert_eq!(docs, 2);
        edge.close().await.unwrap();
    }
}
