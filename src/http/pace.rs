//! Pacing: a strict limiter per endpoint, chained with a global one per vendor.
//!
//! Vendors that count per minute still ban bursts, so every limiter allows a burst
//! of one: calls are spaced evenly at the allowed rate instead of sent in a clump.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::job::Rate;

type Limiter = Arc<DefaultDirectRateLimiter>;

/// The `[source.limits]` / `[target.limits]` key for all of a vendor's endpoints together.
pub const TOTAL: &str = "total";

pub struct Pacer {
    global: Limiter,
    endpoints: HashMap<String, Limiter>,
}

/// Calls are spaced this much wider than the quota requires, so that scheduling
/// jitter never puts one call too many into a vendor's counting window.
const SAFETY_MARGIN: f64 = 1.02;
/// And at least this much wider per counting window: a call that reaches the
/// vendor late by up to this much (a busy machine, a slow network) still leaves
/// the window it shares with the calls after it within the quota. 2 % of a
/// one-second window alone (20 ms) was measured too little on a loaded machine.
const WINDOW_SLACK: Duration = Duration::from_millis(30);

/// The spacing of calls at `rate` with both margins.
fn spacing(rate: Rate) -> Duration {
    let relative = rate.interval().mul_f64(SAFETY_MARGIN);
    let absolute = (rate.per + WINDOW_SLACK) / rate.count.max(1);
    relative.max(absolute)
}

fn strict(rate: Rate) -> Limiter {
    let one = NonZeroU32::MIN;
    let quota = Quota::with_period(spacing(rate))
        .unwrap_or_else(|| Quota::per_second(one))
        .allow_burst(one);
    Arc::new(RateLimiter::direct(quota))
}

impl Pacer {
    /// `defaults` are the documented limits; `overrides` come from the job file and
    /// win over them, and an override keyed [`TOTAL`] replaces `global`. Endpoints
    /// in neither are paced by the global limiter alone.
    pub fn new(global: Rate, defaults: &[(&str, Rate)], overrides: &[(String, Rate)]) -> Pacer {
        let mut rates: HashMap<String, Rate> =
            defaults.iter().map(|(e, r)| (e.to_string(), *r)).collect();
        rates.extend(overrides.iter().cloned());
        let global = rates.remove(TOTAL).unwrap_or(global);
        Pacer {
            global: strict(global),
            endpoints: rates.into_iter().map(|(e, r)| (e, strict(r))).collect(),
        }
    }

    /// Waits until both the endpoint's and the vendor's limiter allow one call.
    pub async fn ready(&self, endpoint: &str) {
        if let Some(limiter) = self.endpoints.get(endpoint) {
            limiter.until_ready().await;
        }
        self.global.until_ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn spacing_leaves_a_margin_in_every_window() {
        // 10/s: 30 ms of slack per second beats 2 %.
        assert_eq!(spacing(Rate::per_second(10)), Duration::from_millis(103));
        // 60/min: 2 % of a minute (1.2 s) is more than 30 ms.
        assert_eq!(spacing(Rate::per_minute(60)), Duration::from_millis(1020));
        // Eleven calls at 10/s never fit in one second, even 30 ms late.
        assert!(spacing(Rate::per_second(10)) * 10 >= Duration::from_millis(1030));
    }

    #[tokio::test]
    async fn spaces_calls_at_the_endpoint_rate_and_override_wins() {
        let pacer = Pacer::new(
            Rate::per_second(1000),
            &[("slow", Rate::per_second(1))],
            &[("slow".to_string(), Rate::per_second(20))],
        );
        let start = Instant::now();
        for _ in 0..5 {
            pacer.ready("slow").await;
        }
        // 5 calls at 20/s, burst 1: at least 4 intervals of 50 ms.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[tokio::test]
    async fn total_override_sets_the_vendor_wide_pace() {
        // Unlimited endpoints, a slow default global pace, overridden by `total`.
        let pacer = Pacer::new(
            Rate::per_second(1),
            &[],
            &[(TOTAL.to_string(), Rate::per_second(50))],
        );
        let start = Instant::now();
        for endpoint in ["a", "b", "c", "d", "e"] {
            pacer.ready(endpoint).await;
        }
        // 5 calls at 50/s: about 80 ms; at the default 1/s it would take 4 s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(75), "{took:?}");
        assert!(took < Duration::from_secs(1), "{took:?}");
        assert!(!pacer.endpoints.contains_key(TOTAL));

        // And it slows calls down when it is below the default.
        let pacer = Pacer::new(
            Rate::per_second(1000),
            &[],
            &[(TOTAL.to_string(), Rate::per_second(20))],
        );
        let start = Instant::now();
        for _ in 0..5 {
            pacer.ready("x").await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
    }
}
