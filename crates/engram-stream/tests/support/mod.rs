//! Checks both job stores must pass, shared by their test files.

use engram_core::{JobStore, KeptEvent};

fn kept(job_id: &str, payload: &[u8]) -> KeptEvent {
    KeptEvent {
        job_id: job_id.into(),
        org_id: "org".into(),
        msg_id: format!("{job_id}.0"),
        payload: payload.to_vec(),
        kept_ms: 1,
        republished_ms: None,
    }
}

/// The outbox keeps one event per job (the last kept), reads it back by
/// job id and in listings, and forgets it when dropped.
pub async fn outbox_keeps_reads_and_drops(jobs: &dyn JobStore) {
    assert_eq!(jobs.kept_event("0a1").await.unwrap(), None);
    jobs.keep_event(&kept("0a1", b"first")).await.unwrap();
    jobs.keep_event(&kept("0a1", b"\0second\xff"))
        .await
        .unwrap();
    jobs.keep_event(&kept("0b2", b"other")).await.unwrap();
    let got = jobs.kept_event("0a1").await.unwrap().expect("kept");
    assert_eq!(got, kept("0a1", b"\0second\xff"), "the last kept wins");
    let mut listed: Vec<String> = jobs
        .kept_events(10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.job_id)
        .collect();
    listed.sort();
    assert_eq!(listed, ["0a1", "0b2"]);
    assert_eq!(jobs.kept_events(1).await.unwrap().len(), 1, "limit holds");
    jobs.drop_event("0a1").await.unwrap();
    jobs.drop_event("0a1").await.unwrap();
    assert_eq!(jobs.kept_event("0a1").await.unwrap(), None);
    assert!(jobs.kept_event("0b2").await.unwrap().is_some());
    assert_eq!(jobs.kept_event("no such key!").await.unwrap(), None);
}
