//! Credit wallets, the ledger and team collections, on both stores: the
//! embedded one (a real redb file in a temporary directory) and the NATS
//! one (a real `nats-server -js` per test).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use engram_core::{AccountsError, Collection, Collections, Credits, LedgerEntry, LedgerKind};
use engram_stream::{LocalQueue, LocalQueueOptions, NatsOptions, NatsStream};
use engram_testkit::NatsServer;
use serde_json::{Map, Value, json};

fn local(dir: &std::path::Path) -> LocalQueue {
    LocalQueue::open(dir, LocalQueueOptions::default()).expect("queue opens")
}

fn options(server: &NatsServer) -> NatsOptions {
    NatsOptions {
        url: server.url(),
        ..NatsOptions::default()
    }
}

/// A NATS connection whose account stores answer (right after connect the
/// client may still be connecting).
async fn connected(options: NatsOptions) -> NatsStream {
    let stream = NatsStream::connect(options).await.unwrap();
    let credits = stream.credits();
    let collections = stream.collections();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match (credits.ready().await, collections.ready().await) {
            (Ok(()), Ok(())) => return stream,
            (a, b) => {
                assert!(Instant::now() < deadline, "not ready: {a:?} {b:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn eventually<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, AccountsError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(AccountsError::Unavailable(why)) if Instant::now() < deadline => {
                eprintln!("{what} unavailable, retrying: {why}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("{what} failed: {err}"),
        }
    }
}

fn sum(rows: &[LedgerEntry]) -> i64 {
    rows.iter().map(|row| row.delta).sum()
}

fn count(rows: &[LedgerEntry], kind: LedgerKind) -> usize {
    rows.iter().filter(|row| row.kind == kind).count()
}

// ---------------------------------------------------------------- credits

/// 200 concurrent charges of 7 against 500 credits, spread over `stores`
/// (several NATS connections race their compare-and-sets).
async fn concurrent_charges_never_overdraw(stores: Vec<Arc<dyn Credits>>) {
    let org = "org-concurrent";
    let first = stores[0].clone();
    let topped = first.top_up(org, "grant-1", 500).await.unwrap();
    assert_eq!((topped.amount, topped.balance), (500, 500));

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (store, done) = (first.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = 0;
            while !done.load(Ordering::Relaxed) {
                let balance = store.balance(org).await.unwrap();
                assert!(balance >= 0, "balance went below zero: {balance}");
                seen += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            tokio::spawn(async move { store.charge(org, &format!("memory-{i}"), 7).await })
        })
        .collect();
    let mut charged = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(movement) => {
                assert_eq!(movement.amount, 7);
                assert!(movement.balance >= 0);
                charged.push(movement);
            }
            Err(AccountsError::Insufficient {
                required,
                available,
            }) => {
                assert_eq!(required, 7);
                // 500 - 7k is below 7 only at k = 71.
                assert_eq!(available, 3);
                refused += 1;
            }
            Err(err) => panic!("charge failed: {err}"),
        }
    }
    done.store(true, Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);
    assert_eq!(charged.len(), 71);
    assert_eq!(refused, 129);
    let ids: HashSet<_> = charged.iter().map(|m| m.tx_id.clone()).collect();
    assert_eq!(ids.len(), 71);

    let balance = first.balance(org).await.unwrap();
    assert_eq!(balance, 3);
    let rows = first.ledger(org, 1000).await.unwrap();
    assert_eq!(rows.len(), 72);
    assert_eq!(count(&rows, LedgerKind::TopUp), 1);
    assert_eq!(count(&rows, LedgerKind::Charge), 71);
    assert_eq!(sum(&rows), balance);
    assert_eq!(rows.last().unwrap().balance_after, balance);
    // Each row's balance follows from the one before.
    let mut running = 0;
    for row in &rows {
        running += row.delta;
        assert_eq!(row.balance_after, running);
        assert_eq!(row.org_id, org);
    }
    for movement in &charged {
        assert!(rows.iter().any(|row| row.tx_id == movement.tx_id));
    }
    // The newest end, oldest first.
    let tail = first.ledger(org, 5).await.unwrap();
    assert_eq!(tail, rows[rows.len() - 5..].to_vec());
    assert!(first.ledger(org, 0).await.unwrap().is_empty());
}

