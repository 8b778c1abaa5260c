//! The embedded durable queue and job table, on a real database file.

use engram_core::{Job, JobState, JobStore, OutboundMessage, TurnStream};
use engram_stream::{LocalQueue, LocalQueueOptions};
use std::time::Duration;

mod support;

fn message(id: &str) -> OutboundMessage {
    OutboundMessage {
        msg_id: id.into(),
        job_id: format!("job-{id}"),
        payload: id.as_bytes().to_vec(),
        trace_context: vec![],
    }
}

fn open(dir: &std::path::Path) -> LocalQueue {
    LocalQueue::open(dir, LocalQueueOptions::default()).expect("queue opens")
}

async fn next(sub: &mut Box<dyn engram_core::Subscription>) -> Box<dyn engram_core::Delivery> {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("a delivery within 5 s")
        .expect("delivery")
}

async fn nothing_within(sub: &mut Box<dyn engram_core::Subscription>, wait: Duration) {
    if let Ok(d) = tokio::time::timeout(wait, sub.next()).await {
        panic!(
            "unexpected delivery: {:?}",
            d.map(|d| d.job_id().to_owned())
        );
    }
}

#[tokio::test]
async fn published_messages_arrive_in_order_and_ack_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let a = q.publish(message("a")).await.unwrap();
    let b = q.publish(message("b")).await.unwrap();
    assert!(!a.duplicate && !b.duplicate);
    assert!(b.sequence > a.sequence);
    let mut sub = q.subscribe().await.unwrap();
    let first = next(&mut sub).await;
    assert_eq!(
        (first.payload(), first.job_id(), first.attempt()),
        (&b"a"[..], "job-a", 1)
    );
    let second = next(&mut sub).await;
    assert_eq!(second.payload(), b"b");
    first.ack().await.unwrap();
    second.ack().await.unwrap();
    assert_eq!(q.backlog().await.unwrap(), 0);
    nothing_within(&mut sub, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_duplicate_inside_the_window_is_dropped_and_outside_it_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let q = LocalQueue::open(
        dir.path(),
        LocalQueueOptions {
            duplicate_window: Duration::from_millis(400),
        },
    )
    .unwrap();
    let first = q.publish(message("a")).await.unwrap();
    let again = q.publish(message("a")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.sequence, first.sequence);
    assert_eq!(q.backlog().await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!q.publish(message("a")).await.unwrap().duplicate);
    assert_eq!(q.backlog().await.unwrap(), 2);
}

#[tokio::test]
async fn a_nak_redelivers_after_its_delay_with_the_next_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.publish(message("a")).await.unwrap();
    let mut sub = q.subscribe().await.unwrap();
    let d = next(&mut sub).await;
    d.nak(Duration::from_millis(600)).await.unwrap();
    nothing_within(&mut sub, Duration::from_millis(300)).await;
    let d = next(&mut sub).await;
    assert_eq!(d.attempt(), 2);
    d.ack().await.unwrap();
}

#[tokio::test]
async fn an_unsettled_message_is_redelivered_after_a_restart_and_counts_its_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        q.publish(message("a")).await.unwrap();
        let mut sub = q.subscribe().await.unwrap();
        let d = next(&mut sub).await;
        assert_eq!(d.attempt(), 1);
        // The process "dies" mid-work: nothing settles the delivery.
        std::mem::forget(d);
        q.close();
    }
    let q = open(dir.path());
    let mut sub = q.subscribe().await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!((d.payload(), d.attempt()), (&b"a"[..], 2));
    d.ack().await.unwrap();
    q.close();
    let q = open(dir.path());
    assert_eq!(q.backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn a_dropped_delivery_is_handed_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.publish(message("a")).await.unwrap();
    let mut sub = q.subscribe().await.unwrap();
    drop(next(&mut sub).await);
    assert_eq!(next(&mut sub).await.attempt(), 2);
}

#[tokio::test]
async fn two_subscriptions_never_get_the_same_message() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.publish(message("a")).await.unwrap();
    q.publish(message("b")).await.unwrap();
    let mut s1 = q.subscribe().await.unwrap();
    let mut s2 = q.subscribe().await.unwrap();
    let d1 = next(&mut s1).await;
    let d2 = next(&mut s2).await;
    assert_ne!(d1.payload(), d2.payload());
    nothing_within(&mut s1, Duration::from_millis(200)).await;
}

