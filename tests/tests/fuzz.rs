//! Hostile bytes and hostile tenants against a real server.
//!
//! The protobuf fuzz loop starts from a valid request of every RPC, mutates
//! its encoded bytes (bit flips, inserted, deleted and duplicated bytes,
//! truncation, splices of other requests, huge varints) and sends them as
//! they are: the server must answer every one, never with UNKNOWN, and with
//! INTERNAL only where the transport refuses bytes that do not decode; it
//! must still serve afterwards. `ENGRAM_FUZZ_INPUTS` sets the number of
//! inputs (default 3,000; RELIABILITY.md has a run of 100,000).
//!
//! The isolation fuzz writes marked turns and memories for tenant A, then
//! recalls as tenant B with random scopes, filters and collection ids
//! (A's included): not one point of A may come back.

use bytes::{Buf, BufMut, Bytes};
use engram_proto::v1::*;
use engram_tests::{TestServer, authed, token};
use prost::Message;
use std::collections::BTreeMap;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status};

/// Sends and receives raw message bytes.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A token with a `role` claim.
fn role_token(org: &str, user: &str, role: &str, ttl_secs: i64) -> String {
    let mut claims = engram_tests::claims(org, user, ttl_secs);
    claims.role = Some(role.into());
    engram_auth::mint_hs256(engram_tests::SECRET.as_bytes(), &claims).expect("mint")
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }
}

fn scope(org: &str) -> Option<Scope> {
    Some(Scope {
        org_id: org.into(),
        user_id: String::new(),
        session_id: "s1".into(),
    })
}

