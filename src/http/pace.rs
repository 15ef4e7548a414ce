//! Pacing: a strict limiter per endpoint, chained with a global one per vendor.
//!
//! Vendors that count per minute still ban bursts, so every limiter allows a burst
//! of one: calls are spaced evenly at the allowed rate instead of sent in a clump.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::job::Rate;

enum Limiter {
    Strict(Arc<DefaultDirectRateLimiter>),
    Slots(Slots),
}

impl Limiter {
    async fn ready(&self) {
        match self {
            Limiter::Strict(l) => l.until_ready().await,
            Limiter::Slots(s) => s.ready().await,
        }
    }
}

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
    Limiter::Strict(Arc::new(RateLimiter::direct(quota)))
}

/// Evenly spaced slots handed out in call order. The strict limiter spaces each
/// call from the moment the previous one actually went, so every late wake-up
/// (the timer has millisecond steps; a busy machine adds more) is lost for
/// good: at 200/s that is 4–15 % of the rate. Here the next slot is one
/// interval after the previous slot, not after the late call, and a call whose
/// slot passed at most `catch_up` ago still takes it.
///
/// A call leaves at most `late` after its slot (woken later, it takes a new
/// slot), and slots are at least one interval apart, so any period of the
/// quota holds at most (period + late) / interval + 1 calls: within the quota
/// while `late` is at most the safety margin's share of the period. Half of it
/// is used, the other half is left for jitter on the way. `catch_up` is at most
/// half an interval, so calls are never closer than half an interval unless
/// the process stalled.
struct Slots {
    interval: Duration,
    catch_up: Duration,
    late: Duration,
    next: Mutex<Option<Instant>>,
}

impl Slots {
    fn new(rate: Rate) -> Slots {
        let interval = rate.interval().mul_f64(SAFETY_MARGIN);
        let late = rate.per.mul_f64((SAFETY_MARGIN - 1.0) / 2.0);
        Slots {
            interval,
            catch_up: late.min(interval / 2),
            late,
            next: Mutex::new(None),
        }
    }

    async fn ready(&self) {
        loop {
            let (slot, now) = {
                let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                // Once the slot is further behind, the pacer was idle: start
                // from now rather than catch up with a burst.
                let slot = match *next {
                    Some(n) if n + self.catch_up >= now => n,
                    _ => now,
                };
                *next = Some(slot + self.interval);
                (slot, now)
            };
            if slot <= now {
                return;
            }
            tokio::time::sleep_until(slot.into()).await;
            // Woken much too late (a stalled process): going now could put this
            // call right next to the ones of the following slots.
            if Instant::now() <= slot + self.late {
                return;
            }
        }
    }
}

impl Pacer {
    /// `defaults` are the documented limits; `overrides` come from the job file and
    /// win over them, and an override keyed [`TOTAL`] replaces `global`. Endpoints
    /// in neither are paced by the global limiter alone.
    pub fn new(global: Rate, defaults: &[(&str, Rate)], overrides: &[(String, Rate)]) -> Pacer {
        Pacer::build(global, defaults, overrides, strict)
    }

    /// Like [`Pacer::new`], with slots handed out in call order (see `Slots`):
    /// the full rate, for a client that keeps several calls per endpoint waiting.
    pub fn slotted(global: Rate, defaults: &[(&str, Rate)], overrides: &[(String, Rate)]) -> Pacer {
        Pacer::build(global, defaults, overrides, |r| {
            Limiter::Slots(Slots::new(r))
        })
    }

    fn build(
        global: Rate,
        defaults: &[(&str, Rate)],
        overrides: &[(String, Rate)],
        limiter: impl Fn(Rate) -> Limiter,
    ) -> Pacer {
        let mut rates: HashMap<String, Rate> =
            defaults.iter().map(|(e, r)| (e.to_string(), *r)).collect();
        rates.extend(overrides.iter().cloned());
        let global = rates.remove(TOTAL).unwrap_or(global);
        Pacer {
            global: limiter(global),
            endpoints: rates.into_iter().map(|(e, r)| (e, limiter(r))).collect(),
        }
    }

    /// Waits until both the endpoint's and the vendor's limiter allow one call.
    pub async fn ready(&self, endpoint: &str) {
        if let Some(limiter) = self.endpoints.get(endpoint) {
            limiter.ready().await;
        }
        self.global.ready().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn slots_keep_the_full_rate_for_many_waiters_without_bursts() {
        // 200/s: interval 5.1 ms, catch-up 2.55 ms, lateness 10 ms.
        let pacer = Arc::new(Pacer::slotted(
            Rate::per_second(100_000),
            &[("x", Rate::per_second(200))],
            &[],
        ));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (pacer, sent) = (pacer.clone(), sent.clone());
                tokio::spawn(async move {
                    for _ in 0..15 {
                        pacer.ready("x").await;
                        sent.lock().unwrap().push(Instant::now());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let took = start.elapsed();
        let mut sent = sent.lock().unwrap().clone();
        sent.sort();
        assert_eq!(sent.len(), 240);
        // 239 intervals of 5.1 ms = 1.219 s; late wake-ups are not added up
        // (the strict limiter takes 4 % longer even on an idle machine).
        let ideal = Duration::from_micros(5100) * 239;
        assert!(took >= ideal, "{took:?}");
        assert!(took < ideal.mul_f64(1.02), "{took:?} vs {ideal:?}");
        // Never more than the quota in any second, never two calls at once.
        for (i, t) in sent.iter().enumerate() {
            let within = sent[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(within <= 200, "{within} calls in 1 s");
        }
        let closest = sent.windows(2).map(|w| w[1] - w[0]).min().unwrap();
        assert!(closest >= Duration::from_micros(2550), "{closest:?}");

        // After an idle spell it starts afresh: no catching up with a burst.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let before = Instant::now();
        pacer.ready("x").await;
        pacer.ready("x").await;
        assert!(before.elapsed() >= Duration::from_micros(5100));

        // A stalled process does not send the slots it slept through at once.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(async move {
                    pacer.ready("x").await;
                    Instant::now()
                })
            })
            .collect();
        // Each waiter takes its slot, then the runtime's only thread stalls.
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(30));
        let mut after = Vec::new();
        for w in waiting {
            after.push(w.await.unwrap());
        }
        after.sort();
        assert!(
            after[2] - after[1] >= Duration::from_micros(5100),
            "{after:?}"
        );
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
