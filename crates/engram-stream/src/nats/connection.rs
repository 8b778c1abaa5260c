//! The one NATS connection a process shares between the stream, its
//! consumer and the job store, and the bounded, fail-fast way every
//! operation uses it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, kv, stream};
use tokio::time::Instant;

use super::options::NatsOptions;

/// How often the connection state is looked at while waiting for it.
const STATE_POLL: Duration = Duration::from_millis(10);

/// Longest pause between reconnect attempts: short, so that service resumes
/// quickly after a NATS restart.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(2);

/// Keep-alive pings detect a silent network loss (a killed server closes
/// the socket and is noticed at once).
const PING_INTERVAL: Duration = Duration::from_secs(10);

/// Why an operation could not complete.
#[derive(Debug)]
pub(crate) enum Failure {
    /// NATS cannot be reached or did not answer in time; retry later.
    Unavailable(String),
    /// NATS answered with a refusal a retry will not change.
    Internal(String),
}

impl Failure {
    pub(crate) fn unavailable(what: &str, err: impl std::fmt::Display) -> Self {
        Failure::Unavailable(format!("{what}: {err}"))
    }

    pub(crate) fn internal(what: &str, err: impl std::fmt::Display) -> Self {
        Failure::Internal(format!("{what}: {err}"))
    }

    /// Classifies an async-nats error: a refusal by the JetStream API (a
    /// JSON error other than "temporarily unavailable") or an answer that
    /// cannot be decoded is internal, every transport problem (timeouts, no
    /// responders, broken pipes) transient.
    pub(crate) fn classify(what: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        match api_error(err) {
            Some(api) if api.code() != 503 => Failure::internal(what, err),
            Some(_) => Failure::unavailable(what, err),
            None if has_source::<serde_json::Error>(err) => Failure::internal(what, err),
            None => Failure::unavailable(what, err),
        }
    }
}

impl From<Failure> for engram_core::StreamError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(why) => engram_core::StreamError::Unavailable(why),
            Failure::Internal(why) => engram_core::StreamError::Internal(why),
        }
    }
}

impl From<Failure> for engram_core::AccountsError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(why) => engram_core::AccountsError::Unavailable(why),
            Failure::Internal(why) => engram_core::AccountsError::Internal(why),
        }
    }
}

impl From<Failure> for engram_core::JobStoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Unavailable(why) => engram_core::JobStoreError::Unavailable(why),
            Failure::Internal(why) => engram_core::JobStoreError::Internal(why),
        }
    }
}

/// The JetStream API error somewhere in `err`'s source chain, if any.
///
/// async-nats keeps the server's answer either as a source or inside the
/// kind of its own error types, depending on the call.
pub(crate) fn api_error(mut err: &(dyn std::error::Error + 'static)) -> Option<jetstream::Error> {
    use jetstream::context::{
        ConsumerInfoError, ConsumerInfoErrorKind, CreateStreamError, CreateStreamErrorKind,
        GetStreamError, GetStreamErrorKind,
    };
    use jetstream::stream::{ConsumerError, ConsumerErrorKind};
    loop {
        if let Some(api) = err.downcast_ref::<jetstream::Error>() {
            return Some(api.clone());
        }
        let inner = if let Some(e) = err.downcast_ref::<GetStreamError>() {
            match e.kind() {
                GetStreamErrorKind::JetStream(api) => Some(api),
                _ => None,
            }
        } else if let Some(e) = err.downcast_ref::<CreateStreamError>() {
            match e.kind() {
                CreateStreamErrorKind::JetStream(api) => Some(api),
                _ => None,
            }
        } else if let Some(e) = err.downcast_ref::<ConsumerError>() {
            match e.kind() {
                ConsumerErrorKind::JetStream(api) => Some(api),
                _ => None,
            }
        } else if let Some(e) = err.downcast_ref::<ConsumerInfoError>() {
            match e.kind() {
                ConsumerInfoErrorKind::JetStream(api) => Some(api),
                _ => None,
            }
        } else {
            None
        };
        if inner.is_some() {
            return inner;
        }
        err = err.source()?;
    }
}

fn has_source<E: std::error::Error + 'static>(mut err: &(dyn std::error::Error + 'static)) -> bool {
    loop {
        if err.is::<E>() {
            return true;
        }
        match err.source() {
            Some(source) => err = source,
            None => return false,
        }
    }
}

