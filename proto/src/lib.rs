//! The HQ contract: `hq.proto` and its generated tonic code.
//!
//! # Layout
//! - [`hq`]: the messages, the `StoreService` (served by the store for HQ) and the
//!   `HqService` (served by HQ for the store's uplink), clients and servers.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, for gRPC server reflection.
//! - [`grpc_accept`]: accepting connections on a gRPC port, each bounded in the time it
//!   takes to open (TLS handshake or HTTP/2 preface), a bounded number at once.
//! - [`grpc_tls`]: mutual TLS on both ends of the link (accepting and dialing) with rustls
//!   configurations from `outpost-security`.

pub mod grpc_accept;
pub mod grpc_tls;

/// Generated from `proto/hq.proto` (package `outpost.hq.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod hq {
    tonic::include_proto!("outpost.hq.v1");
}

/// The encoded `FileDescriptorSet` of `hq.proto`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hq_descriptor.bin"));
