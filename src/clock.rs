//! The clock every command reads: the real time, or `ATTENDSYNC_NOW` (RFC 3339)
//! plus the real time elapsed since the process started.
//!
//! With the override, the daemon's schedules, catch-up and months all follow a
//! clock that starts at the given instant and then advances in real time, so a
//! DST change can be tested in seconds and an operator can replay a missed day.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The environment variable that sets the clock.
pub const NOW_VAR: &str = "ATTENDSYNC_NOW";
/// The longest single sleep: the clock is read again at least this often, so a
/// wall clock set forward or back (NTP, a suspended machine) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("\"{text}\" is not an RFC 3339 time ({reason}), e.g. 2026-11-03T02:30:00+08:00")]
pub struct ClockError {
    pub text: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Clock {
    /// The overridden start instant and when (monotonic) it was read.
    start: Option<(DateTime<Utc>, tokio::time::Instant)>,
}

impl Clock {
    /// The real clock.
    pub fn real() -> Clock {
        Clock { start: None }
    }

    /// A clock reading `at` now and advancing in real time.
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock {
            start: Some((at, tokio::time::Instant::now())),
        }
    }

    /// `ATTENDSYNC_NOW` when set, else the real clock.
    pub fn from_env() -> Result<Clock, ClockError> {
        match std::env::var(NOW_VAR) {
            Ok(text) => parse(&text).map(Clock::starting_at),
            Err(_) => Ok(Clock::real()),
        }
    }

    pub fn is_overridden(&self) -> bool {
        self.start.is_some()
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self.start {
            None => Utc::now(),
            Some((at, since)) => {
                let elapsed =
                    chrono::Duration::from_std(since.elapsed()).unwrap_or(chrono::Duration::MAX);
                at.checked_add_signed(elapsed)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }
        }
    }

    /// Sleeps until this clock reads `t` or later.
    pub async fn sleep_until(&self, t: DateTime<Utc>) {
        loop {
            let left = t - self.now();
            let Ok(left) = left.to_std() else { return };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(MAX_SLEEP)).await;
        }
    }
}

/// Parses an RFC 3339 instant.
pub fn parse(text: &str) -> Result<DateTime<Utc>, ClockError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| ClockError {
            text: text.to_string(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_overridden_clock_advances_in_real_time_and_sleeps_until_its_own_time() {
        let at = parse("2027-03-14T01:59:59.700-05:00").unwrap_or_default();
        let clock = Clock::starting_at(at);
        assert!(clock.is_overridden());
        assert!(clock.now() - at < chrono::Duration::seconds(1));
        let fire = parse("2027-03-14T03:00:00-04:00").unwrap_or_default();
        let started = std::time::Instant::now();
        clock.sleep_until(fire).await;
        let late = clock.now() - fire;
        assert!(late >= chrono::Duration::zero() && late < chrono::Duration::seconds(1));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_bad_override_is_explained() {
        let err = parse("yesterday")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("RFC 3339"), "{err}");
    }
}
