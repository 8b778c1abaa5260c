//! Checks of stored memories and the filters around them: workspace
//! visibility (`ScopeFilter::memories`), the id filters (`memory_ids`,
//! `collection_ids`, `source_ids`), `scroll`, and the round trip of a
//! memory chunk's flattened reference through every read.

use super::filters::assert_matches;
use crate::fixtures::{bulk, memory_chunk, memory_ref, point, query, scope, with_metadata};
use engram_core::{Kind, MemoryAccess, MemoryType, Point, ScopeFilter, VectorStore};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Tenant `org` as user `user` with workspace visibility of memories, the
/// reader being a member of `teams`.
fn reader(user: &str, teams: &[&str]) -> ScopeFilter {
    let mut f = ScopeFilter::tenant("org");
    f.user_id = Some(user.into());
    f.memories = Some(MemoryAccess {
        team_collections: teams.iter().map(|t| (*t).to_owned()).collect(),
    });
    f
}

/// The sorted texts of the points the store shows through `filter`, by
/// a scroll with room for all.
async fn scrolled(store: &dyn VectorStore, filter: &ScopeFilter) -> Vec<String> {
    let mut texts: Vec<String> = store
        .scroll(filter, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.text)
        .collect();
    texts.sort_unstable();
    texts
}

/// The sorted texts of `points`, to compare with [`scrolled`].
fn texts(points: &[&Point]) -> Vec<String> {
    let mut t: Vec<String> = points.iter().map(|p| p.payload.text.clone()).collect();
    t.sort_unstable();
    t
}

