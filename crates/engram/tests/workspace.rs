//! Memories, collections, roles, credits and forgetting through a real
//! `engram serve` (embedded default) with credits on.

use engram_proto::v1::collection_service_client::CollectionServiceClient;
use engram_proto::v1::credit_service_client::CreditServiceClient;
use engram_proto::v1::ingest_service_client::IngestServiceClient;
use engram_proto::v1::job_service_client::JobServiceClient;
use engram_proto::v1::memory_service_client::MemoryServiceClient;
use engram_proto::v1::recall_service_client::RecallServiceClient;
use engram_proto::v1::*;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

mod common;

use common::{Process, authed, channel, embedded_env, token_as, wait_job_ready};

/// Micro-credits per character in these tests.
const PRICE: u64 = 3;

struct Server {
    process: Process,
    env: Vec<(String, String)>,
    channel: Channel,
    _data: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut env = embedded_env(data.path());
        env.push(("ENGRAM__CREDITS__ENABLED".into(), "true".into()));
        env.push(("ENGRAM__CREDITS__PRICE_PER_CHAR".into(), PRICE.to_string()));
        let mut process = Process::spawn("serve", &env);
        process.wait_serving().await;
        let channel = channel(&process.addr).await;
        Server {
            process,
            env,
            channel,
            _data: data,
        }
    }

    fn token(&self, org: &str, user: &str, role: &str) -> String {
        token_as(&self.env, org, user, Some(role))
    }

    fn memory(&self) -> MemoryServiceClient<Channel> {
        MemoryServiceClient::new(self.channel.clone())
    }

    fn credits(&self) -> CreditServiceClient<Channel> {
        CreditServiceClient::new(self.channel.clone())
    }

    fn collections(&self) -> CollectionServiceClient<Channel> {
        CollectionServiceClient::new(self.channel.clone())
    }

    fn recall_client(&self) -> RecallServiceClient<Channel> {
        RecallServiceClient::new(self.channel.clone())
    }

    async fn top_up(&self, org: &str, admin: &str, amount: u64) {
        self.credits()
            .top_up(authed(
                TopUpRequest {
                    org_id: org.into(),
                    amount,
                    idempotency_key: format!("test-{amount}"),
                },
                admin,
            ))
            .await
            .unwrap();
    }

    async fn store(
        &self,
        token: &str,
        req: StoreMemoryRequest,
    ) -> Result<tonic::Response<StoreMemoryResponse>, tonic::Status> {
        self.memory().store_memory(authed(req, token)).await
    }

    /// Polls GetMemoryStatus until a final status; returns every distinct
    /// status seen, in order.
    async fn statuses(&self, token: &str, memory_id: &str) -> Vec<MemoryStatus> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen: Vec<MemoryStatus> = Vec::new();
        loop {
            let s = self
                .memory()
                .get_memory_status(authed(
                    GetMemoryStatusRequest {
                        memory_id: memory_id.into(),
                    },
                    token,
                ))
                .await
                .unwrap()
                .into_inner();
            if seen.last() != Some(&s.status()) {
                seen.push(s.status());
            }
            if matches!(s.status(), MemoryStatus::Ready | MemoryStatus::Failed) {
                return seen;
            }
            assert!(Instant::now() < deadline, "memory never finished: {seen:?}");
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    async fn recall(&self, token: &str, org: &str, q: &str, filter: Option<Filter>) -> Vec<Hit> {
        let r = self
            .recall_client()
            .recall(authed(
                RecallRequest {
                    scope: Some(Scope {
                        org_id: org.into(),
                        ..Default::default()
                    }),
                    q: q.into(),
                    mode: RecallMode::Deep as i32,
                    filter,
                    ..Default::default()
                },
                token,
            ))
            .await
            .unwrap()
            .into_inner();
        let hits = r.hits.unwrap_or_default();
        hits.turns.into_iter().chain(hits.observations).collect()
    }
}

