//! The report of a run: per month, what was pulled, written, failed and found
//! gone; per job, what stopped it and the calls it made. The summary text, the
//! JSON answer, `runs`/`run_months` in SQLite and the alerts are made from it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::http::EndpointStats;
use crate::mapping::{FieldFill, Mapping};
use crate::month::Month;
use crate::pipeline::write::Outcome;
use crate::store::MonthCounts;

/// How many errors a month keeps for the summary and alerts.
const MAX_ERRORS_KEPT: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct MonthReport {
    /// The job, for log lines (the JSON summary has it once per job).
    #[serde(skip)]
    pub job: String,
    pub month: String,
    #[serde(flatten)]
    pub counts: MonthCounts,
    /// The first errors (employee, field, endpoint, code), at most 20.
    pub errors: Vec<String>,
    /// A failure that stopped this month before all records were seen.
    pub month_error: Option<String>,
    /// Keys in the store (and the form) that the source no longer returned.
    pub missing_keys: Vec<String>,
    /// Those of them whose employee the source answered for with nothing this
    /// month: known to be gone, and what `--prune` deletes.
    pub gone_keys: Vec<String>,
    /// How many of those `--prune` deleted.
    pub pruned: u64,
    /// Keys the form holds more than once (seen by `rerun`).
    pub duplicates: Vec<String>,
    /// Extra copies `rerun --force` deleted.
    pub copies_deleted: u64,
    /// Employees not pulled this run because the call budget ran short.
    pub skipped: u64,
    /// Mapped fields that came out empty in every record of the month.
    pub warnings: Vec<String>,
    /// Per mapped field, how many records had a value (makes `warnings`).
    #[serde(skip)]
    pub fill: FieldFill,
}

impl MonthReport {
    pub(super) fn new(job: &str, month: Month) -> Self {
        MonthReport {
            job: job.to_string(),
            month: month.to_string(),
            counts: MonthCounts::default(),
            errors: Vec::new(),
            month_error: None,
            missing_keys: Vec::new(),
            gone_keys: Vec::new(),
            pruned: 0,
            duplicates: Vec::new(),
            copies_deleted: 0,
            skipped: 0,
            warnings: Vec::new(),
            fill: FieldFill::default(),
        }
    }

    /// Warns (in the report and the log) of fields empty in every record.
    pub(super) fn warn_empty_fields(&mut self, job: &str, mapping: &Mapping) {
        for w in self.fill.warnings(mapping) {
            self.warn(job, w);
        }
    }

    /// A warning, in the report and the log.
    pub(super) fn warn(&mut self, job: &str, warning: String) {
        tracing::warn!(%job, month = %self.month, "{warning}");
        self.warnings.push(warning);
    }

    /// A record that failed: counted, kept for the summary and logged at WARN.
    pub(super) fn error(&mut self, message: String) {
        // Keys and reasons carry employee data and vendor text: one line, escaped.
        let message = crate::text::clean(&message).into_owned();
        tracing::warn!(job = %self.job, "{message}");
        self.counts.failed += 1;
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(message);
        }
    }

    pub fn ok(&self) -> bool {
        self.counts.failed == 0 && self.month_error.is_none() && self.skipped == 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub job: String,
    pub dry_run: bool,
    pub months: Vec<MonthReport>,
    /// A failure that stopped the whole job.
    pub error: Option<String>,
    /// Set when another process holds the job's lease: nothing was done.
    pub busy: Option<String>,
    /// The run did not finish because of a shutdown request (SIGTERM/SIGINT):
    /// not a failure of the job, so it raises no alert.
    pub stopped_by_shutdown: bool,
    /// For a metered source: the call plan, made once the head count is known
    /// (before any metered call in a dry run).
    pub plan: Option<String>,
    pub calls: BTreeMap<String, EndpointStats>,
    /// The run's row in SQLite (none in a dry run, or when it did not start).
    #[serde(skip)]
    pub run_id: Option<i64>,
}

impl JobReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.busy.is_none() && self.months.iter().all(MonthReport::ok)
    }
}

impl JobReport {
    /// A report of nothing done yet.
    pub(super) fn new(job: &str, dry_run: bool) -> Self {
        JobReport {
            job: job.to_string(),
            dry_run,
            months: Vec::new(),
            error: None,
            busy: None,
            stopped_by_shutdown: false,
            plan: None,
            calls: BTreeMap::new(),
            run_id: None,
        }
    }
}

