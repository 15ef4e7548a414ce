//! Tools shared by the simulators: sliding-window quotas per endpoint, injected
//! throttling, added latency and the call log.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The endpoint name that, in a simulator's `limits`, means "all endpoints
/// together" (e.g. Jiandaoyun's global 50/s).
pub const GLOBAL_LIMIT: &str = "*";

/// What a simulator answered to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The request is still being processed (e.g. sleeping the added latency).
    Pending,
    /// Success: WeCom `errcode` 0, Jiandaoyun HTTP 2xx.
    Ok,
    /// A vendor error code in the body: WeCom `errcode` (HTTP 200), Jiandaoyun
    /// `code` (HTTP 400).
    Code { http: u16, code: i64 },
    /// A non-2xx answer without a vendor code (Jiandaoyun 429, 502).
    Http(u16),
    /// The connection was closed without any answer.
    Dropped,
}

impl Outcome {
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// The vendor error code, if the answer carried one.
    pub fn code(&self) -> Option<i64> {
        match self {
            Outcome::Code { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status sent, if any answer was sent.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Outcome::Ok => Some(200),
            Outcome::Code { http, .. } => Some(*http),
            Outcome::Http(status) => Some(*status),
            Outcome::Pending | Outcome::Dropped => None,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// The path after the vendor prefix: `checkin/getcheckin_monthdata`, `data/batch_create`.
    pub endpoint: String,
    /// When the request arrived (before any added latency).
    pub at: Instant,
    pub outcome: Outcome,
}

/// The most calls to `endpoint` that arrived within any span of `window`: how
/// tests check that a client kept to a quota, or how many calls it had under way.
pub fn most_calls_within(log: &[CallRecord], endpoint: &str, window: Duration) -> usize {
    let mut times: Vec<Instant> = log
        .iter()
        .filter(|c| c.endpoint == endpoint)
        .map(|c| c.at)
        .collect();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Whether a request may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    /// Over a quota: `global` tells whether it was the all-endpoints one.
    OverQuota {
        global: bool,
    },
    /// Under quota, but a throttling answer was injected.
    Injected,
}

#[derive(Debug)]
struct Window {
    calls: u32,
    period: Duration,
    hits: VecDeque<Instant>,
}

impl Window {
    fn prune(&mut self, now: Instant) {
        while let Some(&first) = self.hits.front() {
            if now.saturating_duration_since(first) >= self.period {
                self.hits.pop_front();
            } else {
                break;
            }
        }
    }

    fn full(&mut self, now: Instant) -> bool {
        self.prune(now);
        self.hits.len() >= self.calls as usize
    }
}

/// Quotas, fault injection and the call log of one simulator. Lives inside the
/// simulator's mutex.
#[derive(Debug)]
pub(crate) struct Gate {
    windows: HashMap<String, Window>,
    rng: StdRng,
    throttle_ratio: f64,
    latency: Duration,
    /// Up to this much more latency, drawn afresh for each request.
    jitter: Duration,
    log: Vec<CallRecord>,
    violations: usize,
    injected: usize,
}

impl Gate {
    pub(crate) fn new(
        limits: &[(String, u32, Duration)],
        throttle_ratio: f64,
        latency: Duration,
        seed: u64,
    ) -> Gate {
        let windows = limits
            .iter()
            .map(|(endpoint, calls, period)| {
                let window = Window {
                    calls: *calls,
                    period: *period,
                    hits: VecDeque::new(),
                };
                (endpoint.trim_matches('/').to_owned(), window)
            })
            .collect();
        Gate {
            windows,
            rng: StdRng::seed_from_u64(seed),
            throttle_ratio,
            latency,
            jitter: Duration::ZERO,
            log: Vec::new(),
            violations: 0,
            injected: 0,
        }
    }

    /// Logs the arrival of a request; returns its index in the log, for
    /// [`Gate::admit`] and [`Gate::finish`].
    #[cfg(test)]
    pub(crate) fn arrive(&mut self, endpoint: &str) -> usize {
        self.arrive_at(endpoint, Instant::now())
    }

    /// Logs a request that arrived at `at`: simulators stamp it before waiting for
    /// their state lock, so a slow request being served does not make the ones
    /// queued behind it look bunched together.
    pub(crate) fn arrive_at(&mut self, endpoint: &str, at: Instant) -> usize {
        let index = self.log.len();
        self.log.push(CallRecord {
            endpoint: endpoint.to_owned(),
            at,
            outcome: Outcome::Pending,
        });
        index
    }

    /// Decides whether the logged request may be served, at its arrival time.
    /// Only admitted requests count against the quotas.
    pub(crate) fn admit(&mut self, index: usize) -> Admission {
        let Some(record) = self.log.get(index) else {
            return Admission::Admitted;
        };
        let (endpoint, now) = (record.endpoint.clone(), record.at);
        let endpoint_full = self
            .windows
            .get_mut(&endpoint)
            .is_some_and(|window| window.full(now));
        let global_full = self
            .windows
            .get_mut(GLOBAL_LIMIT)
            .is_some_and(|window| window.full(now));
        if endpoint_full || global_full {
            self.violations += 1;
            Admission::OverQuota {
                global: global_full && !endpoint_full,
            }
        } else if self.chance(self.throttle_ratio) {
            self.injected += 1;
            Admission::Injected
        } else {
            for key in [endpoint.as_str(), GLOBAL_LIMIT] {
                if let Some(window) = self.windows.get_mut(key) {
                    window.hits.push_back(now);
                }
            }
            Admission::Admitted
        }
    }

    pub(crate) fn finish(&mut self, index: usize, outcome: Outcome) {
        if let Some(record) = self.log.get_mut(index) {
            record.outcome = outcome;
        }
    }

    /// A seeded coin flip. Draws from the RNG only when `p` is strictly between
    /// 0 and 1, so a disabled fault does not shift the pattern of the others.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        if p.is_nan() || p <= 0.0 {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.rng.random_bool(p)
        }
    }

    pub(crate) fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// The latency to add to one request: the set latency, plus up to the
    /// set jitter, uniformly drawn (no draw without jitter, so that seeded
    /// fault injection stays as it was).
    pub(crate) fn latency(&mut self) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let extra = self.rng.random_range(0..=self.jitter.as_micros() as u64);
        self.latency + Duration::from_micros(extra)
    }

