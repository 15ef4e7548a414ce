//! Pacing: a strict limiter per endpoint, chained with a global one per vendor.
//!
//! Vendors that count per minute still ban bursts, so every limiter allows a burst
//! of one: calls are spaced evenly at the allowed rate instead of sent in a clump.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

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

fn strict(rate: Rate) -> Limiter {
    let one = NonZeroU32::MIN;
    let quota = Quota::with_period(rate.interval().mul_f64(SAFETY_MARGIN))
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
    use std::time::{Duration, Instant};

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
