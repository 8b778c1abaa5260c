//! Generated code of Engram's gRPC contract.
//!
//! The `.proto` files live in `proto/` at the repository root; this crate
//! compiles them at build time with a vendored `protoc`.

/// Package `engram.v1`: the public API.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("engram.v1");
}

pub mod json;

/// Conversions between epoch milliseconds and `google.protobuf.Timestamp`.
pub mod time {
    /// The timestamp of `ms` milliseconds since the epoch (negative ones too).
    pub fn from_ms(ms: i64) -> prost_types::Timestamp {
        prost_types::Timestamp {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        }
    }

    /// Milliseconds since the epoch of `t` (sub-millisecond parts dropped;
    /// saturating at the ends of `i64`, since a client may send any
    /// seconds: check [`is_valid`] where that matters).
    pub fn to_ms(t: &prost_types::Timestamp) -> i64 {
        t.seconds
            .saturating_mul(1000)
            .saturating_add(i64::from(t.nanos) / 1_000_000)
    }

    /// Whether `t` is inside the range `google.protobuf.Timestamp` allows:
    /// 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z, with nanos
    /// in 0..=999,999,999.
    pub fn is_valid(t: &prost_types::Timestamp) -> bool {
        (-62_135_596_800..=253_402_300_799).contains(&t.seconds)
            && (0..=999_999_999).contains(&t.nanos)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips_before_and_after_the_epoch() {
            for ms in [-1_500, -1, 0, 1, 1_795_730_426_385] {
                assert_eq!(super::to_ms(&super::from_ms(ms)), ms);
            }
        }

        #[test]
        fn any_timestamp_converts_and_out_of_range_ones_are_invalid() {
            let t = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
            assert_eq!(super::to_ms(&t(i64::MAX, i32::MAX)), i64::MAX);
            assert_eq!(super::to_ms(&t(i64::MIN, i32::MIN)), i64::MIN);
            assert!(!super::is_valid(&t(i64::MAX, 0)));
            assert!(!super::is_valid(&t(0, -1)));
            assert!(super::is_valid(&t(1_795_730_426, 5)));
        }
    }
}

/// Package `engram.events.v1`: the events carried on the turn stream.
#[allow(missing_docs, clippy::all)]
pub mod events {
    /// Version 1 of the events.
    pub mod v1 {
        tonic::include_proto!("engram.events.v1");
    }
}

/// Encoded `FileDescriptorSet` of the contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("engram_descriptor");
