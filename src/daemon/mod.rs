//! `attendsync daemon`: runs every job on its schedule, in its timezone.
//!
//! One ticker task per job computes the job's next fire with [`Schedule`] (croner,
//! evaluated in the job's timezone), sleeps until it on the daemon's [`Clock`],
//! hands it to the loop here, and computes the next one from there: every fire
//! is computed with the UTC offset of its own day, so a DST change moves nothing.
//! A job never overlaps itself (one run per job name here, and the SQLite lease
//! across processes). Missed runs are caught up once at start from the last
//! successful run in SQLite. SIGHUP reloads the job files; a file that does not
//! load keeps the old configuration.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ConfigError, ConfigErrors, LoadedJob};
use crate::outcome::{ended_at, exit_status, summary_text, AppError, EXIT_OK};
use crate::pipeline::{Mode, Options, Syncer};
use crate::schedule::Schedule;
use crate::shutdown::Hangups;

/// How long a shutdown waits for runs in flight before leaving them to the next run.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

/// Reads the job files again (on SIGHUP).
pub type Reload = Box<dyn Fn() -> Result<Vec<LoadedJob>, ConfigErrors> + Send>;

struct Scheduled {
    job: LoadedJob,
    schedule: Schedule,
}

/// A job is due (a scheduled time or a catch-up), in configuration `generation`.
struct Fire {
    generation: u64,
    job: usize,
}

fn scheduled_jobs(jobs: Vec<LoadedJob>) -> Result<Vec<Scheduled>, ConfigErrors> {
    let mut out = Vec::new();
    for job in jobs {
        let Some(text) = job.job.schedule.clone() else {
            tracing::warn!(job = %job.job.name, "no `schedule` in the job file; the daemon does not run it");
            continue;
        };
        let schedule = Schedule::parse(&text, job.job.timezone).map_err(|message| {
            ConfigErrors(vec![ConfigError {
                file: job.file.clone(),
                line: 0,
                column: 0,
                key: "schedule".into(),
                message,
            }])
        })?;
        out.push(Scheduled { job, schedule });
    }
    if out.is_empty() {
        return Err(ConfigErrors(vec![ConfigError {
            file: "jobs".into(),
            line: 0,
            column: 0,
            key: "schedule".into(),
            message: "no job has a `schedule`; nothing for the daemon to do".into(),
        }]));
    }
    Ok(out)
}

fn local(s: &Schedule, t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.with_timezone(&s.timezone()).to_rfc3339())
        .unwrap_or_else(|| "never".into())
}

/// Sleeps until each fire of job `job`, hands it over, and computes the next.
async fn ticker(
    job: usize,
    generation: u64,
    jobs: Arc<Vec<Scheduled>>,
    clock: Clock,
    tx: mpsc::UnboundedSender<Fire>,
) {
    let s = &jobs[job];
    let mut after = clock.now();
    loop {
        let Some(due) = s.schedule.next_after(after) else {
            tracing::error!(job = %s.job.job.name, schedule = %s.schedule.text(), "the schedule has no fire after {after}; the daemon no longer runs this job");
            return;
        };
        clock.sleep_until(due).await;
        // Times missed by a long sleep (a suspended machine) collapse into this one.
        after = due.max(clock.now());
        tracing::info!(
            job = %s.job.job.name,
            scheduled = %local(&s.schedule, Some(due)),
            next_fire = %local(&s.schedule, s.schedule.next_after(after)),
            "scheduled time reached"
        );
        if tx.send(Fire { generation, job }).is_err() {
            return;
        }
    }
}

/// Logs each job's next fire and starts its ticker.
fn start_tickers(
    jobs: &Arc<Vec<Scheduled>>,
    generation: u64,
    clock: &Clock,
    tx: &mpsc::UnboundedSender<Fire>,
) -> Vec<JoinHandle<()>> {
    let now = clock.now();
    let mut out = Vec::new();
    for (i, s) in jobs.iter().enumerate() {
        tracing::info!(
            job = %s.job.job.name,
            schedule = %s.schedule.text(),
            timezone = %s.schedule.timezone(),
            next_fire = %local(&s.schedule, s.schedule.next_after(now)),
            "scheduled"
        );
        let (jobs, clock, tx) = (jobs.clone(), clock.clone(), tx.clone());
        out.push(tokio::spawn(ticker(i, generation, jobs, clock, tx)));
    }
    out
}

/// Sends a catch-up fire for every job whose scheduled time passed since its
/// last successful run.
async fn catch_up(
    jobs: &[Scheduled],
    syncer: &Syncer,
    now: DateTime<Utc>,
    tx: &mpsc::UnboundedSender<Fire>,
) -> Result<(), AppError> {
    for (i, s) in jobs.iter().enumerate() {
        let name = s.job.job.name.clone();
        let last = syncer.store.call(move |st| st.last_success(&name)).await?;
        if let Some(last) = last {
            if s.schedule.missed(last, now) {
                tracing::info!(job = %s.job.job.name, last_success = %last, "a scheduled run was missed while the daemon was down; catching up once");
                let _ = tx.send(Fire {
                    generation: 0,
                    job: i,
                });
            }
        }
    }
    Ok(())
}

/// Starts one run of `s`'s job.
fn start_run(
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