/// Whether the server answered "not found" (stream, consumer).
pub(crate) fn is_not_found(err: &(dyn std::error::Error + 'static)) -> bool {
    api_error(err).is_some_and(|api| api.code() == 404)
}

/// What every part of the NATS backend shares.
pub(crate) struct Shared {
    pub(crate) options: NatsOptions,
    pub(crate) client: async_nats::Client,
    pub(crate) js: jetstream::Context,
    /// Since when the client has been without a connection (since
    /// [`Shared::connect`] before the first one); `None` while connected.
    down_since: Arc<Mutex<Option<Instant>>>,
    /// Set once the stream is known to exist with the configured settings;
    /// cleared after failures so that the next operation checks again (the
    /// server may have lost or been replaced meanwhile).
    stream_checked: AtomicBool,
    /// Serializes stream checks so that concurrent first publishes make one.
    stream_check: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Connects in the background: returns at once even when NATS is down,
    /// and keeps reconnecting forever.
    pub(crate) async fn connect(options: NatsOptions) -> Result<Self, Failure> {
        options.validate().map_err(Failure::Internal)?;
        let addrs = options.server_addrs().map_err(Failure::Internal)?;
        let timeout = options.request_timeout();
        let down_since = Arc::new(Mutex::new(Some(Instant::now())));
        let down = Arc::clone(&down_since);
        let client = async_nats::ConnectOptions::new()
            .name("engram")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(timeout))
            .ping_interval(PING_INTERVAL)
            .reconnect_delay_callback(|attempts| {
                let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
                Duration::from_millis(100)
                    .saturating_mul(attempts)
                    .min(MAX_RECONNECT_DELAY)
            })
            .event_callback(move |event| {
                let down = Arc::clone(&down);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            *lock(&down) = None;
                            tracing::info!("nats connected");
                        }
                        async_nats::Event::Disconnected => {
                            lock(&down).get_or_insert_with(Instant::now);
                            tracing::warn!("nats disconnected");
                        }
                        other => tracing::warn!(event = %other, "nats connection event"),
                    }
                }
            })
            .connect(addrs)
            .await
            .map_err(|err| Failure::internal("connecting to nats", err))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(timeout)
            .build(client.clone());
        Ok(Shared {
            options,
            client,
            js,
            down_since,
            stream_checked: AtomicBool::new(false),
            stream_check: tokio::sync::Mutex::new(()),
        })
    }

    /// The deadline of an operation starting now.
    pub(crate) fn deadline(&self) -> Instant {
        Instant::now() + self.options.request_timeout()
    }

    /// Waits until the client is connected, at most until `deadline`.
    ///
    /// While disconnected async-nats queues outgoing messages and sends them
    /// after reconnecting; refusing to send then keeps an operation that we
    /// reported as failed from quietly taking effect minutes later.
    ///
    /// Waiting rides out a blip (a NATS restart, a failover); once the
    /// connection has been gone for a whole request timeout the outage is
    /// no blip, and this fails at once instead of holding every caller
    /// (and every health probe) for the full timeout until NATS is back.
    pub(crate) async fn wait_connected(&self, deadline: Instant) -> Result<(), Failure> {
        loop {
            if self.client.connection_state() == State::Connected {
                return Ok(());
            }
            let down_since = *lock(&self.down_since);
            let down_for = down_since.map(|since| since.elapsed());
            let long_down = down_for.is_some_and(|d| d >= self.options.request_timeout());
            if long_down || Instant::now() >= deadline {
                return Err(Failure::Unavailable(format!(
                    "not connected to nats at {} (for {} ms)",
                    self.options.url,
                    down_for.unwrap_or_default().as_millis()
                )));
            }
            tokio::time::sleep_until((Instant::now() + STATE_POLL).min(deadline)).await;
        }
    }

    /// Runs `op` bounded by `deadline`, on a connected client.
    pub(crate) async fn bounded<T, F>(
        &self,
        what: &str,
        deadline: Instant,
        op: F,
    ) -> Result<T, Failure>
    where
        F: Future<Output = Result<T, Failure>>,
    {
        self.wait_connected(deadline).await?;
        match tokio::time::timeout_at(deadline, op).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Unavailable(format!(
                "{what}: no answer from nats within {:?}",
                self.options.request_timeout()
            ))),
        }
    }

    /// The key-value bucket `bucket`, created if missing with one revision
    /// per key and `max_age` (zero: forever).
    pub(crate) async fn open_bucket(
        &self,
        bucket: &str,
        description: &str,
        max_age: Duration,
    ) -> Result<kv::Store, Failure> {
        match self.js.get_key_value(bucket).await {
            Ok(store) => Ok(store),
            Err(err) if is_not_found(&err) => {
                self.js
                    .create_stream(kv_stream_config(
                        bucket,
                        description,
                        max_age,
                        self.options.replicas,
                    ))
                    .await
                    .map_err(|err| Failure::classify("creating a bucket", &err))?;
                let store = self
                    .js
                    .get_key_value(bucket)
                    .await
                    .map_err(|err| Failure::classify("opening a bucket", &err))?;
                tracing::info!(bucket = %bucket, max_age_secs = max_age.as_secs(), "bucket created");
                Ok(store)
            }
            Err(err) => Err(Failure::classify("opening a bucket", &err)),
        }
    }

    /// Forgets that the stream was checked, after a failure that may mean
    /// it is gone or the server was replaced.
    pub(crate) fn recheck_stream(&self) {
        self.stream_checked.store(false, Ordering::Release);
    }

    /// Makes sure the stream exists with the configured settings, once
    /// (until [`Shared::recheck_stream`]).
    pub(crate) async fn ensure_stream(&self) -> Result<(), Failure> {
        if self.stream_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.stream_check.lock().await;
        if self.stream_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        self.create_or_update_stream().await?;
        self.stream_checked.store(true, Ordering::Release);
        Ok(())
    }

    /// The stream settings Engram manages; anything else an operator set on
    /// the stream is left alone.
    fn apply_settings(&self, config: &mut stream::Config) {
        let o = &self.options;
        config.subjects = vec![o.subject.clone(), o.dead_letter_subject.clone()];
        config.retention = o.retention.policy();
        config.max_age = Duration::from_secs(o.max_age_secs);
        config.num_replicas = o.replicas;
        config.duplicate_window = Duration::from_secs(o.duplicate_window_secs);
        config.max_bytes = o.max_bytes;
        config.storage = stream::StorageType::File;
    }

    async fn create_or_update_stream(&self) -> Result<(), Failure> {
        let name = &self.options.stream;
        let existing = match self.js.get_stream(name).await {
            Ok(handle) => Some(handle.cached_info().config.clone()),
            Err(err) if is_not_found(&err) => None,
            Err(err) => return Err(Failure::classify("reading the stream", &err)),
        };
        match existing {
            None => {
                let mut config = stream::Config {
                    name: name.clone(),
                    ..Default::default()
                };
                self.apply_settings(&mut config);
                self.js
                    .create_stream(config)
                    .await
                    .map_err(|err| Failure::classify("creating the stream", &err))?;
                tracing::info!(
                    stream = %name,
                    subject = %self.options.subject,
                    dead_letter_subject = %self.options.dead_letter_subject,
                    retention = self.options.retention.as_str(),
                    "stream created"
                );
            }
            Some(current) => {
                let mut wanted = current.clone();
                self.apply_settings(&mut wanted);
                if same_settings(&current, &wanted) {
                    tracing::debug!(stream = %name, "stream settings up to date");
                } else {
                    self.js
                        .update_stream(&wanted)
                        .await
                        .map_err(|err| Failure::classify("updating the stream", &err))?;
                    tracing::info!(
                        stream = %name,
                        max_age_secs = wanted.max_age.as_secs(),
                        duplicate_window_secs = wanted.duplicate_window.as_secs(),
                        max_bytes = wanted.max_bytes,
                        replicas = wanted.num_replicas,
                        "stream updated"
                    );
                }
            }
        }
        Ok(())
    }
}

