//! The real `wechat-identity` binary as a child process, and ports handed out
//! once (the shared `test-support` crate's).

pub use test_support::process::*;
