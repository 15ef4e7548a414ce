//! `attendsync daemon`: runs every job on its schedule, in its timezone.
//!
//! tokio-cron-scheduler fires the jobs; each fire is checked against the job's
//! [`Schedule`] (the fire must match a scheduled time within a tolerance, and each
//! scheduled time runs once), so the library's reported double fires for
//! Asia/Shanghai cannot start a second run. A job never overlaps itself (one task
//! per job here, and the SQLite lease across processes). Missed runs are caught up
//! once at start from the last successful run in SQLite.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};

use crate::app::{self, AppError};
use crate::config::{ConfigError, ConfigErrors, LoadedJob};
use crate::schedule::Schedule;
use crate::sync::{Mode, Options, Syncer};

/// How far after a scheduled time a fire still counts as that time.
const FIRE_TOLERANCE: chrono::Duration = chrono::Duration::seconds(30);
/// How long a shutdown waits for runs in flight before leaving them to the next run.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

#[derive(Debug)]
enum Fire {
    /// A missed scheduled time found at start.
    CatchUp,
    /// The scheduler fired at this instant.
    Tick(DateTime<Utc>),
}

/// Decides whether a fire starts a run; remembers the scheduled time it served.
pub fn accept_tick(
    schedule: &Schedule,
    at: DateTime<Utc>,
    last_served: &mut Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, &'static str> {
    let Some(due) = schedule.latest_at_or_before(at) else {
        return Err("no scheduled time before this fire");
    };
    if at - due > FIRE_TOLERANCE {
        return Err("the fire does not match a scheduled time in the job's timezone");
    }
    if *last_served == Some(due) {
        return Err("this scheduled time already ran");
    }
    *last_served = Some(due);
    Ok(due)
}

struct Scheduled {
    job: LoadedJob,
    schedule: Schedule,
}

fn scheduled_jobs(jobs: Vec<LoadedJob>) -> Result<Vec<Scheduled>, AppError> {
    let mut out = Vec::new();
    for job in jobs {
        let Some(text) = job.job.schedule.clone() else {
            tracing::warn!(job = %job.job.name, "no `schedule` in the job file; the daemon does not run it");
            continue;
        };
        let schedule = Schedule::parse(&text, job.job.timezone).map_err(|message| {
            AppError::Config(ConfigErrors(vec![ConfigError {
                file: job.file.clone(),
                line: 0,
                column: 0,
                key: "schedule".into(),
                message,
            }]))
        })?;
        out.push(Scheduled { job, schedule });
    }
    if out.is_empty() {
        return Err(AppError::Config(ConfigErrors(vec![ConfigError {
            file: "jobs".into(),
            line: 0,
            column: 0,
            key: "schedule".into(),
            message: "no job has a `schedule`; nothing for the daemon to do".into(),
        }])));
    }
    Ok(out)
}

fn scheduler_error(e: impl std::fmt::Display) -> AppError {
    AppError::Io(format!("scheduler: {e}"))
}

