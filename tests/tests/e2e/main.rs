//! The end-to-end suite, one test binary: the real service (in-process on
//! port 0, or the real binary) against the WeChat simulator, over gRPC, HTTP
//! and headless Chromium, on SQLite and on a fresh PostgreSQL database each.
//!
//! A module per part of the service. A new test is an `async fn name(backend:
//! Backend)` in the module it belongs to, listed in that module's
//! `on_both_backends!`; run one with `cargo test -p e2e -- module::sqlite::name`.
#![allow(clippy::unwrap_used)]

mod accounts;
mod architecture;
mod binary;
mod browser;
mod callers;
mod crash;
mod deploy;
mod health;
mod limits;
mod metrics;
mod mini_program_login;
mod order_of_checks;
mod permissions;
mod rekey;
mod replicas;
mod sessions;
mod tls;
mod web_login;