#[tokio::test]
async fn a_waiting_subscription_wakes_on_publish() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let mut sub = q.subscribe().await.unwrap();
    let publisher = q.clone();
    let waiter = tokio::spawn(async move { next(&mut sub).await.payload().to_vec() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    publisher.publish(message("late")).await.unwrap();
    assert_eq!(waiter.await.unwrap(), b"late");
}

#[tokio::test]
async fn dead_letters_keep_payload_reason_and_attempts_and_leave_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.publish(message("poison")).await.unwrap();
    let mut sub = q.subscribe().await.unwrap();
    let d = next(&mut sub).await;
    d.dead_letter("cannot decode").await.unwrap();
    assert!(
        d.ack().await.is_err(),
        "a settled delivery cannot be settled again"
    );
    nothing_within(&mut sub, Duration::from_millis(200)).await;
    let dead = q.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].job_id.as_str(),
            dead[0].reason.as_str(),
            dead[0].attempts,
            dead[0].payload.as_slice()
        ),
        ("job-poison", "cannot decode", 1, &b"poison"[..])
    );
    assert_eq!(q.backlog().await.unwrap(), 0);
}

#[tokio::test]
async fn a_closed_queue_refuses_work() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    q.close();
    assert!(q.ready().await.is_err());
    assert!(q.publish(message("a")).await.is_err());
    assert!(q.job_store().ready().await.is_err());
}

fn job(id: &str, state: JobState) -> Job {
    Job {
        job_id: id.into(),
        org_id: "org".into(),
        state,
        created_ms: 1,
        updated_ms: 1,
        attempts: 0,
        error: None,
        turns: 2,
        observations: 0,
        entities: 0,
        tokens_in: 0,
        tokens_out: 0,
        fallback: None,
        owner: None,
    }
}

#[tokio::test]
async fn outbox_keeps_reads_and_drops_events_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        support::outbox_keeps_reads_and_drops(&q.job_store()).await;
        q.close();
    }
    let q = open(dir.path());
    let jobs = q.job_store();
    assert!(jobs.kept_event("0b2").await.unwrap().is_some());
    assert_eq!(jobs.kept_event("0a1").await.unwrap(), None);
}

#[tokio::test]
async fn jobs_create_only_if_absent_put_replaces_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let q = open(dir.path());
        let jobs = q.job_store();
        assert!(jobs.get("j").await.unwrap().is_none());
        assert!(jobs.create(&job("j", JobState::Pending)).await.unwrap());
        jobs.put(&job("j", JobState::Ready)).await.unwrap();
        assert!(
            !jobs.create(&job("j", JobState::Pending)).await.unwrap(),
            "pending never overwrites progress"
        );
        q.close();
    }
    let q = open(dir.path());
    let got = q.job_store().get("j").await.unwrap().unwrap();
    assert_eq!(got.state, JobState::Ready);
    assert_eq!(got.turns, 2);
}

#[tokio::test]
async fn trace_context_is_kept_with_the_message_and_backlog_counts_unsettled_ones() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path());
    let context = vec![(
        "traceparent".to_owned(),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
    )];
    q.publish(OutboundMessage {
        trace_context: context.clone(),
        ..message("t")
    })
    .await
    .unwrap();
    q.publish(message("u")).await.unwrap();
    assert_eq!(q.backlog().await.unwrap(), 2);
    // Kept across a restart: it is stored with the message.
    q.close();
    drop(q);
    let q = open(dir.path());
    let mut sub = q.subscribe().await.unwrap();
    let first = next(&mut sub).await;
    assert_eq!(first.trace_context(), context);
    let second = next(&mut sub).await;
    assert!(second.trace_context().is_empty());
    assert_eq!(q.backlog().await.unwrap(), 2);
    first.ack().await.unwrap();
    second.ack().await.unwrap();
    assert_eq!(q.backlog().await.unwrap(), 0);
}
