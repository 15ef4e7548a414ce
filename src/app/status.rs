//! `status`: recent runs, per job-month counts, months owed and metered calls,
//! read from the database without creating or changing it.

use chrono::Utc;

use super::now;
use crate::cli::Global;
use crate::config;
use crate::month::Month;
use crate::outcome::{AppError, EXIT_OK};
use crate::store::Store;

/// `status`: recent runs and per job-month counts. Reads the database without
/// creating or changing it.
pub fn status(global: &Global, job: Option<&str>) -> Result<u8, AppError> {
    let store = Store::open_read_only(&global.db_path())?;
    if let Some(job) = job {
        known_job(global, &store, job)?;
    }
    let mut runs = store.recent_runs(job, 10)?;
    show_interrupted(&store, &mut runs, Utc::now())?;
    let months = store.month_rows(job)?;
    let pending = store.pending_count(job)?;
    crate::out!("{}", status_text(&runs, &months, pending));
    crate::out!("{}", owed_text(&store.all_owed(job, now()?)?));
    crate::out!("{}", events_text(&store, job)?);
    let metered = store.metered_rows(job)?;
    if !metered.is_empty() {
        crate::outln!(
            "\nMetered source calls by calendar month (counted against `monthly_call_budget`):"
        );
        for (job, period, calls) in metered.iter().take(12) {
            crate::outln!("  {job:<20} {period}  {calls:>7}");
        }
    }
    Ok(EXIT_OK)
}

/// Per job with `[events]`: its connection, the employee-months waiting for
/// a re-pull, approvals still to look up, and events received by type.
fn events_text(store: &Store, job: Option<&str>) -> Result<String, AppError> {
    // A database from before events has none to show (and `status` never migrates).
    if store.schema_version()? < crate::store::CURRENT_VERSION {
        return Ok(String::new());
    }
    let jobs = store.event_jobs(job)?;
    if jobs.is_empty() {
        return Ok(String::new());
    }
    let mut s = String::from(
        "
Events (re-pulls on change):
",
    );
    for job in jobs {
        let link = match store.event_link(&job)? {
            Some(l) if l.detail.is_empty() => format!("{} (at {})", l.state, l.at),
            Some(l) => format!("{}: {} (at {})", l.state, l.detail, l.at),
            None => "no daemon has reported".to_string(),
        };
        let counts: Vec<String> = store
            .event_counts(&job)?
            .iter()
            .map(|c| format!("{} {}", c.kind, c.received))
            .collect();
        let received = if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(", ")
        };
        s.push_str(&format!(
            "  {job:<20} connection: {link}
  {:<20} waiting for a re-pull: {} employee-month(s), {} approval(s) to look up
  {:<20} received: {received}
",
            "",
            store.dirty_count(&job)?,
            store.lookup_count(&job)?,
            "",
        ));
    }
    Ok(s)
}

/// Months owed by each job: closed in the job's timezone, and not yet synced
/// in full since.
fn owed_text(owed: &[(String, Month, String)]) -> String {
    if owed.is_empty() {
        return String::new();
    }
    let lines: Vec<String> = owed
        .iter()
        .map(|(job, month, since)| format!("  {job:<20} {month}  (due since {since})\n"))
        .collect();
    format!(
        "\nMonths owed (closed, not yet synced in full since; the next run without --month syncs them):\n{}",
        lines.concat()
    )
}

/// A job `status` can tell about: a job file in the config dir, or a job the
/// database has runs of.
fn known_job(global: &Global, store: &Store, job: &str) -> Result<(), AppError> {
    let mut known: Vec<String> = config::job_files(&global.config_dir)
        .map(|files| files.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default();
    known.extend(store.job_names()?);
    known.sort();
    known.dedup();
    if known.iter().any(|k| k == job) {
        Ok(())
    } else {
        Err(AppError::UnknownJob {
            job: job.to_string(),
            known,
        })
    }
}

/// A run still marked running is in progress only if it is its job's latest run
/// and a live process holds the job's lease; any other (killed with -9, the
/// machine went down) is shown as interrupted. The next run of the job marks
/// them so in the database.
fn show_interrupted(
    store: &Store,
    runs: &mut [crate::store::RunRow],
    now: chrono::DateTime<Utc>,
) -> Result<(), AppError> {
    let running = crate::store::RunStatus::Running.as_str();
    let mut in_progress: std::collections::HashMap<String, Option<i64>> = Default::default();
    for r in runs.iter_mut().filter(|r| r.status == running) {
        let id = match in_progress.get(&r.job) {
            Some(id) => *id,
            None => {
                let held = store
                    .lease_holder(&r.job, now)?
                    .is_some_and(|h| !crate::lease::holder_is_dead(&h.owner));
                let id = if held {
                    store.recent_runs(Some(&r.job), 1)?.first().map(|l| l.id)
                } else {
                    None
                };
                in_progress.insert(r.job.clone(), id);
                id
            }
        };
        if id != Some(r.id) {
            r.status = crate::store::RunStatus::Interrupted.as_str().to_string();
            r.message
                .get_or_insert_with(|| crate::store::INTERRUPTED_MESSAGE.to_string());
        }
    }
    Ok(())
}

pub fn status_text(
    runs: &[crate::store::RunRow],
    months: &[crate::store::MonthRow],
    pending: u64,
) -> String {
    let mut s = String::new();
    if runs.is_empty() {
        s.push_str("No runs recorded yet.\n");
        return s;
    }
    s.push_str("Recent runs:\n");
    s.push_str(&format!(
        "  {:>5}  {:<20} {:<14} {:<11} {:<25} {}\n",
        "run", "job", "command", "status", "started", "message"
    ));
    for r in runs {
        s.push_str(&format!(
            "  {:>5}  {:<20} {:<14} {:<11} {:<25} {}\n",
            r.id,
            r.job,
            r.command,
            r.status,
            r.started_at,
            r.message.as_deref().unwrap_or("")
        ));
    }
    s.push_str("\nBy job and month (latest run):\n");
    s.push_str(&format!(
        "  {:<20} {:<8} {:>5} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}  {}\n",
        "job",
        "month",
        "run",
        "pulled",
        "created",
        "updated",
        "unchanged",
        "failed",
        "stored",
        "at"
    ));
    for m in months {
        let c = &m.counts;
        s.push_str(&format!(
            "  {:<20} {:<8} {:>5} {:>8} {:>8} {:>8} {:>10} {:>7} {:>7}  {}\n",
            m.job,
            m.month,
            m.run_id,
            c.pulled,
            c.created,
            c.updated,
            c.unchanged,
            c.failed,
            m.stored,
            m.at
        ));
    }
    if pending > 0 {
        s.push_str(&format!(
            "\n{pending} create batch(es) pending: the next run of their job settles them.\n"
        ));
    }
    s
}
