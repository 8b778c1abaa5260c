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
