//! The behaviour every Engram [`VectorStore`] must have, as a test suite.
//!
//! The checks in [`checks`] use nothing but the trait, so the embedded store
//! (Qdrant Edge) and the distributed one (a Qdrant server) are held to the
//! same contract: tenancy, filters (scope, metadata conditions, workspace
//! visibility of stored memories, applied inside the search), RRF fusion
//! and its score scale, deletes, counts, scrolls, payload round trips, and
//! what a closed store answers. A backend runs the whole suite
//! from an integration test with one line:
//!
//! ```ignore
//! engram_store_contract::contract_tests!(MyFactory::new());
//! ```
//!
//! which expands to one `#[tokio::test]` per check, named after the check,
//! so each passes or fails on its own in the test report. The calling crate
//! needs `tokio` (with `macros` and `rt`) among its (dev-)dependencies.
//!
//! Each check gets a fresh, empty store from a [`StoreFactory`] and runs in
//! its own task; the factory disposes of the store afterwards even when the
//! check panics, so a failing check against a server leaves no collection
//! behind.

pub mod checks;
pub mod fixtures;

use async_trait::async_trait;
use engram_core::VectorStore;
use std::future::Future;
use std::sync::Arc;

/// Dense dimension of every store the suite asks a factory for: small, so
/// the checks can reason about cosines by hand.
pub const DIM: usize = 4;

/// Makes the stores the checks run on.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// What must live as long as a store and be released after it: a
    /// temporary directory, the name of a collection to drop.
    type Resources: Send + 'static;

    /// Why the suite cannot run in this environment (say, no server is
    /// configured), if it cannot: every check then prints
    /// `skipped: <reason>` and passes.
    fn skip_reason(&self) -> Option<String> {
        None
    }

    /// A fresh, empty store whose dense vectors have dimension [`DIM`].
    /// Panics when it cannot make one: that fails the check.
    async fn create(&self) -> (Arc<dyn VectorStore>, Self::Resources);

    /// Closes `store` (it may already be closed) and releases `resources`.
    /// Called after every check, also after a failed one.
    async fn dispose(&self, store: Arc<dyn VectorStore>, resources: Self::Resources);
}

/// Runs one check named `name` on a fresh store from `factory`.
///
/// The check runs in a task of its own so that its panic can be caught,
/// the store disposed of, and the panic then re-raised for the test
/// harness.
pub async fn run<F, C, Fut>(factory: &F, name: &str, check: C)
where
    F: StoreFactory,
    C: FnOnce(Arc<dyn VectorStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Some(reason) = factory.skip_reason() {
        println!("{name}: skipped: {reason}");
        return;
    }
    let (store, resources) = factory.create().await;
    let outcome = tokio::spawn(check(Arc::clone(&store))).await;
    factory.dispose(store, resources).await;
    match outcome {
        Ok(()) => {}
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(err) => panic!("check {name} did not finish: {err}"),
    }
}

/// Expands to one `#[tokio::test]` per contract check, each running the
/// check on a fresh store from the given [`StoreFactory`] expression (which
/// is evaluated once per test).
///
/// ```ignore
/// engram_store_contract::contract_tests!(EdgeFactory);
/// ```
#[macro_export]
macro_rules! contract_tests {
    ($factory:expr) => {
        $crate::contract_tests!(@each $factory;
            upsert_then_existing_reports_only_own_org_and_known_ids,
            get_returns_full_payloads_of_own_points_only,
            upsert_rejects_malformed_points,
            tenants_never_see_each_other_even_with_identical_vectors,
            user_and_session_filters_narrow_results,
            hybrid_search_fuses_a_semantic_and_a_lexical_match_by_rrf,
            bm25_weights_are_the_querys_own,
            hybrid_search_checks_the_query_and_honours_a_zero_limit,
            kinds_filter_matches_any_of_the_kinds,
            time_range_includes_from_and_excludes_until,
            re_upserting_a_fragment_overwrites_it,
            delete_removes_only_the_tenants_own_points,
            count_is_exact_for_every_filter,
            bulk_search_stays_correct_with_3000_points,
            closed_store_answers_unavailable,
            metadata_equality_matches_strings_integers_and_bools,
            metadata_any_of_and_ranges,
            metadata_exists_and_combinations,
            top_k_is_exact_under_a_selective_filter,
            workspace_visibility_of_memories,
            source_memory_and_collection_id_filters,
            scroll_returns_every_match_up_to_the_limit,
            memory_chunks_round_trip_through_every_read,
            scan_pages_through_every_point_of_every_tenant,
            model_tag_round_trips,
        );
    };
    (@each $factory:expr; $($check:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                $crate::run(&$factory, stringify!($check), $crate::checks::$check).await;
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::checks::ALL;

    /// The macro, [`ALL`] and the check functions list the same checks in
    /// the same order. (A name the macro lists but `checks` lacks does not
    /// compile in the backends' tests; this catches the other direction.)
    #[test]
    fn macro_and_all_list_every_check() {
        let sources = [
            include_str!("checks.rs"),
            include_str!("checks/filters.rs"),
            include_str!("checks/memories.rs"),
            include_str!("checks/scan.rs"),
        ];
        let fns: Vec<&str> = sources
            .iter()
            .flat_map(|source| source.lines())
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|l| l.split('(').next().unwrap_or(l))
            .collect();
        assert_eq!(fns, ALL);

        let lib = include_str!("lib.rs");
        let start = lib.find("(@each $factory;").expect("macro list");
        let end = start + lib[start..].find(");").expect("end of macro list");
        let listed: Vec<&str> = lib[start..end]
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(listed, ALL);
    }
}
