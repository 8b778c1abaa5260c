//! The NATS turn stream and job store against real `nats-server -js`
//! processes, one per test, each with its own store directory.

use std::time::{Duration, Instant};

use async_nats::jetstream;
use engram_core::{
    Delivery, Job, JobState, JobStore, JobStoreError, OutboundMessage, StreamError, Subscription,
    TurnStream,
};
use engram_stream::nats::{ATTEMPTS_HEADER, DEAD_REASON_HEADER, JOB_ID_HEADER};
use engram_stream::{NatsOptions, NatsStream};
use engram_testkit::NatsServer;

mod support;

fn options(server: &NatsServer) -> NatsOptions {
    NatsOptions {
        url: server.url(),
        request_timeout_ms: 2000,
        ack_wait_secs: 2,
        ..NatsOptions::default()
    }
}

fn message(msg_id: &str, job_id: &str, payload: &str) -> OutboundMessage {
    OutboundMessage {
        msg_id: msg_id.to_owned(),
        job_id: job_id.to_owned(),
        payload: payload.as_bytes().to_vec(),
        trace_context: vec![],
    }
}

/// The next delivery within `within`, riding out transient errors.
async fn next_within(
    subscription: &mut Box<dyn Subscription>,
    within: Duration,
) -> Option<Box<dyn Delivery>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, subscription.next()).await {
            Err(_) => return None,
            Ok(Ok(delivery)) => return Some(delivery),
            Ok(Err(StreamError::Unavailable(why))) => {
                eprintln!("subscription unavailable, retrying: {why}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(err)) => panic!("subscription failed: {err}"),
        }
    }
}

async fn next(subscription: &mut Box<dyn Subscription>) -> Box<dyn Delivery> {
    next_within(subscription, Duration::from_secs(20))
        .await
        .expect("a delivery within 20 s")
}

