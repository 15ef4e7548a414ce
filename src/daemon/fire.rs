//! One run of a job, scheduled or requested through the API: the run, its
//! summary in the log, its alert, and word to the daemon's loop when it ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::repull::{settle_repull, Repull};
use super::tick::Scheduled;
use crate::outcome::{ended_at, exit_status, summary_text};
use crate::pipeline::{Mode, Options, Prune, Syncer};
use crate::server::Metrics;
use crate::store::{RequestRow, RequestState};

/// How long a requested run waits before trying again when another process
/// (a `run` from a shell) holds the job's lease.
pub(super) const BUSY_RETRY: Duration = Duration::from_secs(5);

/// Why a run starts.
pub(super) enum Reason {
    Schedule,
    /// A run requested through the API (its row in `run_requests`).
    Request(RequestRow),
    /// Employee-months vendor events marked (daemon/repull.rs).
    Repull(Repull),
}

impl Reason {
    fn options(&self, now: chrono::DateTime<chrono::Utc>) -> Options {
        match self {
            Reason::Schedule => Options {
                mode: Mode::Run,
                months: Vec::new(),
                employees: Vec::new(),
                dry_run: false,
                now,
            },
            Reason::Request(r) => Options {
                mode: Mode::Rerun {
                    force: r.request.force,
                    prune: if r.request.prune {
                        Prune::Guarded
                    } else {
                        Prune::Keep
                    },
                },
                // Checked when it was queued.
                months: r.request.month.parse().into_iter().collect(),
                employees: r.request.employees.clone(),
                dry_run: false,
                now,
            },
            Reason::Repull(r) => Options {
                mode: Mode::Rerun {
                    force: false,
                    prune: Prune::Keep,
                },
                months: vec![r.month],
                employees: r.employees.clone(),
                dry_run: false,
                now,
            },
        }
    }
}

/// What a run is started with.
pub(super) struct Started {
    pub(super) syncer: Arc<Syncer>,
    pub(super) now: chrono::DateTime<chrono::Utc>,
    /// Hears the job's name when the run is over.
    pub(super) ended: mpsc::UnboundedSender<String>,
    pub(super) metrics: Arc<Metrics>,
}

/// Starts one run of `jobs[i]`.
pub(super) fn start_run(
    jobs: Arc<Vec<Scheduled>>,
    i: usize,
    reason: Reason,
    with: Started,
) -> JoinHandle<()> {
    let Started {
        syncer,
        now,
        ended,
        metrics,
    } = with;
    tokio::spawn(async move {
        let s = &jobs[i];
        let opts = reason.options(now);
        let started = std::time::Instant::now();
        let report = syncer
            .run_job(&s.job.job, s.job.mapping.clone(), &opts)
            .await;
        metrics.record_run(&report);
        if let Reason::Request(r) = &reason {
            let end = if report.busy.is_some() {
                RequestEnd::Busy
            } else if report.stopped_by_shutdown {
                RequestEnd::Interrupted
            } else {
                RequestEnd::Done
            };
            settle_request(&syncer, r, end, report.run_id).await;
        }
        if let Reason::Repull(r) = &reason {
            settle_repull(&syncer, &s.job.job.name, r, &report).await;
        }
        // The daemon's clock when the run ended: the alert's time and its
        // failure-streak arithmetic follow it.
        let ended_time = ended_at(now, started);
        let code = exit_status(std::slice::from_ref(&report));
        for line in summary_text(std::slice::from_ref(&report)).lines() {
            tracing::info!(job = %s.job.job.name, exit = code, "{line}");
        }
        // Once per failure streak, as for cron runs: the streak is in SQLite.
        // A re-pull of a few employees that went well says nothing of the
        // job's own runs: it neither ends a streak nor sends "recovered".
        let repulled_fine = matches!(reason, Reason::Repull(_)) && code == crate::outcome::EXIT_OK;
        if !repulled_fine {
            crate::notify::after_run(
                &syncer.http,
                &syncer.store,
                &s.job.job,
                &report,
                code,
                ended_time,
            )
            .await;
        }
        let _ = ended.send(s.job.job.name.clone());
    })
}

/// How a requested run came to an end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RequestEnd {
    Done,
    /// Another process held the job's lease: back to the queue.
    Busy,
    /// A shutdown stopped it part-way (README: "interrupted by a daemon stop").
    Interrupted,
}

/// A requested run's end in `run_requests`. One that found the lease held
/// by another process goes back to the queue and waits a little, so that the
/// loop does not try again at once.
async fn settle_request(syncer: &Syncer, r: &RequestRow, end: RequestEnd, run_id: Option<i64>) {
    let id = r.id;
    let busy = end == RequestEnd::Busy;
    let state = match end {
        RequestEnd::Done => RequestState::Done,
        RequestEnd::Busy => RequestState::Queued,
        RequestEnd::Interrupted => RequestState::Interrupted,
    };
    if let Err(e) = syncer
        .store
        .call(move |s| s.end_request(id, state, run_id))
        .await
    {
        tracing::error!(run_request = id, error = %e, "could not record the end of a requested run");
    }
    if busy {
        tracing::info!(job = %r.job, run_request = id, "another process runs this job; the requested run waits for it");
        tokio::select! {
            () = tokio::time::sleep(BUSY_RETRY) => {}
            () = syncer.shutdown.wait() => {}
        }
    }
}
