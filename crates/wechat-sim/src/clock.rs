//! The simulator's clock: wall-clock time plus however far tests have pushed it forward.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in simulated time, as the duration since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SimTime(Duration);

impl SimTime {
    /// Whole seconds since the Unix epoch, as WeChat's `watermark.timestamp` carries them.
    pub(crate) fn unix_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// The quota day this instant falls in. WeChat's daily quotas reset at midnight
    /// Beijing time (UTC+8), so days are counted in that zone.
    pub(crate) fn quota_day(self) -> u64 {
        (self.0.as_secs() + 8 * 3600) / 86_400
    }

    /// Time left until `later`, zero if it has passed.
    pub(crate) fn until(self, later: SimTime) -> Duration {
        later.0.saturating_sub(self.0)
    }

    /// Time elapsed since `earlier`, zero if it is in the future.
    pub(crate) fn since(self, earlier: SimTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::Add<Duration> for SimTime {
    type Output = SimTime;

    fn add(self, rhs: Duration) -> SimTime {
        SimTime(self.0.saturating_add(rhs))
    }
}

impl std::ops::Sub<Duration> for SimTime {
    type Output = SimTime;

    fn sub(self, rhs: Duration) -> SimTime {
        SimTime(self.0.saturating_sub(rhs))
    }
}

/// Real time shifted by an offset that only ever grows.
#[derive(Debug, Default)]
pub(crate) struct SimClock {
    offset: Duration,
}

impl SimClock {
    /// The current simulated time.
    pub(crate) fn now(&self) -> SimTime {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        SimTime(real.saturating_add(self.offset))
    }

    /// Move simulated time forward.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.offset = self.offset.saturating_add(by);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_now_forward() {
        let mut clock = SimClock::default();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now().since(before) >= Duration::from_secs(3600));
    }

    #[test]
    fn quota_days_turn_at_beijing_midnight() {
        // 2024-01-01T16:00:00Z is 2024-01-02T00:00:00+08:00.
        let midnight_beijing = SimTime(Duration::from_secs(1_704_124_800));
        let just_before = midnight_beijing - Duration::from_secs(1);
        assert_eq!(midnight_beijing.quota_day(), just_before.quota_day() + 1);
    }
}
