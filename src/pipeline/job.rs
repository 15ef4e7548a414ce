//! One job run: the lease and the run's row in SQLite, the source and the
//! writer set up, then month by month plan → pull → map → diff → write →
//! report, and the run's end recorded.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chrono::Utc;

use super::ctx::{lease_lost, MonthCtx, Run};
use super::report::{log_month, JobReport, MonthReport};
use super::{JobError, Options};
use crate::config::job::Job;
use crate::http::CallStats;
use crate::lease::{Lease, LeaseError};
use crate::mapping::Mapping;
use crate::month::{default_months, Month};
use crate::store::{RunStatus, Store};

/// Where dry-run records go (stdout in the CLI).
pub type RecordSink = Arc<dyn Fn(&serde_json::Value) + Send + Sync>;

pub struct Syncer {
    pub store: Store,
    pub http: reqwest::Client,
    pub dry_run_sink: RecordSink,
    /// Set on SIGTERM/SIGINT: finish the chunks in flight, then stop. Everything
    /// written is committed and the next run resumes.
    pub shutdown: crate::shutdown::Shutdown,
    pub progress: Arc<dyn crate::progress::Progress>,
}

/// A job run once its lease is held and its row in SQLite made.
struct Started<'a> {
    job: &'a Job,
    mapping: &'a Arc<Mapping>,
    opts: &'a Options,
    stats: Arc<CallStats>,
    lost: Arc<AtomicBool>,
    run_id: Option<i64>,
}

impl Syncer {
    /// Runs one job for its months. Never panics on bad data; every problem ends up
    /// in the report.
    pub async fn run_job(&self, job: &Job, mapping: Arc<Mapping>, opts: &Options) -> JobReport {
        let stats = Arc::new(CallStats::default());
        let mut report = JobReport::new(&job.name, opts.dry_run);
        let months = if opts.months.is_empty() {
            default_months(opts.now, job.timezone, job.previous_month_until_day)
        } else {
            opts.months.clone()
        };
        let Some((lease, run_id)) = self.begin(job, opts, &mut report).await else {
            return report;
        };
        let lost = lease.as_ref().map(Lease::lost).unwrap_or_default();
        report.run_id = run_id;
        let started = Started {
            job,
            mapping: &mapping,
            opts,
            stats: stats.clone(),
            lost,
            run_id,
        };
        let result = self.run_months(started, &months, &mut report).await;
        self.keep_paces(job).await;
        if let Err(e) = result {
            tracing::error!(job = %job.name, error = %e, "job failed");
            report.error = Some(format!("job {}: {e}", job.name));
        }
        // A shutdown stops a run between chunks with an "interrupted by a
        // shutdown request" error: whatever else went wrong, it did not finish.
        report.stopped_by_shutdown = self.shutdown.is_triggered() && !report.ok();
        // The run's writes are safe in the store's log already; folding them now
        // spares the next run the work. Should it fail, the next run folds.
        if !opts.dry_run {
            if let Err(e) = self.store.call(|s| s.fold_written()).await {
                tracing::warn!(job = %job.name, error = %e, "could not fold the run's writes into the checkpoints");
            }
        }
        report.calls = stats.snapshot();
        if let Some(run_id) = run_id {
            self.finish_run(run_id, &report).await;
        }
        if let Some(l) = lease {
            l.release().await;
        }
        report
    }

    /// Takes the job's lease and records the run's start (neither in a dry
    /// run). `None` when the run cannot start; the report says why.
    async fn begin(
        &self,
        job: &Job,
        opts: &Options,
        report: &mut JobReport,
    ) -> Option<(Option<Lease>, Option<i64>)> {
        if opts.dry_run {
            return Some((None, None));
        }
        let lease = match Lease::acquire(&self.store, &job.name).await {
            Ok(lease) => lease,
            Err(busy @ LeaseError::Busy { .. }) => {
                report.busy = Some(busy.to_string());
                return None;
            }
            Err(LeaseError::Store(e)) => {
                report.error = Some(format!("job {}: {e}", job.name));
                return None;
            }
        };
        let (j, c, now) = (job.name.clone(), opts.command(), opts.now);
        match self.store.call(move |s| s.start_run(&j, c, now)).await {
            Ok(id) => Some((Some(lease), Some(id))),
            Err(e) => {
                report.error = Some(format!("job {}: {e}", job.name));
                lease.release().await;
                None
            }
        }
    }

