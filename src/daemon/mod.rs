//! `attendsync daemon`: runs every job on its schedule, in its timezone.
//!
//! One ticker task per job (`tick.rs`) computes the job's next fire with
//! [`Schedule`](crate::schedule::Schedule) (croner, evaluated in the job's
//! timezone), sleeps until it on the daemon's [`Clock`], hands it to the loop
//! here, and computes the next one from there: every fire
//! is computed with the UTC offset of its own day, so a DST change moves nothing.
//! A job never overlaps itself (one run per job name here, and the SQLite lease
//! across processes). Missed runs are caught up once at start from the last
//! successful run in SQLite. SIGHUP reloads the job files; a file that does not
//! load keeps the old configuration.

mod fire;
mod tick;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ConfigErrors, LoadedJob};
use crate::outcome::{AppError, EXIT_OK};
use crate::pipeline::Syncer;
use crate::shutdown::Hangups;
use fire::start_run;
use tick::{catch_up, scheduled_jobs, start_tickers, Fire, Scheduled};

/// How long a shutdown waits for runs in flight before leaving them to the next run.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Reads the job files again (on SIGHUP).
pub type Reload = Box<dyn Fn() -> Result<Vec<LoadedJob>, ConfigErrors> + Send>;

/// The job files read again; `None` (logged at ERROR) keeps the old configuration.
fn reloaded(reload: &Reload) -> Option<Vec<Scheduled>> {
    match reload().and_then(scheduled_jobs) {
        Ok(jobs) => {
            tracing::info!(jobs = jobs.len(), "SIGHUP: job files reloaded");
            Some(jobs)
        }
        Err(e) => {
            let text = e.to_string();
            tracing::error!(
                "SIGHUP: the job files do not load; keeping the configuration in use:\n{}",
                text.trim_end()
            );
            None
        }
    }
}

pub async fn run(
    jobs: Vec<LoadedJob>,
    reload: Reload,
    syncer: Arc<Syncer>,
    clock: Clock,
) -> Result<u8, AppError> {
    let mut jobs = Arc::new(scheduled_jobs(jobs)?);
    let mut hangups = Hangups::listen();
    let (tx, mut rx) = mpsc::unbounded_channel::<Fire>();
    let mut generation = 0;
    catch_up(&jobs, &syncer, clock.now(), &tx).await?;
    let mut tickers = start_tickers(&jobs, generation, &clock, &tx);
    tracing::info!(
        jobs = jobs.len(),
        now = %clock.now().to_rfc3339(),
        clock = if clock.is_overridden() { "ATTENDSYNC_NOW" } else { "system" },
        "daemon started; SIGTERM or Ctrl-C stops it, SIGHUP reloads the job files"
    );

    let mut running: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        // Biased: fires already queued (the catch-ups) are served before a reload.
        let fire = tokio::select! {
            biased;
            _ = syncer.shutdown.wait() => break,
            fire = rx.recv() => match fire {
                Some(f) => f,
                None => break,
            },
            _ = hangups.recv() => {
                if let Some(new) = reloaded(&reload) {
                    tickers.iter().for_each(JoinHandle::abort);
                    generation += 1;
                    jobs = Arc::new(new);
                    tickers = start_tickers(&jobs, generation, &clock, &tx);
                }
                continue;
            }
        };
        if fire.generation != generation {
            continue; // a ticker of the configuration before a reload
        }
        let Some(s) = jobs.get(fire.job) else {
            continue;
        };
        let name = s.job.job.name.clone();
        if running.get(&name).is_some_and(|h| !h.is_finished()) {
            tracing::warn!(job = %name, "the previous run is still going; skipping this fire");
            continue;
        }
        running.insert(
            name,
            start_run(jobs.clone(), fire.job, syncer.clone(), &clock),
        );
    }

    tracing::info!("stopping: no new runs; waiting for runs in flight");
    tickers.iter().for_each(JoinHandle::abort);
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for (_, handle) in running {
        if tokio::time::timeout_at(deadline, handle).await.is_err() {
            tracing::warn!(
                "a run did not finish in time; its pending batch is settled by the next run"
            );
        }
    }
    tracing::info!("daemon stopped");
    Ok(EXIT_OK)
}
