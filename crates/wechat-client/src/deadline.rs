//! The caller's deadline, carried through every retry and wait.

use std::time::Duration;

use tokio::time::Instant;

/// When the caller stops waiting. Retries, backoff and waits for another
/// refresher all stay inside it, and no WeChat request starts after it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline: the client's own per-request timeout and retry budget still apply.
    pub fn none() -> Self {
        Self(None)
    }

    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(Some(instant))
    }

    /// A deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        Self(Some(Instant::now() + timeout))
    }

    /// The instant, if there is one.
    pub fn instant(self) -> Option<Instant> {
        self.0
    }

    /// Time left, `None` when unbounded; zero once passed.
    pub fn remaining(self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn expired(self) -> bool {
        self.remaining().is_some_and(|left| left.is_zero())
    }

    /// Whether `wait` still fits before the deadline.
    pub(crate) fn allows(self, wait: Duration) -> bool {
        self.remaining().is_none_or(|left| left > wait)
    }

    /// `limit` capped by the time left.
    pub(crate) fn cap(self, limit: Duration) -> Duration {
        self.remaining().map_or(limit, |left| left.min(limit))
    }
}