fn header(md: &tonic::metadata::MetadataMap, key: &str) -> String {
    md.get(key)
        .unwrap_or_else(|| panic!("no {key} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Varied filler sentences, so no chunk looks like another.
fn filler(chars: usize) -> String {
    let subjects = [
        "The committee",
        "Our vendor",
        "The audit team",
        "A reviewer",
        "The board",
    ];
    let verbs = [
        "reviewed",
        "postponed",
        "approved",
        "questioned",
        "summarized",
    ];
    let objects = [
        "the travel budget",
        "the hiring plan",
        "the office lease",
        "the security training",
        "the quarterly roadmap",
    ];
    let mut out = String::new();
    let mut i = 0usize;
    while out.len() < chars {
        out.push_str(&format!(
            "{} {} {} in meeting {}. ",
            subjects[i % 5],
            verbs[(i / 5) % 5],
            objects[(i / 25) % 5],
            i
        ));
        i += 1;
    }
    out.truncate(chars);
    out
}

fn string(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(prost_types::value::Kind::StringValue(s.into())),
    }
}

fn metadata(pairs: &[(&str, &str)]) -> prost_types::Struct {
    prost_types::Struct {
        fields: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), string(v)))
            .collect(),
    }
}

fn equals(key: &str, value: &str) -> Filter {
    Filter {
        condition: Some(filter::Condition::Equals(Equals {
            key: key.into(),
            value: Some(string(value)),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_document_is_billed_chunked_and_recalled_by_its_last_fact() {
    let server = Server::start().await;
    let org = "org_docs";
    let admin = server.token(org, "ada", "admin");
    let member = server.token(org, "mia", "member");

    // Too long: refused before anything is charged, naming the limit.
    let err = server
        .store(
            &member,
            StoreMemoryRequest {
                org_id: org.into(),
                text: "x".repeat(100_001),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err.get_details_bad_request().unwrap().field_violations;
    assert_eq!(violations[0].field, "text");
    assert!(
        violations[0].description.contains("100000"),
        "{violations:?}"
    );

    // No credits yet: FAILED_PRECONDITION with the amounts.
    let fact = "The launch code for project Bluebird is ORANGE-SEVEN-TWELVE.";
    let mut text = filler(100_000 - fact.len() - 1);
    text.push(' ');
    text.push_str(fact);
    assert_eq!(text.chars().count(), 100_000);
    let req = StoreMemoryRequest {
        org_id: org.into(),
        text: text.clone(),
        title: "Meeting minutes 2026".into(),
        metadata: Some(metadata(&[("project", "apollo")])),
        ..Default::default()
    };
    let err = server.store(&member, req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let info = err.get_details_error_info().unwrap();
    assert_eq!(info.reason, "INSUFFICIENT_CREDITS");
    assert_eq!(info.metadata["required"], (100_000 * PRICE).to_string());
    assert_eq!(info.metadata["available"], "0");
    assert_eq!(info.metadata["shortfall"], (100_000 * PRICE).to_string());

    server.top_up(org, &admin, 1_000_000).await;
    let stored = server.store(&member, req.clone()).await.unwrap();
    let md = stored.metadata().clone();
    let stored = stored.into_inner();
    assert_eq!(
        header(&md, "x-credit-charged"),
        (100_000 * PRICE).to_string()
    );
    assert_eq!(
        header(&md, "x-credit-balance"),
        (1_000_000 - 100_000 * PRICE).to_string()
    );
    let tx = header(&md, "x-billing-tx");
    assert_eq!(stored.status(), MemoryStatus::Pending);
    assert_eq!(stored.collection_id, "personal:mia");
    assert_eq!(stored.characters, 100_000);

    // The same request again: the same memory, nothing charged.
    let again = server.store(&member, req).await.unwrap();
    assert_eq!(header(again.metadata(), "x-credit-charged"), "0");
    assert_eq!(again.into_inner().memory_id, stored.memory_id);

    // The call answered pending; polling then sees it processing (a
    // 100,000-character document takes seconds) and ready, never back.
    let mut seen = vec![stored.status()];
    seen.extend(server.statuses(&member, &stored.memory_id).await);
    seen.dedup();
    assert_eq!(seen.first(), Some(&MemoryStatus::Pending), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.contains(&MemoryStatus::Processing), "{seen:?}");
    assert_eq!(seen.last(), Some(&MemoryStatus::Ready), "{seen:?}");
    let status = server
        .memory()
        .get_memory_status(authed(
            GetMemoryStatusRequest {
                memory_id: stored.memory_id.clone(),
            },
            &member,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(status.chunks >= 120, "{} chunks", status.chunks);

    let hits = server
        .recall(
            &member,
            org,
            "what is the launch code for project Bluebird?",
            None,
        )
        .await;
    let best = hits
        .iter()
        .find(|h| h.kind() == HitKind::Memory)
        .expect("a memory hit");
    assert!(best.text.contains("ORANGE-SEVEN-TWELVE"), "{hits:#?}");
    assert_eq!(best.memory_id, stored.memory_id);
    assert_eq!(best.title, "Meeting minutes 2026");

    // The metadata filter applies inside the search.
    let with = server
        .recall(
            &member,
            org,
            "launch code Bluebird",
            Some(equals("project", "apollo")),
        )
        .await;
    assert!(with.iter().any(|h| h.text.contains("ORANGE-SEVEN-TWELVE")));
    let without = server
        .recall(
            &member,
            org,
            "launch code Bluebird",
            Some(equals("project", "zeus")),
        )
        .await;
    assert!(without.is_empty(), "{without:#?}");

    // The ledger: the top-up and the one charge, summing to the balance.
    let ledger = server
        .credits()
        .list_ledger(authed(
            ListLedgerRequest {
                org_id: org.into(),
                limit: None,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .rows;
    let kinds: Vec<&str> = ledger.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["top_up", "charge"]);
    assert_eq!(ledger[1].tx_id, tx);
    let balance = server
        .credits()
        .get_balance(authed(GetBalanceRequest { org_id: org.into() }, &admin))
        .await
        .unwrap()
        .into_inner()
        .balance;
    assert_eq!(ledger.iter().map(|r| r.delta).sum::<i64>(), balance);
    server.process.terminate(Duration::from_secs(20));
}

/// What a call came back with, for the role matrix.
fn denied<T>(r: &Result<T, tonic::Status>) -> bool {
    match r {
        Ok(_) => false,
        Err(s) if s.code() == Code::PermissionDenied => {
            assert_eq!(s.get_details_error_info().unwrap().reason, "POLICY_DENY");
            true
        }
        Err(s) => panic!("neither allowed nor denied: {s:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_exactly_its_operations() {
    let server = Server::start().await;
    let org = "org_roles";
    let owner = server.token(org, "olga", "owner");
    server.top_up(org, &owner, 10_000_000).await;
    // A knowledge memory every role may read the status of.
    let shared = server
        .store(
            &owner,
            StoreMemoryRequest {
                org_id: org.into(),
                text: "Expense reports are due on the fifth of each month.".into(),
                r#type: MemoryType::Knowledge as i32,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_inner()
        .memory_id;

    let mut matrix = Vec::new();
    for role in ["viewer", "member", "admin", "owner"] {
        let user = format!("user_{role}");
        let t = server.token(org, &user, role);
        let mut row = Vec::new();
        let remember = IngestServiceClient::new(server.channel.clone())
            .remember(authed(
                RememberRequest {
                    scope: Some(Scope {
                        org_id: org.into(),
                        session_id: "s1".into(),
                        ..Default::default()
                    }),
                    turns: vec![Turn {
                        role: "user".into(),
                        text: format!("I am the {role}."),
                        timestamp: "2026-05-08T14:00:00Z".into(),
                        observations: vec![],
                    }],
                    ..Default::default()
                },
                &t,
            ))
            .await;
        row.push(denied(&remember));
        let recall = server
            .recall_client()
            .recall(authed(
                RecallRequest {
                    scope: Some(Scope {
                        org_id: org.into(),
                        ..Default::default()
                    }),
                    q: "expense reports".into(),
                    ..Default::default()
                },
                &t,
            ))
            .await;
        row.push(denied(&recall));
        let personal = StoreMemoryRequest {
            org_id: org.into(),
            text: format!("Note of the {role}."),
            ..Default::default()
        };
        row.push(denied(&server.store(&t, personal).await));
        let knowledge = StoreMemoryRequest {
            org_id: org.into(),
            text: format!("Policy written by the {role}."),
            r#type: MemoryType::Hive as i32,
            ..Default::default()
        };
        row.push(denied(&server.store(&t, knowledge).await));
        let status = server
            .memory()
            .get_memory_status(authed(
                GetMemoryStatusRequest {
                    memory_id: shared.clone(),
                },
                &t,
            ))
            .await;
        row.push(denied(&status));
        let forget = server
            .memory()
            .forget(authed(
                ForgetRequest {
                    org_id: org.into(),
                    target: Some(forget_request::Target::SessionId("s1".into())),
                    ..Default::default()
                },
                &t,
            ))
            .await;
        row.push(denied(&forget));
        let list = server
            .collections()
            .list_collections(authed(ListCollectionsRequest { org_id: org.into() }, &t))
            .await;
        row.push(denied(&list));
        let create = server
            .collections()
            .create_collection(authed(
                CreateCollectionRequest {
                    org_id: org.into(),
                    name: format!("team of {role}"),
                    members: vec![user.clone()],
                },
                &t,
            ))
            .await;
        let created = create.as_ref().ok().map(|r| {
            r.get_ref()
                .collection
                .as_ref()
                .unwrap()
                .collection_id
                .clone()
        });
        row.push(denied(&create));
        let delete = server
            .collections()
            .delete_collection(authed(
                DeleteCollectionRequest {
                    org_id: org.into(),
                    // Denied roles are refused before the id is looked up.
                    collection_id: created.unwrap_or_else(|| "col_0000000000000000".into()),
                },
                &t,
            ))
            .await;
        row.push(denied(&delete));
        let balance = server
            .credits()
            .get_balance(authed(GetBalanceRequest { org_id: org.into() }, &t))
            .await;
        row.push(denied(&balance));
        let top_up = server
            .credits()
            .top_up(authed(
                TopUpRequest {
                    org_id: org.into(),
                    amount: 5,
                    idempotency_key: format!("by-{role}"),
                },
                &t,
            ))
            .await;
        row.push(denied(&top_up));
        let ledger = server
            .credits()
            .list_ledger(authed(
                ListLedgerRequest {
                    org_id: org.into(),
                    limit: Some(10),
                },
                &t,
            ))
            .await;
        row.push(denied(&ledger));
        matrix.push((role, row));
    }
    // remember, recall, store user, store hive, status, forget, list,
    // create, delete, balance, top up, ledger: true = denied.
    let expected = [
        (
            "viewer",
            [
                true, false, true, true, false, true, false, true, true, true, true, true,
            ],
        ),
        (
            "member",
            [
                false, false, false, true, false, false, false, true, true, true, true, true,
            ],
        ),
        ("admin", [false; 12]),
        ("owner", [false; 12]),
    ];
    for ((role, row), (want_role, want)) in matrix.iter().zip(expected) {
        assert_eq!(*role, want_role);
        assert_eq!(row.as_slice(), want.as_slice(), "role {role}");
    }

    // A member may not act for another user; another tenant is refused.
    let member = server.token(org, "user_member", "member");
    let other = server
        .store(
            &member,
            StoreMemoryRequest {
                org_id: org.into(),
                user_id: "user_admin".into(),
                text: "Sneaky note.".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(denied(&other));
    let tenant = server
        .store(
            &member,
            StoreMemoryRequest {
                org_id: "org_other".into(),
                text: "Wrong tenant.".into(),
                ..Default::default()
            },
        )
        .await;
    assert!(denied(&tenant));
    server.process.terminate(Duration::from_secs(20));
}

async fn remember(server: &Server, token: &str, org: &str, session: &str, text: &str) -> String {
    let r = IngestServiceClient::new(server.channel.clone())
        .remember(authed(
            RememberRequest {
                scope: Some(Scope {
                    org_id: org.into(),
                    session_id: session.into(),
                    ..Default::default()
                }),
                turns: vec![Turn {
                    role: "user".into(),
                    text: text.into(),
                    timestamp: "2026-05-08T14:00:00Z".into(),
                    observations: vec![],
                }],
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner();
    let job = r.passive_job_id.unwrap();
    let mut jobs = JobServiceClient::new(server.channel.clone());
    wait_job_ready(&mut jobs, &job, token).await;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgetting_removes_derived_facts_and_leaves_other_users_alone() {
    let server = Server::start().await;
    let org = "org_forget";
    let admin = server.token(org, "ada", "admin");
    let alice = server.token(org, "alice", "member");
    let bob = server.token(org, "bob", "member");
    server.top_up(org, &admin, 10_000_000).await;

    remember(
        &server,
        &alice,
        org,
        "s1",
        "My sister Ana moved to Lyon last May.",
    )
    .await;
    remember(
        &server,
        &bob,
        org,
        "s9",
        "My brother Tom moved to Porto last June.",
    )
    .await;

    // Workspace visibility: a hive memory is read by everyone, a personal
    // one only by its user.
    let hive = server
        .store(
            &admin,
            StoreMemoryRequest {
                org_id: org.into(),
                text: "The office wifi password is larkspur-42.".into(),
                r#type: MemoryType::Hive as i32,
                extract: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_inner();
    let note = server
        .store(
            &alice,
            StoreMemoryRequest {
                org_id: org.into(),
                text: "My locker combination is 3-19-27.".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_inner();
    for (t, id) in [(&admin, &hive.memory_id), (&alice, &note.memory_id)] {
        assert_eq!(
            server.statuses(t, id).await.last(),
            Some(&MemoryStatus::Ready)
        );
    }
    let bob_sees = server.recall(&bob, org, "office wifi password", None).await;
    assert!(bob_sees.iter().any(|h| h.text.contains("larkspur-42")));
    let bob_locker = server.recall(&bob, org, "locker combination", None).await;
    assert!(
        !bob_locker.iter().any(|h| h.text.contains("3-19-27")),
        "{bob_locker:#?}"
    );
    let alice_locker = server.recall(&alice, org, "locker combination", None).await;
    assert!(alice_locker.iter().any(|h| h.text.contains("3-19-27")));
    // Bob may not read the status of Alice's personal memory.
    let peek = server
        .memory()
        .get_memory_status(authed(
            GetMemoryStatusRequest {
                memory_id: note.memory_id.clone(),
            },
            &bob,
        ))
        .await;
    assert!(denied(&peek));

    let before = server
        .recall(&alice, org, "where does Ana live?", None)
        .await;
    assert!(
        before
            .iter()
            .any(|h| h.kind() == HitKind::Observation && h.text.contains("Lyon")),
        "{before:#?}"
    );
    let removed = server
        .memory()
        .forget(authed(
            ForgetRequest {
                org_id: org.into(),
                target: Some(forget_request::Target::SessionId("s1".into())),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.turns, 1);
    assert!(removed.observations >= 1, "{removed:?}");
    assert!(removed.entities_removed >= 1, "{removed:?}");
    assert!(!removed.erasure_tx.is_empty());
    let after = server
        .recall(&alice, org, "where does Ana live?", None)
        .await;
    assert!(!after.iter().any(|h| h.text.contains("Lyon")), "{after:#?}");
    // Forgetting again removes nothing more.
    let again = server
        .memory()
        .forget(authed(
            ForgetRequest {
                org_id: org.into(),
                target: Some(forget_request::Target::SessionId("s1".into())),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((again.turns, again.observations), (0, 0));
    // Bob's memory is intact.
    let bob_after = server.recall(&bob, org, "where does Tom live?", None).await;
    assert!(
        bob_after.iter().any(|h| h.text.contains("Porto")),
        "{bob_after:#?}"
    );

    // A GDPR erasure of Bob by an admin: his turns and facts go, the hive
    // memory stays, and the ledger records it without the text.
    let erased = server
        .memory()
        .forget(authed(
            ForgetRequest {
                org_id: org.into(),
                user_id: "bob".into(),
                target: Some(forget_request::Target::AllUserData(true)),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(erased.turns >= 1 && erased.observations >= 1, "{erased:?}");
    let gone = server.recall(&bob, org, "where does Tom live?", None).await;
    assert!(!gone.iter().any(|h| h.text.contains("Porto")), "{gone:#?}");
    let still = server.recall(&bob, org, "office wifi password", None).await;
    assert!(still.iter().any(|h| h.text.contains("larkspur-42")));
    let ledger = server
        .credits()
        .list_ledger(authed(
            ListLedgerRequest {
                org_id: org.into(),
                limit: None,
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .rows;
    let erasure = ledger
        .iter()
        .find(|r| r.tx_id == erased.erasure_tx)
        .expect("the erasure row");
    assert_eq!(erasure.kind, "erasure");
    assert_eq!(erasure.delta, 0);
    assert!(!erasure.detail_json.contains("Porto") && !erasure.detail_json.contains("bob"));
    server.process.terminate(Duration::from_secs(20));
}