async fn charges_and_refunds_are_idempotent(credits: &dyn Credits) {
    let org = "org-idempotent";
    assert_eq!(credits.balance(org).await.unwrap(), 0);
    assert!(matches!(
        credits.charge(org, "m-1", 10).await,
        Err(AccountsError::Insufficient {
            required: 10,
            available: 0
        })
    ));
    credits.top_up(org, "grant", 100).await.unwrap();

    let first = credits.charge(org, "m-1", 10).await.unwrap();
    assert_eq!((first.amount, first.balance), (10, 90));
    let again = credits.charge(org, "m-1", 10).await.unwrap();
    assert_eq!(
        (again.tx_id.as_str(), again.amount, again.balance),
        (first.tx_id.as_str(), 0, 90)
    );

    let refund = credits
        .refund(org, "m-1", "enrichment failed")
        .await
        .unwrap()
        .expect("a standing charge is refunded");
    assert_eq!((refund.amount, refund.balance), (10, 100));
    assert_ne!(refund.tx_id, first.tx_id);
    assert_eq!(credits.refund(org, "m-1", "again").await.unwrap(), None);
    assert_eq!(
        credits.refund(org, "never-charged", "x").await.unwrap(),
        None
    );

    // Refunded: the key may be charged again.
    let second = credits.charge(org, "m-1", 10).await.unwrap();
    assert_eq!((second.amount, second.balance), (10, 90));
    assert_ne!(second.tx_id, first.tx_id);
    assert_eq!(credits.balance(org).await.unwrap(), 90);

    let rows = credits.ledger(org, 100).await.unwrap();
    let kinds: Vec<_> = rows.iter().map(|row| row.kind).collect();
    assert_eq!(
        kinds,
        vec![
            LedgerKind::TopUp,
            LedgerKind::Charge,
            LedgerKind::Refund,
            LedgerKind::Charge
        ]
    );
    assert_eq!(sum(&rows), 90);
    let refund_row = &rows[2];
    assert_eq!((refund_row.delta, refund_row.key.as_str()), (10, "m-1"));
    assert_eq!(refund_row.detail["charge_tx"], json!(first.tx_id));
    assert_eq!(refund_row.detail["reason"], json!("enrichment failed"));
}

