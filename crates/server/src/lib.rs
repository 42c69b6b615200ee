//! wechat-identity: the gRPC identity service for WeChat.
//!
//! [`app::Application`] builds the whole service from a [`config`]: the RPCs
//! of `service` behind their tonic face in `grpc` (caller keys from
//! `auth`, what each RPC needs from [`permissions`], health, reflection and
//! limits from [`grpc_server`]), the browser's HTTP shim in `http`, access
//! tokens in `sessions`, and one error table in [`error`]. [`pb`] is the
//! generated contract; [`cli`] is the command line the binary runs (`main.rs`
//! only calls it), with `keys` its key rotation commands and `demo` the
//! zero-config demo.
//!
//! The public face is [`app::Application`], the [`config`] types and the
//! [`error`] table, plus what the binary, the tests and the bench call; the
//! rest is `pub(crate)`.

pub mod app;
pub(crate) mod apps;
pub(crate) mod auth;
pub mod cli;
pub mod config;
pub(crate) mod deadline;
pub(crate) mod demo;
pub mod error;
pub(crate) mod generation_map;
pub(crate) mod grpc;
pub mod grpc_server;
pub(crate) mod http;
pub(crate) mod keys;
pub(crate) mod metrics;
pub mod permissions;
pub(crate) mod profile_cache;
pub(crate) mod return_to;
pub(crate) mod service;
pub(crate) mod sessions;
pub(crate) mod telemetry;
#[cfg(test)]
mod test_replicas;
pub(crate) mod validate;
pub(crate) mod web_binding;

/// The generated `wechat.identity.v1` contract: messages, client and server.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("wechat.identity.v1");

    /// The encoded `FileDescriptorSet` of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/identity_descriptor.bin"));
}
