//! What the NATS account stores ([`super::NatsCredits`],
//! [`super::NatsCollections`]) share: escaping ids into key and subject
//! tokens, a cached bucket handle, bounded runs, and reading everything
//! under a subject filter.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::{self, kv};
use engram_core::AccountsError;
use futures::StreamExt;

use super::connection::{Failure, Shared};

/// Escapes an id into one token that is legal both in a key-value key and
/// in a subject, and never contains `.`: letters, digits, `_` and `-` stay,
/// every other byte becomes `=XX` (upper-case hex). The mapping is
/// injective, so two ids never share a token and `<org>.` prefixes cannot
/// reach into another tenant.
pub(crate) fn token(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("={byte:02X}"));
        }
    }
    out
}

/// A key-value bucket handle, opened (and created) on first use and
/// forgotten after a transport failure so that the next call checks the
/// bucket again (the server may have been replaced).
#[derive(Debug)]
pub(crate) struct Bucket {
    name: String,
    description: &'static str,
    store: tokio::sync::Mutex<Option<kv::Store>>,
}

impl Bucket {
    pub(crate) fn new(name: &str, description: &'static str) -> Self {
        Bucket {
            name: name.to_owned(),
            description,
            store: tokio::sync::Mutex::new(None),
        }
    }

    /// The bucket's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The name of the stream behind the bucket.
    pub(crate) fn stream_name(&self) -> String {
        format!("KV_{}", self.name)
    }

    /// The subject a key's values are stored under.
    pub(crate) fn subject(&self, key: &str) -> String {
        format!("$KV.{}.{key}", self.name)
    }

    pub(crate) async fn get(&self, shared: &Shared) -> Result<kv::Store, Failure> {
        let mut cached = self.store.lock().await;
        if let Some(store) = cached.as_ref() {
            return Ok(store.clone());
        }
        // Account data is never expired.
        let store = shared
            .open_bucket(&self.name, self.description, Duration::ZERO)
            .await?;
        *cached = Some(store.clone());
        Ok(store)
    }

    pub(crate) async fn forget(&self) {
        *self.store.lock().await = None;
    }
}

/// Runs `op` with every request bounded: the connection must be there
/// within one request timeout (so a call while NATS is down fails after
/// that long), and `op`, which makes up to `round_trips` requests, gets
/// that many request timeouts.
pub(crate) async fn run<T, Fut>(
    shared: &Shared,
    what: &str,
    round_trips: u32,
    op: Fut,
) -> Result<T, AccountsError>
where
    Fut: Future<Output = Result<T, AccountsError>>,
{
    shared.wait_connected(shared.deadline()).await?;
    let budget = shared.options.request_timeout() * round_trips.max(1);
    match tokio::time::timeout(budget, op).await {
        Ok(result) => result,
        Err(_) => Err(AccountsError::Unavailable(format!(
            "{what}: no answer from nats within {budget:?}"
        ))),
    }
}

/// Every message of `stream` under `filter`, oldest first, read with an
/// ephemeral ordered consumer (flow-controlled, no acks, gone when
/// dropped). Stops at the last message pending when the consumer was made,
/// so messages added meanwhile may or may not be included.
pub(crate) async fn scan(
    shared: &Shared,
    stream: &str,
    filter: String,
    deliver_policy: DeliverPolicy,
) -> Result<Vec<jetstream::Message>, Failure> {
    let handle = shared
        .js
        .get_stream_no_info(stream)
        .await
        .map_err(|err| Failure::classify("opening a stream", &err))?;
    // No consumer name: the server picks one, and forgets the consumer
    // soon after the subscription below goes away.
    let consumer = handle
        .create_consumer(push::OrderedConfig {
            deliver_subject: shared.client.new_inbox(),
            filter_subject: filter,
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|err| Failure::classify("creating a reader", &err))?;
    let pending = consumer.cached_info().num_pending;
    if pending == 0 {
        return Ok(Vec::new());
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|err| Failure::classify("reading", &err))?;
    let mut out = Vec::with_capacity(usize::try_from(pending).unwrap_or(0).min(4096));
    while let Some(next) = messages.next().await {
        let message = next.map_err(|err| Failure::classify("reading", &err))?;
        let remaining = message
            .info()
            .map_err(|err| Failure::internal("reading a message's position", err))?
            .pending;
        out.push(message);
        if remaining == 0 {
            return Ok(out);
        }
    }
    Err(Failure::Unavailable(
        "reading: the reader ended early".into(),
    ))
}

/// A header of `message` as text.
pub(crate) fn header<'a>(message: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    message
        .headers
        .as_ref()
        .and_then(|headers| headers.get(name))
        .map(|value| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::token;

    #[test]
    fn tokens_are_safe_and_distinct() {
        assert_eq!(token("org-1_A"), "org-1_A");
        assert_eq!(token("a.b"), "a=2Eb");
        assert_eq!(token("a=2Eb"), "a=3D2Eb");
        assert_eq!(token("x y/*>"), "x=20y=2F=2A=3E");
        assert_eq!(token("é"), "=C3=A9");
        assert_ne!(token("a.b"), token("a_b"));
    }
}
