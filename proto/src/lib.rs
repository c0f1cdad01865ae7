//! Quarry's gRPC API, package `quarry.v1`: messages, client and server
//! stubs generated from `quarry/v1/quarry.proto` at build time; and the
//! replication protocol between a pair's nodes, `quarry.replication.v1`;
//! and [`tls`], how both ends read their TLS files.
//!
//! Owns: the wire contract. Every field is documented in the .proto file;
//! the generated Rust carries those comments.

#![allow(missing_docs, clippy::all)]

/// `quarry.v1`.
pub mod v1 {
    tonic::include_proto!("quarry.v1");

    /// Encoded `FileDescriptorSet` of quarry.v1, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/quarry_v1_descriptor.bin"));
}

/// `quarry.replication.v1`: the protocol between the two nodes of a
/// warm-standby pair, served only on a node's `replication_listen`.
pub mod replication {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("quarry.replication.v1");
    }
}

/// TLS configurations from PEM files (hand-written, linted).
#[warn(clippy::all)]
pub mod tls;
