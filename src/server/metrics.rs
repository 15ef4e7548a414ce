//! `/metrics`: the Prometheus text format, through the Prometheus project's
//! `prometheus-client`. Counters follow the runs this daemon made; gauges are
//! read from SQLite at each scrape, so they also see runs from cron or a shell.

use std::sync::atomic::AtomicU64;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::JobInfo;
use crate::pipeline::JobReport;
use crate::store::{Store, StoreError};

/// Label sets: `[("sync_job", …), …]`. Not `job`: Prometheus gives each
/// scrape target a `job` label of its own, and would rename ours.
type Labels = Vec<(&'static str, String)>;

pub use prometheus_text::CONTENT_TYPE;

pub struct Metrics {
    registry: Registry,
    runs: Family<Labels, Counter>,
    records: Family<Labels, Counter>,
    calls: Family<Labels, Counter>,
    throttled: Family<Labels, Counter>,
    metered_spent: Family<Labels, Gauge>,
    metered_budget: Family<Labels, Gauge>,
    last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    queued: Family<Labels, Gauge>,
    events_received: Family<Labels, Gauge>,
    event_connection: Family<Labels, Gauge>,
    waiting: Family<Labels, Gauge>,
    /// One scrape at a time sets the gauges and encodes them.
    scrape: std::sync::Mutex<()>,
}

/// What SQLite says of one job's events at a scrape.
struct EventFacts {
    name: String,
    link: Option<String>,
    counts: Vec<crate::store::EventCount>,
    waiting: u64,
}

/// What a run came to, as the `outcome` label says it.
fn outcome(report: &JobReport) -> &'static str {
    if report.busy.is_some() {
        "busy"
    } else if report.stopped_by_shutdown {
        "stopped"
    } else if report.ok() {
        "ok"
    } else if report.error.is_some() {
        "failed"
    } else {
        "partial"
    }
}

fn job(name: &str) -> Labels {
    vec![("sync_job", name.to_string())]
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("attendsync");
        let m = Metrics {
            registry: Registry::default(),
            runs: Family::default(),
            records: Family::default(),
            calls: Family::default(),
            throttled: Family::default(),
            metered_spent: Family::default(),
            metered_budget: Family::default(),
            last_success: Family::default(),
            queued: Family::default(),
            events_received: Family::default(),
            event_connection: Family::default(),
            waiting: Family::default(),
            scrape: std::sync::Mutex::new(()),
        };
        registry.register(
            "runs",
            "Runs by job and outcome (ok, partial, failed, busy, stopped)",
            m.runs.clone(),
        );
        registry.register(
            "records",
            "Records by job and kind (created, updated, unchanged, failed)",
            m.records.clone(),
        );
        registry.register(
            "vendor_calls",
            "Vendor calls by job and endpoint",
            m.calls.clone(),
        );
        registry.register(
            "vendor_throttled",
            "Throttling answers by job and endpoint",
            m.throttled.clone(),
        );
        registry.register(
            "metered_calls_spent",
            "Metered calls spent this quota month (Asia/Shanghai)",
            m.metered_spent.clone(),
        );
        registry.register(
            "metered_calls_budget",
            "The job's monthly budget of metered calls",
            m.metered_budget.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When the job's last successful run of its default months started (Unix seconds)",
            m.last_success.clone(),
        );
        registry.register(
            "queued_runs",
            "Runs requested through the API and not started yet",
            m.queued.clone(),
        );
        registry.register(
            "events_received",
            "Vendor events received by job and type; duplicates and redeliveries as \"(duplicate)\"",
            m.events_received.clone(),
        );
        registry.register(
            "event_connection",
            "1 for the state of the job's event connection (connected, connecting, retrying, listening, stopped)",
            m.event_connection.clone(),
        );
        registry.register(
            "employee_months_waiting",
            "Employee-months that events marked, waiting for a re-pull",
            m.waiting.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a run this daemon made.
    pub fn record_run(&self, report: &JobReport) {
        let name = &report.job;
        let mut labels = job(name);
        labels.push(("outcome", outcome(report).into()));
        self.runs.get_or_create(&labels).inc();
        let mut totals = [0u64; 4];
        for m in &report.months {
            let c = &m.counts;
            for (t, n) in totals
                .iter_mut()
                .zip([c.created, c.updated, c.unchanged, c.failed])
            {
                *t += n;
            }
        }
        for (kind, n) in ["created", "updated", "unchanged", "failed"]
            .into_iter()
            .zip(totals)
        {
            let mut labels = job(name);
            labels.push(("kind", kind.into()));
            self.records.get_or_create(&labels).inc_by(n);
        }
        for (endpoint, stats) in &report.calls {
            let mut labels = job(name);
            labels.push(("endpoint", endpoint.clone()));
            self.calls.get_or_create(&labels).inc_by(stats.calls);
            self.throttled
                .get_or_create(&labels)
                .inc_by(stats.throttled);
        }
    }

    /// The text of a scrape: the gauges read from SQLite first.
    pub async fn render(
        &self,
        store: &Store,
        jobs: &[JobInfo],
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        let period = crate::budget::quota_period(now);
        let event_jobs: Vec<String> = jobs
            .iter()
            .filter(|j| j.events)
            .map(|j| j.name.clone())
            .collect();
        let (facts, events) = store
            .call(move |s| {
                let mut out = Vec::new();
                for name in &names {
                    out.push((
                        s.last_success(name)?,
                        s.queued_requests(name)?,
                        s.metered_spent(name, period)?,
                    ));
                }
                let mut events = Vec::new();
                for name in event_jobs {
                    let link = s.event_link(&name)?.map(|l| l.state);
                    let (counts, waiting) = (s.event_counts(&name)?, s.dirty_count(&name)?);
                    events.push(EventFacts {
                        name,
                        link,
                        counts,
                        waiting,
                    });
                }
                Ok((out, events))
            })
            .await?;
        let _scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        // The gauges are of the jobs the daemon runs now: a job a reload
        // removed leaves them (its frozen last success would page someone).
        self.queued.clear();
        self.last_success.clear();
        self.metered_budget.clear();
        self.metered_spent.clear();
        for (j, (last, queued, spent)) in jobs.iter().zip(facts) {
            let labels = job(&j.name);
            self.queued.get_or_create(&labels).set(queued as i64);
            if let Some(last) = last {
                let seconds = last.timestamp_millis() as f64 / 1000.0;
                self.last_success.get_or_create(&labels).set(seconds);
            }
            if let Some(budget) = j.budget {
                self.metered_budget
                    .get_or_create(&labels)
                    .set(budget as i64);
                self.metered_spent.get_or_create(&labels).set(spent as i64);
            }
        }
        self.set_event_gauges(events);
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut text, &self.registry);
        Ok(text)
    }

    fn set_event_gauges(&self, events: Vec<EventFacts>) {
        self.events_received.clear();
        self.event_connection.clear();
        self.waiting.clear();
        for e in events {
            let labels = job(&e.name);
            self.waiting.get_or_create(&labels).set(e.waiting as i64);
            if let Some(state) = e.link {
                let mut l = labels.clone();
                l.push(("state", state));
                self.event_connection.get_or_create(&l).set(1);
            }
            for c in e.counts {
                let mut l = labels.clone();
                l.push(("kind", c.kind));
                self.events_received
                    .get_or_create(&l)
                    .set(c.received as i64);
            }
        }
    }
}