pub async fn run(jobs: Vec<LoadedJob>, syncer: Arc<Syncer>) -> Result<u8, AppError> {
    let jobs = Arc::new(scheduled_jobs(jobs)?);
    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Fire)>();
    let now = Utc::now();

    for (i, s) in jobs.iter().enumerate() {
        let name = s.job.job.name.clone();
        let last = syncer.store.call(move |st| st.last_success(&name)).await?;
        if let Some(last) = last {
            if s.schedule.missed(last, now) {
                tracing::info!(job = %s.job.job.name, last_success = %last, "a scheduled run was missed while the daemon was down; catching up once");
                let _ = tx.send((i, Fire::CatchUp));
            }
        }
    }

    let mut scheduler = JobScheduler::new().await.map_err(scheduler_error)?;
    for (i, s) in jobs.iter().enumerate() {
        let tx = tx.clone();
        let cron = CronJob::new_async_tz(s.schedule.text(), s.schedule.timezone(), move |_, _| {
            let tx = tx.clone();
            Box::pin(async move {
                let _ = tx.send((i, Fire::Tick(Utc::now())));
            })
        })
        .map_err(scheduler_error)?;
        scheduler.add(cron).await.map_err(scheduler_error)?;
        let next = s.schedule.next_after(now);
        tracing::info!(
            job = %s.job.job.name,
            schedule = %s.schedule.text(),
            timezone = %s.schedule.timezone(),
            next_fire = %next.map(|n| n.with_timezone(&s.schedule.timezone()).to_rfc3339()).unwrap_or_else(|| "never".into()),
            "scheduled"
        );
    }
    scheduler.start().await.map_err(scheduler_error)?;
    tracing::info!(
        jobs = jobs.len(),
        "daemon started; SIGTERM or Ctrl-C stops it"
    );

    let mut last_served: HashMap<usize, DateTime<Utc>> = HashMap::new();
    let mut running: HashMap<usize, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let (i, fire) = tokio::select! {
            _ = syncer.shutdown.wait() => break,
            fire = rx.recv() => match fire {
                Some(f) => f,
                None => break,
            },
        };
        let s = &jobs[i];
        if let Fire::Tick(at) = fire {
            let mut served = last_served.get(&i).copied();
            match accept_tick(&s.schedule, at, &mut served) {
                Ok(due) => {
                    last_served.insert(i, due);
                }
                Err(why) => {
                    tracing::debug!(job = %s.job.job.name, %at, why, "fire ignored");
                    continue;
                }
            }
        }
        if running.get(&i).is_some_and(|h| !h.is_finished()) {
            tracing::warn!(job = %s.job.job.name, "the previous run is still going; skipping this fire");
            continue;
        }
        let (syncer, jobs) = (syncer.clone(), jobs.clone());
        running.insert(
            i,
            tokio::spawn(async move {
                let s = &jobs[i];
                let opts = Options {
                    mode: Mode::Run,
                    months: Vec::new(),
                    dry_run: false,
                    now: Utc::now(),
                };
                let report = syncer
                    .run_job(&s.job.job, s.job.mapping.clone(), &opts)
                    .await;
                let code = app::exit_status(std::slice::from_ref(&report));
                for line in app::summary_text(std::slice::from_ref(&report)).lines() {
                    tracing::info!(job = %s.job.job.name, exit = code, "{line}");
                }
                crate::notify::notify(&syncer.http, &s.job.job, &report, code).await;
            }),
        );
    }

    tracing::info!("stopping: no new runs; waiting for runs in flight");
    if let Err(e) = scheduler.shutdown().await {
        tracing::warn!(error = %e, "scheduler shutdown");
    }
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for (_, handle) in running {
        if tokio::time::timeout_at(deadline, handle).await.is_err() {
            tracing::warn!(
                "a run did not finish in time; its pending batch is settled by the next run"
            );
        }
    }
    tracing::info!("daemon stopped");
    Ok(app::EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_fire_runs_its_scheduled_time_once_and_wrong_offset_fires_are_ignored() {
        let s = Schedule::parse("0 30 2 * * *", chrono_tz::Asia::Shanghai)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut served = None;
        let right = Utc
            .with_ymd_and_hms(2026, 11, 4, 18, 30, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(
            accept_tick(&s, right + chrono::Duration::milliseconds(300), &mut served),
            Ok(right)
        );
        // The same scheduled time again (a double fire) is refused.
        assert!(accept_tick(&s, right + chrono::Duration::seconds(1), &mut served).is_err());
        // A fire at 02:30 UTC (the library's reported bug) matches no scheduled time.
        let wrong = Utc
            .with_ymd_and_hms(2026, 11, 5, 2, 30, 0)
            .single()
            .unwrap_or_default();
        assert!(accept_tick(&s, wrong, &mut served).is_err());
        let next_day = right + chrono::Duration::days(1);
        assert_eq!(accept_tick(&s, next_day, &mut served), Ok(next_day));
    }
}