    /// Records the end of the run: ok, partial or failed.
    async fn finish_run(&self, run_id: i64, report: &JobReport) {
        let status = if report.ok() {
            RunStatus::Ok
        } else if report.error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Partial
        };
        let message = report.error.clone();
        let finished = self
            .store
            .call(move |s| s.finish_run(run_id, status, message.as_deref(), Utc::now()))
            .await;
        if let Err(e) = finished {
            tracing::warn!(error = %e, "could not record the end of the run");
        }
    }

    async fn run_months(
        &self,
        started: Started<'_>,
        months: &[Month],
        report: &mut JobReport,
    ) -> Result<(), JobError> {
        let Started {
            job,
            mapping,
            opts,
            stats,
            lost,
            run_id,
        } = started;
        // What a killed run logged but did not fold must be seen by the look-ups.
        self.store.call(|s| s.fold_written()).await?;
        let months = self.due_months(job, opts, months, report).await?;
        let source = crate::source::open(&job.source, self.http.clone(), stats.clone());
        self.recall_pace(job.source.app_identity()).await;
        // The form's check and the source's token are independent: taken
        // together, the first report call is one round trip sooner. Both end
        // before either error is reported, so that when both fail the form's
        // comes first, whatever answered sooner.
        let (writer, login) =
            tokio::join!(self.open_writer(job, mapping, opts, &stats), source.login());
        let writer = writer?;
        login?;
        let (months, budget, mut planner) = self
            .plan(job, opts, source.as_ref(), months, report)
            .await?;
        tracing::info!(job = %job.name, months = ?months.iter().map(|m| m.to_string()).collect::<Vec<_>>(), "starting");
        let run = Run {
            syncer: self,
            job,
            mapping,
            opts,
            source,
            writer,
            lost,
            budget,
            run_id,
            format: crate::target::record_format(&mapping.field_names()),
        };
        for month in months {
            if self.shutdown.is_triggered() {
                return Err(JobError::Setup(
                    "interrupted by a shutdown request before this month".into(),
                ));
            }
            let mut m = MonthReport::new(&job.name, month);
            let roster = planner.roster(&run.source, month, &mut m, report).await?;
            let mut ctx = MonthCtx::new(&run, month, m);
            let (result, discovered) = ctx.sync(roster).await;
            let mut m = ctx.report;
            m.warn_empty_fields(&job.name, mapping);
            if let Some(b) = &run.budget {
                b.record().await?;
            }
            planner.learnt(discovered, month, &mut m, report);
            let fatal = self.end_month(&run, month, result, m, report).await?;
            if let Some(e) = fatal {
                return Err(e);
            }
        }
        Ok(())
    }

    /// A month's end: its failure in the report, the log line, its counts in
    /// SQLite (and the month settled when synced in full after it closed).
    /// Returns the failure that stops the job, if any: a transient source
    /// failure fails only its month.
    async fn end_month(
        &self,
        run: &Run<'_>,
        month: Month,
        result: Result<(), JobError>,
        mut m: MonthReport,
        report: &mut JobReport,
    ) -> Result<Option<JobError>, JobError> {
        let (job, opts) = (run.job, run.opts);
        let fatal = match result {
            Ok(()) => None,
            Err(JobError::Source(e)) if e.is_transient() => {
                m.month_error = Some(format!("{month}: {e}"));
                None
            }
            Err(e) => {
                m.month_error = Some(format!("{month}: {e}"));
                Some(e)
            }
        };
        log_month(&m);
        self.keep_paces(job).await;
        if let Some(run_id) = run.run_id {
            let (j, ms, c, err) = (job.name.clone(), month, m.counts, m.month_error.clone());
            self.store
                .call(move |s| s.save_month(run_id, &j, ms, &c, err.as_deref()))
                .await?;
            let in_full = m.ok() && !opts.some_employees();
            if in_full && month < Month::current(opts.now, job.timezone) {
                // Synced in full after it closed: owed no more.
                let j = job.name.clone();
                self.store.call(move |s| s.settle_month(&j, month)).await?;
            }
        }
        report.months.push(m);
        Ok(fatal)
    }

    /// Why the month must stop before the next chunk, if it must.
    pub(super) fn interruption(&self, lost: &AtomicBool) -> Option<JobError> {
        if self.shutdown.is_triggered() {
            return Some(JobError::Setup(
                "interrupted by a shutdown request; the next run resumes here".into(),
            ));
        }
        lease_lost(lost)
    }
}