/// Publishes, retrying while the stream is unavailable (after a restart the
/// client needs a moment to reconnect).
async fn publish_eventually(stream: &NatsStream, msg: OutboundMessage) -> engram_core::PublishAck {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match stream.publish(msg.clone()).await {
            Ok(ack) => return ack,
            Err(StreamError::Unavailable(why)) if Instant::now() < deadline => {
                eprintln!("publish unavailable, retrying: {why}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("publish failed: {err}"),
        }
    }
}

async fn raw_jetstream(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.expect("raw client");
    jetstream::new(client)
}

fn job(job_id: &str, state: JobState) -> Job {
    Job {
        job_id: job_id.to_owned(),
        org_id: "org-1".to_owned(),
        state,
        created_ms: 1_700_000_000_000,
        updated_ms: 1_700_000_000_000,
        attempts: 0,
        error: None,
        turns: 3,
        observations: 0,
        entities: 0,
        tokens_in: 0,
        tokens_out: 0,
        fallback: None,
        owner: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_message_is_delivered_and_not_redelivered_after_ack() {
    let server = NatsServer::start();
    let stream = NatsStream::connect(options(&server)).await.unwrap();

    let ack = publish_eventually(&stream, message("m-1", "job-1", "turns")).await;
    assert!(!ack.duplicate);
    assert_eq!(ack.sequence, 1);

    let mut subscription = stream.subscribe().await.unwrap();
    let delivery = next(&mut subscription).await;
    assert_eq!(delivery.payload(), b"turns");
    assert_eq!(delivery.job_id(), "job-1");
    assert_eq!(delivery.attempt(), 1);
    delivery.ack().await.unwrap();
    drop(subscription);

    // Longer than ack_wait: an unacknowledged message would be back by then.
    let mut subscription = stream.subscribe().await.unwrap();
    let again = next_within(&mut subscription, Duration::from_secs(3)).await;
    assert!(again.is_none(), "an acknowledged message was redelivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_msg_id_inside_the_window_is_dropped() {
    let server = NatsServer::start();
    let stream = NatsStream::connect(options(&server)).await.unwrap();

    let first = publish_eventually(&stream, message("same-id", "job-1", "one")).await;
    let second = stream
        .publish(message("same-id", "job-1", "one"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.sequence, second.sequence);
    let third = stream
        .publish(message("other-id", "job-2", "two"))
        .await
        .unwrap();
    assert!(!third.duplicate);

    let mut subscription = stream.subscribe().await.unwrap();
    let a = next(&mut subscription).await;
    let b = next(&mut subscription).await;
    assert_eq!((a.payload(), b.payload()), (&b"one"[..], &b"two"[..]));
    a.ack().await.unwrap();
    b.ack().await.unwrap();
    assert!(
        next_within(&mut subscription, Duration::from_secs(1))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nak_with_delay_redelivers_with_the_next_attempt() {
    let server = NatsServer::start();
    let stream = NatsStream::connect(options(&server)).await.unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "turns")).await;

    let mut subscription = stream.subscribe().await.unwrap();
    let first = next(&mut subscription).await;
    assert_eq!(first.attempt(), 1);
    let naked = Instant::now();
    first.nak(Duration::from_millis(700)).await.unwrap();

    let second = next(&mut subscription).await;
    assert!(
        naked.elapsed() >= Duration::from_millis(600),
        "redelivered after {:?}, before the nak delay",
        naked.elapsed()
    );
    assert_eq!(second.attempt(), 2);
    assert_eq!(second.payload(), b"turns");
    assert_eq!(second.job_id(), "job-1");
    second.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_delivery_is_redelivered_after_ack_wait() {
    let server = NatsServer::start();
    let stream = NatsStream::connect(NatsOptions {
        ack_wait_secs: 1,
        ..options(&server)
    })
    .await
    .unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "turns")).await;

    let mut subscription = stream.subscribe().await.unwrap();
    let first = next(&mut subscription).await;
    assert_eq!(first.attempt(), 1);
    let dropped = Instant::now();
    drop(first);

    let second = next_within(&mut subscription, Duration::from_secs(5))
        .await
        .expect("redelivery after ack_wait");
    assert!(dropped.elapsed() >= Duration::from_millis(800));
    assert_eq!(second.attempt(), 2);
    assert_eq!(second.payload(), b"turns");
    second.progress().await.unwrap();
    second.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_moves_the_message_with_its_headers() {
    let server = NatsServer::start();
    let opts = NatsOptions {
        ack_wait_secs: 1,
        ..options(&server)
    };
    let stream = NatsStream::connect(opts.clone()).await.unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "undecodable")).await;

    let mut subscription = stream.subscribe().await.unwrap();
    let first = next(&mut subscription).await;
    first.nak(Duration::ZERO).await.unwrap();
    let second = next(&mut subscription).await;
    assert_eq!(second.attempt(), 2);
    second.dead_letter("cannot decode\npayload").await.unwrap();

    let js = raw_jetstream(&server).await;
    let raw = js.get_stream(&opts.stream).await.unwrap();
    let dead = raw
        .get_last_raw_message_by_subject(&opts.dead_letter_subject)
        .await
        .expect("a dead letter on the dead-letter subject");
    assert_eq!(&dead.payload[..], b"undecodable");
    let header = |name: &str| {
        dead.headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| panic!("dead letter lacks {name}"))
    };
    assert_eq!(header(JOB_ID_HEADER), "job-1");
    assert_eq!(header(DEAD_REASON_HEADER), "cannot decode payload");
    assert_eq!(header(ATTEMPTS_HEADER), "2");
    assert_eq!(header("Nats-Msg-Id"), "m-1.dead");

    // Neither the original (terminated) nor the dead letter (filtered out)
    // reaches the consumer again, not even after ack_wait.
    drop(subscription);
    let mut subscription = stream.subscribe().await.unwrap();
    assert!(
        next_within(&mut subscription, Duration::from_secs(3))
            .await
            .is_none()
    );

    let info = raw
        .consumer_info(&opts.consumer)
        .await
        .expect("consumer info");
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_settings_are_applied_idempotently() {
    let server = NatsServer::start();
    let hour = NatsOptions {
        max_age_secs: 3600,
        duplicate_window_secs: 120,
        ..options(&server)
    };
    NatsStream::connect(hour.clone())
        .await
        .unwrap()
        .ready()
        .await
        .unwrap();
    let js = raw_jetstream(&server).await;
    let created = js
        .get_stream(&hour.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(created.config.max_age, Duration::from_secs(3600));
    assert_eq!(
        created.config.subjects,
        vec![hour.subject.clone(), hour.dead_letter_subject.clone()]
    );
    assert_eq!(created.config.storage, jetstream::stream::StorageType::File);
    assert_eq!(created.config.duplicate_window, Duration::from_secs(120));

    // Same options again: nothing to change, and it still works.
    let again = NatsStream::connect(hour.clone()).await.unwrap();
    again.ready().await.unwrap();
    publish_eventually(&again, message("m-1", "job-1", "x")).await;
    let unchanged = js
        .get_stream(&hour.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(unchanged.config, created.config);
    assert_eq!(unchanged.state.messages, 1);

    // Changed options are applied to the existing stream, keeping its messages.
    let two_hours = NatsOptions {
        max_age_secs: 7200,
        duplicate_window_secs: 60,
        max_bytes: 10 * 1024 * 1024,
        ..hour
    };
    NatsStream::connect(two_hours.clone())
        .await
        .unwrap()
        .ready()
        .await
        .unwrap();
    let updated = js
        .get_stream(&two_hours.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(updated.config.max_age, Duration::from_secs(7200));
    assert_eq!(updated.config.duplicate_window, Duration::from_secs(60));
    assert_eq!(updated.config.max_bytes, 10 * 1024 * 1024);
    assert_eq!(updated.state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_while_the_server_is_down_fails_fast_and_recovers() {
    let mut server = NatsServer::start();
    let stream = NatsStream::connect(NatsOptions {
        request_timeout_ms: 500,
        ..options(&server)
    })
    .await
    .unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "before")).await;

    server.stop();
    let started = Instant::now();
    let err = stream
        .publish(message("m-2", "job-2", "during"))
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert!(matches!(
        stream.ready().await,
        Err(StreamError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_millis(1500));

    server.start_again();
    let ack = publish_eventually(&stream, message("m-3", "job-3", "after")).await;
    assert!(!ack.duplicate);
    stream.ready().await.unwrap();

    // The refused publish may still reach the server after the reconnect:
    // the client flushes what it buffered during the outage. That is safe
    // because a publish is idempotent by its message id and a write whose
    // publish failed rolls forward (its retry, or the sweeper, publishes
    // the same event), so it may arrive at most once, never twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let js = raw_jetstream(&server).await;
    let info = js
        .get_stream(&stream.options().stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert!(
        (2..=3).contains(&info.state.messages),
        "{} messages",
        info.state.messages
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_does_not_need_a_running_server() {
    let mut server = NatsServer::start();
    server.stop();
    let started = Instant::now();
    let stream = NatsStream::connect(NatsOptions {
        request_timeout_ms: 500,
        ..options(&server)
    })
    .await
    .unwrap();
    assert!(matches!(
        stream.ready().await,
        Err(StreamError::Unavailable(_))
    ));
    let mut subscription = stream.subscribe().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    server.start_again();
    publish_eventually(&stream, message("m-1", "job-1", "late")).await;
    let delivery = next(&mut subscription).await;
    assert_eq!(delivery.payload(), b"late");
    delivery.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_a_server_restart() {
    let mut server = NatsServer::start();
    let stream = NatsStream::connect(options(&server)).await.unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "first")).await;

    let mut subscription = stream.subscribe().await.unwrap();
    let first = next(&mut subscription).await;
    assert_eq!(first.payload(), b"first");
    // Left unacknowledged across the restart.
    drop(first);

    server.restart();
    publish_eventually(&stream, message("m-2", "job-2", "second")).await;

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen.len() < 2 && Instant::now() < deadline {
        if let Some(delivery) = next_within(&mut subscription, Duration::from_secs(5)).await {
            let payload = String::from_utf8(delivery.payload().to_vec()).unwrap();
            delivery.ack().await.unwrap();
            if !seen.contains(&payload) {
                seen.push(payload);
            }
        }
    }
    seen.sort();
    assert_eq!(seen, vec!["first".to_owned(), "second".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_recreates_a_deleted_consumer() {
    let server = NatsServer::start();
    let opts = options(&server);
    let stream = NatsStream::connect(opts.clone()).await.unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "first")).await;
    let mut subscription = stream.subscribe().await.unwrap();
    next(&mut subscription).await.ack().await.unwrap();

    let js = raw_jetstream(&server).await;
    let raw = js.get_stream(&opts.stream).await.unwrap();
    raw.delete_consumer(&opts.consumer).await.unwrap();

    publish_eventually(&stream, message("m-2", "job-2", "second")).await;
    // The new consumer starts from the beginning of the stream again:
    // delivery is at least once, so "first" may come back before "second".
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got_second = false;
    while !got_second && Instant::now() < deadline {
        if let Some(delivery) = next_within(&mut subscription, Duration::from_secs(5)).await {
            got_second = delivery.payload() == b"second";
            delivery.ack().await.unwrap();
        }
    }
    assert!(got_second, "no delivery after the consumer was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_keeps_reads_and_drops_events() {
    let server = NatsServer::start();
    let stream = NatsStream::connect(options(&server)).await.unwrap();
    let jobs = stream.job_store();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = jobs.ready().await {
        assert!(Instant::now() < deadline, "job store not ready: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::outbox_keeps_reads_and_drops(&jobs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_store_creates_puts_and_gets_records() {
    let mut server = NatsServer::start();
    let stream = NatsStream::connect(NatsOptions {
        request_timeout_ms: 500,
        ..options(&server)
    })
    .await
    .unwrap();
    let jobs = stream.job_store();
    // Right after connect the client may still be connecting.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(err) = jobs.ready().await {
        assert!(Instant::now() < deadline, "job store not ready: {err}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let pending = job("0f3a9c", JobState::Pending);
    assert!(jobs.create(&pending).await.unwrap());
    assert_eq!(jobs.get("0f3a9c").await.unwrap(), Some(pending.clone()));

    let mut processing = pending.clone();
    processing.state = JobState::Processing;
    processing.attempts = 1;
    jobs.put(&processing).await.unwrap();
    // Create never overwrites progress.
    assert!(!jobs.create(&pending).await.unwrap());
    assert_eq!(jobs.get("0f3a9c").await.unwrap(), Some(processing.clone()));

    let mut failed = processing.clone();
    failed.state = JobState::Failed;
    failed.error = Some("extractor crashed".to_owned());
    jobs.put(&failed).await.unwrap();
    assert_eq!(jobs.get("0f3a9c").await.unwrap(), Some(failed.clone()));

    assert_eq!(jobs.get("missing").await.unwrap(), None);
    assert_eq!(jobs.get("not a key").await.unwrap(), None);
    assert!(matches!(
        jobs.put(&job("bad key", JobState::Pending)).await,
        Err(JobStoreError::Internal(_))
    ));

    // The bucket keeps one revision per key.
    let js = raw_jetstream(&server).await;
    let bucket = js
        .get_key_value(&stream.options().jobs_bucket)
        .await
        .unwrap();
    let status = bucket.status().await.unwrap();
    assert_eq!(status.history(), 1);

    server.stop();
    let started = Instant::now();
    assert!(matches!(
        jobs.get("0f3a9c").await,
        Err(JobStoreError::Unavailable(_))
    ));
    assert!(matches!(
        jobs.put(&failed).await,
        Err(JobStoreError::Unavailable(_))
    ));
    assert!(matches!(
        jobs.create(&pending).await,
        Err(JobStoreError::Unavailable(_))
    ));
    assert!(matches!(
        jobs.ready().await,
        Err(JobStoreError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );

    server.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    let record = loop {
        match jobs.get("0f3a9c").await {
            Ok(record) => break record,
            Err(JobStoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("job store after restart: {err}"),
        }
    };
    assert_eq!(record, Some(failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_settings_follow_the_options() {
    let server = NatsServer::start();
    let opts = options(&server);
    let stream = NatsStream::connect(opts.clone()).await.unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "x")).await;
    drop(stream.subscribe().await.unwrap());

    let js = raw_jetstream(&server).await;
    let raw = js.get_stream(&opts.stream).await.unwrap();
    let info = raw.consumer_info(&opts.consumer).await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(2));
    assert_eq!(info.config.max_ack_pending, 64);
    assert_eq!(info.config.max_deliver, -1);
    assert_eq!(info.config.filter_subject, opts.subject);
    assert_eq!(
        info.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );

    let changed = NatsOptions {
        ack_wait_secs: 5,
        max_ack_pending: 8,
        ..opts.clone()
    };
    let stream = NatsStream::connect(changed).await.unwrap();
    let mut subscription = stream.subscribe().await.unwrap();
    let info = raw.consumer_info(&opts.consumer).await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(5));
    assert_eq!(info.config.max_ack_pending, 8);
    // The existing consumer kept its place: the message is still there.
    let delivery = next(&mut subscription).await;
    assert_eq!(delivery.payload(), b"x");
    delivery.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workqueue_retention_removes_acknowledged_messages() {
    let server = NatsServer::start();
    let opts = NatsOptions {
        retention: engram_stream::Retention::Workqueue,
        ..options(&server)
    };
    let stream = NatsStream::connect(opts.clone()).await.unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "x")).await;
    let mut subscription = stream.subscribe().await.unwrap();
    next(&mut subscription).await.ack().await.unwrap();

    let js = raw_jetstream(&server).await;
    let info = js
        .get_stream(&opts.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(
        info.config.retention,
        jetstream::stream::RetentionPolicy::WorkQueue
    );
    assert_eq!(info.state.messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_reports_a_long_outage_and_resumes() {
    let mut server = NatsServer::start();
    let stream = NatsStream::connect(NatsOptions {
        request_timeout_ms: 500,
        ..options(&server)
    })
    .await
    .unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "before")).await;
    let mut subscription = stream.subscribe().await.unwrap();
    next(&mut subscription).await.ack().await.unwrap();

    // Longer than two missed pull heartbeats: the pull is declared dead
    // while the server is still away, and `next` says so instead of hanging.
    server.stop();
    let outage = Instant::now();
    let mut unavailable = 0;
    while outage.elapsed() < Duration::from_secs(14) {
        match tokio::time::timeout(Duration::from_secs(14), subscription.next()).await {
            Ok(Err(StreamError::Unavailable(_))) => {
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(Err(err)) => panic!("unexpected error during the outage: {err}"),
            Ok(Ok(_)) => panic!("a delivery while the server is down"),
            Err(_) => {}
        }
    }
    assert!(unavailable > 0, "next() never reported the outage");

    server.start_again();
    publish_eventually(&stream, message("m-2", "job-2", "after")).await;
    // A killed server may lose acks it had not written yet (JetStream
    // writes consumer state asynchronously), so "before" may come again
    // once its ack wait has passed: delivery is at least once. Its delivery
    // count may be lost with that state too (nats-server 2.9 starts it at
    // 1 again), which is why the consumer counts attempts on the job record.
    let delivery = loop {
        let delivery = next(&mut subscription).await;
        if delivery.payload() != b"before" {
            break delivery;
        }
        delivery.ack().await.unwrap();
    };
    assert_eq!(delivery.payload(), b"after");
    delivery.ack().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_recreates_a_deleted_stream() {
    let server = NatsServer::start();
    let opts = options(&server);
    let stream = NatsStream::connect(opts.clone()).await.unwrap();
    publish_eventually(&stream, message("m-1", "job-1", "x")).await;

    let js = raw_jetstream(&server).await;
    assert!(js.delete_stream(&opts.stream).await.unwrap().success);

    let ack = stream.publish(message("m-2", "job-2", "y")).await.unwrap();
    assert_eq!(ack.sequence, 1, "a fresh stream");
    let info = js
        .get_stream(&opts.stream)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_travels_as_headers_and_backlog_counts_unsettled_messages() {
    let server = NatsServer::start();
    let stream = NatsStream::connect(options(&server)).await.unwrap();
    let traced = OutboundMessage {
        trace_context: vec![
            (
                "traceparent".into(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            ),
            ("tracestate".into(), "vendor=1".into()),
            // Not a trace-context field: not carried.
            ("x-other".into(), "dropped".into()),
        ],
        ..message("m-t", "job-t", "turns")
    };
    publish_eventually(&stream, traced).await;
    publish_eventually(&stream, message("m-u", "job-u", "turns")).await;
    // No consumer yet: both wait.
    assert_eq!(stream.backlog().await.unwrap(), 2);

    let mut subscription = stream.subscribe().await.unwrap();
    let first = next(&mut subscription).await;
    assert_eq!(
        first.trace_context(),
        vec![
            (
                "traceparent".to_owned(),
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()
            ),
            ("tracestate".to_owned(), "vendor=1".to_owned()),
        ]
    );
    let second = next(&mut subscription).await;
    assert!(second.trace_context().is_empty());
    // Delivered but not settled still counts.
    assert_eq!(stream.backlog().await.unwrap(), 2);
    first.ack().await.unwrap();
    second.ack().await.unwrap();
    assert_eq!(stream.backlog().await.unwrap(), 0);
}
