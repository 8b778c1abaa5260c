//! The `[nats]` section of the server configuration.

use std::time::Duration;

use async_nats::jetstream::stream::RetentionPolicy;
use serde::{Deserialize, Serialize};

const DAY_SECS: u64 = 24 * 60 * 60;

/// How the stream decides that a message may be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until the stream's limits (age, bytes) remove it; acknowledged
    /// messages stay readable for audits and replays.
    #[default]
    Limits,
    /// Removed once every consumer interested in it has acknowledged it.
    /// Dead letters are kept only while some consumer filters on
    /// [`NatsOptions::dead_letter_subject`]; the Engram consumer does not.
    Interest,
    /// Removed as soon as one consumer acknowledges it.
    Workqueue,
}

impl Retention {
    /// The spelling used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Retention::Limits => "limits",
            Retention::Interest => "interest",
            Retention::Workqueue => "workqueue",
        }
    }

    pub(crate) fn policy(self) -> RetentionPolicy {
        match self {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::Workqueue => RetentionPolicy::WorkQueue,
        }
    }
}

/// Where and how Engram uses NATS JetStream: the turn stream, its durable
/// consumer, the key-value bucket of job records, and the account stores
/// (wallets bucket, ledger stream, collections bucket).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsOptions {
    /// Server URL, or several separated by commas (`nats://a:4222,nats://b:4222`).
    pub url: String,
    /// JetStream stream holding the turn events and their dead letters.
    pub stream: String,
    /// Subject ingest publishes `TurnsIngested` events to.
    pub subject: String,
    /// Subject messages a consumer gave up on are moved to (same stream).
    pub dead_letter_subject: String,
    /// Durable name of the enrichment pull consumer.
    pub consumer: String,
    /// When the stream may drop a message.
    pub retention: Retention,
    /// Oldest message the stream keeps, in seconds (0: no age limit).
    pub max_age_secs: u64,
    /// Copies of the stream in a cluster (1 on a single server).
    pub replicas: usize,
    /// How long a message id is remembered to drop duplicate publishes, seconds.
    pub duplicate_window_secs: u64,
    /// Largest size of the stream in bytes (-1: no limit).
    pub max_bytes: i64,
    /// How long a delivery may stay unacknowledged before it is redelivered, seconds.
    pub ack_wait_secs: u64,
    /// Deliveries the consumer may have unacknowledged at once (-1: no limit).
    pub max_ack_pending: i64,
    /// Bound on every request to NATS (publish ack, API calls, acks), milliseconds.
    pub request_timeout_ms: u64,
    /// Key-value bucket of job records.
    pub jobs_bucket: String,
    /// How long a job record is kept after its last change, seconds (0: forever).
    pub jobs_max_age_secs: u64,
    /// Key-value bucket of credit wallets (balance and unpublished ledger
    /// rows), one key per workspace; kept forever.
    pub wallets_bucket: String,
    /// Key-value bucket of team collections (`<org>.<collection id>`); kept
    /// forever.
    pub collections_bucket: String,
    /// JetStream stream holding the credit ledger; kept forever, no deletes.
    pub ledger_stream: String,
    /// Subject prefix of ledger rows: a row of workspace `org` for key `k`
    /// goes to `<ledger_subject>.<org>.<family>.<k>` (escaped tokens).
    pub ledger_subject: String,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            url: "nats://127.0.0.1:4222".to_owned(),
            stream: "ENGRAM_TURNS".to_owned(),
            subject: "engram.turns.ingested".to_owned(),
            dead_letter_subject: "engram.turns.dead".to_owned(),
            consumer: "engram-enrich".to_owned(),
            retention: Retention::Limits,
            max_age_secs: 7 * DAY_SECS,
            replicas: 1,
            duplicate_window_secs: 120,
            max_bytes: -1,
            ack_wait_secs: 30,
            max_ack_pending: 64,
            request_timeout_ms: 5000,
            jobs_bucket: "engram_jobs".to_owned(),
            jobs_max_age_secs: 7 * DAY_SECS,
            wallets_bucket: "ENGRAM_WALLETS".to_owned(),
            collections_bucket: "ENGRAM_COLLECTIONS".to_owned(),
            ledger_stream: "ENGRAM_LEDGER".to_owned(),
            ledger_subject: "engram.ledger".to_owned(),
        }
    }
}

