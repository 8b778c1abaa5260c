//! Stable ids: the same content always gets the same id, which is what makes
//! every write an idempotent upsert.

use crate::model::{Role, Scope};
use sha2::{Digest, Sha256};

fn field(h: &mut Sha256, value: &str) {
    // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
    h.update((value.len() as u64).to_be_bytes());
    h.update(value.as_bytes());
}

/// The 64-hex fragment id of a turn: SHA-256 over scope, role, text and the
/// normalized (epoch ms) timestamp.
pub fn fragment_id(scope: &Scope, role: Role, text: &str, ts_ms: i64) -> String {
    let mut h = Sha256::new();
    field(&mut h, "turn/v1");
    field(&mut h, &scope.org_id);
    field(&mut h, &scope.user_id);
    field(&mut h, &scope.session_id);
    field(&mut h, role.as_str());
    field(&mut h, text);
    h.update(ts_ms.to_be_bytes());
    hex::encode(h.finalize())
}

/// The 64-hex fragment id of an observation: a digest of its scope, the
/// fragment it was derived from and its text, so the same fact derived from
/// the same turn is one point however often enrichment runs.
pub fn observation_id(scope: &Scope, source_id: &str, text: &str) -> String {
    let mut h = Sha256::new();
    field(&mut h, "observation/v1");
    field(&mut h, &scope.org_id);
    field(&mut h, &scope.user_id);
    field(&mut h, &scope.session_id);
    field(&mut h, source_id);
    field(&mut h, text);
    hex::encode(h.finalize())
}

/// The 64-hex fragment id of an entity: a digest of its tenant, its end
/// user and its normalized key (`"person:ana"`). Entities span the
/// sessions of one user, so the session is not part of it.
pub fn entity_id(org_id: &str, user_id: &str, key: &str) -> String {
    let mut h = Sha256::new();
    field(&mut h, "entity/v1");
    field(&mut h, org_id);
    field(&mut h, user_id);
    field(&mut h, key);
    hex::encode(h.finalize())
}