async fn top_ups_and_records_are_idempotent(credits: &dyn Credits) {
    let org = "org-records";
    let grant = credits.top_up(org, "grant-1", 50).await.unwrap();
    assert_eq!((grant.amount, grant.balance), (50, 50));
    let again = credits.top_up(org, "grant-1", 50).await.unwrap();
    assert_eq!(
        (again.tx_id.as_str(), again.amount, again.balance),
        (grant.tx_id.as_str(), 0, 50)
    );
    assert!(matches!(
        credits.top_up(org, "grant-1", 60).await,
        Err(AccountsError::Conflict(_))
    ));
    // A top-up key and a charge key with the same text are different keys.
    assert_eq!(credits.charge(org, "grant-1", 5).await.unwrap().amount, 5);

    let mut detail = Map::new();
    detail.insert("memories".into(), json!(3));
    detail.insert("subject".into(), json!("sha256:ab12"));
    let erased = credits
        .record(org, LedgerKind::Erasure, "erasure-1", detail.clone())
        .await
        .unwrap();
    let repeated = credits
        .record(org, LedgerKind::Erasure, "erasure-1", Map::new())
        .await
        .unwrap();
    assert_eq!(erased, repeated);
    assert!(matches!(
        credits
            .record(org, LedgerKind::Charge, "erasure-2", Map::new())
            .await,
        Err(AccountsError::Internal(_))
    ));
    assert_eq!(credits.balance(org).await.unwrap(), 45);

    let rows = credits.ledger(org, 100).await.unwrap();
    assert_eq!(rows.len(), 3);
    let row = rows.last().unwrap();
    assert_eq!(
        (row.tx_id.as_str(), row.kind, row.delta, row.balance_after),
        (erased.as_str(), LedgerKind::Erasure, 0, 45)
    );
    assert_eq!(row.detail, detail);
    assert_eq!(row.key, "erasure-1");
    assert_eq!(sum(&rows), 45);

    // Bad arguments are refused without touching the wallet.
    assert!(matches!(
        credits.charge("", "k", 1).await,
        Err(AccountsError::Internal(_))
    ));
    assert!(matches!(
        credits.charge(org, "k", u64::MAX).await,
        Err(AccountsError::Internal(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_concurrent_charges_never_overdraw() {
    let dir = tempfile::tempdir().unwrap();
    let queue = local(dir.path());
    concurrent_charges_never_overdraw(vec![Arc::new(queue.credits())]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nats_concurrent_charges_never_overdraw() {
    let server = NatsServer::start();
    // Three connections: their compare-and-sets really race.
    let mut stores: Vec<Arc<dyn Credits>> = Vec::new();
    for _ in 0..3 {
        stores.push(Arc::new(connected(options(&server)).await.credits()));
    }
    concurrent_charges_never_overdraw(stores).await;
}

#[tokio::test]
async fn local_charges_and_refunds_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    charges_and_refunds_are_idempotent(&local(dir.path()).credits()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_charges_and_refunds_are_idempotent() {
    let server = NatsServer::start();
    let stream = connected(options(&server)).await;
    charges_and_refunds_are_idempotent(&stream.credits()).await;
}

#[tokio::test]
async fn local_top_ups_and_records_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    top_ups_and_records_are_idempotent(&local(dir.path()).credits()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_top_ups_and_records_are_idempotent() {
    let server = NatsServer::start();
    let stream = connected(options(&server)).await;
    top_ups_and_records_are_idempotent(&stream.credits()).await;
}

#[tokio::test]
async fn local_wallets_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let queue = local(dir.path());
    let credits = queue.credits();
    credits.top_up("org-1", "grant", 20).await.unwrap();
    let charged = credits.charge("org-1", "m-1", 5).await.unwrap();
    queue.close();
    assert!(matches!(
        credits.balance("org-1").await,
        Err(AccountsError::Unavailable(_))
    ));
    drop(queue);

    let credits = local(dir.path()).credits();
    assert_eq!(credits.balance("org-1").await.unwrap(), 15);
    let again = credits.charge("org-1", "m-1", 5).await.unwrap();
    assert_eq!((again.tx_id, again.amount), (charged.tx_id, 0));
    assert_eq!(credits.ledger("org-1", 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_wallet_survives_a_restart_and_fails_fast_while_down() {
    let mut server = NatsServer::start();
    let stream = connected(NatsOptions {
        request_timeout_ms: 500,
        ..options(&server)
    })
    .await;
    let (credits, collections) = (stream.credits(), stream.collections());
    credits.top_up("org-1", "grant", 20).await.unwrap();
    let charged = credits.charge("org-1", "m-1", 5).await.unwrap();

    server.restart();
    let balance = eventually("balance", || credits.balance("org-1")).await;
    assert_eq!(balance, 15);
    let again = eventually("charge", || credits.charge("org-1", "m-1", 5)).await;
    assert_eq!(
        (again.tx_id.as_str(), again.amount),
        (charged.tx_id.as_str(), 0)
    );
    let rows = eventually("ledger", || credits.ledger("org-1", 10)).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(sum(&rows), 15);

    server.stop();
    let started = Instant::now();
    for result in [
        credits.charge("org-1", "m-2", 5).await.map(|_| ()),
        credits.refund("org-1", "m-1", "x").await.map(|_| ()),
        credits.balance("org-1").await.map(|_| ()),
        credits.ledger("org-1", 10).await.map(|_| ()),
        Credits::ready(&credits).await,
        collections.list("org-1").await.map(|_| ()),
        Collections::ready(&collections).await,
    ] {
        assert!(
            matches!(result, Err(AccountsError::Unavailable(_))),
            "{result:?}"
        );
    }
    // Seven calls, each bounded by the 500 ms request timeout.
    assert!(
        started.elapsed() < Duration::from_millis(7 * 900),
        "took {:?}",
        started.elapsed()
    );

    server.start_again();
    let charged = eventually("charge", || credits.charge("org-1", "m-2", 5)).await;
    assert_eq!((charged.amount, charged.balance), (5, 10));
    // The refused calls did not take effect behind our back.
    let rows = eventually("ledger", || credits.ledger("org-1", 10)).await;
    assert_eq!(rows.len(), 3);
    assert_eq!(sum(&rows), 10);
}

/// Rewrites the wallet value of `org` the way a crash would leave it.
async fn tamper_wallet(server: &NatsServer, org: &str, edit: impl FnOnce(&mut Value)) {
    let js = jetstream::new(async_nats::connect(server.url()).await.unwrap());
    let bucket = js
        .get_key_value(&NatsOptions::default().wallets_bucket)
        .await
        .unwrap();
    let mut wallet: Value =
        serde_json::from_slice(&bucket.get(org).await.unwrap().unwrap()).unwrap();
    edit(&mut wallet);
    bucket
        .put(org, serde_json::to_vec(&wallet).unwrap().into())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_outbox_rows_left_by_a_crash_are_published_once() {
    let server = NatsServer::start();
    let stream = connected(options(&server)).await;
    let credits = stream.credits();
    let org = "org-crash";
    credits.top_up(org, "grant", 100).await.unwrap();

    // Committed by the compare-and-set, then the process died before the
    // row was published.
    let row = json!({
        "tx_id": "tx-crash", "org_id": org, "kind": "charge", "delta": -10,
        "balance_after": 90, "key": "m-crash", "at_ms": 1_700_000_000_000_i64,
    });
    tamper_wallet(&server, org, |wallet| {
        wallet["balance"] = json!(90);
        wallet["rows"] = json!(2);
        wallet["outbox"] = json!([{ "seq": 2, "row": row }]);
    })
    .await;
    let rows = credits.ledger(org, 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].tx_id, "tx-crash");
    assert_eq!(sum(&rows), 90);
    // The committed charge stands.
    let again = credits.charge(org, "m-crash", 10).await.unwrap();
    assert_eq!(
        (again.tx_id.as_str(), again.amount, again.balance),
        ("tx-crash", 0, 90)
    );

    // Published, but the outbox was not emptied; the duplicate window may
    // have passed (a different message id stands for that): the row number
    // shows it is on the stream already.
    let mut copy = row.clone();
    copy["tx_id"] = json!("tx-crash-copy");
    tamper_wallet(&server, org, |wallet| {
        wallet["outbox"] = json!([{ "seq": 2, "row": copy }]);
    })
    .await;
    let next = credits.charge(org, "m-next", 10).await.unwrap();
    assert_eq!((next.amount, next.balance), (10, 80));
    let rows = credits.ledger(org, 10).await.unwrap();
    let ids: Vec<_> = rows.iter().map(|row| row.tx_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(!ids.contains(&"tx-crash-copy"));
    assert_eq!(sum(&rows), 80);

    // A refund of the recovered charge gives it back once.
    let refund = credits.refund(org, "m-crash", "x").await.unwrap().unwrap();
    assert_eq!((refund.amount, refund.balance), (10, 90));
    assert_eq!(credits.refund(org, "m-crash", "x").await.unwrap(), None);
}

// ------------------------------------------------------------ collections

fn collection(org: &str, id: &str, name: &str) -> Collection {
    Collection {
        collection_id: id.to_owned(),
        org_id: org.to_owned(),
        name: name.to_owned(),
        members: vec!["alice".to_owned(), "bob".to_owned()],
        created_by: "alice".to_owned(),
        created_ms: 1_700_000_000_000,
    }
}

async fn collections_are_per_tenant(store: &dyn Collections) {
    let research = collection("acme", "c-1", "research");
    let design = collection("acme", "c-2", "design");
    assert_eq!(store.create(&research).await.unwrap(), research);
    assert_eq!(store.create(&design).await.unwrap(), design);

    // An existing id keeps its record.
    let renamed = collection("acme", "c-1", "other name");
    assert_eq!(store.create(&renamed).await.unwrap(), research);

    assert_eq!(
        store.get("acme", "c-1").await.unwrap(),
        Some(research.clone())
    );
    assert_eq!(store.get("acme", "missing").await.unwrap(), None);
    assert_eq!(store.get("acme", "").await.unwrap(), None);
    assert_eq!(
        store.list("acme").await.unwrap(),
        vec![design.clone(), research.clone()]
    );

    // Another tenant, including ids that could collide once escaped.
    assert_eq!(store.get("other", "c-1").await.unwrap(), None);
    assert!(store.list("other").await.unwrap().is_empty());
    let dotted = collection("acme.c-1", "x", "dotted org");
    let odd = collection("other", "c 1/*.>", "odd id");
    store.create(&dotted).await.unwrap();
    store.create(&odd).await.unwrap();
    assert_eq!(store.list("acme").await.unwrap().len(), 2);
    assert_eq!(store.list("acme.c-1").await.unwrap(), vec![dotted.clone()]);
    assert_eq!(store.list("other").await.unwrap(), vec![odd.clone()]);
    assert_eq!(store.get("other", "c 1/*.>").await.unwrap(), Some(odd));
    assert!(!store.delete("other", "c-1").await.unwrap());
    assert_eq!(
        store.get("acme", "c-1").await.unwrap(),
        Some(research.clone())
    );

    assert!(store.delete("acme", "c-1").await.unwrap());
    assert!(!store.delete("acme", "c-1").await.unwrap());
    assert_eq!(store.get("acme", "c-1").await.unwrap(), None);
    assert_eq!(store.list("acme").await.unwrap(), vec![design]);
    // A deleted id can be created again.
    assert_eq!(store.create(&renamed).await.unwrap(), renamed);
    assert_eq!(store.get("acme", "c-1").await.unwrap(), Some(renamed));
}

#[tokio::test]
async fn local_collections_are_per_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let queue = local(dir.path());
    collections_are_per_tenant(&queue.collections()).await;
    Collections::ready(&queue.collections()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_collections_are_per_tenant() {
    let server = NatsServer::start();
    let stream = connected(options(&server)).await;
    collections_are_per_tenant(&stream.collections()).await;
}