impl NatsOptions {
    /// Checks every field; the error names the first bad one
    /// (`nats.<field>: why`).
    pub fn validate(&self) -> Result<(), String> {
        fn bad(field: &str, why: impl std::fmt::Display) -> Result<(), String> {
            Err(format!("nats.{field}: {why}"))
        }

        if self.url.trim().is_empty() {
            return bad("url", "must not be empty");
        }
        for url in self.url.split(',') {
            if let Err(err) = url.trim().parse::<async_nats::ServerAddr>() {
                return bad(
                    "url",
                    format!("{:?} is not a server address: {err}", url.trim()),
                );
            }
        }
        if let Err(why) = check_name(&self.stream) {
            return bad("stream", why);
        }
        if let Err(why) = check_subject(&self.subject) {
            return bad("subject", why);
        }
        if let Err(why) = check_subject(&self.dead_letter_subject) {
            return bad("dead_letter_subject", why);
        }
        if self.dead_letter_subject == self.subject {
            return bad("dead_letter_subject", "must differ from nats.subject");
        }
        if let Err(why) = check_name(&self.consumer) {
            return bad("consumer", why);
        }
        if self.replicas == 0 || self.replicas > 5 {
            return bad("replicas", "must be between 1 and 5");
        }
        if self.duplicate_window_secs == 0 {
            return bad("duplicate_window_secs", "must be at least 1");
        }
        if self.max_age_secs > 0 && self.duplicate_window_secs > self.max_age_secs {
            return bad("duplicate_window_secs", "must not exceed nats.max_age_secs");
        }
        if self.max_bytes == 0 || self.max_bytes < -1 {
            return bad("max_bytes", "must be positive, or -1 for no limit");
        }
        if self.ack_wait_secs == 0 {
            return bad("ack_wait_secs", "must be at least 1");
        }
        if self.max_ack_pending == 0 || self.max_ack_pending < -1 {
            return bad("max_ack_pending", "must be positive, or -1 for no limit");
        }
        if self.request_timeout_ms == 0 {
            return bad("request_timeout_ms", "must be at least 1");
        }
        for (field, bucket) in [
            ("jobs_bucket", &self.jobs_bucket),
            ("wallets_bucket", &self.wallets_bucket),
            ("collections_bucket", &self.collections_bucket),
        ] {
            if let Err(why) = check_bucket(bucket) {
                return bad(field, why);
            }
        }
        if self.wallets_bucket == self.jobs_bucket {
            return bad("wallets_bucket", "must differ from nats.jobs_bucket");
        }
        if self.collections_bucket == self.jobs_bucket
            || self.collections_bucket == self.wallets_bucket
        {
            return bad(
                "collections_bucket",
                "must differ from nats.jobs_bucket and nats.wallets_bucket",
            );
        }
        if let Err(why) = check_name(&self.ledger_stream) {
            return bad("ledger_stream", why);
        }
        if self.ledger_stream == self.stream || self.ledger_stream.starts_with("KV_") {
            return bad(
                "ledger_stream",
                "must differ from nats.stream and not start with KV_",
            );
        }
        if let Err(why) = check_subject(&self.ledger_subject) {
            return bad("ledger_subject", why);
        }
        // The ledger stream takes `<ledger_subject>.>`; two streams may not
        // share a subject.
        let rows = format!("{}.", self.ledger_subject);
        if [&self.subject, &self.dead_letter_subject]
            .iter()
            .any(|s| **s == self.ledger_subject || s.starts_with(&rows))
        {
            return bad(
                "ledger_subject",
                "must not cover nats.subject or nats.dead_letter_subject",
            );
        }
        Ok(())
    }

    /// [`NatsOptions::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// [`NatsOptions::ack_wait_secs`] as a duration.
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }

    pub(crate) fn server_addrs(&self) -> Result<Vec<async_nats::ServerAddr>, String> {
        self.url
            .split(',')
            .map(|url| {
                url.trim().parse::<async_nats::ServerAddr>().map_err(|err| {
                    format!("nats.url: {:?} is not a server address: {err}", url.trim())
                })
            })
            .collect()
    }
}

/// Stream and consumer names become API subject tokens and file names.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.len() > 64 {
        return Err("must be at most 64 characters");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err("must not contain spaces, '.', '*', '>', '/' or '\\'");
    }
    Ok(())
}