/// With `memories` set, user A sees its own conversation data (a session
/// narrows it), its own personal memory chunks, every knowledge and hive
/// chunk of the workspace (and what was derived from them), and the
/// chunks of the team collections it belongs to, in any session; never
/// another user's conversation data, personal chunks or chunks of a team
/// it is not in, nor another tenant's. Search, count and scroll agree with
/// each other and with `ScopeFilter::visible`.
pub async fn workspace_visibility_of_memories(store: Arc<dyn VectorStore>) {
    let v = |i: u64| crate::fixtures::vector(i + 100);
    let a_s1 = point(&scope("org", "a", "s1"), Kind::Turn, "a turn s1", 1, v(1));
    let a_s2 = point(&scope("org", "a", "s2"), Kind::Turn, "a turn s2", 2, v(2));
    let a_obs = point(
        &scope("org", "a", "s1"),
        Kind::Observation,
        "a fact",
        3,
        v(3),
    );
    // Same session id as A's: sessions never open another user's turns.
    let b_s1 = point(&scope("org", "b", "s1"), Kind::Turn, "b turn s1", 4, v(4));
    // Memory names are per user, so no two memories share an id.
    let chunk = |user: &str, name: &str, t: MemoryType, collection: &str, seed: u64| {
        memory_chunk(
            "org",
            user,
            memory_ref(&format!("{user}-{name}"), t, collection, 0),
            &format!("{user} {name} chunk"),
            v(seed),
        )
    };
    let a_personal = chunk("a", "diary", MemoryType::User, "personal:a", 5);
    let b_personal = chunk("b", "diary", MemoryType::User, "personal:b", 6);
    let b_knowledge = chunk("b", "handbook", MemoryType::Knowledge, "col_kb", 7);
    let b_hive = chunk("b", "norms", MemoryType::Hive, "col_hive", 8);
    let b_team = chunk("b", "roadmap", MemoryType::User, "col_team", 9);
    let b_secret = chunk("b", "plans", MemoryType::User, "col_secret", 10);
    // Observations derived from memories carry the memory's reference.
    let derived = |name: &str, t: MemoryType, collection: &str, seed: u64| {
        let mut p = point(
            &scope("org", "b", ""),
            Kind::Observation,
            &format!("fact from {name}"),
            20,
            v(seed),
        );
        p.payload.memory = Some(memory_ref(name, t, collection, 0));
        p
    };
    let b_knowledge_obs = derived("b-handbook", MemoryType::Knowledge, "col_kb", 11);
    let b_personal_obs = derived("b-diary", MemoryType::User, "personal:b", 12);
    let foreign = memory_chunk(
        "org2",
        "a",
        memory_ref("handbook", MemoryType::Knowledge, "col_kb", 0),
        "foreign handbook chunk",
        v(13),
    );
    let all = [
        &a_s1,
        &a_s2,
        &a_obs,
        &b_s1,
        &a_personal,
        &b_personal,
        &b_knowledge,
        &b_hive,
        &b_team,
        &b_secret,
        &b_knowledge_obs,
        &b_personal_obs,
        &foreign,
    ];
    store
        .upsert(all.iter().map(|p| (*p).clone()).collect())
        .await
        .unwrap();
    let s = store.as_ref();

    let a_sees = [
        &a_s1,
        &a_s2,
        &a_obs,
        &a_personal,
        &b_knowledge,
        &b_hive,
        &b_team,
        &b_knowledge_obs,
    ];
    let a = reader("a", &["col_team"]);
    assert_matches(s, &a, &a_sees).await;
    assert_eq!(scrolled(s, &a).await, texts(&a_sees));

    // A session narrows conversation data only.
    let mut a_in_s1 = a.clone();
    a_in_s1.session_id = Some("s1".into());
    let a_s1_sees = [
        &a_s1,
        &a_obs,
        &a_personal,
        &b_knowledge,
        &b_hive,
        &b_team,
        &b_knowledge_obs,
    ];
    assert_matches(s, &a_in_s1, &a_s1_sees).await;

    // Without the team, its chunks are gone; kinds still apply.
    assert_matches(
        s,
        &reader("a", &[]),
        &[
            &a_s1,
            &a_s2,
            &a_obs,
            &a_personal,
            &b_knowledge,
            &b_hive,
            &b_knowledge_obs,
        ],
    )
    .await;
    let mut a_chunks = a.clone();
    a_chunks.kinds = vec![Kind::Memory];
    assert_matches(s, &a_chunks, &[&a_personal, &b_knowledge, &b_hive, &b_team]).await;

    let b_sees = [
        &b_s1,
        &b_personal,
        &b_knowledge,
        &b_hive,
        &b_team,
        &b_secret,
        &b_knowledge_obs,
        &b_personal_obs,
    ];
    assert_matches(s, &reader("b", &[]), &b_sees).await;

    // Without `memories`, user and session apply to every point alike.
    let mut plain = ScopeFilter::tenant("org");
    plain.user_id = Some("a".into());
    assert_matches(s, &plain, &[&a_s1, &a_s2, &a_obs, &a_personal]).await;
    plain.session_id = Some("s1".into());
    assert_matches(s, &plain, &[&a_s1, &a_obs]).await;

    // The store's filter and the check for points fetched by id agree.
    for filter in [&a, &a_in_s1, &reader("b", &[])] {
        let shown: HashSet<String> = scrolled(s, filter).await.into_iter().collect();
        for p in all {
            assert_eq!(
                filter.visible(&p.payload),
                shown.contains(&p.payload.text),
                "{:?} through {filter:?}",
                p.payload.text
            );
        }
    }
}

