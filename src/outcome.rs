//! What a command comes to: its exit status, the errors that set one, and the
//! summary of a run. Shared by the commands (`app`), the daemon and the alerts
//! (`notify`), none of which imports another for it.

use chrono::{DateTime, Utc};

use crate::config::ConfigErrors;
use crate::pipeline::JobReport;
use crate::store::StoreError;

/// Exit statuses (README "Exit status").
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
/// Another process holds a job's lease; that job was skipped.
pub const EXIT_BUSY: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Client(#[from] crate::http::ClientError),
    #[error("{0}")]
    Io(String),
    #[error("unknown job \"{job}\"; {}", known_jobs(.known))]
    UnknownJob { job: String, known: Vec<String> },
    #[error("{given} employees given with --employee; at most {max} are taken at once (rerun the month without --employee to bring everyone in line)")]
    TooManyEmployees { given: usize, max: usize },
}

fn known_jobs(known: &[String]) -> String {
    if known.is_empty() {
        "no job is known: no job files in jobs/ and no runs in the database".to_string()
    } else {
        format!("known jobs: {}", known.join(", "))
    }
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_)
            | AppError::UnknownJob { .. }
            | AppError::TooManyEmployees { .. } => EXIT_CONFIG,
            AppError::Store(StoreError::Missing { .. } | StoreError::NotAttendsync { .. }) => {
                EXIT_CONFIG
            }
            _ => EXIT_FAILED,
        }
    }
}

pub fn exit_status(reports: &[JobReport]) -> u8 {
    if reports.iter().any(|r| r.busy.is_none() && !r.ok()) {
        EXIT_FAILED
    } else if reports.iter().any(|r| r.busy.is_some()) {
        EXIT_BUSY
    } else {
        EXIT_OK
    }
}

/// The human summary: one line per job and month, then the first errors.
pub fn summary_text(reports: &[JobReport]) -> String {
    let mut s = String::new();
    for r in reports {
        let prefix = if r.dry_run { "[dry run] " } else { "" };
        if let Some(busy) = &r.busy {
            s.push_str(&format!("{prefix}{}: skipped: {busy}\n", r.job));
            continue;
        }
        if let Some(plan) = &r.plan {
            s.push_str(&format!("{prefix}{} {plan}\n", r.job));
        }
        for m in &r.months {
            let c = &m.counts;
            s.push_str(&format!(
                "{prefix}{} {}: pulled {}, created {}, updated {}, unchanged {}, failed {}",
                r.job, m.month, c.pulled, c.created, c.updated, c.unchanged, c.failed
            ));
            if c.missing > 0 {
                s.push_str(&format!(", gone from source {}", c.missing));
            }
            if m.skipped > 0 {
                s.push_str(&format!(", skipped {} (call budget)", m.skipped));
            }
            if !m.duplicates.is_empty() {
                s.push_str(&format!(", duplicates {}", m.duplicates.len()));
            }
            s.push('\n');
            for w in &m.warnings {
                s.push_str(&format!("  warning: {w}\n"));
            }
            if let Some(e) = &m.month_error {
                s.push_str(&format!("  month failed: {e}\n"));
            }
            for e in &m.errors {
                s.push_str(&format!("  error: {e}\n"));
            }
            if c.failed as usize > m.errors.len() {
                s.push_str(&format!(
                    "  … and {} more errors\n",
                    c.failed as usize - m.errors.len()
                ));
            }
            for k in m.missing_keys.iter().take(20) {
                let fate = match (m.gone_keys.contains(k), m.pruned > 0) {
                    (true, true) => "deleted from Jiandaoyun",
                    (true, false) => "kept in Jiandaoyun; `rerun --prune` deletes it",
                    (false, _) => "kept: the source was not asked for this employee this month (no longer in its scope or directory), so it is not known to be gone",
                };
                s.push_str(&format!("  gone from source ({fate}): {k}\n"));
            }
            let copies = if m.copies_deleted > 0 {
                "extra copies deleted"
            } else {
                "`rerun --force` deletes the extra copies"
            };
            for k in m.duplicates.iter().take(20) {
                s.push_str(&format!(
                    "  held more than once in the form ({copies}): {k}\n"
                ));
            }
        }
        if let Some(e) = &r.error {
            s.push_str(&format!("{prefix}{}: failed: {e}\n", r.job));
        }
        let calls: Vec<String> = r
            .calls
            .iter()
            .map(|(e, st)| format!("{e} {}", st.calls))
            .collect();
        if !calls.is_empty() {
            s.push_str(&format!("{prefix}{} calls: {}\n", r.job, calls.join(", ")));
        }
        let metered = crate::http::metered_calls(&r.calls);
        if metered > 0 {
            s.push_str(&format!("{prefix}{} metered calls: {metered}\n", r.job));
        }
    }
    s
}

/// The clock when a run ended: the clock it started on (`ATTENDSYNC_NOW` or
/// the real time) plus the time it took. An alert's time and its
/// failure-streak arithmetic follow it.
pub fn ended_at(now: DateTime<Utc>, started: std::time::Instant) -> DateTime<Utc> {
    chrono::Duration::from_std(started.elapsed())
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(now)
}
