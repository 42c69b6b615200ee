//! A faithful fake WeChat: the server APIs wechat-identity calls, with their documented
//! quirks (HTTP 200 errors, rid-suffixed errmsgs, `text/plain` JSON, single-use codes,
//! token overlaps and refresh limits), as an axum app.
//!
//! Run it in-process for tests and benchmarks ([`Simulator::spawn`]) or as the
//! `wechat-sim` binary for the zero-credential demo. Tests shape the world through
//! [`Simulator`] (or the `/sim` control API over HTTP): mint codes, add users, inject
//! faults, move the clock.
//!
//! The behaviour follows `WECHAT_API.md` (shared docs); comments cite its sections.

mod app_tokens;
mod browser;
mod clock;
mod config;
mod connection_kill;
mod endpoint;
mod errcode;
mod faults;
mod ids;
mod oauth_tokens;
mod reply;
mod routes;
mod server;
mod simulator;
mod state;
mod users;

pub use browser::Consent;
pub use config::{SimApp, SimConfig};
pub use endpoint::Endpoint;
pub use faults::Fault;
pub use server::RunningSim;
pub use simulator::Simulator;
pub use users::{SimPhone, SimUser};
/// The kind of a simulated app: the workspace's one app-kind enum.
pub use wechat_types::AppKind;