/// `source_ids` matches points derived from any of the given fragments
/// (an element of the array), `memory_ids` the points of any of the given
/// memories, `collection_ids` those of any of the given collections; each
/// narrows the rest of the filter.
pub async fn source_memory_and_collection_id_filters(store: Arc<dyn VectorStore>) {
    let s = scope("org", "u", "s");
    let t = |c: char| c.to_string().repeat(64);
    let mut obs1 = point(&s, Kind::Observation, "first fact", 1, [1.0, 0.0, 0.0, 1.0]);
    obs1.payload.source_ids = vec![t('1')];
    let mut obs2 = point(
        &s,
        Kind::Observation,
        "second fact",
        2,
        [0.0, 1.0, 0.0, 1.0],
    );
    obs2.payload.source_ids = vec![t('2'), t('3')];
    let turn = point(&s, Kind::Turn, "a turn", 3, [0.0, 0.0, 1.0, 1.0]);
    let m1a = memory_chunk(
        "org",
        "u",
        memory_ref("m1", MemoryType::User, "c1", 0),
        "m1 first",
        [1.0, 1.0, 0.0, 0.0],
    );
    let m1b = memory_chunk(
        "org",
        "u",
        memory_ref("m1", MemoryType::User, "c1", 1),
        "m1 second",
        [1.0, 0.0, 1.0, 0.0],
    );
    let m2 = memory_chunk(
        "org",
        "u",
        memory_ref("m2", MemoryType::Knowledge, "c2", 0),
        "m2 only",
        [0.0, 1.0, 1.0, 0.0],
    );
    // Another tenant with the same sources and memory names.
    let mut foreign = point(
        &scope("org2", "u", "s"),
        Kind::Observation,
        "foreign fact",
        1,
        [1.0, 0.0, 0.0, 1.0],
    );
    foreign.payload.source_ids = vec![t('1'), t('3')];
    let foreign_chunk = memory_chunk(
        "org2",
        "u",
        memory_ref("m1", MemoryType::User, "c1", 0),
        "foreign chunk",
        [1.0, 1.0, 0.0, 0.0],
    );
    store
        .upsert(vec![
            obs1.clone(),
            obs2.clone(),
            turn.clone(),
            m1a.clone(),
            m1b.clone(),
            m2.clone(),
            foreign,
            foreign_chunk,
        ])
        .await
        .unwrap();
    let st = store.as_ref();
    let with = |f: fn(&mut ScopeFilter)| {
        let mut filter = ScopeFilter::tenant("org");
        f(&mut filter);
        filter
    };

    assert_matches(st, &with(|f| f.source_ids = vec!["3".repeat(64)]), &[&obs2]).await;
    assert_matches(
        st,
        &with(|f| f.source_ids = vec!["1".repeat(64), "2".repeat(64)]),
        &[&obs1, &obs2],
    )
    .await;
    assert_matches(st, &with(|f| f.source_ids = vec!["9".repeat(64)]), &[]).await;

    let m1 = engram_core::ids::memory_id(&["m1"]);
    let m2_id = engram_core::ids::memory_id(&["m2"]);
    let mut f = ScopeFilter::tenant("org");
    f.memory_ids = vec![m1.clone()];
    assert_matches(st, &f, &[&m1a, &m1b]).await;
    f.memory_ids.push(m2_id);
    assert_matches(st, &f, &[&m1a, &m1b, &m2]).await;
    f.collection_ids = vec!["c2".into()];
    assert_matches(st, &f, &[&m2]).await;
    f.memory_ids = vec![m1];
    assert_matches(st, &f, &[]).await;
    assert_matches(
        st,
        &with(|f| f.collection_ids = vec!["c1".into()]),
        &[&m1a, &m1b],
    )
    .await;
}

