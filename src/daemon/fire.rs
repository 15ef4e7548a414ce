//! One run of a scheduled job: the run, its summary in the log, its alert.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::tick::Scheduled;
use crate::clock::Clock;
use crate::outcome::{ended_at, exit_status, summary_text};
use crate::pipeline::{Mode, Options, Syncer};

/// Starts one run of `s`'s job.
pub(super) fn start_run(
    jobs: Arc<Vec<Scheduled>>,
    i: usize,
    syncer: Arc<Syncer>,
    clock: &Clock,
) -> JoinHandle<()> {
    let now = clock.now();
    tokio::spawn(async move {
        let s = &jobs[i];
        let opts = Options {
            mode: Mode::Run,
            months: Vec::new(),
            employees: Vec::new(),
            dry_run: false,
            now,
        };
        let started = std::time::Instant::now();
        let report = syncer
            .run_job(&s.job.job, s.job.mapping.clone(), &opts)
            .await;
        // The daemon's clock when the run ended: the alert's time and its
        // failure-streak arithmetic follow it.
        let ended = ended_at(now, started);
        let code = exit_status(std::slice::from_ref(&report));
        for line in summary_text(std::slice::from_ref(&report)).lines() {
            tracing::info!(job = %s.job.job.name, exit = code, "{line}");
        }
        // Once per failure streak, as for cron runs: the streak is in SQLite.
        crate::notify::after_run(
            &syncer.http,
            &syncer.store,
            &s.job.job,
            &report,
            code,
            ended,
        )
        .await;
    })
}