/// Bucket names become stream names (`KV_<bucket>`) and subject tokens.
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    if bucket.is_empty()
        || bucket.len() > 61
        || !bucket
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err("must be 1 to 61 characters, only letters, digits, '_' and '-'");
    }
    Ok(())
}

/// A literal subject: publishing to a wildcard is not possible, and the
/// consumer's filter must match exactly the events.
fn check_subject(subject: &str) -> Result<(), &'static str> {
    if subject.is_empty() {
        return Err("must not be empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces");
    }
    if subject.split('.').any(|token| token.is_empty()) {
        return Err("must not have empty tokens (leading, trailing or double '.')");
    }
    if subject.split('.').any(|token| token == "*" || token == ">") || subject.contains(['*', '>'])
    {
        return Err("must not contain wildcards");
    }
    if subject.starts_with('$') {
        return Err("must not start with '$' (reserved by NATS)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        NatsOptions::default().validate().unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        type Change = fn(&mut NatsOptions);
        let cases: Vec<(&str, Change)> = vec![
            ("nats.url", |o| o.url = String::new()),
            ("nats.stream", |o| o.stream = "A.B".into()),
            ("nats.stream", |o| o.stream = String::new()),
            ("nats.subject", |o| o.subject = "engram.*".into()),
            ("nats.subject", |o| o.subject = "engram.>".into()),
            ("nats.subject", |o| o.subject = "engram turns".into()),
            ("nats.subject", |o| o.subject = "engram..turns".into()),
            ("nats.dead_letter_subject", |o| {
                o.dead_letter_subject = o.subject.clone()
            }),
            ("nats.consumer", |o| o.consumer = " ".into()),
            ("nats.replicas", |o| o.replicas = 0),
            ("nats.replicas", |o| o.replicas = 6),
            ("nats.ack_wait_secs", |o| o.ack_wait_secs = 0),
            ("nats.duplicate_window_secs", |o| {
                o.duplicate_window_secs = 0
            }),
            ("nats.duplicate_window_secs", |o| o.max_age_secs = 60),
            ("nats.max_bytes", |o| o.max_bytes = 0),
            ("nats.max_ack_pending", |o| o.max_ack_pending = 0),
            ("nats.request_timeout_ms", |o| o.request_timeout_ms = 0),
            ("nats.jobs_bucket", |o| o.jobs_bucket = "jobs.bucket".into()),
            ("nats.wallets_bucket", |o| o.wallets_bucket = "w b".into()),
            ("nats.wallets_bucket", |o| {
                o.wallets_bucket = o.jobs_bucket.clone()
            }),
            ("nats.collections_bucket", |o| {
                o.collections_bucket = String::new()
            }),
            ("nats.collections_bucket", |o| {
                o.collections_bucket = o.wallets_bucket.clone()
            }),
            ("nats.ledger_stream", |o| o.ledger_stream = "A.B".into()),
            ("nats.ledger_stream", |o| o.ledger_stream = o.stream.clone()),
            ("nats.ledger_subject", |o| {
                o.ledger_subject = "engram.>".into()
            }),
            ("nats.ledger_subject", |o| {
                o.ledger_subject = "engram.turns".into()
            }),
        ];
        for (field, change) in cases {
            let mut options = NatsOptions::default();
            change(&mut options);
            let err = options.validate().unwrap_err();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }

    #[test]
    fn several_urls_are_accepted() {
        let options = NatsOptions {
            url: "nats://127.0.0.1:4222, nats://127.0.0.1:4223".into(),
            ..NatsOptions::default()
        };
        options.validate().unwrap();
        assert_eq!(options.server_addrs().unwrap().len(), 2);
    }

    #[test]
    fn deserializes_partial_sections_and_rejects_unknown_fields() {
        let options: NatsOptions =
            serde_json::from_str(r#"{"stream":"S","retention":"workqueue"}"#).unwrap();
        assert_eq!(options.stream, "S");
        assert_eq!(options.retention, Retention::Workqueue);
        assert_eq!(options.subject, NatsOptions::default().subject);
        assert!(serde_json::from_str::<NatsOptions>(r#"{"strem":"S"}"#).is_err());
    }
}
