//! wechat-identity: the gRPC identity service for WeChat.
//!
//! So far this crate holds the generated contract, [`pb`], the typed
//! configuration, [`config`], and the error table, [`error`]; the service, the
//! HTTP shim and telemetry follow.

pub mod app;
pub mod apps;
pub mod auth;
pub mod config;
pub mod deadline;
pub mod demo;
pub mod error;
pub mod grpc;
pub mod grpc_server;
pub mod http;
pub mod return_to;
pub mod service;
pub mod sessions;
pub mod telemetry;
pub mod validate;

/// The generated `wechat.identity.v1` contract: messages, client and server.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("wechat.identity.v1");

    /// The encoded `FileDescriptorSet` of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/identity_descriptor.bin"));
}
