//! A fresh PostgreSQL database per test, dropped when the test ends (the
//! shared `test-support` crate's).

pub use test_support::postgres::*;