    pub(crate) fn set_latency(&mut self, latency: Duration) {
        self.latency = latency;
    }

    pub(crate) fn set_jitter(&mut self, jitter: Duration) {
        self.jitter = jitter;
    }

    pub(crate) fn set_throttle_ratio(&mut self, ratio: f64) {
        self.throttle_ratio = ratio;
    }

    pub(crate) fn calls(&self, endpoint: &str) -> usize {
        let endpoint = endpoint.trim_matches('/');
        self.log.iter().filter(|r| r.endpoint == endpoint).count()
    }

    pub(crate) fn calls_where(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.log.iter().filter(|r| pred(&r.endpoint)).count()
    }

    /// The log in arrival order.
    pub(crate) fn call_log(&self) -> Vec<CallRecord> {
        self.log.clone()
    }

    pub(crate) fn quota_violations(&self) -> usize {
        self.violations
    }

    pub(crate) fn injected_throttles(&self) -> usize {
        self.injected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(g: &mut Gate, endpoint: &str) -> Admission {
        let i = g.arrive(endpoint);
        g.admit(i)
    }

    fn gate(limits: &[(&str, u32, u64)], ratio: f64) -> Gate {
        let limits: Vec<_> = limits
            .iter()
            .map(|(e, n, ms)| ((*e).to_owned(), *n, Duration::from_millis(*ms)))
            .collect();
        Gate::new(&limits, ratio, Duration::ZERO, 7)
    }

    #[test]
    fn sliding_window_counts_only_admitted_calls() {
        let mut g = gate(&[("a", 2, 60_000)], 0.0);
        assert_eq!(call(&mut g, "a"), Admission::Admitted);
        assert_eq!(call(&mut g, "a"), Admission::Admitted);
        assert_eq!(call(&mut g, "a"), Admission::OverQuota { global: false });
        assert_eq!(call(&mut g, "a"), Admission::OverQuota { global: false });
        // Other endpoints are not limited.
        assert_eq!(call(&mut g, "b"), Admission::Admitted);
        assert_eq!(g.quota_violations(), 2);
        assert_eq!(g.calls("a"), 4);
        assert_eq!(g.calls("/b"), 1);
    }

    #[test]
    fn window_slides() {
        let mut g = gate(&[("a", 1, 30)], 0.0);
        assert_eq!(call(&mut g, "a"), Admission::Admitted);
        assert_eq!(call(&mut g, "a"), Admission::OverQuota { global: false });
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(call(&mut g, "a"), Admission::Admitted);
    }

    #[test]
    fn global_quota_spans_endpoints() {
        let mut g = gate(&[("*", 2, 60_000), ("a", 10, 60_000)], 0.0);
        assert_eq!(call(&mut g, "a"), Admission::Admitted);
        assert_eq!(call(&mut g, "b"), Admission::Admitted);
        assert_eq!(call(&mut g, "a"), Admission::OverQuota { global: true });
    }

    #[test]
    fn jitter_draws_each_request_latency_within_its_bound() {
        let ms = Duration::from_millis;
        let mut g = Gate::new(&[], 0.0, ms(20), 3);
        assert_eq!(g.latency(), ms(20), "none drawn without jitter");
        g.set_jitter(ms(40));
        let drawn: Vec<Duration> = (0..200).map(|_| g.latency()).collect();
        assert!(
            drawn.iter().all(|d| *d >= ms(20) && *d <= ms(60)),
            "{drawn:?}"
        );
        let spread = drawn.iter().max().copied().unwrap_or_default()
            - drawn.iter().min().copied().unwrap_or_default();
        assert!(spread >= ms(30), "{spread:?}");
    }

    #[test]
    fn injected_throttles_are_seeded_and_counted_apart() {
        let pattern = |seed| {
            let mut g = Gate::new(&[], 0.5, Duration::ZERO, seed);
            let v: Vec<_> = (0..64).map(|_| call(&mut g, "x")).collect();
            (v, g.injected_throttles(), g.quota_violations())
        };
        let (a, injected, violations) = pattern(1);
        assert_eq!(a, pattern(1).0);
        assert!(injected > 10 && injected < 54, "{injected}");
        assert_eq!(violations, 0);
    }

    #[test]
    fn finish_records_outcome() {
        let mut g = gate(&[], 0.0);
        let i = g.arrive("x");
        assert_eq!(g.call_log()[0].outcome, Outcome::Pending);
        g.finish(
            i,
            Outcome::Code {
                http: 200,
                code: 45009,
            },
        );
        assert_eq!(g.call_log()[0].outcome.code(), Some(45009));
        assert_eq!(g.call_log()[0].outcome.http_status(), Some(200));
    }
}
