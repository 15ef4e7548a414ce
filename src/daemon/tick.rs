//! The jobs the daemon runs and when: each job's schedule, a ticker task per
//! job that sleeps until its next fire, and the catch-up of runs missed while
//! the daemon was down.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::{ConfigError, ConfigErrors, LoadedJob};
use crate::outcome::AppError;
use crate::pipeline::Syncer;
use crate::schedule::Schedule;

pub(super) struct Scheduled {
    pub(super) job: LoadedJob,
    /// `None`: a job without `schedule`, run only when requested through the API.
    pub(super) schedule: Option<Schedule>,
}

/// A job is due (a scheduled time or a catch-up, or a look for re-pulls), in
/// configuration `generation`.
pub(super) struct Fire {
    pub(super) generation: u64,
    pub(super) job: usize,
    pub(super) kind: FireKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FireKind {
    Schedule,
    /// Employee-months marked by events may be due (daemon/repull.rs).
    Repull,
}

/// The jobs the daemon runs: those with a `schedule`, and while it serves the
/// API (`serving`) the others too, run only on request.
pub(super) fn scheduled_jobs(
    jobs: Vec<LoadedJob>,
    serving: bool,
) -> Result<Vec<Scheduled>, ConfigErrors> {
    let mut out = Vec::new();
    for job in jobs {
        let Some(text) = job.job.schedule.clone() else {
            if job.job.events.is_some() {
                tracing::info!(job = %job.job.name, "no `schedule` in the job file; it re-pulls what its events mark");
                out.push(Scheduled {
                    job,
                    schedule: None,
                });
            } else if serving {
                tracing::info!(job = %job.job.name, "no `schedule` in the job file; it runs only when requested through the API");
                out.push(Scheduled {
                    job,
                    schedule: None,
                });
            } else {
                tracing::warn!(job = %job.job.name, "no `schedule` in the job file; the daemon does not run it");
            }
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
        out.push(Scheduled {
            job,
            schedule: Some(schedule),
        });
    }
    if out.is_empty() {
        return Err(ConfigErrors(vec![ConfigError {
            file: "jobs".into(),
            line: 0,
            column: 0,
            key: "schedule".into(),
            message: "no job has a `schedule` (and attendsync.toml has no [server] to request runs through); nothing for the daemon to do".into(),
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
    let Some(schedule) = &s.schedule else { return };
    let mut after = clock.now();
    loop {
        let Some(due) = schedule.next_after(after) else {
            tracing::error!(job = %s.job.job.name, schedule = %schedule.text(), "the schedule has no fire after {after}; the daemon no longer runs this job");
            return;
        };
        clock.sleep_until(due).await;
        // Times missed by a long sleep (a suspended machine) collapse into this one.
        after = due.max(clock.now());
        tracing::info!(
            job = %s.job.job.name,
            scheduled = %local(schedule, Some(due)),
            next_fire = %local(schedule, schedule.next_after(after)),
            "scheduled time reached"
        );
        let fire = Fire {
            generation,
            job,
            kind: FireKind::Schedule,
        };
        if tx.send(fire).is_err() {
            return;
        }
    }
}

/// Logs each job's next fire and starts its ticker.
pub(super) fn start_tickers(
    jobs: &Arc<Vec<Scheduled>>,
    generation: u64,
    clock: &Clock,
    tx: &mpsc::UnboundedSender<Fire>,
) -> Vec<JoinHandle<()>> {
    let now = clock.now();
    let mut out = Vec::new();
    for (i, s) in jobs.iter().enumerate() {
        let Some(schedule) = &s.schedule else {
            continue;
        };
        tracing::info!(
            job = %s.job.job.name,
            schedule = %schedule.text(),
            timezone = %schedule.timezone(),
            next_fire = %local(schedule, schedule.next_after(now)),
            "scheduled"
        );
        let (jobs, clock, tx) = (jobs.clone(), clock.clone(), tx.clone());
        out.push(tokio::spawn(ticker(i, generation, jobs, clock, tx)));
    }
    out
}

/// Sends a catch-up fire for every job whose scheduled time passed since its
/// last successful run.
pub(super) async fn catch_up(
    jobs: &[Scheduled],
    syncer: &Syncer,
    now: DateTime<Utc>,
    tx: &mpsc::UnboundedSender<Fire>,
) -> Result<(), AppError> {
    for (i, s) in jobs.iter().enumerate() {
        let name = s.job.job.name.clone();
        let last = syncer.store.call(move |st| st.last_success(&name)).await?;
        if let Some(last) = last {
            if s.schedule.as_ref().is_some_and(|sc| sc.missed(last, now)) {
                tracing::info!(job = %s.job.job.name, last_success = %last, "a scheduled run was missed while the daemon was down; catching up once");
                let _ = tx.send(Fire {
                    generation: 0,
                    job: i,
                    kind: FireKind::Schedule,
                });
            }
        }
    }
    Ok(())
}
