//! Re-pulls on change (README "Re-pulls on change"): a ticker per job with
//! `[events]` looks for employee-months whose last event is `delay` old, and
//! the loop starts a run restricted to them — the `rerun --employee` run, with
//! the job's pacing, budget, lease, exactly-once writing and alerts. Their
//! marks go only when that run wrote or found unchanged every record.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::tick::{Fire, FireKind, Scheduled};
use crate::config::job::Job;
use crate::month::Month;
use crate::pipeline::{JobReport, Syncer};

/// The most employees one re-pull takes (as `rerun --employee`); the rest
/// follow in the next.
pub(super) const MAX_REPULL_EMPLOYEES: usize = 1000;

/// One re-pull: some employees of one month, and when it started (an event
/// after that keeps its mark).
#[derive(Debug, Clone)]
pub(super) struct Repull {
    pub(super) month: Month,
    pub(super) employees: Vec<String>,
    pub(super) started: DateTime<Utc>,
}

/// How often a job looks for due marks: often enough that a re-pull starts
/// soon after its `delay`, never busier than once a second.
fn tick_of(delay: Duration) -> Duration {
    (delay / 4).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// Starts a re-pull ticker for every job with `[events]`.
pub(super) fn start_repull_tickers(
    jobs: &Arc<Vec<Scheduled>>,
    generation: u64,
    tx: &mpsc::UnboundedSender<Fire>,
) -> Vec<JoinHandle<()>> {
    let mut out = Vec::new();
    for (i, s) in jobs.iter().enumerate() {
        let Some(events) = &s.job.job.events else {
            continue;
        };
        let every = tick_of(events.delay);
        let tx = tx.clone();
        out.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let fire = Fire {
                    generation,
                    job: i,
                    kind: FireKind::Repull,
                };
                if tx.send(fire).is_err() {
                    return;
                }
            }
        }));
    }
    out
}

/// The oldest month with marks due at `now`, and up to
/// [`MAX_REPULL_EMPLOYEES`] of its employees, each marked as tried.
pub(super) async fn next_repull(
    syncer: &Syncer,
    job_config: &Job,
    delay: Duration,
    now: DateTime<Utc>,
) -> Option<Repull> {
    let job = job_config.name.as_str();
    let quiet = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
    let name = job.to_string();
    let due = syncer
        .store
        .call(move |s| s.due_dirty(&name, now, quiet))
        .await;
    let due = match due {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(%job, error = %e, "could not read the employee-months waiting for a re-pull");
            return None;
        }
    };
    let (month, mut employees) = due.into_iter().next()?;
    employees.truncate(MAX_REPULL_EMPLOYEES);
    // Noted as tried first: a listing that fails waits a `delay` too.
    let (name, tried) = (job.to_string(), employees.clone());
    if let Err(e) = syncer
        .store
        .call(move |s| s.tried_dirty(&name, month, &tried, now))
        .await
    {
        tracing::error!(%job, error = %e, "could not note a re-pull; not starting it");
        return None;
    }
    let employees = within_scope(syncer, job_config, month, employees, now).await?;
    tracing::info!(%job, %month, employees = employees.len(), "re-pulling employee-months that vendor events marked");
    Some(Repull {
        month,
        employees,
        started: now,
    })
}

/// The marked `employees` the job covers. A vendor pushes events about
/// everyone its app sees; a job with `userids` or `departments` re-pulls only
/// its own people (the others' marks are cleared, logged). `None` when the
/// departments could not be listed: the marks wait for the next try.
async fn within_scope(
    syncer: &Syncer,
    job: &Job,
    month: Month,
    employees: Vec<String>,
    now: DateTime<Utc>,
) -> Option<Vec<String>> {
    let scope = job.source.scope();
    let covered: HashSet<String> = if !scope.userids.is_empty() {
        scope.userids.iter().cloned().collect()
    } else if !scope.departments.is_empty() {
        let stats = Arc::new(crate::http::CallStats::default());
        let source = crate::source::open(&job.source, syncer.http.clone(), stats);
        let listed = match source.login().await {
            Ok(()) => source.employees().await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(list) => list.into_iter().collect(),
            Err(e) => {
                tracing::warn!(job = %job.name, error = %e, "could not list the job's departments for a re-pull; trying again after `delay`");
                return None;
            }
        }
    } else {
        return Some(employees);
    };
    let (inside, outside): (Vec<String>, Vec<String>) =
        employees.into_iter().partition(|e| covered.contains(e));
    if !outside.is_empty() {
        tracing::info!(job = %job.name, %month, employees = outside.len(),
            "events about employees outside the job's userids/departments; not re-pulled");
        let (name, started) = (job.name.clone(), now + chrono::Duration::milliseconds(1));
        let _ = syncer
            .store
            .call(move |s| s.clear_dirty(&name, month, &outside, started))
            .await;
    }
    (!inside.is_empty()).then_some(inside)
}

/// After the re-pull: its marks go when every record was written or found
/// unchanged; otherwise they wait a `delay` and are tried again.
pub(super) async fn settle_repull(syncer: &Syncer, job: &str, r: &Repull, report: &JobReport) {
    if !report.ok() || report.stopped_by_shutdown {
        tracing::warn!(%job, month = %r.month, employees = r.employees.len(),
            "the re-pull did not complete; its employee-months are tried again after `delay`");
        return;
    }
    let (name, r) = (job.to_string(), r.clone());
    let cleared = syncer
        .store
        .call(move |s| s.clear_dirty(&name, r.month, &r.employees, r.started))
        .await;
    if let Err(e) = cleared {
        tracing::error!(%job, error = %e, "could not clear re-pulled employee-months; they are pulled again");
    }
}