/// One valid request per RPC: (method path, encoded request).
fn seeds(org: &str) -> Vec<(&'static str, Vec<u8>)> {
    let turn = Turn {
        role: "user".into(),
        text: "I moved to Lyon → last May 🎉".into(),
        timestamp: "2026-05-08T14:00:00Z".into(),
        observations: vec!["User lives in Lyon.".into()],
    };
    let filter = Filter {
        condition: Some(filter::Condition::All(FilterList {
            filters: vec![Filter {
                condition: Some(filter::Condition::Exists(Exists {
                    key: "channel".into(),
                })),
            }],
        })),
    };
    vec![
        (
            "/engram.v1.IngestService/Remember",
            RememberRequest {
                scope: scope(org),
                turns: vec![turn],
                options: None,
                metadata: Some(prost_types::Struct {
                    fields: BTreeMap::from([(
                        "channel".to_string(),
                        prost_types::Value {
                            kind: Some(prost_types::value::Kind::StringValue("chat".into())),
                        },
                    )]),
                }),
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.RecallService/Recall",
            RecallRequest {
                scope: scope(org),
                q: "where does the user live?".into(),
                mode: RecallMode::Deep as i32,
                top_k: Some(5),
                include_timeline: true,
                filter: Some(filter),
                collection_ids: vec!["col_0123456789abcdef".into()],
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.MemoryService/StoreMemory",
            StoreMemoryRequest {
                org_id: org.into(),
                text: "Hotels are capped at 180 EUR a night.".into(),
                title: "policy".into(),
                extract: true,
                ..Default::default()
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.MemoryService/GetMemoryStatus",
            GetMemoryStatusRequest {
                memory_id: "0123456789abcdef0123456789abcdef".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.MemoryService/Forget",
            ForgetRequest {
                org_id: org.into(),
                user_id: String::new(),
                target: Some(forget_request::Target::SessionId("s1".into())),
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.JobService/GetJob",
            GetJobRequest {
                job_id: "0123456789abcdef0123456789abcdef".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.CollectionService/CreateCollection",
            CreateCollectionRequest {
                org_id: org.into(),
                name: "team".into(),
                members: vec!["u1".into()],
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.CollectionService/ListCollections",
            ListCollectionsRequest { org_id: org.into() }.encode_to_vec(),
        ),
        (
            "/engram.v1.CollectionService/DeleteCollection",
            DeleteCollectionRequest {
                org_id: org.into(),
                collection_id: "col_0123456789abcdef".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.CreditService/GetBalance",
            GetBalanceRequest { org_id: org.into() }.encode_to_vec(),
        ),
        (
            "/engram.v1.CreditService/TopUp",
            TopUpRequest {
                org_id: org.into(),
                amount: 5,
                idempotency_key: "k".into(),
            }
            .encode_to_vec(),
        ),
        (
            "/engram.v1.CreditService/ListLedger",
            ListLedgerRequest {
                org_id: org.into(),
                limit: Some(3),
            }
            .encode_to_vec(),
        ),
    ]
}

/// Hostile strings a field may be given, valid UTF-8 all.
const HOSTILE: &[&str] = &[
    "",
    " ",
    "→",
    "e\u{301}",
    "👨\u{200D}👩\u{200D}👧",
    "\u{202E}abc",
    "\u{200B}",
    "\u{0}",
    "org_a",
    "0123456789abcdef0123456789abcdef",
    "col_0123456789abcdef",
    "personal:u1",
    "user",
    "ready",
    "2026-05-08T14:00:00Z",
    "9999-99-99T99:99:99Z",
    "-1",
    "NaN",
    "{\"a\":1}",
];

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The top-level fields of an encoded message: (key, value bytes as
/// encoded after the key). `None` if it does not parse.
fn fields(b: &[u8]) -> Option<Vec<(u64, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = read_varint(b, &mut i)?;
        let start = i;
        match key & 7 {
            0 => {
                read_varint(b, &mut i)?;
            }
            1 => i += 8,
            2 => {
                let len = read_varint(b, &mut i)? as usize;
                i = i.checked_add(len)?;
            }
            5 => i += 4,
            _ => return None,
        }
        out.push((key, b.get(start..i)?.to_vec()));
    }
    Some(out)
}

/// A mutation that keeps the wire framing: a field dropped, repeated,
/// given a hostile string, a nested message of another request, or a
/// random number; so the handlers, not only the decoder, get hostile input.
fn mutate_fields(rng: &mut Lcg, bytes: &[u8], other: &[u8]) -> Option<Vec<u8>> {
    let mut f = fields(bytes)?;
    if f.is_empty() {
        return None;
    }
    for _ in 0..=rng.next(3) {
        let k = rng.next(f.len());
        match rng.next(5) {
            0 => {
                f.remove(k);
                if f.is_empty() {
                    break;
                }
            }
            1 => f.push(f[k].clone()),
            2 if f[k].0 & 7 == 2 => {
                let s = HOSTILE[rng.next(HOSTILE.len())].repeat(1 + rng.next(3));
                let mut v = Vec::new();
                varint(s.len() as u64, &mut v);
                v.extend_from_slice(s.as_bytes());
                f[k].1 = v;
            }
            3 if f[k].0 & 7 == 2 => {
                let mut v = Vec::new();
                varint(other.len() as u64, &mut v);
                v.extend_from_slice(other);
                f[k].1 = v;
            }
            _ => {
                let mut v = Vec::new();
                varint([0, 1, u64::MAX, 1 << 31, 1 << 63][rng.next(5)], &mut v);
                f[k] = ((f[k].0 & !7), v);
            }
        }
    }
    let mut out = Vec::new();
    for (key, value) in f {
        varint(key, &mut out);
        out.extend_from_slice(&value);
    }
    Some(out)
}

/// One mutation of `bytes` (`other` is another seed, for splices).
fn mutate(rng: &mut Lcg, bytes: &[u8], other: &[u8]) -> Vec<u8> {
    if rng.next(3) > 0
        && let Some(m) = mutate_fields(rng, bytes, other)
    {
        return m;
    }
    let mut b = bytes.to_vec();
    for _ in 0..=rng.next(4) {
        let at = rng.next(b.len() + 1);
        match rng.next(8) {
            0 if !b.is_empty() => {
                let i = rng.next(b.len());
                b[i] ^= 1 << rng.next(8);
            }
            1 => b.insert(at, rng.next(256) as u8),
            2 if at < b.len() => {
                b.remove(at);
            }
            3 => b.truncate(at),
            4 => {
                let from = rng.next(other.len() + 1);
                b.splice(at..at, other[from..].iter().copied());
            }
            5 if !b.is_empty() => {
                // A field repeated: its bytes again.
                let (s, e) = (at.min(b.len() - 1), rng.next(b.len() + 1).max(at));
                let piece = b[s..e.min(b.len())].to_vec();
                b.splice(s..s, piece);
            }
            6 => b.splice(at..at, [0xff; 10].iter().copied()).for_each(drop),
            _ => {
                let i = rng.next(b.len() + 1);
                b.insert(i, [0x0a, 0x12, 0x1a, 0x22, 0x08][rng.next(5)]);
            }
        }
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_protobuf_of_every_rpc_never_crashes_the_server() -> anyhow::Result<()> {
    let inputs: usize = std::env::var("ENGRAM_FUZZ_INPUTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let dir = tempfile::tempdir()?;
    // One tenant sending as fast as it can would meet its rate limit and
    // write backlog (tests/tests/limits.rs covers those); here every input
    // must reach the handlers.
    let server = TestServer::start_with(dir.path(), |c| {
        c.limits.requests_per_sec_per_org = 0;
        c.limits.max_backlog_per_org = 0;
    })
    .await?;
    let channel = server.channel().await?;
    let tok = token("org_f", "u1", 3600);
    let seeds = seeds("org_f");
    let mut rng = Lcg(0xf0f0_1234);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..inputs {
        let (path, seed) = &seeds[n % seeds.len()];
        let other = &seeds[rng.next(seeds.len())].1;
        let body = mutate(&mut rng, seed, other);
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await?;
        let reply = tokio::time::timeout(
            Duration::from_secs(30),
            grpc.unary::<Bytes, Bytes, _>(
                authed(Bytes::from(body.clone()), &tok),
                path.parse()?,
                RawCodec,
            ),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{path}: no answer in 30 s to {body:?}"))?;
        let code = match &reply {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        if let Err(s) = &reply {
            assert_ne!(s.code(), Code::Unknown, "{path} {body:?}: {s:?}");
            if s.code() == Code::Internal {
                // Only tonic's own refusal of undecodable bytes.
                assert!(
                    s.message().contains("decode") || s.message().contains("Decode"),
                    "{path} {body:?}: {s:?}"
                );
            }
        }
        *outcomes.entry(format!("{code:?}")).or_default() += 1;
    }
    assert_eq!(
        server.health("").await?,
        tonic_health::pb::health_check_response::ServingStatus::Serving,
        "still serving after {inputs} hostile inputs"
    );
    // Memory stays bounded: the server (model included) shares this
    // process, which peaks at about 300-550 MiB whatever the input count.
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    assert!(
        hwm_kib < 2 * 1024 * 1024,
        "peak memory {hwm_kib} KiB after {inputs} inputs"
    );
    println!(
        "protobuf fuzz: {inputs} inputs over {} RPCs: {outcomes:?}; peak RSS {} MiB",
        seeds.len(),
        hwm_kib / 1024
    );
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_scope_filter_or_collection_of_tenant_b_reaches_tenant_a() -> anyhow::Result<()> {
    const MARK: &str = "zanzibar";
    let dir = tempfile::tempdir()?;
    let server = TestServer::start(dir.path()).await?;
    let a = token("org_a", "alice", 3600);
    let admin_a = role_token("org_a", "ada", "admin", 3600);
    let mut ingest = server.ingest().await?;
    for i in 0..5 {
        ingest
            .remember(authed(
                RememberRequest {
                    scope: Some(Scope {
                        org_id: "org_a".into(),
                        user_id: String::new(),
                        session_id: format!("s{i}"),
                    }),
                    turns: vec![Turn {
                        role: "user".into(),
                        text: format!("Secret {MARK} {i}: my PIN is 4{i}21."),
                        timestamp: "2026-05-08T14:00:00Z".into(),
                        observations: vec![format!("User's {MARK} PIN is 4{i}21.")],
                    }],
                    options: None,
                    metadata: None,
                },
                &a,
            ))
            .await?;
    }
    let mut memory =
        engram_proto::v1::memory_service_client::MemoryServiceClient::new(server.channel().await?);
    let stored = memory
        .store_memory(authed(
            StoreMemoryRequest {
                org_id: "org_a".into(),
                text: format!("The {MARK} vault code is 7734."),
                r#type: MemoryType::Knowledge as i32,
                extract: true,
                ..Default::default()
            },
            &admin_a,
        ))
        .await?
        .into_inner();
    let collection = engram_proto::v1::collection_service_client::CollectionServiceClient::new(
        server.channel().await?,
    )
    .create_collection(authed(
        CreateCollectionRequest {
            org_id: "org_a".into(),
            name: "vault".into(),
            members: vec!["alice".into(), "bob".into()],
        },
        &admin_a,
    ))
    .await?
    .into_inner();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Tenant B, including a user named like A's ("alice", "bob") and an
    // admin, with every scope, filter and collection id it can think of.
    let b_tokens = [
        token("org_b", "alice", 3600),
        token("org_b", "bob", 3600),
        role_token("org_b", "root", "owner", 3600),
    ];
    let orgs = [
        "org_b",
        "org_a",
        "",
        "org_a ",
        "ORG_A",
        "org_a\u{0}",
        "org_b/../org_a",
    ];
    let users = ["", "alice", "bob", "ada", "*"];
    let collections = [
        String::new(),
        collection
            .collection
            .map(|c| c.collection_id)
            .unwrap_or_default(),
        "personal:alice".to_owned(),
        stored.collection_id.clone(),
    ];
    let filters = [
        None,
        Some(Filter {
            condition: Some(filter::Condition::Negate(Box::new(Filter {
                condition: Some(filter::Condition::Exists(Exists {
                    key: "nothing".into(),
                })),
            }))),
        }),
        Some(Filter {
            condition: Some(filter::Condition::Equals(Equals {
                key: "org_id".into(),
                value: Some(prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("org_a".into())),
                }),
            })),
        }),
    ];
    let mut rc = server.recall().await?;
    let mut rng = Lcg(77);
    let (mut answered, mut refused) = (0, 0);
    for _ in 0..300 {
        let tok = &b_tokens[rng.next(b_tokens.len())];
        let col = &collections[rng.next(collections.len())];
        let req = RecallRequest {
            scope: Some(Scope {
                // Half the calls in B's own org, so they are answered.
                org_id: if rng.next(2) == 0 {
                    "org_b"
                } else {
                    orgs[rng.next(orgs.len())]
                }
                .into(),
                user_id: users[rng.next(users.len())].into(),
                session_id: ["", "s1", "s3"][rng.next(3)].into(),
            }),
            q: [MARK, "what is my PIN?", "vault code", "secret"][rng.next(4)].into(),
            mode: [RecallMode::Active, RecallMode::Deep][rng.next(2)] as i32,
            top_k: Some(50),
            include_timeline: true,
            filter: filters[rng.next(filters.len())].clone(),
            collection_ids: if col.is_empty() {
                vec![]
            } else {
                vec![col.clone()]
            },
        };
        match rc.recall(authed(req.clone(), tok)).await {
            Ok(r) => {
                answered += 1;
                let r = r.into_inner();
                let hits = r.hits.unwrap_or_default();
                for h in hits.turns.iter().chain(&hits.observations) {
                    assert!(!h.text.contains(MARK), "tenant A leaked to {req:?}: {h:?}");
                }
                for e in &hits.entities {
                    assert!(
                        !e.label.to_lowercase().contains(MARK),
                        "tenant A leaked to {req:?}: {e:?}"
                    );
                }
                let timeline = r.timeline.unwrap_or_default();
                assert!(!timeline.contains(MARK), "timeline leaked to {req:?}");
            }
            Err(s) => {
                refused += 1;
                assert!(
                    matches!(
                        s.code(),
                        Code::PermissionDenied | Code::InvalidArgument | Code::NotFound
                    ),
                    "{req:?}: {s:?}"
                );
            }
        }
    }
    // A's own recall finds them, so the marks were there to leak.
    let own = rc
        .recall(authed(
            RecallRequest {
                scope: scope("org_a"),
                q: MARK.into(),
                top_k: Some(10),
                ..Default::default()
            },
            &a,
        ))
        .await?
        .into_inner()
        .hits
        .unwrap_or_default();
    assert!(own.turns.iter().any(|h| h.text.contains(MARK)));
    println!(
        "isolation fuzz: 300 recalls as tenant B ({answered} answered, {refused} refused), 0 points of tenant A"
    );
    server.stop().await
}
