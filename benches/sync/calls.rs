//! Calls per endpoint: counts, spacing and the quota each call ran under.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use attendsync_sim::{CallRecord, GLOBAL_LIMIT};

/// One quota of a simulator: `(endpoint or "*", calls, period)`.
pub(crate) type Quota = (String, u32, Duration);

pub(crate) fn rate_text(calls: u32, period: Duration) -> String {
    if period == Duration::from_secs(60) {
        format!("{calls}/min")
    } else if period == Duration::from_secs(1) {
        format!("{calls}/s")
    } else {
        format!("{calls}/{}s", period.as_secs_f64())
    }
}

/// Calls per endpoint in a slice of a call log.
pub(crate) fn count(log: &[CallRecord]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in log {
        *out.entry(r.endpoint.clone()).or_insert(0) += 1;
    }
    out
}

/// One endpoint's share of a run.
pub(crate) struct EndpointRow {
    pub(crate) vendor: &'static str,
    pub(crate) endpoint: String,
    pub(crate) calls: usize,
    pub(crate) quota: Option<(u32, Duration)>,
    /// calls ÷ allowed rate, seconds.
    pub(crate) bound: Option<f64>,
    /// First and last arrival, seconds after the child was started.
    pub(crate) first: f64,
    pub(crate) last: f64,
    /// The smallest gap between two arrivals, milliseconds.
    pub(crate) min_gap_ms: Option<f64>,
    /// For a quota of `n` calls per period: the shortest span of `n + 1`
    /// consecutive arrivals, seconds (below the period means a window held one
    /// call too many, whether or not the simulator refused it).
    pub(crate) tightest: Option<f64>,
}

/// Arrival-time figures of one endpoint: (smallest gap in ms, tightest span of
/// `calls + 1` arrivals in s).
pub(crate) fn spacing(times: &[f64], quota: Option<(u32, Duration)>) -> (Option<f64>, Option<f64>) {
    let min_gap = times
        .windows(2)
        .map(|w| (w[1] - w[0]) * 1000.0)
        .fold(None, |a: Option<f64>, g| Some(a.map_or(g, |a| a.min(g))));
    let tightest = quota.and_then(|(n, _)| {
        times
            .windows(n as usize + 1)
            .map(|w| w[n as usize] - w[0])
            .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.min(s))))
    });
    (min_gap, tightest)
}

/// What one simulator saw during one run.
pub(crate) struct VendorCalls {
    pub(crate) vendor: &'static str,
    pub(crate) log: Vec<CallRecord>,
    pub(crate) quotas: Vec<Quota>,
}

impl VendorCalls {
    pub(crate) fn rows(&self, start: Instant) -> Vec<EndpointRow> {
        let since = |t: Instant| t.saturating_duration_since(start).as_secs_f64();
        let quota_of = |e: &str| {
            self.quotas
                .iter()
                .find(|(q, _, _)| q == e)
                .map(|(_, c, p)| (*c, *p))
        };
        let bound = |calls: usize, q: Option<(u32, Duration)>| {
            q.map(|(c, p)| calls as f64 * p.as_secs_f64() / f64::from(c))
        };
        let mut rows: Vec<EndpointRow> = count(&self.log)
            .into_iter()
            .map(|(endpoint, calls)| {
                let times: Vec<f64> = self
                    .log
                    .iter()
                    .filter(|r| r.endpoint == endpoint)
                    .map(|r| since(r.at))
                    .collect();
                let quota = quota_of(&endpoint);
                let (min_gap_ms, tightest) = spacing(&times, quota);
                EndpointRow {
                    min_gap_ms,
                    tightest,
                    vendor: self.vendor,
                    calls,
                    quota,
                    bound: bound(calls, quota),
                    first: times.first().copied().unwrap_or(0.0),
                    last: times.last().copied().unwrap_or(0.0),
                    endpoint,
                }
            })
            .collect();
        if let (Some(q), false) = (quota_of(GLOBAL_LIMIT), self.log.is_empty()) {
            let times: Vec<f64> = self.log.iter().map(|r| since(r.at)).collect();
            let (min_gap_ms, tightest) = spacing(&times, Some(q));
            rows.push(EndpointRow {
                min_gap_ms,
                tightest,
                vendor: self.vendor,
                endpoint: "* (all endpoints)".into(),
                calls: self.log.len(),
                quota: Some(q),
                bound: bound(self.log.len(), Some(q)),
                first: self.log.first().map_or(0.0, |r| since(r.at)),
                last: self.log.last().map_or(0.0, |r| since(r.at)),
            });
        }
        rows
    }
}