/// `scroll` returns every matching point (across its internal pages) up
/// to `limit`, each once, with the payload as written, and never another
/// tenant's; a limit of zero returns nothing.
pub async fn scroll_returns_every_match_up_to_the_limit(store: Arc<dyn VectorStore>) {
    let a = bulk("org_a", 1_234, 0);
    let b = bulk("org_b", 50, 5_000);
    for chunk in a.chunks(500).chain(b.chunks(500)) {
        store.upsert(chunk.to_vec()).await.unwrap();
    }
    let written: HashMap<&str, &Point> = a.iter().map(|p| (p.fragment_id.as_str(), p)).collect();

    let all = store
        .scroll(&ScopeFilter::tenant("org_a"), 10_000)
        .await
        .unwrap();
    assert_eq!(all.len(), a.len());
    let unique: HashSet<&str> = all.iter().map(|p| p.fragment_id.as_str()).collect();
    assert_eq!(unique.len(), a.len());
    for payload in &all {
        let point = written
            .get(payload.fragment_id.as_str())
            .unwrap_or_else(|| panic!("{} was not written to org_a", payload.fragment_id));
        assert_eq!(payload, &point.payload);
    }

    for limit in [1, 999, 1_000, 1_001] {
        let some = store
            .scroll(&ScopeFilter::tenant("org_a"), limit)
            .await
            .unwrap();
        assert_eq!(some.len(), limit);
        let unique: HashSet<&str> = some.iter().map(|p| p.fragment_id.as_str()).collect();
        assert_eq!(unique.len(), limit);
        assert!(
            some.iter()
                .all(|p| written.contains_key(p.fragment_id.as_str()))
        );
    }
    assert!(
        store
            .scroll(&ScopeFilter::tenant("org_a"), 0)
            .await
            .unwrap()
            .is_empty()
    );

    let mut session = ScopeFilter::tenant("org_a");
    session.session_id = Some("s3".into());
    let in_session = store.scroll(&session, 10_000).await.unwrap();
    // Turns 3, 13, ..., 1233.
    assert_eq!(in_session.len(), 124);
    assert_eq!(store.count(&session).await.unwrap(), 124);
    assert!(
        in_session
            .iter()
            .all(|p| p.session_id == "s3" && p.org_id == "org_a")
    );

    let theirs = store
        .scroll(&ScopeFilter::tenant("org_b"), 10_000)
        .await
        .unwrap();
    assert_eq!(theirs.len(), 50);
    assert!(theirs.iter().all(|p| p.org_id == "org_b"));
    assert!(
        store
            .scroll(&ScopeFilter::tenant("org_c"), 10_000)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A memory chunk's flattened reference (memory id, collection, type,
/// title, chunk number) and its metadata come back as written from `get`,
/// `scroll` and `hybrid_search`; a point without one comes back without.
pub async fn memory_chunks_round_trip_through_every_read(store: Arc<dyn VectorStore>) {
    let titled = with_metadata(
        memory_chunk(
            "org",
            "u",
            memory_ref("guide", MemoryType::Hive, "col_1", 3),
            "guide chunk",
            [1.0, 0.0, 0.0, 0.0],
        ),
        json!({"tier": "gold", "pages": 12}),
    );
    // Empty title (not stored) and chunk 0: still a reference.
    let mut untitled_ref = memory_ref("notes", MemoryType::User, "personal:u", 0);
    untitled_ref.title = String::new();
    let untitled = memory_chunk(
        "org",
        "u",
        untitled_ref,
        "notes chunk",
        [0.0, 1.0, 0.0, 0.0],
    );
    let turn = point(
        &scope("org", "u", "s"),
        Kind::Turn,
        "plain turn",
        5,
        [0.0, 0.0, 1.0, 0.0],
    );
    let points = [titled, untitled, turn];
    store.upsert(points.to_vec()).await.unwrap();
    let by_id: HashMap<&str, &Point> = points.iter().map(|p| (p.fragment_id.as_str(), p)).collect();
    let check = |what: &str, got: Vec<engram_core::PointPayload>| {
        assert_eq!(got.len(), points.len(), "{what}");
        for payload in got {
            let want = &by_id[payload.fragment_id.as_str()].payload;
            assert_eq!(&payload, want, "{what}");
        }
    };

    let asked: Vec<String> = points.iter().map(|p| p.fragment_id.clone()).collect();
    check("get", store.get("org", &asked).await.unwrap());
    check(
        "scroll",
        store
            .scroll(&ScopeFilter::tenant("org"), 100)
            .await
            .unwrap(),
    );
    let hits = store
        .hybrid_search(&query(
            ScopeFilter::tenant("org"),
            [1.0, 1.0, 1.0, 0.0],
            "chunk",
        ))
        .await
        .unwrap();
    check("search", hits.into_iter().map(|h| h.payload).collect());
    assert!(points[2].payload.memory.is_none() && points[1].payload.memory.is_some());
}