/// Adds what a chunk's writes achieved to the month's report.
pub(super) fn record_outcome(job: &str, month: Month, out: Outcome, m: &mut MonthReport) {
    m.counts.created += out.created;
    m.counts.updated += out.updated;
    m.counts.unchanged += out.adopted;
    m.copies_deleted += out.copies_deleted;
    for (key, reason) in out.failed {
        m.error(format!("{month} record {key}: {reason}"));
    }
    for key in out.duplicates {
        tracing::warn!(%job, %month, key = %crate::text::clean(&key.to_string()), "the form holds this key more than once; updating the oldest record (`rerun --force` deletes the other copies)");
        if !m.duplicates.contains(&key) {
            m.duplicates.push(key);
        }
    }
}

/// The month's end: INFO when all went well, WARN when records failed, ERROR
/// when the month itself failed.
pub(super) fn log_month(m: &MonthReport) {
    let c = &m.counts;
    let (job, month) = (&m.job, &m.month);
    if let Some(error) = &m.month_error {
        tracing::error!(%job, %month, pulled = c.pulled, created = c.created, updated = c.updated,
            unchanged = c.unchanged, failed = c.failed, %error, "month failed");
    } else if c.failed > 0 || m.skipped > 0 {
        tracing::warn!(%job, %month, pulled = c.pulled, created = c.created, updated = c.updated,
            unchanged = c.unchanged, failed = c.failed, skipped = m.skipped, "month done, with failures");
    } else {
        tracing::info!(%job, %month, pulled = c.pulled, created = c.created, updated = c.updated,
            unchanged = c.unchanged, failed = c.failed, "month done");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A month's errors reach the log, stdout, `runs.message` and alerts: employee
    /// data and vendor text in them are escaped, on one line.
    #[test]
    fn month_errors_are_escaped() {
        let month = Month::new(2026, 10).expect("month");
        let mut m = MonthReport::new("job", month);
        m.error("record u1\n* * * * * root sh\x1b[2J: rejected".to_string());
        assert_eq!(
            m.errors,
            [r"record u1\n* * * * * root sh\u{1b}[2J: rejected"]
        );
        assert_eq!(m.counts.failed, 1);
    }

    fn month() -> Month {
        Month::new(2026, 10).expect("month")
    }

    #[test]
    fn a_month_is_ok_only_without_failures_skips_or_month_error() {
        let mut m = MonthReport::new("job", month());
        assert!(m.ok());
        m.skipped = 1;
        assert!(!m.ok());
        let mut m = MonthReport::new("job", month());
        m.month_error = Some("stopped".into());
        assert!(!m.ok());
        let mut m = MonthReport::new("job", month());
        m.error("record u1: rejected".into());
        assert!(!m.ok());
    }

    #[test]
    fn a_month_keeps_the_first_errors_and_counts_them_all() {
        let mut m = MonthReport::new("job", month());
        for i in 0..MAX_ERRORS_KEPT + 5 {
            m.error(format!("record u{i}: rejected"));
        }
        assert_eq!(m.errors.len(), MAX_ERRORS_KEPT);
        assert_eq!(m.counts.failed, (MAX_ERRORS_KEPT + 5) as u64);
        assert_eq!(m.errors[0], "record u0: rejected");
    }

    #[test]
    fn a_job_is_ok_only_when_every_month_is() {
        let mut r = JobReport::new("job", false);
        assert!(r.ok());
        r.months.push(MonthReport::new("job", month()));
        assert!(r.ok());
        r.months[0].skipped = 3;
        assert!(!r.ok());
        let mut busy = JobReport::new("job", false);
        busy.busy = Some("held by another process".into());
        assert!(!busy.ok());
    }

    #[test]
    fn writes_add_up_in_the_month_and_a_duplicate_is_listed_once() {
        let mut m = MonthReport::new("job", month());
        let out = Outcome {
            created: 2,
            updated: 1,
            adopted: 4,
            copies_deleted: 1,
            failed: vec![("u9".into(), "rejected".into())],
            duplicates: vec!["k1".into(), "k1".into()],
        };
        record_outcome("job", month(), out, &mut m);
        assert_eq!(
            (m.counts.created, m.counts.updated, m.counts.unchanged),
            (2, 1, 4)
        );
        assert_eq!(m.copies_deleted, 1);
        assert_eq!(m.counts.failed, 1);
        assert_eq!(m.errors, ["2026-10 record u9: rejected"]);
        assert_eq!(m.duplicates, ["k1"]);
    }
}