/// The 32-hex job id of a write: a digest of its scope, its fragment ids in
/// order and its options, so re-sending the same request yields the same id.
pub fn job_id(scope: &Scope, fragment_ids: &[String], options: &[bool]) -> String {
    let mut h = Sha256::new();
    field(&mut h, "job/v1");
    field(&mut h, &scope.org_id);
    field(&mut h, &scope.user_id);
    field(&mut h, &scope.session_id);
    for id in fragment_ids {
        field(&mut h, id);
    }
    for o in options {
        h.update([u8::from(*o)]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The 32-hex id of a stored memory: a digest of everything the caller
/// sent (tenant, user, collection, type, title, text, extract flag and
/// metadata as canonical JSON), so re-sending the same request yields the
/// same memory.
pub fn memory_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    field(&mut h, "memory/v1");
    for p in parts {
        field(&mut h, p);
    }
    hex::encode(&h.finalize()[..16])
}

/// The 64-hex fragment id of chunk `index` of a memory.
pub fn memory_chunk_id(org_id: &str, memory_id: &str, index: u32) -> String {
    let mut h = Sha256::new();
    field(&mut h, "memory-chunk/v1");
    field(&mut h, org_id);
    field(&mut h, memory_id);
    h.update(index.to_be_bytes());
    hex::encode(h.finalize())
}

/// The id of a team collection: `col_` and 16 hex of a digest of its
/// tenant and name, so creating the same name twice finds the same one.
pub fn collection_id(org_id: &str, name: &str) -> String {
    let mut h = Sha256::new();
    field(&mut h, "collection/v1");
    field(&mut h, org_id);
    field(&mut h, name);
    format!("col_{}", hex::encode(&h.finalize()[..8]))
}

/// The implicit personal collection of a user.
pub fn personal_collection(user_id: &str) -> String {
    format!("personal:{user_id}")
}

/// The UUID a store uses as point id: the first 16 bytes of the fragment id.
///
/// Returns `None` when `fragment_id` is not 64 hex characters.
pub fn point_uuid(fragment_id: &str) -> Option<uuid::Uuid> {
    // Checked before slicing: 64 bytes may hold multi-byte characters.
    if fragment_id.len() != 64 || !fragment_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes = hex::decode(&fragment_id[..32]).ok()?;
    let arr: [u8; 16] = bytes.try_into().ok()?;
    Some(uuid::Uuid::from_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope {
            org_id: "org_a".into(),
            user_id: "u1".into(),
            session_id: "chat-1".into(),
        }
    }

    #[test]
    fn fragment_id_is_stable_64_hex_and_content_sensitive() {
        let a = fragment_id(&scope(), Role::User, "hello", 1);
        assert_eq!(a, fragment_id(&scope(), Role::User, "hello", 1));
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, fragment_id(&scope(), Role::Assistant, "hello", 1));
        assert_ne!(a, fragment_id(&scope(), Role::User, "hello", 2));
        let mut other = scope();
        other.org_id = "org_b".into();
        assert_ne!(a, fragment_id(&other, Role::User, "hello", 1));
    }

    #[test]
    fn observation_id_depends_on_source_and_text_not_on_the_run() {
        let src = fragment_id(&scope(), Role::User, "I'm allergic to shellfish.", 1);
        let a = observation_id(&scope(), &src, "User is allergic to shellfish.");
        assert_eq!(
            a,
            observation_id(&scope(), &src, "User is allergic to shellfish.")
        );
        assert_eq!(a.len(), 64);
        assert_ne!(a, src);
        assert_ne!(a, observation_id(&scope(), &src, "User likes shellfish."));
        let other_src = fragment_id(&scope(), Role::User, "x", 1);
        assert_ne!(
            a,
            observation_id(&scope(), &other_src, "User is allergic to shellfish.")
        );
    }

    #[test]
    fn entity_id_is_per_user_not_per_session() {
        let a = entity_id("org_a", "u1", "person:ana");
        assert_eq!(a, entity_id("org_a", "u1", "person:ana"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, entity_id("org_a", "u2", "person:ana"));
        assert_ne!(a, entity_id("org_b", "u1", "person:ana"));
        assert_ne!(a, entity_id("org_a", "u1", "place:ana"));
    }

    #[test]
    fn point_uuid_takes_first_sixteen_bytes() {
        let id = fragment_id(&scope(), Role::User, "x", 0);
        let u = point_uuid(&id).unwrap();
        assert_eq!(u.simple().to_string(), id[..32]);
        assert!(point_uuid("abc").is_none());
    }

    #[test]
    fn job_id_depends_on_options() {
        let ids = vec!["a".to_string()];
        assert_ne!(
            job_id(&scope(), &ids, &[true, true]),
            job_id(&scope(), &ids, &[true, false])
        );
        assert_eq!(job_id(&scope(), &ids, &[true]).len(), 32);
    }

    mod hostile {
        use super::*;
        use engram_testkit::text::hostile_text;
        use proptest::prelude::*;

        fn scope_of(org: String, user: String, session: String) -> Scope {
            Scope {
                org_id: org,
                user_id: user,
                session_id: session,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            /// Ids are 64 (or 32) lowercase hex whatever the input, the same
            /// for the same input, and the fields cannot be shifted into
            /// one another.
            #[test]
            fn ids_are_hex_stable_and_field_separated(
                org in hostile_text(), user in hostile_text(), session in hostile_text(),
                text in hostile_text(), ts in any::<i64>(),
            ) {
                let scope = scope_of(org.clone(), user.clone(), session.clone());
                let id = fragment_id(&scope, Role::User, &text, ts);
                prop_assert_eq!(id.len(), 64);
                prop_assert!(id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                prop_assert_eq!(&id, &fragment_id(&scope, Role::User, &text, ts));
                prop_assert!(point_uuid(&id).is_some());
                let shifted = scope_of(format!("{org}{user}"), String::new(), session);
                if !user.is_empty() {
                    prop_assert_ne!(&id, &fragment_id(&shifted, Role::User, &text, ts));
                }
                prop_assert_eq!(job_id(&scope, std::slice::from_ref(&id), &[true]).len(), 32);
            }

            /// A point id is read from any string without panicking; only 64
            /// hex characters give one.
            #[test]
            fn point_uuid_of_any_string(s in prop_oneof![
                hostile_text(),
                "[0-9a-f]{30}[\\u{80}-\\u{10FFFF}][0-9a-f]{31}",
                "[0-9a-f]{31}\\u{e9}[0-9a-f]{31}",
            ]) {
                let got = point_uuid(&s);
                prop_assert_eq!(got.is_some(), s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
}