/// The guarded value, even if a holder panicked: it is a plain timestamp
/// that no half-finished update can leave inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("url", &self.options.url)
            .field("stream", &self.options.stream)
            .field("state", &self.client.connection_state())
            .finish_non_exhaustive()
    }
}

/// The stream behind a key-value bucket, as async-nats would create it,
/// keeping one revision per key.
///
/// `Context::create_key_value` first reads the account info, whose
/// async-nats type requires fields (`reserved_memory`, `reserved_storage`)
/// that nats-server 2.9 does not send, so it always fails there; creating
/// the stream directly works with every server version.
pub(crate) fn kv_stream_config(
    bucket: &str,
    description: &str,
    max_age: Duration,
    replicas: usize,
) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        description: Some(description.to_owned()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_bytes: -1,
        max_age,
        storage: stream::StorageType::File,
        num_replicas: replicas,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        ..Default::default()
    }
}

/// Compares only what [`Shared::apply_settings`] sets: the server fills in
/// other fields, and comparing those would update the stream on every start.
fn same_settings(a: &stream::Config, b: &stream::Config) -> bool {
    a.subjects == b.subjects
        && a.retention == b.retention
        && a.max_age == b.max_age
        && a.num_replicas == b.num_replicas
        && a.duplicate_window == b.duplicate_window
        && a.max_bytes == b.max_bytes
        && a.storage == b.storage
}
