//! The synthetic traffic of `bench speed`: which user writes which turns,
//! and a seeded choice of queries.

use chrono::{DateTime, TimeDelta, Utc};
use engram_proto::v1::{RememberOptions, RememberRequest, Scope, Turn};

use super::ORG;

/// One Remember call of the synthetic traffic.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) user: usize,
    pub(crate) request: RememberRequest,
}

/// The Remember calls writing fragments `start..end` (enqueueing them for
/// enrichment when `passive`). Fragment `i` is turn
/// `j = i % per_user` of user `i / per_user`; a call holds up to `batch`
/// consecutive turns of one user, and each call is its own session.
pub(crate) fn plan_calls(
    start: usize,
    end: usize,
    per_user: usize,
    batch: usize,
    corpus: &[String],
    base: DateTime<Utc>,
    passive: bool,
) -> Vec<Call> {
    let (per_user, batch) = (per_user.max(1), batch.max(1));
    let mut calls = Vec::new();
    let mut i = start;
    while i < end {
        let (user, j) = (i / per_user, i % per_user);
        let session = j / batch;
        let stop = end.min(user * per_user + per_user.min((session + 1) * batch));
        let turns = (i..stop)
            .map(|f| {
                let j = f % per_user;
                // A prime stride spreads users over the corpus.
                let text = &corpus[(user.wrapping_mul(7919) + j) % corpus.len()];
                Turn {
                    role: if j % 2 == 0 { "user" } else { "assistant" }.into(),
                    text: text.clone(),
                    timestamp: (base + TimeDelta::minutes(j as i64))
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    observations: Vec::new(),
                }
            })
            .collect();
        calls.push(Call {
            user,
            request: RememberRequest {
                scope: Some(Scope {
                    org_id: ORG.into(),
                    user_id: user_name(user),
                    session_id: format!("s{session}"),
                }),
                turns,
                options: Some(RememberOptions {
                    write_active: Some(true),
                    write_passive: Some(passive),
                }),
                metadata: None,
            },
        });
        i = stop;
    }
    calls
}

pub(crate) fn user_name(user: usize) -> String {
    format!("u{user}")
}

#[cfg(test)]
mod tests {
    use super::super::BASE_TIME;
    use super::*;

    fn corpus() -> Vec<String> {
        (0..50).map(|i| format!("t{i}")).collect()
    }

    #[test]
    fn plan_covers_the_range_in_user_batches() {
        let base: DateTime<Utc> = BASE_TIME.parse().unwrap();
        let calls = plan_calls(0, 250, 100, 16, &corpus(), base, false);
        let turns: usize = calls.iter().map(|c| c.request.turns.len()).sum();
        assert_eq!(turns, 250);
        // Per user: 6 calls of 16 and one of 4; user 2 gets 50 turns: 3×16 + 2.
        assert_eq!(calls.len(), 7 + 7 + 4);
        assert!(calls.iter().all(|c| c.request.turns.len() <= 16));
        assert_eq!(calls[6].request.turns.len(), 4);
        assert_eq!(calls[7].user, 1);
        let s = calls[7].request.scope.as_ref().unwrap();
        assert_eq!((s.user_id.as_str(), s.session_id.as_str()), ("u1", "s0"));
        // Growing further continues user 2 where it stopped.
        let more = plan_calls(250, 300, 100, 16, &corpus(), base, true);
        assert_eq!(more[0].user, 2);
        assert_eq!(more[0].request.turns.len(), 14);
        assert_eq!(
            more.iter().map(|c| c.request.turns.len()).sum::<usize>(),
            50
        );
        assert_eq!(more[0].request.turns[0].timestamp, "2024-01-01T09:50:00Z");
    }
}
